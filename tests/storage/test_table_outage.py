"""A lakehouse whose tables are down: a stage started into the outage waits for it, alive and not
ready, instead of failing its first commit into a crash loop; a lakehouse that says no stops it.

Azurite holds the tables (deltalake's emulator mode); the proxy in front of it answers 503
``ServerBusy`` to everything while ``unavailable``, as Azure does in an outage, and 403 to
writes while ``refusing``. A real broker and a real ingest process.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from azure.storage.blob import ContainerClient
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from claimx_flow.config import Settings
from claimx_flow.delta.reach import PROBE, refused, storage_fault
from claimx_flow.delta.tables import EVENTS
from claimx_flow.delta.writer import writer_for
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.process import free_port
from claimx_flow.lab.simulator.event_output import produce_lines
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.lab.stack.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from claimx_flow.stages.tables import row_batch
from claimx_flow.startup.preflight import Check, run_checks
from claimx_flow.storage.locations import AZURITE_URL_ENV, table_location
from tests.poison.harness import read_topic
from tests.probes import log_text, status
from tests.stages.test_table_commits import event_row, source
from tests.storage.conftest import LAKEHOUSE, onelake_isolated, onelake_settings
from tests.storage.refusing_proxy import RefusingProxy

HALF = 20


@pytest.fixture
def proxy(azurite: str) -> Iterator[RefusingProxy]:
    with RefusingProxy(azurite) as running:
        yield running


def tables_check(kafka_bootstrap: str, tmp_path: Path, endpoint: str, workspace: str) -> Check:
    settings = onelake_isolated(kafka_bootstrap, tmp_path, endpoint, workspace)
    (check,) = [c for c in run_checks(settings, ("ingest",)) if c.name == "Delta tables"]
    return check


def test_the_tables_check_tells_an_outage_from_a_refusal(
    kafka_bootstrap: str, proxy: RefusingProxy, azurite_workspace: str, tmp_path: Path
) -> None:
    def check() -> Check:
        return tables_check(kafka_bootstrap, tmp_path, proxy.endpoint, azurite_workspace)

    for _ in range(2):
        healthy = check()
        assert healthy.ok, healthy.detail
    container = ContainerClient(
        proxy.endpoint,
        azurite_workspace,
        credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
    )
    (probe,) = container.list_blobs()  # one object beside the log, written again
    assert probe.name == f"{LAKEHOUSE}/Tables/claimx_events/{PROBE}" and probe.size == 1

    proxy.unavailable = True
    down = check()
    assert not down.ok and down.unreachable and "503" in down.detail  # wait: an outage
    proxy.unavailable = False

    proxy.refusing = True
    said_no = check()
    assert not said_no.ok and not said_no.unreachable  # exit 2: waiting will not mend it
    assert "AuthorizationPermissionMismatch" in said_no.detail
    proxy.refusing = False

    missing = tables_check(kafka_bootstrap, tmp_path, proxy.endpoint, "no-such-workspace")
    assert not missing.ok and not missing.unreachable and "ContainerNotFound" in missing.detail
    os.environ.pop(AZURITE_URL_ENV)  # one emulator per process, as in a stage: another now
    closed = f"http://127.0.0.1:{free_port()}/{ACCOUNT_NAME}"
    unreachable = tables_check(kafka_bootstrap, tmp_path, closed, azurite_workspace)
    assert not unreachable.ok and unreachable.unreachable
    uri, options = table_location(onelake_settings(closed, azurite_workspace), "t")
    malformed = storage_fault(uri, {**(options or {}), "azure_storage_account_key": "not base64"})
    assert malformed is not None and malformed.refused  # exit 2: a key to fix
    for found in (down, said_no, missing, unreachable):
        assert ACCOUNT_KEY not in found.detail and "\n" not in found.detail


@pytest.mark.parametrize(
    ("detail", "no"),
    [
        (
            "Error performing PUT http://h/x in 2ms - Server returned non-2xx status code: "
            "400 Bad Request: UnsupportedHttpVerb",
            True,
        ),
        (
            "Error performing GET http://h/x in 1s, after 10 retries - Server returned non-2xx "
            "status code: 429 Too Many Requests",
            False,
        ),
        (
            "Error performing PUT http://h/x - Server returned non-2xx status code: 500 Internal "
            "Server Error",
            False,
        ),
        (
            "Generic MicrosoftAzure error: Error performing PUT http://h/x - HTTP error: error "
            "sending request",
            False,
        ),
        ("The operation lacked valid authentication credentials for path x", True),
    ],
)
def test_what_the_storage_said_decides_between_waiting_and_exit_2(detail: str, no: bool) -> None:
    """The answers the test above gets from real peers, and those it cannot make them give."""
    assert refused(detail) is no


def test_a_probe_of_a_storage_that_never_answers_gives_up_in_seconds(
    azurite_workspace: str,
) -> None:
    """A port that takes the connection and never answers: by default delta-rs would give each
    request 30 s and try 11 times; a stage waiting to start probes again every 5 s anyway."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as silent:  # never accepts
        port = silent.getsockname()[1]
        endpoint = f"http://127.0.0.1:{port}/{ACCOUNT_NAME}"
        uri, options = table_location(onelake_settings(endpoint, azurite_workspace), "t")
        began = time.monotonic()
        fault = storage_fault(uri, options)
    assert fault is not None and not fault.refused
    assert time.monotonic() - began < 25


