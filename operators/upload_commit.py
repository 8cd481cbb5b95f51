"""The last steps of an upload, in order: attachments row, result message, cache release.

A file's cache copy may go only once its row is in ``claimx_attachments`` and its result is in
Kafka. Running the three in one sink partition makes the order explicit, and the single
partition makes this the one committer of ``claimx_attachments``. Each step is idempotent, so a
crash between them is repaired by the replay. Commits run behind the worker
(:mod:`operators.pipelined`): the next batches upload while one commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from claimx_flow.config import Settings
from claimx_flow.delta.writer import DeltaWriter
from claimx_flow.runtime import metrics
from claimx_flow.stages.upload import UploadCompletion
from operators.kafka import CheckedProducerPartition, checked_producer
from operators.pipelined import CommitBehind

log = logging.getLogger(__name__)

PART = "claimx_attachments"


class _CommitPartition(StatefulSinkPartition[UploadCompletion, None]):
    def __init__(self, writer: DeltaWriter | None, producer: CheckedProducerPartition) -> None:
        self._writer = writer
        self._producer = producer
        self._behind: CommitBehind[UploadCompletion] = CommitBehind(PART, self._commit)

    def write_batch(self, values: list[UploadCompletion]) -> None:
        self._behind.add(values)

    def _commit(self, values: list[UploadCompletion]) -> None:
        if self._writer is not None:
            metrics.delta_written(self._writer.write([done.row for done in values]))
        self._producer.write_batch([done.result for done in values])
        for done in values:
            if done.cache_file is not None:
                done.cache_file.unlink(missing_ok=True)
        metrics.UPLOADS.inc(len(values))
        metrics.UPLOAD_BYTES.inc(sum(int(done.row.get("bytes") or 0) for done in values))

    def snapshot(self) -> None:
        self._behind.wait()

    def close(self) -> None:
        try:
            self._behind.close()
        finally:
            self._producer.close()


class UploadCommitSink(FixedPartitionedSink[UploadCompletion, None]):
    """Takes ``(any_key, UploadCompletion)``; all go to the one partition."""

    def __init__(self, settings: Settings, writer: Callable[[], DeltaWriter] | None) -> None:
        self._settings = settings
        self._writer = writer

    def list_parts(self) -> list[str]:
        return [PART]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _CommitPartition:
        return _CommitPartition(
            self._writer() if self._writer is not None else None,
            checked_producer(self._settings),
        )
