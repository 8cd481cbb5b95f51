"""How an entity table's layout holds up under a sustained write:
``python -m claimx_flow.lab.bench.delta_layout``.

Writes N batches of realistic ``claimx_media`` rows through ``DeltaWriter`` (the enrich stage's
one committer per table: keyed MERGEs, back to back) into the table unpartitioned and
partitioned by ``project_id``, then measures per layout: MERGE seconds per batch (and how they
grow), commits per minute, files and bytes, and point lookups by ``project_id`` and by
``media_id`` (as ``claimx trace`` reads: a file-pruning predicate, then an exact filter) —
after the load, after compaction and after a Z-order.

The traffic is the enrich stage's on the ``file-heavy`` mix: each batch holds the media of a
few dozen projects, mostly recent ones uploading photos in bursts, some older ones; media ids
are one increasing sequence across projects (as ClaimX assigns them), and a share of rows are
re-enrichments of media already stored (replays, refreshed URLs), which a MERGE updates. Row
contents come from the API simulator's media items through the enrichment's own ``media_row``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from claimx_flow.delta.tables import MEDIA, TableSpec
from claimx_flow.delta.writer import DeltaWriter
from claimx_flow.enrichment.rows import media_row
from claimx_flow.lab.simulator import data as sim_data

FIRST_PROJECT = 5_000_001
FIRST_MEDIA = 97_000_000


@dataclass(frozen=True)
class Workload:
    batches: int = 400
    rows: int = 500
    projects_per_batch: int = 25
    new_projects_per_batch: float = 6.0
    old_share: float = 0.1
    update_share: float = 0.05
    lookups: int = 40
    seed: int = 7


@dataclass
class Lookups:
    """Median milliseconds and files read per point lookup, by column."""

    ms: dict[str, float] = field(default_factory=dict)
    files: dict[str, float] = field(default_factory=dict)


@dataclass
class Phase:
    name: str
    seconds: float
    files: int
    bytes: int
    lookups: Lookups


@dataclass
class LayoutResult:
    layout: str
    partitions: int
    merge_s: list[float]
    phases: list[Phase] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        merges = self.merge_s
        tenth = max(len(merges) // 10, 1)
        return {
            "layout": self.layout,
            "partitions": self.partitions,
            "merge_ms_p50": round(statistics.median(merges) * 1000, 1),
            "merge_ms_p95": round(_quantile(merges, 0.95) * 1000, 1),
            "merge_ms_first_10pct": round(statistics.mean(merges[:tenth]) * 1000, 1),
            "merge_ms_last_10pct": round(statistics.mean(merges[-tenth:]) * 1000, 1),
            "commits_per_minute": round(60 / statistics.mean(merges), 1),
            "phases": [
                {
                    "phase": p.name,
                    "seconds": round(p.seconds, 2),
                    "files": p.files,
                    "mib": round(p.bytes / 2**20, 2),
                    "lookup_ms": {k: round(v, 1) for k, v in p.lookups.ms.items()},
                    "lookup_files": p.lookups.files,
                }
                for p in self.phases
            ],
        }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def batches(work: Workload) -> Iterator[list[dict[str, Any]]]:
    """The enrich stage's media rows, batch by batch."""
    rng = random.Random(work.seed)
    at = datetime(2026, 11, 27, 8, tzinfo=UTC)
    projects = [FIRST_PROJECT + i for i in range(work.projects_per_batch * 4)]
    next_project = projects[-1] + 1
    next_media = FIRST_MEDIA
    stored: list[tuple[int, int]] = []  # (media id, project id)
    owed = 0.0
    for number in range(work.batches):
        owed += work.new_projects_per_batch
        while owed >= 1:
            projects.append(next_project)
            next_project += 1
            owed -= 1
        recent = projects[-work.projects_per_batch * 4 :]
        chosen = rng.sample(recent, work.projects_per_batch)
        rows: list[dict[str, Any]] = []
        at += timedelta(seconds=2)
        event = f"evt-{number}"
        for _ in range(work.rows):
            if stored and rng.random() < work.update_share:
                media_id, project = rng.choice(stored)
            else:
                old = rng.random() < work.old_share
                project = rng.choice(projects) if old else rng.choice(chosen)
                media_id, next_media = next_media, next_media + 1
                stored.append((media_id, project))
            rows.append(_row(work.seed, media_id, project, event, at))
        yield rows


def _row(seed: int, media_id: int, project: int, event: str, at: datetime) -> dict[str, Any]:
    template = project * sim_data.CHILD_SPAN + 1 + media_id % 20
    link = (
        f"https://claimx-media.s3.amazonaws.com/{project}/{media_id}.jpg?X-Amz-Algorithm="
        f"AWS4-HMAC-SHA256&X-Amz-Date=20261127T080000Z&X-Amz-Expires=86400&X-Amz-Signature="
        f"{media_id:064x}"
    )
    item = {**sim_data.media_item(seed, template, link, "2026-11-28T08:00:00Z")}
    item["mediaID"] = media_id
    item["mediaName"] = f"IMG_{media_id}.{item['mediaType']}"
    return media_row(item, str(project), event, at)


