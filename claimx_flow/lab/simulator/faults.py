"""What can go wrong, on purpose: the simulator's fault knobs and the decision for one request.

The knobs are one pydantic model, because they arrive as JSON on ``/_admin/faults`` and a typo
there should be a 400, not a silently ignored setting. Rates are drawn from a seeded generator,
so a run with the same seed and the same request order injects the same faults; ``fail_next``
is the fully deterministic form for tests ("the next two calls answer 503"), and ``hostile``
the per-entity one ("project 5000001 answers HTML, media 5000001003 a URL with port 99999").
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from claimx_flow.lab.simulator.hostile import Hostility

FailureKind = Literal["timeout", "malformed", "truncated", "disconnect"]
Target = Literal["api", "media"]
ExpiredAnswer = Literal["says_expired", "terse"]
Injected = int | FailureKind
ProjectShape = Literal["wrapped", "bare", "mixed"]
MediaShape = Literal["list", "data", "media", "mixed"]
VideoShape = Literal["object", "list", "data", "collaborations", "videoCollaboration", "mixed"]


class Faults(BaseModel):
    """Every fault knob; all off by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    down: bool = False
    """Drop every connection (``/health`` answers 503); admin stays reachable."""
    error_rates: dict[int, float] = {}
    """Share of requests answered with each status, e.g. ``{"500": 0.1, "503": 0.05}``."""
    fail_next: list[Injected] = []
    """Outcomes of the next requests, in order: a status or one of the failure kinds."""
    retry_after_s: float = Field(1.0, ge=0.0)
    """``Retry-After`` sent with every 429."""
    retry_after_texts: list[Annotated[str, Field(max_length=200, pattern=r"^[\x20-\x7e]*$")]] = []
    """A ``Retry-After`` header on every API answer, 200s included, each the next of these
    texts in turn, right or wrong (a gateway's own): a client must read what it can of it and
    fail nothing on it."""
    latency_ms: float = Field(0.0, ge=0.0)
    jitter_ms: float = Field(0.0, ge=0.0)
    """Latency is ``latency_ms`` plus a uniform draw from ``[0, jitter_ms]``."""
    timeout_rate: float = Field(0.0, ge=0.0, le=1.0)
    hang_s: float = Field(120.0, ge=0.0)
    """How long a "timeout" request hangs before answering (longer than any client timeout)."""
    malformed_rate: float = Field(0.0, ge=0.0, le=1.0)
    truncate_rate: float = Field(0.0, ge=0.0, le=1.0)
    not_found_projects: frozenset[str] = frozenset()
    not_found_rate: float = Field(0.0, ge=0.0, le=1.0)
    """Share of project ids that are unknown (the same ids every time for one seed)."""
    expired_urls: bool = False
    """Issue media URLs that have already expired."""
    expired_answer: ExpiredAnswer = "says_expired"
    """How an expired URL is refused: with S3's "Request has expired", or ``terse``, a bare
    ``AccessDenied`` that gives no reason (the media item's ``expiresAt`` still tells)."""
    url_ttl_ms: int | None = Field(None, ge=0)
    """Override the configured lifetime of media URLs."""
    apply_to: frozenset[Target] = frozenset({"api"})
    """Which requests the faults (``down`` included) hit: REST API, media downloads, or both."""
    project_shape: ProjectShape = "wrapped"
    media_shape: MediaShape = "list"
    video_shape: VideoShape = "object"
    hostile: Hostility = Hostility()
    """Hostile answers for chosen projects, task assignments and media (``hostile.py``)."""

    @field_validator("error_rates")
    @classmethod
    def _statuses(cls, value: dict[int, float]) -> dict[int, float]:
        for status, rate in value.items():
            if not 400 <= status <= 599:
                raise ValueError(f"status {status} is not an HTTP error status")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate {rate} for {status} is not between 0 and 1")
        return value

    @field_validator("not_found_projects", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        """Project ids arrive as numbers or strings, as everywhere in ClaimX."""
        if isinstance(value, list | tuple | set | frozenset):
            return frozenset(str(item) for item in value)
        return value

    @field_validator("fail_next")
    @classmethod
    def _injected_statuses(cls, value: list[Injected]) -> list[Injected]:
        for item in value:
            if isinstance(item, int) and not 400 <= item <= 599:
                raise ValueError(f"status {item} is not an HTTP error status")
        return value

    def merged(self, changes: dict[str, Any]) -> Faults:
        """These faults with ``changes`` applied, validated as a whole."""
        return Faults.model_validate({**self.model_dump(), **changes})


class FaultInjector:
    """Holds the current faults and decides, per request, which one (if any) to inject."""

    def __init__(self, baseline: Faults, seed: int) -> None:
        self.baseline = baseline
        self._seed = seed
        self._rng = random.Random(seed)
        self._pending: deque[Injected] = deque()
        self.faults = baseline
        self.set(baseline)

    def set(self, faults: Faults) -> None:
        """Make ``faults`` current; its ``fail_next`` replaces what was still queued."""
        self._pending = deque(faults.fail_next)
        self.faults = faults.model_copy(update={"fail_next": []})

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial change; a queue in ``changes`` replaces the one still pending."""
        merged = self.faults.merged(changes)
        if "fail_next" in changes:
            self.set(merged)
        else:
            self.faults = merged

    def reset(self) -> None:
        self._rng = random.Random(self._seed)
        self.set(self.baseline)

    def current(self) -> Faults:
        """The faults as the admin endpoint shows them, with what is still queued."""
        return self.faults.model_copy(update={"fail_next": list(self._pending)})

    def latency_s(self, target: Target) -> float:
        faults = self.faults
        if target not in faults.apply_to or not (faults.latency_ms or faults.jitter_ms):
            return 0.0
        return (faults.latency_ms + self._rng.uniform(0.0, faults.jitter_ms)) / 1000

    def decide(self, target: Target) -> Injected | None:
        """The fault for this request, or None to answer normally."""
        faults = self.faults
        if target not in faults.apply_to:
            return None
        if faults.down:
            return "disconnect"
        if self._pending:
            return self._pending.popleft()
        if faults.timeout_rate and self._rng.random() < faults.timeout_rate:
            return "timeout"
        for status, rate in faults.error_rates.items():
            if rate and self._rng.random() < rate:
                return status
        if faults.malformed_rate and self._rng.random() < faults.malformed_rate:
            return "malformed"
        if faults.truncate_rate and self._rng.random() < faults.truncate_rate:
            return "truncated"
        return None

    def project_not_found(self, project_id: int) -> bool:
        """Per-project 404s: listed ids, and a stable share of all ids."""
        faults = self.faults
        if str(project_id) in faults.not_found_projects:
            return True
        if not faults.not_found_rate:
            return False
        return stable_fraction(self._seed, "not-found", project_id) < faults.not_found_rate


def stable_fraction(seed: int, kind: str, entity_id: int) -> float:
    """A number in [0, 1) fixed by ``(seed, kind, id)``: the same project always draws the same."""
    digest = hashlib.blake2b(f"{seed}:{kind}:{entity_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
