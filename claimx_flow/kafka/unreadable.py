"""Messages librdkafka holds and cannot give: where the one lost is, so a reader can step past.

librdkafka (2.16) never moves past a message it cannot read: it fetches the same batch again
and reports the same error, at the batch's first offset, until the reader seeks past it. A
compressed batch that cannot be decompressed loses every record in it, and a fetch from inside
it (after a seek past its first record, or a restart from a snapshot) reports the batch's first
offset again. That one is already behind the reader; the record lost is the reader's next
offset. So a reader that seeks past each lost offset in turn takes every offset of the batch
once.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, Message

LOST_MESSAGE_ERRORS = frozenset(
    {KafkaError._BAD_COMPRESSION, KafkaError._BAD_MSG, KafkaError._NOT_IMPLEMENTED}
)
"""What librdkafka reports for a message it holds and cannot give: a batch it cannot
decompress, a record it cannot parse, a codec it lacks. Its other errors at an offset (a topic
not authorised, a fetch that failed) are about the fetch: the message there comes once the
fetch works, and reading on past it would lose it."""


def lost_offset(msg: Message, error: KafkaError, next_offset: int) -> int | None:
    """The offset of the message ``error`` says is lost, for a reader whose first offset not
    yet read is ``next_offset`` (negative: a logical one, nothing read yet); None for an error
    about no message."""
    offset = msg.offset()
    if offset is None or offset < 0 or error.code() not in LOST_MESSAGE_ERRORS:
        return None
    return next_offset if next_offset >= 0 and offset < next_offset else offset
