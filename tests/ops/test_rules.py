"""The alert rules: valid, unit-tested with promtool, and the same in both forms."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.ops.conftest import REPO, RULES, tool

RUNBOOK_ALERTS = {
    "ClaimXEnrichmentLagHigh": "critical",
    "ClaimXAPIErrorRateHigh": "critical",
    "ClaimXDLQGrowing": "critical",
    "ClaimXDownloadLatencyHigh": "warning",
    "ClaimXUploadFailureRate": "warning",
}


def rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_rules_are_valid_and_every_alert_is_unit_tested_both_ways() -> None:
    promtool = tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = REPO / "monitoring/tests/claimx.rules.test.yaml"
    ran = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "SUCCESS" in ran.stdout + ran.stderr

    # Each alert has a case where it fires and one where it stays quiet.
    cases = yaml.safe_load(tests.read_text())["tests"]
    fired, quiet = set(), set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {str(rule["alert"]) for rule in rules() if "alert" in rule}
    assert fired == alerts == quiet


def test_the_runbooks_alerts_keep_their_names_and_severities() -> None:
    severities = {r["alert"]: r["labels"]["severity"] for r in rules() if "alert" in r}  # type: ignore[index]
    for name, severity in RUNBOOK_ALERTS.items():
        assert severities[name] == severity


def test_prometheusrule_and_dashboard_are_rendered_from_the_sources() -> None:
    checked = subprocess.run(
        [sys.executable, str(REPO / "monitoring/render.py"), "--check"], capture_output=True
    )
    assert checked.returncode == 0, checked.stdout
    manifest = yaml.safe_load((REPO / "k8s/monitoring/prometheusrule.yaml").read_text())
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_the_dashboard_has_the_runbooks_four_rows() -> None:
    board = json.loads((REPO / "monitoring/grafana/claimx-pipeline.json").read_text())
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Throughput", "Latency", "Errors & Retries", "Queue Health"]
    titles = {p["title"] for p in board["panels"]}
    for runbook_panel in (
        "Events ingested/sec",
        "Events enriched/sec",
        "Downloads/sec",
        "Uploads/sec",
        "API call latency",
        "Download latency",
        "Upload latency",
        "Error rate by type",
        "Retry rate",
        "Consumer lag by topic",
        "Partition assignment",
    ):
        assert runbook_panel in titles
    assert all(p["targets"] for p in board["panels"] if p["type"] != "row")
    configmap = yaml.safe_load((REPO / "k8s/monitoring/grafana-dashboard.yaml").read_text())
    assert json.loads(configmap["data"]["claimx-pipeline.json"]) == board
