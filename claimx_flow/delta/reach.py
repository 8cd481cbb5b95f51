"""Can this process write a table's storage now? Asked before a stage starts.

A stage whose tables are down fails its first commit, and Kubernetes starts it again into the
same outage: a crash loop whose back-off outlasts the outage. Asked first, the answer lets the
stage wait (alive, not ready) while the storage is down, and stop with exit 2 when the storage
answers no (a credential without write rights, a workspace that does not exist), which waiting
would not mend.

The probe writes a one-byte object beside the table's log through delta-rs's own object store, so
it uses the credential chain and options every commit uses; a probe through the Azure SDK could
pass while delta-rs's credential fails. It is one object, ``PROBE``, written again at each
start and never deleted: delta-rs deletes through the Blob batch API, which a store may not
offer, and a probe must ask no more of the store than a commit does. Its name starts with ``_``,
which Delta readers and ``vacuum`` leave alone. Before a table's first commit the probe is all
its folder holds, and Fabric lists the folder as unidentified until then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deltalake.fs import DeltaStorageHandler

from claimx_flow.models.redaction import one_line, redact

PROBE = "_claimx-write-probe"
PROBE_OPTIONS = {"max_retries": "1", "retry_timeout": "10s", "timeout": "5s"}
"""A probe gives up in seconds: by default delta-rs tries 11 times over up to 180 s, each request
allowed 30 s, and a stage that waits for its storage probes again anyway (storage options
documented in delta-rs's "Advanced object storage configuration"; an unknown key would be
ignored, a bad value is refused at once)."""

_STATUS = re.compile(r"status code: (\d{3})")
"""How delta-rs names the HTTP status of an answer in its errors (they reach Python as text)."""

_REFUSALS = ("lacked the necessary privileges", "lacked valid authentication credentials")
"""delta-rs's words for a 403 and a 401, in case no status is named."""


@dataclass(frozen=True)
class StorageFault:
    detail: str
    refused: bool
    """The storage answered and said no: waiting will not mend it."""


def storage_fault(
    table_uri: str, options: dict[str, str] | None, secrets: tuple[str, ...] = ()
) -> StorageFault | None:
    """Why the storage of the table at ``table_uri`` takes no write now, or None when it does."""
    try:  # no request yet: what fails here is the configuration (a key that is not base64)
        handler = DeltaStorageHandler(table_uri, {**(options or {}), **PROBE_OPTIONS})
    except Exception as exc:
        return StorageFault(one_line(redact(str(exc), secrets)), refused=True)
    try:
        # The stream itself: pyarrow's wrapper hands it Buffers, which it refuses (bytes only).
        stream = handler._handler.open_output_stream(PROBE, None)
        stream.write(b"1")  # a block and a block list, as a data file is uploaded
        stream.close()  # type: ignore[attr-defined]  # there at run time, not in the stubs
    except Exception as exc:  # delta-rs raises OSError or its own errors, told apart by text
        text = redact(str(exc), secrets)
        return StorageFault(one_line(text), refused(text))
    return None


def refused(detail: str) -> bool:
    """Whether the storage answered no: a 4xx other than 408 and 429 (a credential without
    write rights, a workspace or lakehouse that does not exist, a request it does not take).
    No answer, a 5xx, a timeout or a throttle is an outage."""
    statuses = [int(found) for found in _STATUS.findall(detail)]
    if statuses:
        return 400 <= statuses[-1] < 500 and statuses[-1] not in (408, 429)
    return any(words in detail for words in _REFUSALS)
