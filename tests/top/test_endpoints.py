"""Where ``claimx top`` looks: flags, a peers-style file, or the catalog's ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from claimx_flow.catalog import STAGE_NAMES, STAGES
from claimx_flow.runtime import metrics
from claimx_flow.top.endpoints import Endpoint, EndpointError, choose, parse_endpoint
from claimx_flow.top.scrape import CONSUMED, FAILED, LAG, OUTPUT


def test_flags_a_file_and_the_defaults(tmp_path: Path) -> None:
    peers = tmp_path / "endpoints"
    peers.write_text(
        "# stage host:port, one process a line\n"
        "upload claimx-upload-1.claimx-upload.ns.svc.cluster.local:8083\n"
        "\n"
        "enrich 10.0.0.7:8081  # the first enricher\n"
    )
    chosen = choose(["upload=10.0.0.9:8083", "ingest=[::1]:9000"], peers)
    assert [(e.stage, e.address) for e in chosen] == [
        ("ingest", "[::1]:9000"),
        ("enrich", "10.0.0.7:8081"),
        ("upload", "10.0.0.9:8083"),
        ("upload", "claimx-upload-1.claimx-upload.ns.svc.cluster.local:8083"),
    ]
    defaults = choose([], None, "192.0.2.1")
    assert defaults == [Endpoint(s, "192.0.2.1", STAGES[s].port) for s in STAGE_NAMES]


@pytest.mark.parametrize("text", ["enrich", "nope=1.2.3.4:1", "enrich=host", "enrich=h:99999"])
def test_a_bad_endpoint_is_named(text: str) -> None:
    with pytest.raises(EndpointError):
        parse_endpoint(text)


def test_the_counters_read_are_the_stages_own() -> None:
    """A renamed metric must not leave ``top`` reading nothing."""
    names = {
        sample_name
        for metric in (
            metrics.CONSUMED,
            metrics.RETRY_ROUTED,
            metrics.CONSUMER_LAG,
            metrics.EVENTS_INGESTED,
            metrics.EVENTS_ENRICHED,
            metrics.DOWNLOADS,
            metrics.UPLOADS,
            metrics.RESULTS,
            metrics.RELEASE_LATENESS,
        )
        for family in metric.describe()
        for sample_name in (
            family.name,
            f"{family.name}_total",
            f"{family.name}_count",
        )
    }
    assert {CONSUMED, FAILED, LAG, *OUTPUT.values()} <= names
