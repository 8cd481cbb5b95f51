"""What the pipeline has produced so far: rows per table, stored files, DLQ and topic counts.

The demo's summary, the end-to-end checks and the chaos reconciliation all read the same
numbers from here, straight from the tables, the file store and the topics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deltalake import DeltaTable

from claimx_flow.config import Settings
from claimx_flow.delta.tables import TABLES
from claimx_flow.kafka.topics import describe_topics


@dataclass(frozen=True)
class Inventory:
    rows: dict[str, int]
    attachment_bytes: int
    stored_files: int
    topic_messages: dict[str, int]

    def dlq(self, settings: Settings) -> dict[str, int]:
        return {
            "events": self.topic_messages.get(settings.claimx_events_dlq_topic, 0),
            "enrichment": self.topic_messages.get(settings.claimx_enrichment_dlq_topic, 0),
            "download": self.topic_messages.get(settings.claimx_downloads_dlq_topic, 0),
        }


def table_rows(settings: Settings, name: str) -> int:
    path = (settings.tables_dir / name).resolve()
    if not (path / "_delta_log").exists():
        return 0
    return int(DeltaTable(str(path)).count())


def stored_event_ids(settings: Settings) -> set[str]:
    path = (settings.tables_dir / "claimx_events").resolve()
    if not (path / "_delta_log").exists():
        return set()
    column = DeltaTable(str(path)).to_pyarrow_table(columns=["event_id"]).column("event_id")
    return set(column.to_pylist())


def take_inventory(settings: Settings) -> Inventory:
    rows = {name: table_rows(settings, name) for name in TABLES}
    attachments = settings.tables_dir / "claimx_attachments"
    size = 0
    if (attachments / "_delta_log").exists():
        column = DeltaTable(str(attachments.resolve())).to_pyarrow_table(columns=["bytes"])
        size = sum(v for v in column.column("bytes").to_pylist() if v)
    topics = [
        settings.claimx_events_topic,
        settings.claimx_downloads_results_topic,
        settings.claimx_events_dlq_topic,
        settings.claimx_enrichment_dlq_topic,
        settings.claimx_downloads_dlq_topic,
    ]
    counts = {state.name: state.messages for state in describe_topics(settings, topics)}
    return Inventory(rows, size, _count_files(settings.files_dir), counts)


def _count_files(root: Path) -> int:
    if not root.exists():
        return 0
    return sum(1 for path in root.rglob("*") if path.is_file() and not path.name.startswith("."))
