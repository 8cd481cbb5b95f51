"""The alert rules: valid, unit-tested with promtool, and the same in both forms."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import ModuleType

import yaml

from claimx_flow.catalog import STAGE_NAMES
from tests.ops.conftest import REPO, RULES, tool

RUNBOOK_ALERTS = {
    "ClaimXEnrichmentLagHigh": "critical",
    "ClaimXAPIErrorRateHigh": "critical",
    "ClaimXDLQGrowing": "critical",
    "ClaimXDownloadLatencyHigh": "warning",
    "ClaimXUploadFailureRate": "warning",
}
AVAILABILITY_ALERTS = {"ClaimXStageDown": "critical", "ClaimXStageAbsent": "critical"}


def render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render", REPO / "monitoring/render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    for name, severity in (RUNBOOK_ALERTS | AVAILABILITY_ALERTS).items():
        assert severities[name] == severity


def test_every_stage_of_the_catalog_has_an_absence_alert() -> None:
    absent = [r for r in rules() if r.get("alert") == "ClaimXStageAbsent"]
    assert [r["expr"].split()[0] for r in absent] == [
        f'absent(up{{stage="{s}"}})' for s in STAGE_NAMES
    ]
    # The quiet case scrapes every stage, so a stage added to the catalog without a series
    # there makes promtool fail rather than pass silently.
    cases = yaml.safe_load((REPO / "monitoring/tests/claimx.rules.test.yaml").read_text())
    (quiet,) = [
        case
        for case in cases["tests"]
        if (
            checks := [
                c for c in case.get("alert_rule_test", []) if c["alertname"] == "ClaimXStageAbsent"
            ]
        )
        and not any(c["exp_alerts"] for c in checks)
    ]
    scraped = {s["series"].split('stage="')[1].split('"')[0] for s in quiet["input_series"]}
    assert scraped == set(STAGE_NAMES)


def test_the_generated_group_is_rewritten_and_the_hand_written_rest_kept() -> None:
    render = render_module()
    text = RULES.read_text()
    assert render.rules_text(text) == text  # in sync (render --check says the same)
    head, _, rest = text.partition(render.ABSENT_BEGIN)
    _, _, tail = rest.partition(render.ABSENT_END)
    stale = head + render.ABSENT_BEGIN + "  - name: claimx.absent\n" + render.ABSENT_END + tail
    assert render.rules_text(stale) == text


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
