"""Where each stage process serves its health and metrics.

Three sources, in this order: ``--endpoint stage=host:port`` flags, a file with one
``stage host:port`` per line (like a Bytewax peers file; ``#`` starts a comment), and, when
neither names any, each stage's catalog port on one host (127.0.0.1: the local stack's
stages, started by hand or by ``claimx demo`` with ``CLAIMX_HEALTH_PORT`` unset).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from claimx_flow.catalog import STAGE_NAMES, STAGES, StageName
from claimx_flow.errors import ClaimxError

DEFAULT_HOST = "127.0.0.1"


class EndpointError(ClaimxError):
    """An endpoint that cannot be read: unknown stage, no port."""


@dataclass(frozen=True)
class Endpoint:
    stage: StageName
    host: str
    port: int

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"


def _stage(name: str) -> StageName:
    for known in STAGE_NAMES:
        if known == name:
            return known
    raise EndpointError(f"unknown stage {name!r} (one of {', '.join(STAGE_NAMES)})")


def _address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EndpointError(f"{what}: {text!r} is not host:port")
    return host, int(port)


def parse_endpoint(text: str) -> Endpoint:
    """``enrich=10.0.0.7:8081``."""
    stage, sep, address = text.partition("=")
    if not sep:
        raise EndpointError(f"--endpoint {text!r}: expected stage=host:port")
    return Endpoint(_stage(stage.strip()), *_address(address, f"--endpoint {stage.strip()}"))


def read_endpoints_file(path: Path) -> list[Endpoint]:
    """One ``stage host:port`` per line; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EndpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise EndpointError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    found = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 2:
            raise EndpointError(f"{path}:{number}: expected 'stage host:port', got {text!r}")
        found.append(Endpoint(_stage(parts[0]), *_address(parts[1], f"{path}:{number}")))
    return found


def default_endpoints(host: str = DEFAULT_HOST) -> list[Endpoint]:
    """Each stage on its catalog port."""
    return [Endpoint(name, host, STAGES[name].port) for name in STAGE_NAMES]


def choose(flags: Iterable[str], file: Path | None, host: str = DEFAULT_HOST) -> list[Endpoint]:
    """The endpoints to watch, in stage order, each once."""
    given = [parse_endpoint(text) for text in flags]
    if file is not None:
        given += read_endpoints_file(file)
    chosen = given or default_endpoints(host)
    order = {name: index for index, name in enumerate(STAGE_NAMES)}
    unique = list(dict.fromkeys(chosen))
    return sorted(unique, key=lambda e: order[e.stage])
