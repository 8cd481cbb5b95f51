"""``claimx top``: the whole pipeline live in the terminal."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.live import Live

from claimx_flow.config import Settings, load_settings
from claimx_flow.errors import ClaimxError
from claimx_flow.terminal import EXIT_ERROR, Output, emit_json, print_error
from claimx_flow.top.broker import BrokerProbe
from claimx_flow.top.endpoints import DEFAULT_HOST, Endpoint, choose
from claimx_flow.top.scrape import Scrape, Scraper
from claimx_flow.top.snapshot import ProgressClock, Snapshot, combine, document
from claimx_flow.top.view import view

EXIT_STAGE_DOWN = 1
"""A stage endpoint that did not answer: a finding about the pipeline, not a broken peer."""


class _Watch:
    """Scrapes, the broker and the progress clock, refreshed together."""

    def __init__(self, settings: Settings, endpoints: list[Endpoint], timeout_s: float) -> None:
        self.settings = settings
        self.scraper = Scraper(endpoints, timeout_s)
        self.broker = BrokerProbe(settings, timeout_s)
        self.clock = ProgressClock()
        self.last = self._scrape()

    def _scrape(self) -> dict[Endpoint, Scrape]:
        scrapes = self.scraper.all()
        for scrape in scrapes.values():
            self.clock.see(scrape)
        return scrapes

    def first(self, interval_s: float) -> Snapshot:
        """What one scrape shows: everything but rates."""
        broker = self.broker.snapshot()
        return combine(self.settings, {}, self.last, broker, self.clock, interval_s)

    def next(self, interval_s: float) -> Snapshot:
        before, self.last = self.last, self._scrape()
        broker = self.broker.snapshot()
        return combine(self.settings, before, self.last, broker, self.clock, interval_s)

    def close(self) -> None:
        self.scraper.close()
        self.broker.close()


def top(
    endpoint: list[str] = typer.Option(
        [],
        "--endpoint",
        "-e",
        help="stage=host:port of a stage process's health port; repeat for each process.",
    ),
    endpoints_file: Path | None = typer.Option(
        None, "--endpoints-file", help="A file of 'stage host:port' lines (one per process)."
    ),
    host: str = typer.Option(
        DEFAULT_HOST, "--host", help="Without endpoints: each stage's catalog port on this host."
    ),
    interval: float = typer.Option(
        2.0,
        "--interval",
        "-n",
        min=0.2,
        max=3600,
        help="Seconds between scrapes (rates span this).",
    ),
    once: bool = typer.Option(False, "--once", help="One snapshot over one interval, then exit."),
    output: Output = typer.Option(
        Output.TABLE,
        "--output",
        "-o",
        case_sensitive=False,
        help="table or json (json needs --once).",
    ),
    timeout: float = typer.Option(
        2.0,
        "--timeout",
        min=0.1,
        max=300,
        help="Seconds to wait for each endpoint and Kafka request.",
    ),
) -> None:
    """Watch the pipeline live: rates, lag, retry tiers, DLQs and readiness per stage process.

    Rates come from two scrapes of each process's /metrics, readiness from /health/ready, lag
    from the stages' consumer groups, tier and DLQ depth from the broker's watermarks. An
    endpoint that does not answer is shown in red. With --once (and --output json for
    scripts) it prints one snapshot taken over --interval, and exits 2 if Kafka was
    unreachable, 1 if a stage endpoint was. When stdout is not a terminal it prints a snapshot
    every interval, one after another, as ``top -b`` does.
    """
    if output is Output.JSON and not once:
        raise typer.BadParameter("--output json needs --once", param_hint="--output")
    try:
        chosen = choose(endpoint, endpoints_file, host)
    except ClaimxError as exc:
        raise typer.BadParameter(str(exc), param_hint="--endpoint") from None
    watch = _Watch(load_settings(), chosen, timeout)
    try:
        if once:
            time.sleep(interval)
            snapshot = watch.next(interval)
            if output is Output.JSON:
                emit_json(document(snapshot))
            else:
                Console().print(view(snapshot))
            if snapshot.broker_error:  # Kafka out of reach: the snapshot printed first
                if output is Output.JSON:  # the table says so in red; the document does not
                    print_error(f"Kafka: {snapshot.broker_error}")
                raise typer.Exit(EXIT_ERROR)
            if snapshot.unreachable:
                raise typer.Exit(EXIT_STAGE_DOWN)
            return
        _live(watch, interval)
    finally:
        watch.close()


def _live(watch: _Watch, interval_s: float) -> None:
    """Refresh until Ctrl-C, which ends it cleanly (exit code 0)."""
    console = Console()
    if not console.is_terminal:  # a pipe or a log: a live view would print nothing until exit
        try:
            console.print(view(watch.first(interval_s)))
            while True:
                time.sleep(interval_s)
                console.print(view(watch.next(interval_s)))
        except KeyboardInterrupt:
            return
    try:
        with Live(
            view(watch.first(interval_s)), console=console, auto_refresh=False, screen=False
        ) as live:
            while True:
                time.sleep(interval_s)
                live.update(view(watch.next(interval_s)), refresh=True)
    except KeyboardInterrupt:
        console.print("[dim]stopped[/]")
