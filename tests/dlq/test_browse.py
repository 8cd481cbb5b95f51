"""``claimx dlq list`` and ``inspect``: tables for people, one JSON document for scripts, and
exit codes that say what happened."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys

from claimx_flow.errors import ErrorCategory
from tests.dlq.helpers import Pipeline, claimx, failure, hour, put, put_letters, task_value


def _fill(pipeline: Pipeline) -> None:
    origin = pipeline["enrichment.pending"]
    put_letters(
        pipeline,
        "enrichment.dlq",
        [
            failure("evt_1", origin_topic=origin),
            failure("evt_2", origin_topic=origin),
            failure(
                "evt_3",
                origin_topic=origin,
                category=ErrorCategory.PERMANENT,
                error_class="ProjectNotFound",
                message="project [p9] is gone",
            ),
        ],
        timestamps=[hour(1), hour(2), hour(3)],
    )
    download = failure(
        "evt_4",
        origin_topic=pipeline["downloads.pending"],
        stage="download",
        media_id="m4",
        error_class="DownloadError",
        message="404 from S3",
    )
    put_letters(pipeline, "downloads.dlq", [download], timestamps=[hour(4)])


def test_list_shows_counts_span_and_top_errors(pipeline: Pipeline) -> None:
    _fill(pipeline)

    table = claimx(pipeline, "list")

    assert table.exit_code == 0, table.output
    for text in (
        "enrichment",
        "download",
        "events",
        "messages",
        "oldest (UTC)",
        "categories",
        hour(1).strftime("%Y-%m-%d %H:%M:%S"),
        hour(3).strftime("%Y-%m-%d %H:%M:%S"),
        "top errors in enrichment",
        "project [p9] is gone",
        "ProjectNotFound",
        "transient 2",
    ):
        assert text in table.output, text
    document = json.loads(claimx(pipeline, "list", "--json").output)
    by_name = {d["dlq"]: d for d in document["dlqs"]}
    assert [d["dlq"] for d in document["dlqs"]] == ["events", "enrichment", "download"]
    enrichment = by_name["enrichment"]
    assert enrichment["topic"] == pipeline["enrichment.dlq"]
    assert (enrichment["messages"], enrichment["scanned"], enrichment["partitions"]) == (3, 3, 2)
    assert enrichment["oldest"] == hour(1).isoformat()
    assert enrichment["newest"] == hour(3).isoformat()
    assert enrichment["categories"] == {"transient": 2, "permanent": 1}
    assert enrichment["error_classes"] == {"ClaimxApiError": 2, "ProjectNotFound": 1}
    assert enrichment["top_errors"][0] == {
        "error_class": "ClaimxApiError",
        "error_message": "API call failed: 500 Internal Server Error",
        "count": 2,
    }
    assert by_name["download"]["messages"] == 1
    assert by_name["events"]["messages"] == 0 and by_name["events"]["oldest"] is None


def test_list_with_a_small_scan_still_finds_the_oldest_record(pipeline: Pipeline) -> None:
    _fill(pipeline)
    document = json.loads(claimx(pipeline, "list", "--json", "--scan", "1").output)
    enrichment = document["dlqs"][1]
    assert enrichment["messages"] == 3
    assert enrichment["scanned"] < 3
    assert enrichment["oldest"] == hour(1).isoformat()


def test_list_says_when_a_dlq_topic_is_missing(pipeline: Pipeline) -> None:
    result = claimx(pipeline, "list", env={"CLAIMX_EVENTS_DLQ_TOPIC": "no.such.topic"})
    assert result.exit_code == 1, result.output
    assert "missing" in result.output


def test_inspect_shows_each_message_with_its_failure_and_headers(pipeline: Pipeline) -> None:
    _fill(pipeline)

    result = claimx(pipeline, "inspect", "enrichment")

    assert result.exit_code == 0, result.output
    for text in (
        "enrichment · partition",
        "offset",
        "evt_1",
        "evt_3",
        "project id",
        "p1",
        "attempts",
        "replay count",
        "permanent",
        "ProjectNotFound",
        "project [p9] is gone",
        "claimx.original_topic",
        "trace-id",
        "t-evt_2",
        '"event_type": "PROJECT_CREATED"',
    ):
        assert text in result.output, text
    assert result.output.index("evt_1") < result.output.index("evt_3")  # oldest first


def test_inspect_json_pages_by_limit_partition_and_offset(pipeline: Pipeline) -> None:
    _fill(pipeline)

    page = json.loads(claimx(pipeline, "inspect", "enrichment", "--json", "--limit", "2").output)

    assert page["dlq"] == "enrichment"
    assert [m["ids"]["event_id"] for m in page["messages"]] == ["evt_1", "evt_2"]
    first = page["messages"][0]
    assert first["topic"] == pipeline["enrichment.dlq"]
    assert first["timestamp"] == hour(1).isoformat()
    assert (first["key"], first["key_encoding"]) == ("p1", "utf-8")
    assert json.loads(first["value"])["event_id"] == "evt_1"
    assert first["failure"]["attempt"] == 4
    assert first["failure"]["error_category"] == "transient"
    assert {"name": "trace-id", "value": "t-evt_1", "encoding": "utf-8"} in first["headers"]

    everything = json.loads(claimx(pipeline, "inspect", "enrichment", "--json").output)
    partition = everything["messages"][-1]["partition"]
    offset = everything["messages"][-1]["offset"]
    narrowed = claimx(
        pipeline,
        "inspect",
        "enrichment",
        "--json",
        "--partition",
        str(partition),
        "--offset",
        str(offset),
    )
    assert [(m["partition"], m["offset"]) for m in json.loads(narrowed.output)["messages"]] == [
        (partition, offset)
    ]
    past_the_end = claimx(pipeline, "inspect", "enrichment", "--offset", "99")
    assert past_the_end.exit_code == 1
    assert "no messages" in past_the_end.output


def test_inspect_shows_bytes_that_are_not_text_as_base64(pipeline: Pipeline) -> None:
    info = failure("evt_bin", origin_topic=pipeline["enrichment.pending"])
    put(
        pipeline.bootstrap,
        pipeline["enrichment.dlq"],
        [(b"\xff", b"\x00\x9fraw", [("blob", b"\xc3\x28"), *info.to_headers()])],
    )

    document = json.loads(claimx(pipeline, "inspect", "enrichment", "--json").output)

    [message] = document["messages"]
    assert (message["key"], message["key_encoding"]) == (
        base64.b64encode(b"\xff").decode(),
        "base64",
    )
    assert base64.b64decode(message["value"]) == b"\x00\x9fraw"
    assert {"name": "blob", "value": "wyg=", "encoding": "base64"} in message["headers"]
    assert message["ids"]["event_id"] == "evt_bin"
    table = claimx(pipeline, "inspect", "enrichment")
    assert "value (base64)" in table.output and "base64:wyg=" in table.output


def test_unreadable_failure_headers_are_shown_not_fatal(pipeline: Pipeline) -> None:
    put(
        pipeline.bootstrap,
        pipeline["enrichment.dlq"],
        [(b"k", b"{}", [("claimx.attempt", b"many")])],
    )
    document = json.loads(claimx(pipeline, "inspect", "enrichment", "--json").output)
    [message] = document["messages"]
    assert message["failure"] is None
    assert "claimx." in message["failure_error"]
    assert claimx(pipeline, "list").exit_code == 0


def test_unreachable_kafka_is_exit_2_and_shows_no_secret(pipeline: Pipeline) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = "hunter2-sasl-secret"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_USERNAME": "ops",
        "KAFKA_SASL_PASSWORD": secret,
        "CLAIMX_API_PASSWORD": "api-secret-too",
    }
    for args in (
        ["list"],
        ["inspect", "enrichment"],
        ["replay", "enrichment", "--dry-run"],
        ["purge", "enrichment", "--yes"],
    ):
        result = claimx(pipeline, "--timeout", "0.5", *args, env=env)
        assert result.exit_code == 2, (args, result.output)
        assert "cannot reach Kafka" in result.output
        assert secret not in result.output and "api-secret-too" not in result.output


def test_help_documents_exit_codes_and_the_module_runs(pipeline: Pipeline) -> None:
    assert "Exit codes" in claimx(pipeline, "--help").output
    for command in ("list", "inspect", "replay", "purge"):
        assert "Exit codes" in claimx(pipeline, command, "--help").output
    unknown = claimx(pipeline, "inspect", "retries")
    assert unknown.exit_code == 2
    module = subprocess.run(
        [sys.executable, "-m", "claimx_flow.dlq", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert module.returncode == 0
    assert "python -m claimx_flow.dlq" in module.stdout and "replay" in module.stdout


def _fill_columns(pipeline: Pipeline) -> None:
    """Records whose columns come from different places: an enrichment task (event type in
    its body), a raw event in ClaimX's own spelling (``eventType``), a download task (no event
    type: '-'), and one without failure headers."""
    pending = pipeline["enrichment.pending"]
    task = failure("evt_t", origin_topic=pending, project_id="p7", attempt=2)
    raw = failure(
        "evt_r",
        origin_topic=pipeline["events"],
        stage="ingest",
        category=ErrorCategory.PERMANENT,
        project_id="p8",
        attempt=0,
    )
    download = failure(
        "evt_d",
        origin_topic=pipeline["downloads.pending"],
        stage="download",
        project_id="p7",
        media_id="m9",
        attempt=4,
    )
    put(
        pipeline.bootstrap,
        pipeline["enrichment.dlq"],
        [
            (b"p7", task_value("evt_t", "p7", "CUSTOM_TASK_ASSIGNED"), task.to_headers()),
            (
                b"p8",
                json.dumps({"eventType": "PROJECT_FILE_ADDED", "projectId": 8}).encode(),
                raw.to_headers(),
            ),
            (
                b"m9",
                json.dumps({"media_id": "m9", "project_id": "p7"}).encode(),
                download.to_headers(),
            ),
            (b"k", b"not json", []),
        ],
        timestamps=[hour(1), hour(2), hour(3), hour(4)],
    )


def test_inspect_shows_event_type_project_media_attempt_and_category_as_columns(
    pipeline: Pipeline,
) -> None:
    _fill_columns(pipeline)

    document = json.loads(claimx(pipeline, "inspect", "enrichment", "-o", "json").stdout)

    columns = [
        (m["event_type"], m["project_id"], m["media_id"], m["attempt"], m["error_category"])
        for m in document["messages"]
    ]
    assert columns == [
        ("CUSTOM_TASK_ASSIGNED", "p7", None, 2, "transient"),
        ("PROJECT_FILE_ADDED", "p8", None, 0, "permanent"),
        (None, "p7", "m9", 4, "transient"),
        (None, None, None, None, None),
    ]
    table = claimx(pipeline, "inspect", "enrichment")
    assert table.exit_code == 0, table.output
    header = next(line for line in table.output.splitlines() if "event type" in line)
    for name in ("part", "offset", "project", "media", "attempt", "category", "error"):
        assert name in header
    row = next(line for line in table.output.splitlines() if "CUSTOM_TASK_ASSIGNED" in line)
    assert "p7" in row and "transient" in row and " 2 " in row
    assert "PROJECT_FILE_ADDED" in table.output and "m9" in table.output


def test_list_counts_event_types_projects_media_and_attempts(pipeline: Pipeline) -> None:
    _fill_columns(pipeline)

    result = claimx(pipeline, "list", "--output", "json")

    assert result.exit_code == 0, result.output
    enrichment = {d["dlq"]: d for d in json.loads(result.stdout)["dlqs"]}["enrichment"]
    assert enrichment["event_types"] == {
        "distinct": 2,
        "without": 2,
        "top": {"CUSTOM_TASK_ASSIGNED": 1, "PROJECT_FILE_ADDED": 1},
    }
    assert enrichment["projects"]["top"] == {"p7": 2, "p8": 1}
    assert enrichment["media"] == {"distinct": 1, "without": 3, "top": {"m9": 1}}
    assert enrichment["attempts"] == {"0": 1, "2": 1, "4": 1, "-": 1}
    assert enrichment["categories"] == {"transient": 2, "permanent": 1, "unknown": 1}
    table = claimx(pipeline, "list")
    for text in (
        "most frequent in enrichment",
        "event type",
        "project",
        "attempt",
        "CUSTOM_TASK_ASSIGNED 1",
        "p7 2",
        "m9 1",
    ):
        assert text in table.output, text


def test_json_alias_and_output_json_print_the_same_document(pipeline: Pipeline) -> None:
    _fill(pipeline)
    for command in (["list"], ["inspect", "enrichment"], ["replay", "enrichment", "--dry-run"]):
        old = claimx(pipeline, *command, "--json")
        new = claimx(pipeline, *command, "-o", "json")
        assert old.exit_code == new.exit_code == 0, (command, new.output)
        assert old.stderr == new.stderr == ""
        assert json.loads(old.stdout) == json.loads(new.stdout)
    assert "--json" not in claimx(pipeline, "list", "--help").output
