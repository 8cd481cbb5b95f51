"""What the broker says about the pipeline: each stage's consumer lag, what waits in each retry
tier, what each DLQ holds.

Lag is read as ``claimx lag`` reads it (:class:`claimx_flow.kafka.lag.PartitionLag`: the end of
each input partition minus the stage group's committed offset, or its first offset held where
the group has none or retention deleted past it). A tier's waiting messages are
those the retry stage has not released yet (its end minus the retry group's position, never
below the low watermark); a DLQ's depth is its high minus low watermark, as ``claimx dlq list``
counts it. Orphan tiers (``routing.tiers.orphan_names``) that hold messages count as the retry
stage drains them: among the tiers and the retry stage's inputs. A position past the end (a
topic deleted and made again) counts 0 and is named, never a negative number. One admin client
serves every refresh, and each refresh asks for all offsets in one batched request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from claimx_flow import catalog
from claimx_flow.catalog import STAGE_NAMES, Ladder, StageName
from claimx_flow.config import Settings
from claimx_flow.errors import KafkaAdminError
from claimx_flow.kafka.clients import client_config, consumer_config, failure_reason
from claimx_flow.kafka.lag import PartitionLag
from claimx_flow.kafka.positions import group_offsets
from claimx_flow.models import redact
from claimx_flow.routing.tiers import (
    RetryLadder,
    Tier,
    download_ladder,
    enrichment_ladder,
    orphan_names,
)


@dataclass(frozen=True)
class BrokerView:
    lag: dict[StageName, list[PartitionLag]] = field(default_factory=dict)
    tiers: dict[str, int] = field(default_factory=dict)
    """Tier topic → messages not released yet."""
    dlqs: dict[str, int] = field(default_factory=dict)
    """DLQ topic → messages it holds."""
    orphans: tuple[Tier, ...] = ()
    """Orphan tiers that hold messages, which the retry stage drains."""
    error: str | None = None

    def stage_lag(self, stage: StageName) -> int | None:
        rows = self.lag.get(stage)
        return None if rows is None else sum(r.lag for r in rows)

    def past_end(self, stage: StageName) -> list[str]:
        """``topic[partition]`` of each input the stage's group committed past the end of."""
        return [f"{r.topic}[{r.partition}]" for r in self.lag.get(stage, []) if r.past_end]


_LADDERS: dict[Ladder, Callable[[Settings], RetryLadder]] = {
    "enrichment": enrichment_ladder,
    "download": download_ladder,
}


def tier_topics(settings: Settings, stage: StageName, orphans: Iterable[Tier] = ()) -> list[str]:
    """The tiers a stage's failures climb (the retry stage: every tier it releases), then the
    ``orphans`` in front of the same pending topics, which the retry stage drains as well."""
    spec = catalog.stage(stage)
    ladders = [spec.ladder] if spec.ladder else list(spec.releases)
    pending = {_LADDERS[ladder](settings).pending_topic for ladder in ladders}
    configured = [t for ladder in ladders for t in catalog.ladder_topics(settings, ladder)]
    return configured + [o.topic for o in orphans if o.pending_topic in pending]


def dlq_topic(settings: Settings, stage: StageName) -> str | None:
    spec = catalog.stage(stage)
    return catalog.topic_name(settings, spec.dlq) if spec.dlq else None


class BrokerProbe:
    def __init__(self, settings: Settings, timeout_s: float) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.admin = AdminClient(client_config(settings))
        self._consumers: dict[str, Consumer] = {}

    def _reason(self, exc: KafkaException) -> str:
        return redact(failure_reason(self.admin, exc), self.settings.secret_values())

    def snapshot(self) -> BrokerView:
        try:
            return self._snapshot()
        except KafkaException as exc:
            return BrokerView(
                error=f"cannot reach Kafka at {self.settings.kafka_bootstrap_servers}: "
                f"{self._reason(exc)}"
            )
        except KafkaAdminError as exc:  # a group's offsets, after waiting out a settling cluster
            return BrokerView(error=redact(str(exc), self.settings.secret_values()))
        except TimeoutError:
            return BrokerView(
                error=f"Kafka at {self.settings.kafka_bootstrap_servers} gave no answer "
                f"within {self.timeout_s:.0f}s"
            )

    def _snapshot(self) -> BrokerView:
        settings = self.settings
        metadata: Any = self.admin.list_topics(timeout=self.timeout_s)
        inputs = {s: catalog.input_topics(settings, catalog.stage(s)) for s in STAGE_NAMES}
        ladders: tuple[Ladder, ...] = ("enrichment", "download")
        tiers = [t for ladder in ladders for t in catalog.ladder_topics(settings, ladder)]
        orphans = orphan_names(settings, metadata.topics)
        dlqs = [d for s in STAGE_NAMES if (d := dlq_topic(settings, s))]
        named = [*[t for ts in inputs.values() for t in ts], *tiers, *(o.topic for o in orphans)]
        topics = list(dict.fromkeys([*named, *dlqs]))
        partitions = {
            t: sorted(metadata.topics[t].partitions)
            for t in topics
            if t in metadata.topics and metadata.topics[t].error is None
        }
        low, high = self._offsets(partitions)
        held = tuple(
            o
            for o in orphans
            if any(high[(o.topic, p)] > low[(o.topic, p)] for p in partitions.get(o.topic, []))
        )
        inputs["retry"] += [o.topic for o in held]
        tiers += [o.topic for o in held]
        groups = {s: settings.consumer_group(catalog.stage(s).consumer) for s in STAGE_NAMES}
        reads = {**inputs, "retry": list(dict.fromkeys([*inputs["retry"], *tiers]))}
        committed = {
            s: self._committed(g, [(t, p) for t in reads[s] for p in partitions.get(t, [])])
            for s, g in groups.items()
        }
        lag = {
            stage: [
                PartitionLag(
                    groups[stage], t, p, high[(t, p)], committed[stage].get((t, p)), low[(t, p)]
                )
                for t in inputs[stage]
                for p in partitions.get(t, [])
            ]
            for stage in STAGE_NAMES
        }
        released = committed["retry"]
        waiting = {
            t: sum(
                max(high[(t, p)] - max(low[(t, p)], released.get((t, p), 0)), 0)
                for p in partitions.get(t, [])
            )
            for t in tiers
        }
        depth = {d: sum(high[(d, p)] - low[(d, p)] for p in partitions.get(d, [])) for d in dlqs}
        return BrokerView(lag, waiting, depth, held)

    def _offsets(
        self, partitions: dict[str, list[int]]
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        """Low and high watermark of every partition, in one request each."""
        places = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
        if not places:
            return {}, {}
        found = []
        earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        for spec in (earliest, latest):
            futures = self.admin.list_offsets(
                {tp: spec for tp in places}, request_timeout=self.timeout_s
            )
            found.append(_results(futures, self.timeout_s))
        return found[0], found[1]

    def _committed(self, group: str, places: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The group's offsets, asked by a consumer of the group kept across refreshes
        (``group_offsets`` says why not the admin client)."""
        if group not in self._consumers:
            self._consumers[group] = Consumer(consumer_config(self.settings, group))
        return group_offsets(self._consumers[group], group, places, self.timeout_s)

    def close(self) -> None:
        for consumer in self._consumers.values():
            consumer.close()
        self._consumers.clear()


def _results(
    futures: dict[TopicPartition, Future[Any]], timeout_s: float
) -> dict[tuple[str, int], int]:
    return {
        (tp.topic, tp.partition): int(f.result(timeout=timeout_s).offset)
        for tp, f in futures.items()
    }
