"""What a local service is: something the stack starts, checks and stops."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class RunningService:
    """A started server: enough to reach it, check it and stop it, even from another process."""

    name: str
    pid: int
    endpoint: str
    env: dict[str, str]
    log: str
    workdir: str
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunningService:
        return cls(**data)


class Service(Protocol):
    """A server the local stack can run. ``start`` returns only once it is ready."""

    name: str

    def start(self, workdir: Path) -> RunningService: ...

    def is_ready(self, running: RunningService) -> bool: ...
