"""``claimx simulate serve|events``: the ClaimX API simulator and the raw-event generator."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console

from claimx_flow.config import load_settings
from claimx_flow.errors import ConfigError
from claimx_flow.lab.simulator import DEFAULT_BASE_PATH, DEFAULT_PASSWORD, DEFAULT_USERNAME, Faults
from claimx_flow.lab.simulator.event_output import produce_lines, write_lines
from claimx_flow.lab.simulator.events import FIRST_PROJECT_ID, EventPlan, Mix, event_lines
from claimx_flow.lab.simulator.runner import PASSWORD_ENV, Endpoint, serve_forever
from claimx_flow.lab.simulator.server import (
    DEFAULT_MEDIA_BYTES,
    DEFAULT_URL_TTL_MS,
    SimulatorConfig,
)

app = typer.Typer(help="Simulate the ClaimX API and generate raw events that refer to it.")
# Progress and summaries go to stderr: stdout may be the event stream itself.


def console() -> Console:
    """A console per use: one sizes itself when made, from ``COLUMNS`` at that moment."""
    return Console(stderr=True)


@app.command()
def serve(
    port: int = typer.Option(8090, help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    seed: int = typer.Option(0, help="Seed of every generated entity."),
    username: str = typer.Option(DEFAULT_USERNAME, help="Basic auth user the API accepts."),
    password: str = typer.Option(
        DEFAULT_PASSWORD, envvar=PASSWORD_ENV, show_default=False, help="Basic auth password."
    ),
    base_path: str = typer.Option(DEFAULT_BASE_PATH, help="Path prefix of the REST calls."),
    media_bytes: int = typer.Option(DEFAULT_MEDIA_BYTES, min=0, help="Size of each media file."),
    url_ttl_ms: int = typer.Option(DEFAULT_URL_TTL_MS, min=0, help="Lifetime of media URLs."),
    faults: str | None = typer.Option(
        None, help="Fault knobs as JSON, or @file.json (change later: POST /_admin/faults)."
    ),
) -> None:
    """Serve the simulated ClaimX API until Ctrl-C."""
    config = SimulatorConfig(
        seed=seed,
        username=username,
        password=password,
        base_path=base_path,
        media_bytes=media_bytes,
        url_ttl_ms=url_ttl_ms,
        faults=_faults(faults),
    )

    def ready(endpoint: Endpoint) -> None:
        say = console().print
        say(f"[green]✓[/] ClaimX simulator (seed {seed}) at [bold]{endpoint.api_url}[/]")
        say(
            f"  export CLAIMX_API_URL={endpoint.api_url} CLAIMX_API_USERNAME={username}",
            soft_wrap=True,
        )
        say(
            f"  admin: {endpoint.origin}/_admin/faults, /_admin/stats, /_admin/reset",
            soft_wrap=True,
        )

    serve_forever(config, host, port, on_ready=ready)


def _faults(text: str | None) -> Faults:
    if not text:
        return Faults()
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        return Faults.model_validate(json.loads(raw))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--faults: {exc}") from None


@app.command()
def events(
    count: int = typer.Option(1000, "--count", "-n", min=1, help="How many events."),
    projects: int = typer.Option(100, min=1, help="How many distinct projects they touch."),
    mix: Mix = typer.Option("mixed", help="project-created, file-heavy or mixed."),
    seed: int = typer.Option(0, help="Same seed and start, same events."),
    first_project_id: int = typer.Option(FIRST_PROJECT_ID, min=1, help="Lowest project id."),
    start: datetime | None = typer.Option(
        None, help="ingested_at of the first event, UTC (default: now)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write JSON lines here (default: stdout)."
    ),
    topic: str | None = typer.Option(None, help="Produce to this Kafka topic instead."),
) -> None:
    """Generate raw ClaimX events whose ids the simulator serves."""
    if output is not None and topic is not None:
        raise typer.BadParameter("give --output or --topic, not both")
    moment = start if start is not None else datetime.now(UTC)
    plan = EventPlan(
        count=count,
        projects=projects,
        mix=mix,
        seed=seed,
        first_project_id=first_project_id,
        start=moment if moment.tzinfo else moment.replace(tzinfo=UTC),
    )
    began = time.perf_counter()
    lines = event_lines(plan)
    if topic is not None:
        written = produce_lines(lines, topic, load_settings())
        where = f"topic {topic}"
    elif output is not None:
        with output.open("w") as out:
            written = write_lines(lines, out)
        where = str(output)
    else:
        written = write_lines(lines, sys.stdout)
        where = "stdout"
    elapsed = time.perf_counter() - began
    console().print(
        f"{written:,} {mix} events to {where} in {elapsed:.2f}s "
        f"({written / max(elapsed, 1e-9):,.0f}/s)"
    )
