"""Delta tables in a OneLake-shaped place on Azurite: ``table_location`` and the writer."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from claimx_flow.delta.tables import ATTACHMENTS, EVENTS
from claimx_flow.delta.writer import writer_for
from claimx_flow.errors import ConfigError
from claimx_flow.kafka.clients import producer_config
from claimx_flow.lab.stack.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.stages.tables import TableCommitter, row_batch
from claimx_flow.storage.locations import AZURITE_URL_ENV, file_store, table_location
from operators.kafka import CheckedProducer
from tests.dlq.helpers import read_all
from tests.stages.test_table_commits import event_row, source
from tests.storage.conftest import LAKEHOUSE, onelake_isolated, onelake_settings
from tests.storage.refusing_proxy import RefusingProxy


def attachment(media_id: str, size: int) -> dict[str, object]:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return {
        "media_id": media_id,
        "project_id": "P-1",
        "file_name": f"{media_id}.jpg",
        "file_type": "jpg",
        "onelake_path": f"abfss://ws@onelake/claimx/P-1/media/{media_id}.jpg",
        "bytes": size,
        "sha256": "0" * 64,
        "content_type": "image/jpeg",
        "downloaded_at": now,
        "uploaded_at": now,
        "source_event_id": "E-1",
    }


def test_table_location_puts_deltalake_in_emulator_mode(azurite: str) -> None:
    uri, options = table_location(onelake_settings(azurite, "ws-1"), "claimx_attachments")

    host = f"{ACCOUNT_NAME}.dfs.core.windows.net"
    assert uri == f"abfss://ws-1@{host}/{LAKEHOUSE}/Tables/claimx_attachments"
    assert options == {
        "azure_storage_use_emulator": "true",
        "azure_storage_account_key": ACCOUNT_KEY,
    }
    assert azurite == os.environ[AZURITE_URL_ENV] + "/" + ACCOUNT_NAME


def test_a_conflicting_emulator_url_is_refused(
    azurite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AZURITE_URL_ENV, "http://127.0.0.1:1")

    with pytest.raises(ConfigError, match=AZURITE_URL_ENV):
        table_location(onelake_settings(azurite, "ws-1"), "claimx_attachments")


def test_attachments_merge_on_azurite_without_duplicates(
    azurite: str, azurite_workspace: str
) -> None:
    settings = onelake_settings(azurite, azurite_workspace)
    rows = [attachment("M-1", 10), attachment("M-2", 20)]

    first = writer_for(settings, ATTACHMENTS).write(rows)
    again = writer_for(settings, ATTACHMENTS).write([*rows, attachment("M-3", 30)])
    table = writer_for(settings, ATTACHMENTS).read()

    assert (first.inserted, again.inserted) == (2, 1)
    assert sorted(table.column("media_id").to_pylist()) == ["M-1", "M-2", "M-3"]
    container = ContainerClient(
        azurite,
        azurite_workspace,
        credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
    )
    with container:
        logs = [b.name for b in container.list_blobs(f"{LAKEHOUSE}/Tables/claimx_attachments/")]
    assert any("/_delta_log/00000000000000000000.json" in name for name in logs)


def test_file_sizes_are_read_over_the_blob_api_on_azurite(
    azurite: str, azurite_workspace: str
) -> None:
    # get_file_properties goes to the Blob endpoint, which Azurite does serve.
    settings = onelake_settings(azurite, azurite_workspace)
    container = ContainerClient(
        azurite,
        azurite_workspace,
        credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
    )
    with container:
        container.upload_blob(f"{LAKEHOUSE}/Files/claimx/P-1/media/M-1_a.jpg", b"x" * 1234)

    async def sizes() -> list[int | None]:
        store = file_store(settings)
        try:
            return [
                await store.size_of("claimx/P-1/media/M-1_a.jpg"),
                await store.size_of("claimx/P-1/media/M-2_b.jpg"),
            ]
        finally:
            await store.close()

    assert asyncio.run(sizes()) == [1234, None]


@pytest.mark.parametrize("outage", ["from the start", "after part of the batch landed"])
def test_a_lakehouse_that_refuses_writes_fails_the_commit_and_dead_letters_nothing(
    azurite: str, azurite_workspace: str, kafka_bootstrap: str, tmp_path: Path, outage: str
) -> None:
    """The stage's principal may read the lakehouse but no longer write it (403 to every
    write, reads answered), from the start of a commit or from halfway through its split.
    Found failing: the committer took the failed MERGE for rows the table refused, since the
    table still answered, and dead-lettered healthy rows as permanent while their tasks went
    on downstream. Now the step fails, nothing is dead-lettered, and once writes are allowed
    again the replay lands every row."""
    with RefusingProxy(azurite) as proxy:
        settings = onelake_isolated(kafka_bootstrap, tmp_path, proxy.endpoint, azurite_workspace)
        router = FailureRouter.for_stage(settings, "ingest", settings.claimx_events_dlq_topic)
        producer = CheckedProducer(producer_config(settings))
        committer = TableCommitter(writer_for(settings, EVENTS), router, lambda: producer)

        def commit(first: int, count: int) -> None:
            batch, refused = row_batch(
                EVENTS, [(event_row(f"e{i}"), source(i)) for i in range(first, first + count)]
            )
            assert batch is not None and not refused
            committer.commit([batch])

        commit(0, 1)
        if outage == "from the start":
            proxy.refusing = True
        else:
            proxy.outage_after_a_commit = True
        with pytest.raises(Exception):  # noqa: B017 - whatever delta-rs raises for a 403
            commit(1, 20)
        with pytest.raises(Exception):  # noqa: B017 - a lone row fails the step the same way
            commit(20, 1)  # (one the split did not land)
        assert proxy.refused > 0
        assert read_all(kafka_bootstrap, settings.claimx_events_dlq_topic) == []
        proxy.refusing = proxy.outage_after_a_commit = False
        commit(1, 20)
        stored = writer_for(settings, EVENTS).read().column("event_id").to_pylist()
    assert sorted(stored) == sorted(f"e{i}" for i in range(21))
    assert read_all(kafka_bootstrap, settings.claimx_events_dlq_topic) == []


def test_a_refusal_that_ends_while_a_batch_is_split_dead_letters_nothing(
    azurite: str, azurite_workspace: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Writes refused, then taken again while the committer splits the batch: the rows refused
    meanwhile failed for the storage, not for themselves. Found failing: once the storage took
    the committer's test write, they went to the DLQ as permanent while their tasks went on.
    Now they are merged again first, and land."""
    with RefusingProxy(azurite) as proxy:
        settings = onelake_isolated(kafka_bootstrap, tmp_path, proxy.endpoint, azurite_workspace)
        router = FailureRouter.for_stage(settings, "ingest", settings.claimx_events_dlq_topic)
        producer = CheckedProducer(producer_config(settings))
        committer = TableCommitter(writer_for(settings, EVENTS), router, lambda: producer)
        rows = [(event_row(f"e{i}"), source(i)) for i in range(3)]
        first, _ = row_batch(EVENTS, rows[:1])
        assert first is not None
        committer.commit([first])
        proxy.refuse_writes = 3  # the batch's MERGE and each half's
        batch, _ = row_batch(EVENTS, rows[1:])
        assert batch is not None
        committer.commit([batch])
        assert proxy.refused == 3 and proxy.refuse_writes == 0
        stored = writer_for(settings, EVENTS).read().column("event_id").to_pylist()
    assert sorted(stored) == ["e0", "e1", "e2"]
    assert read_all(kafka_bootstrap, settings.claimx_events_dlq_topic) == []