BLIP_S = 8.0
"""Longer than delta-rs's default retries last (10 of them: 3 to 6 s here)."""


@pytest.mark.parametrize("blip", ["unavailable", "writes_unavailable"])
def test_a_stage_writer_rides_out_a_blip_of_its_storage(
    proxy: RefusingProxy, azurite_workspace: str, blip: str
) -> None:
    """A throttle or a blip of OneLake costs a slower commit, not a failed step: a stage's
    writer retries each request for ``CLAIMX_DELTA_RETRY_SECONDS`` (30 s), reads and writes
    (data files and the log entry) alike."""
    settings = onelake_settings(proxy.endpoint, azurite_workspace)
    writer = writer_for(settings, EVENTS, patient=True)
    writer.merge_table(_events(range(0, 5)))
    uri, options = table_location(settings, EVENTS.name)
    before = DeltaTable(uri, storage_options=options).version()
    setattr(proxy, blip, True)
    back = threading.Timer(BLIP_S, lambda: setattr(proxy, blip, False))
    back.start()
    began = time.monotonic()
    try:
        writer.merge_table(_events(range(5, 10)))
    finally:
        back.cancel()
    took = time.monotonic() - began
    assert BLIP_S - 1 <= took <= BLIP_S + 20  # it waited, then landed
    ids = writer.read().column("event_id").to_pylist()
    assert sorted(ids) == sorted(f"e{i}" for i in range(10))
    assert DeltaTable(uri, storage_options=options).version() == before + 1  # one commit


def _events(numbers: range) -> pa.Table:
    batch, refused = row_batch(EVENTS, [(event_row(f"e{i}"), source(i)) for i in numbers])
    assert batch is not None and not refused
    return batch.rows


def test_an_outage_of_its_tables_costs_ingest_one_exit_then_its_start_waits_it_out(
    kafka_bootstrap: str, proxy: RefusingProxy, azurite_workspace: str, tmp_path: Path
) -> None:
    """The commit that meets the outage fails the step (nothing of the epoch counts as done)
    and the process exits; started again into the outage, as Kubernetes would, it waits alive
    and not ready past the liveness limit, instead of failing again. Once the lakehouse is back,
    every event is written once."""
    settings = onelake_isolated(
        kafka_bootstrap,
        tmp_path,
        proxy.endpoint,
        azurite_workspace,
        claimx_topic_partitions=1,
        claimx_liveness_stale_seconds=10,  # the wait below outlasts it
        claimx_delta_retry_seconds=1,  # the outage below outlasts the commit's retries
    )
    lines = list(event_lines(EventPlan(count=2 * HALF, projects=4, mix="mixed")))
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    log = tmp_path / "logs" / "ingest.log"
    try:
        pipeline.start(["ingest"])
        produce_lines(lines[:HALF], settings.claimx_events_topic, settings)
        _wait_for(lambda: _rows(settings) >= HALF, 90)
        assert _rows(settings) == HALF, log_text(log)[-3000:]

        proxy.unavailable = True
        produce_lines(lines[HALF:], settings.claimx_events_topic, settings)
        (ingest,) = pipeline.processes["ingest"]
        assert ingest.wait(90) not in (0, None)  # the step failed: the epoch replays later

        started, before = time.monotonic(), len(log_text(log))
        pipeline.restart("ingest")
        (ingest,) = pipeline.processes["ingest"]
        (port,) = pipeline.health_ports["ingest"]
        _wait_for(lambda: "checking again every" in log_text(log), 60)
        time.sleep(max(0.0, started + 16 - time.monotonic()))  # past liveness's 10 s
        assert ingest.poll() is None, log_text(log)[-3000:]  # waiting, not failed again
        assert status(port, "/health/live") == 200
        assert status(port, "/health/ready") == 503
        waiting = log_text(log)[before:]  # the restarted process's lines
        assert "Delta tables" in waiting and "ServerBusy" in waiting

        proxy.unavailable = False
        _wait_for(lambda: _rows(settings) >= 2 * HALF, 90)
        assert ingest.poll() is None, log_text(log)[-3000:]
    finally:
        pipeline.stop()
    rows = writer_for(settings, EVENTS).read()
    assert rows.num_rows == 2 * HALF
    assert len(set(rows.column("event_id").to_pylist())) == 2 * HALF
    assert read_topic(settings, settings.claimx_events_dlq_topic) == []
    assert "checks pass after" in log_text(log)


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.5)


def _rows(settings: Settings) -> int:
    """Rows in the events table; read, never created here (ingest creates it)."""
    uri, options = table_location(settings, "claimx_events")
    try:
        return int(DeltaTable(uri, storage_options=options).count())
    except TableNotFoundError:
        return 0
