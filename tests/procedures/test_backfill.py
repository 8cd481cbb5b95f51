"""The runbook's backfill: an export loaded twice into a backfill topic and ingested by
configuration gives each event exactly once in claimx_events."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import typer
from confluent_kafka.admin import NewTopic
from typer.testing import CliRunner

from claimx_flow.cli.backfill_cmd import backfill_command
from claimx_flow.config import Settings
from claimx_flow.kafka.backfill import DEFAULT_TOPIC, backfill, export_lines, partition_key
from claimx_flow.kafka.topics import (
    admin_client,
    await_leaders,
    describe_topics,
    ensure_topics,
    pipeline_topics,
)
from claimx_flow.lab.inventory import stored_event_ids, table_rows
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.models import RawEvent
from claimx_flow.startup.recovery import init_recovery, recorded_topic_ids

EVENTS = 20_000


def backfill_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """An ingester configured onto a backfill topic of its own, its topics made."""
    prefix = f"bf{uuid.uuid4().hex[:6]}"
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        claimx_events_topic=f"{prefix}.events.backfill",
        claimx_events_dlq_topic=f"{prefix}.events.dlq",
        claimx_enrichment_pending_topic=f"{prefix}.enrichment.pending",
        claimx_topic_partitions=2,
        claimx_data_dir=tmp_path / "data",
        claimx_stop_at_end=True,
    )
    mine = [s for s in pipeline_topics(settings) if s.name.startswith(prefix)]
    ensure_topics(admin_client(settings), mine)
    return settings


def test_a_backfill_run_twice_gives_each_event_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = backfill_settings(kafka_bootstrap, tmp_path)
    backfill_topic = settings.claimx_events_topic
    export = tmp_path / "export.jsonl"
    export.write_text("".join(line + "\n" for _, line in event_lines(EventPlan(EVENTS, 300))))

    for _ in range(2):  # the operator runs the backfill again, as the runbook allows
        with export.open("rb") as source:
            assert backfill(export_lines(source), backfill_topic, settings).lines == EVENTS
    (state,) = describe_topics(settings, [backfill_topic])
    assert state.messages == 2 * EVENTS

    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    pipeline.start(["ingest"])
    (process,) = pipeline.processes["ingest"]
    assert process.wait(300) == 0  # drained its topic and ended
    expected = {
        RawEvent.from_source(json.loads(line)).event_id for line in export.read_text().splitlines()
    }
    assert table_rows(settings, "claimx_events") == EVENTS
    assert stored_event_ids(settings) == expected


def test_lines_keep_their_project_as_key_and_blank_lines_are_skipped() -> None:
    source = io.BytesIO(
        b'{"projectId": 42, "eventType": "X"}\n\n  \n{"project_id": "7"}\nnot json\n'
    )
    lines = list(export_lines(source))
    assert [partition_key(line.text) for line in lines] == [b"42", b"7", None]
    assert [line.number for line in lines] == [1, 4, 5]  # as an editor numbers them
    source.seek(0)
    assert [line.number for line in export_lines(source, from_line=4)] == [4, 5]


def test_a_line_kafka_refuses_is_named_and_the_rest_resumes_from_after_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A line too large for the topic failed every run the same way, named by nothing: now the
    error names its line and reason and the line to run again from."""
    topic = f"bf{uuid.uuid4().hex[:6]}.events.backfill"
    admin = admin_client(Settings(kafka_bootstrap_servers=kafka_bootstrap))
    small = NewTopic(topic, 1, 1, config={"max.message.bytes": "4096"})
    admin.create_topics([small])[topic].result(30)
    await_leaders(admin, [topic])
    lines = [line for _, line in event_lines(EventPlan(5, 2))]
    noise = base64.b64encode(os.urandom(8_000)).decode()  # past 4096 bytes even compressed
    lines[2] = json.dumps({**json.loads(lines[2]), "padding": noise})
    export = tmp_path / "export.jsonl"
    export.write_text("".join(line + "\n" for line in lines))
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}

    failed = CliRunner().invoke(_app(), [str(export), "--topic", topic], env=env)
    assert failed.exit_code != 0
    said = " ".join(str(failed.exception).split())
    assert "1 of 5 lines not confirmed by Kafka: line 3 (" in said  # alone, not its batch
    assert "Message size too large" in said
    assert "run again with --from-line 3" in said

    rest = CliRunner().invoke(_app(), [str(export), "--topic", topic, "--from-line", "4"], env=env)
    assert rest.exit_code == 0, rest.output
    assert "2 lines loaded" in rest.output
    (state,) = describe_topics(Settings(kafka_bootstrap_servers=kafka_bootstrap), [topic])
    assert state.messages == 4 + 2


