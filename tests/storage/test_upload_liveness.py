"""A OneLake that stops answering: each upload is a transient failure after its own deadline,
and the stage stays alive through the batch, as its liveness probe sees it.

Found failing: a batch of uploads that each ran into their deadline took longer than
``CLAIMX_LIVENESS_STALE_SECONDS`` (the worker waits for its batch, and polls no source while
it does), so Kubernetes would restart the pod on the same batch, for good. A real upload
process (``python -m bytewax.run dataflows.upload``) against the DFS test server and a real
broker, its ``/health/live`` read all through the batch.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from claimx_flow.lab.pipeline import Pipeline, settings_env
from tests.poison.harness import RawRecord, produce_exact, read_topic
from tests.storage.conftest import onelake_isolated
from tests.storage.dfs_server import DfsServer
from tests.storage.test_upload_onelake import cache_files

FILES = 12
STALE_S = 4.0
"""Liveness's patience: well under the batch's 12 uploads of 1 s each, through one slot."""


def live(port: int) -> int | None:
    """``/health/live``'s status, or None while the server is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as refused:
        return refused.code
    except OSError:
        return None


def test_a_hung_onelake_times_uploads_out_one_by_one_and_the_stage_stays_alive(
    kafka_bootstrap: str, dfs_server: DfsServer, dfs_workspace: str, tmp_path: Path
) -> None:
    cached = cache_files(tmp_path, FILES)
    settings = onelake_isolated(
        kafka_bootstrap,
        tmp_path,
        dfs_server.endpoint,
        dfs_workspace,
        cache_dir=tmp_path / "cache",
        upload_timeout_seconds=1.0,
        upload_concurrency=1,
        claimx_liveness_stale_seconds=STALE_S,
        claimx_stop_at_end=True,
        # The DFS test server holds files, not tables (it speaks no Blob API), and no upload
        # here lands, so there is no row to write: rows are tested on Azurite.
        enable_delta_writes=False,
    )
    dfs_server.stall_next(60.0, count=10 * FILES, on="PATCH append")
    produce_exact(
        settings,
        settings.claimx_downloads_cached_topic,
        [RawRecord(c.to_json(), c.kafka_key) for c in cached],
    )

    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    pipeline.start(["upload"])
    (process,) = pipeline.processes["upload"]
    (port,) = pipeline.health_ports["upload"]
    seen: list[int | None] = []
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            seen.append(live(port))
            time.sleep(0.25)
    finally:
        pipeline.stop(grace_s=10)
    log = (tmp_path / "logs" / "upload.log").read_text(errors="replace")

    assert process.returncode == 0, log[-3000:]
    # From the first poll to the last one: start-up and shutdown are outside any batch.
    alive = seen[seen.index(200) : len(seen) - seen[::-1].index(200)]
    assert 503 not in alive, f"liveness went red during the batch: {seen}"
    assert len(alive) >= 4 * FILES, seen  # the probe was read all through the batch
    retried = read_topic(settings, settings.download_retry_topics[0])
    assert len(retried) == FILES
    reasons = {r.header("claimx.error_message") for r in retried}
    assert reasons == {"upload timed out after 1s"}, reasons
    assert read_topic(settings, settings.claimx_downloads_dlq_topic) == []
    assert json.loads(retried[0].value or b"{}")["media_id"].startswith("M-")
