"""The runbook's names for the old system's commands and pods keep working (DESIGN.md: "keep
the old names working as thin aliases only where that costs nothing").

Facts recorded from RUNBOOK.md, the runbook of the system this one replaces (its operational
contract is ours):
- "Step 4: Start Workers": ``python -m kafka_pipeline --worker claimx-ingester`` (also
  ``claimx-enricher``, ``claimx-downloader``, ``claimx-uploader``,
  ``claimx-result-processor``); "Step 3: Verify Configuration": ``--worker claimx-ingester
  --dry-run``.
- "DLQ CLI Usage": ``python -m kafka_pipeline.claimx.dlq.cli <command> [options]`` with
  ``list``, ``inspect enrichment``, ``inspect download --limit 20``, ``replay``, ``purge``.
- "Troubleshooting" sections 1 to 6: ``kubectl logs -l app=claimx-enricher``,
  ``-l app=claimx-downloader``, ``-l app=claimx-uploader``, ``kubectl get pods -l
  app=claimx-enricher``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.lab.pipeline import settings_env
from claimx_flow.lab.simulator.event_output import produce_lines
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from tests.isolation import isolated_settings
from tests.ops.test_manifests import by_kind

RUNBOOK_WORKERS = {
    "claimx-ingester": "ingest",
    "claimx-enricher": "enrich",
    "claimx-downloader": "download",
    "claimx-uploader": "upload",
    "claimx-result-processor": "results",
}
RUNBOOK_SELECTORS = {"app=claimx-enricher", "app=claimx-downloader", "app=claimx-uploader"}


def test_each_runbook_worker_names_its_stage() -> None:
    assert {STAGES[stage].worker: stage for stage in RUNBOOK_WORKERS.values()} == RUNBOOK_WORKERS


def test_the_runbooks_pod_selectors_find_the_stages_pods() -> None:
    """In the manifests and in the chart's values (podLabels) alike."""
    statefulsets = by_kind("StatefulSet")
    for selector in RUNBOOK_SELECTORS:
        key, value = selector.split("=")
        matching = [
            name
            for name, statefulset in statefulsets.items()
            if statefulset["spec"]["template"]["metadata"]["labels"].get(key) == value
        ]
        stage = RUNBOOK_WORKERS[value]
        assert matching == [STAGES[stage].app], selector


def alias(settings: Settings, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**settings_env(settings), "CLAIMX_STACK_DIR": str(tmp_path / "no-stack")}
    env["CLAIMX_HEALTH_PORT"] = "0"
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        env={**env, "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        cwd=tmp_path,
        timeout=300,
    )


def test_the_worker_command_runs_the_stage_and_its_dry_run_checks_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", claimx_stop_at_end=True)
    worker = ["kafka_pipeline", "--worker", "claimx-ingester"]
    checked = alias(settings, tmp_path, *worker, "--dry-run")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "claimx check" in checked.stdout and "Kafka" in checked.stdout

    produce_lines(list(event_lines(EventPlan(30, 3))), settings.claimx_events_topic, settings)
    ran = alias(settings, tmp_path, *worker)
    assert ran.returncode == 0, ran.stderr[-2000:]  # the stage's own exit: drained, ended
    table = DeltaTable(str(settings.tables_dir / "claimx_events"))
    assert table.to_pyarrow_table().num_rows == 30

    unknown = alias(settings, tmp_path, "kafka_pipeline", "--worker", "claimx-nothing")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [(["list"], 0), (["inspect", "enrichment"], 1), (["inspect", "download", "--limit", "20"], 1)],
)
def test_the_dlq_module_is_claimx_dlq(
    kafka_bootstrap: str, tmp_path: Path, args: list[str], code: int
) -> None:
    """Same commands, same exit codes (an empty DLQ: nothing matched, 1)."""
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    done = alias(settings, tmp_path, "kafka_pipeline.claimx.dlq.cli", *args)
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_dry_run_refuses_arguments_it_would_not_check(tmp_path: Path) -> None:
    settings = Settings(claimx_data_dir=tmp_path / "data")
    worker = ["kafka_pipeline", "--worker", "claimx-enricher"]
    done = alias(settings, tmp_path, *worker, "--dry-run", "-r", str(tmp_path / "elsewhere"))
    assert done.returncode == 2 and "--dry-run takes no bytewax.run arguments" in done.stderr