def run_layout(
    spec: TableSpec, work: Workload, root: Path, progress: Callable[[str], None]
) -> LayoutResult:
    uri = str(root / spec.name)
    writer = DeltaWriter(spec, uri)
    merges: list[float] = []
    started = time.perf_counter()
    for number, rows in enumerate(batches(work), 1):
        prepared = writer.prepare(rows)
        begun = time.perf_counter()
        writer.merge(prepared)
        merges.append(time.perf_counter() - begun)
        if number % 50 == 0:
            progress(
                f"{spec.partition_by or 'unpartitioned'}: {number}/{work.batches} batches, "
                f"last MERGE {merges[-1] * 1000:.0f} ms"
            )
    load_s = time.perf_counter() - started
    table = DeltaTable(uri)
    partitions = len(table.partitions()) if spec.partition_by else 1
    result = LayoutResult(
        "partitioned by project_id" if spec.partition_by else "unpartitioned", partitions, merges
    )
    samples = _samples(table, work)
    result.phases.append(_phase("after load", load_s, uri, samples))
    begun = time.perf_counter()
    DeltaTable(uri).optimize.compact()
    result.phases.append(_phase("after compact", time.perf_counter() - begun, uri, samples))
    zorder = ["media_id"] if spec.partition_by else ["project_id", "media_id"]
    begun = time.perf_counter()
    DeltaTable(uri).optimize.z_order(zorder)
    name = f"after z-order ({', '.join(zorder)})"
    result.phases.append(_phase(name, time.perf_counter() - begun, uri, samples))
    return result


def _samples(table: DeltaTable, work: Workload) -> dict[str, list[str]]:
    data = table.to_pyarrow_table(columns=["media_id", "project_id"])
    rng = random.Random(work.seed + 1)
    projects = sorted(set(data.column("project_id").to_pylist()))
    media = data.column("media_id").to_pylist()
    return {
        "project_id": rng.sample(projects, min(work.lookups, len(projects))),
        "media_id": rng.sample(media, min(work.lookups, len(media))),
    }


def _phase(name: str, seconds: float, uri: str, samples: dict[str, list[str]]) -> Phase:
    table = DeltaTable(uri)
    actions = pa.table(table.get_add_actions(flatten=True))
    lookups = Lookups()
    for column, values in samples.items():
        times, files = [], []
        for value in values:
            begun = time.perf_counter()
            dataset = DeltaTable(uri).to_pyarrow_dataset(
                file_pruning_predicate=f"{column} = '{value}'"
            )
            rows = dataset.to_table().filter(pc.field(column) == value)
            times.append(time.perf_counter() - begun)
            assert rows.num_rows >= 1, (column, value)
            files.append(len(list(dataset.get_fragments())))
        lookups.ms[column] = statistics.median(times) * 1000
        lookups.files[column] = statistics.median(files)
    size = int(pc.sum(actions.column("size_bytes")).as_py() or 0)
    return Phase(name, seconds, actions.num_rows, size, lookups)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=Workload.batches)
    parser.add_argument("--rows", type=int, default=Workload.rows, help="rows per MERGE")
    parser.add_argument("--projects-per-batch", type=int, default=Workload.projects_per_batch)
    parser.add_argument(
        "--update-share",
        type=float,
        default=Workload.update_share,
        help="share of rows that re-enrich a media file stored earlier (any age)",
    )
    parser.add_argument("--layout", choices=["both", "unpartitioned", "project"], default="both")
    parser.add_argument("--dir", type=Path, default=None, help="keep the tables here")
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = parser.parse_args(argv)
    work = replace(
        Workload(),
        batches=args.batches,
        rows=args.rows,
        projects_per_batch=args.projects_per_batch,
        update_share=args.update_share,
    )
    root = args.dir or Path(tempfile.mkdtemp(prefix="claimx-delta-layout-"))
    layouts = {
        "unpartitioned": MEDIA,
        "project": replace(MEDIA, partition_by=("project_id",)),
    }
    chosen = list(layouts) if args.layout == "both" else [args.layout]
    print(f"workload: {work}; tables in {root}; load {os.getloadavg()}", flush=True)
    results = []
    for name in chosen:
        results.append(run_layout(layouts[name], work, root / name, lambda s: print(s, flush=True)))
        print(f"load average now {os.getloadavg()}", flush=True)
    report = {"workload": work.__dict__, "results": [r.summary() for r in results]}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
