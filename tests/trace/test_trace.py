"""``claimx trace`` on a real run: a landed event, one in the enrichment DLQ and one waiting in
a retry tier, each found on real Kafka and Delta with the right verdict."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from claimx_flow.cli import app
from claimx_flow.lab.process import free_port
from tests.trace.conftest import DLQ_PROJECT, LANDED_PROJECT, RETRY_DELAY_S, Traced

CLAIMX = str(Path(sys.executable).with_name("claimx"))


def trace_json(traced: Traced, *args: str) -> dict[str, Any]:
    """``claimx trace … --output json`` in this process."""
    result = CliRunner().invoke(app, ["trace", *args, "--output", "json"], env=traced.env)
    assert result.exit_code == 0, result.output + repr(result.exception)
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def kinds(document: dict[str, Any]) -> list[str]:
    return [step["kind"] for step in document["timeline"]]


def test_a_landed_event_shows_every_step_in_time_order(traced: Traced) -> None:
    document = trace_json(traced, traced.landed)
    verdict = document["verdict"]
    assert verdict["state"] == "landed", verdict
    assert verdict["text"].startswith("landed: ")
    steps = kinds(document)
    for kind in (
        "raw event",
        "events row",
        "enrichment task",
        "entity row",
        "download task",
        "downloaded",
        "file",
        "upload result",
    ):
        assert kind in steps, (kind, steps)
    assert "DLQ" not in steps and "retry" not in steps
    times = [datetime.fromisoformat(s["at"]) for s in document["timeline"] if s["at"]]
    assert times == sorted(times)
    assert steps.index("raw event") < steps.index("enrichment task") < steps.index("download task")
    assert steps.index("download task") < steps.index("upload result")
    written = {s["table"] for s in document["timeline"] if s["kind"] == "entity row"}
    assert {"claimx_projects", "claimx_media"} <= written
    # Keyed topics are read only in the partition of the key (two partitions each here).
    enrichment = [s for s in document["timeline"] if s.get("role") == "enrichment_task"]
    assert enrichment and all(s["key"] == str(LANDED_PROJECT) for s in enrichment)
    text = json.dumps(document)
    assert "(presigned URL, hidden)" in text and "sig=" not in text  # a URL is a credential


def test_an_event_in_the_dlq_says_why(traced: Traced) -> None:
    document = trace_json(traced, traced.dead)
    verdict = document["verdict"]
    assert verdict["state"] == "dlq", verdict
    assert verdict["topic"] == traced.settings.claimx_enrichment_dlq_topic
    assert verdict["category"] == "permanent" and verdict["replay_count"] == 0
    assert verdict["text"].startswith("in DLQ because ")
    assert str(DLQ_PROJECT) in json.dumps(document["timeline"])
    dlq = [s for s in document["timeline"] if s["kind"] == "DLQ"]
    assert len(dlq) == 1 and dlq[0]["failure"]["stage"] == "enrich"
    assert "raw event" in kinds(document)  # found by its derived id
    assert "entity row" not in kinds(document)


def test_an_event_in_a_retry_tier_says_until_when(traced: Traced) -> None:
    document = trace_json(traced, traced.retried)
    verdict = document["verdict"]
    assert verdict["state"] == "retry", verdict
    assert verdict["topic"] == traced.settings.enrichment_retry_topics[0]
    assert verdict["attempt"] == 1 and verdict["category"] == "transient"
    assert "503" in verdict["reason"]
    retry = [s for s in document["timeline"] if s["kind"] == "retry"]
    assert len(retry) == 1
    failed_at = datetime.fromisoformat(retry[0]["failure"]["last_failed_at"])
    until = datetime.fromisoformat(verdict["until"])
    assert until == failed_at + timedelta(seconds=RETRY_DELAY_S)
    assert verdict["text"].startswith(f"in retry until {until.isoformat(timespec='seconds')}")


def test_a_landed_file_by_media_id_shows_path_size_and_sha256(traced: Traced) -> None:
    done = subprocess.run(
        [CLAIMX, "trace", "--media-id", traced.media, "--output", "json"],
        capture_output=True,
        text=True,
        env=traced.env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["verdict"]["state"] == "landed"
    (stored,) = document["files"]
    assert stored["media_id"] == traced.media
    path = Path(stored["path"].removeprefix("file://"))
    content = path.read_bytes()
    assert stored["bytes"] == len(content) > 0
    assert stored["sha256"] == hashlib.sha256(content).hexdigest()
    assert stored["path"] in document["verdict"]["text"]
    assert stored["sha256"] in document["verdict"]["text"]


def test_a_project_trace_and_the_table_view(traced: Traced) -> None:
    document = trace_json(traced, "--project-id", str(LANDED_PROJECT))
    assert document["verdict"]["state"] == "landed"
    result = CliRunner().invoke(app, ["trace", traced.retried], env=traced.env)
    assert result.exit_code == 0, result.output
    assert "verdict: in retry until" in result.stdout
    assert "enrichment task" in result.stdout


def test_a_thing_never_seen(traced: Traced) -> None:
    document = trace_json(traced, "no-such-event", "--since", "1h")
    assert document["verdict"]["state"] == "not_seen"
    assert document["timeline"] == []


def test_storage_out_of_reach_is_one_red_line_not_a_verdict(traced: Traced) -> None:
    """A verdict made without Delta could say "not stored" of a stored file: with the storage
    out of reach the trace stops at the first table, one line and exit 2."""
    env = {
        **{k: v for k, v in traced.env.items() if not k.startswith("AZURITE_")},  # no emulator
        "ONELAKE_WORKSPACE_ID": "ws",
        "ONELAKE_LAKEHOUSE_ID": "lh",
        "ONELAKE_ENDPOINT": f"http://127.0.0.1:{free_port()}/devstoreaccount1",
        "ONELAKE_ACCOUNT_KEY": base64.b64encode(b"k" * 64).decode(),
    }
    done = subprocess.run(
        [CLAIMX, "trace", traced.landed], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2, done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot read the Delta tables at ") and "\x1b" not in line