def test_backfill_command_creates_the_topic_and_reports(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    export = tmp_path / "small.jsonl"
    export.write_text("".join(line + "\n" for _, line in event_lines(EventPlan(50, 5))))
    topic = f"bf{uuid.uuid4().hex[:6]}.events.backfill"
    result = CliRunner().invoke(
        _app(),
        [str(export), "--topic", topic, "--rate", "1000"],
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
    )
    assert result.exit_code == 0, result.output
    assert f"50 lines loaded into {topic}" in result.output
    (state,) = describe_topics(Settings(kafka_bootstrap_servers=kafka_bootstrap), [topic])
    assert state.messages == 50


def test_the_default_backfill_topic_is_the_runbooks() -> None:
    assert DEFAULT_TOPIC == "claimx.events.backfill"


def _app() -> typer.Typer:
    """The command alone, as ``claimx backfill`` runs it."""
    app = typer.Typer()
    app.command()(backfill_command)
    return app


def test_the_next_backfill_on_a_recreated_topic_is_ingested_too(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The runbook deletes the backfill topic once a backfill is done and creates it again for
    the next. The card's bare command, without a recovery directory, resumes from its group's
    offsets, which Kafka drops with the topic: the next backfill is read from its start, and
    nothing of the first is read again, even beside the main ingester's recovery directory."""
    settings = backfill_settings(kafka_bootstrap, tmp_path)
    topic = settings.claimx_events_topic
    admin = admin_client(settings)
    env = {**os.environ, **settings_env(settings), "CLAIMX_HEALTH_PORT": "0"}
    env.pop("BYTEWAX_RECOVERY_DIRECTORY", None)
    # The main ingester's recovery directory on this host (CLAIMX_DATA_DIR/recovery/ingest),
    # as the local runner leaves it: a process without recovery must neither read nor record it.
    init_recovery(settings, "ingest")
    expected: set[str] = set()
    for run, first_project in enumerate((7_000_000, 8_000_000)):
        lines = [
            line
            for _, line in event_lines(EventPlan(300, 10, seed=run, first_project_id=first_project))
        ]
        expected |= {RawEvent.from_source(json.loads(line)).event_id for line in lines}
        export = tmp_path / f"export-{run}.jsonl"
        export.write_text("".join(line + "\n" for line in lines))
        loaded = CliRunner().invoke(_app(), [str(export), "--topic", topic], env=env)
        assert loaded.exit_code == 0, loaded.output  # the topic made again, as the runbook does
        with (tmp_path / f"ingest-{run}.log").open("wb") as log:
            ingest = subprocess.run(
                [sys.executable, "-m", "bytewax.run", "dataflows.ingest"],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=300,
            )
        assert ingest.returncode == 0, (tmp_path / f"ingest-{run}.log").read_text()[-2000:]
        assert stored_event_ids(settings) == expected
        assert recorded_topic_ids(settings, "ingest") == {}  # not its directory
        (pending,) = describe_topics(settings, [settings.claimx_enrichment_pending_topic])
        assert pending.messages == 300 * (run + 1)  # each event of each backfill read once
        for future in admin.delete_topics([topic], operation_timeout=30).values():
            future.result(timeout=30)  # step 5 of the runbook
        deadline = time.monotonic() + 30
        while topic in admin.list_topics(timeout=10).topics:
            assert time.monotonic() < deadline, f"{topic} still listed 30 s after its deletion"
            time.sleep(0.1)
