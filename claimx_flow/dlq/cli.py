"""``claimx dlq list|inspect|replay|purge`` (also ``python -m claimx_flow.dlq``).

Exit codes, the same for every command, so scripts can rely on them:

- 0: done — something was listed, shown, replayed or purged (a dry run found something to do).
- 1: nothing matched, or only part was done — an empty page, no record selected, records parked
  by the replay limit or truncated copies left, a replay interrupted (run it again to continue),
  a purge declined at the prompt, nothing to purge, or a DLQ topic missing from ``list``.
- 2: error — bad arguments, Kafka unreachable, a topic missing, a write Kafka did not confirm,
  or a purge without a terminal to confirm on and without ``--yes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from claimx_flow.cli import prepare
from claimx_flow.config import Settings, configured_secrets, load_settings
from claimx_flow.dlq import browse, masking
from claimx_flow.dlq.clients import DEFAULT_TIMEOUT_S, kafka_reason
from claimx_flow.dlq.documents import (
    letter_document,
    outcome_document,
    plan_document,
    survey_document,
)
from claimx_flow.dlq.filters import (
    ReplayFilter,
    parse_categories,
    parse_instant,
    parse_positions,
    split_list,
)
from claimx_flow.dlq.force import force_command
from claimx_flow.dlq.purge import PurgePlan, execute_purge, plan_purge
from claimx_flow.dlq.queues import DlqName
from claimx_flow.dlq.render import (
    force_line,
    letter_view,
    letters_table,
    outcome_view,
    plan_view,
    survey_view,
)
from claimx_flow.dlq.replay import ReplayOptions, ReplayOutcome, replay
from claimx_flow.errors import ClaimxError
from claimx_flow.terminal import (
    EXIT_ERROR,
    OUTPUT_OPTION,
    Output,
    confirm_plan,
    emit_json,
    print_error,
    run_guarded,
)

EXIT_OK, EXIT_PARTIAL = 0, 1

EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 nothing matched or partial (empty page, nothing selected, records "
    "parked, interrupted, declined, nothing to purge, a DLQ topic missing); 2 error (bad "
    "arguments, Kafka unreachable, topic missing, write not confirmed, purge without a terminal "
    "and without --yes)."
)

app = typer.Typer(
    help="Inspect, replay and purge the dead-letter queues (events, enrichment, download).\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

DLQ_ARGUMENT = typer.Argument(..., help="Which DLQ: events, enrichment or download.")
JSON_OPTION = typer.Option(False, "--json", hidden=True, help="The same as --output json.")


@app.callback()
def _options(
    ctx: typer.Context,
    timeout: float = typer.Option(
        DEFAULT_TIMEOUT_S, "--timeout", min=0.1, help="Seconds to wait for each Kafka request."
    ),
) -> None:
    ctx.obj = {"timeout": timeout}
    masking.mask_also(configured_secrets())


def _timeout(ctx: typer.Context) -> float:
    obj: dict[str, Any] = ctx.obj or {}
    return float(obj.get("timeout", DEFAULT_TIMEOUT_S))


@contextmanager
def _failures_exit() -> Iterator[Settings]:
    """Settings for the command; a known failure becomes one red line and exit code 2."""
    settings: Settings | None = None
    try:
        settings = load_settings()
        yield settings
    except (ClaimxError, KafkaException) as exc:
        print_error(kafka_reason(settings, exc) if settings is not None else str(exc))
        raise typer.Exit(EXIT_ERROR) from None


def _as_json(output: Output, json_out: bool) -> bool:
    """``--output json``, or ``--json`` (the older spelling scripts use, kept as a hidden alias)."""
    return json_out or output is Output.JSON


@app.command("list", epilog=EXIT_CODES_HELP)
def list_dlqs(
    ctx: typer.Context,
    output: Output = OUTPUT_OPTION,
    json_out: bool = JSON_OPTION,
    scan: int = typer.Option(
        10_000,
        "--scan",
        min=0,
        help="Count errors, event types, projects, media and attempts over at most this many "
        "newest records per DLQ.",
    ),
) -> None:
    """Messages, time span, top errors, and the most frequent event types, projects, media and
    attempts of each DLQ."""
    with _failures_exit() as settings, Console(stderr=True).status("reading the DLQs…"):
        surveys = browse.survey(settings, list(DlqName), scan, _timeout(ctx))
    bootstrap = settings.kafka_bootstrap_servers
    if _as_json(output, json_out):
        emit_json(survey_document(bootstrap, surveys))
    else:
        Console().print(survey_view(bootstrap, surveys))
    if any(not s.exists for s in surveys):
        raise typer.Exit(EXIT_PARTIAL)


@app.command(epilog=EXIT_CODES_HELP)
def inspect(
    ctx: typer.Context,
    dlq: DlqName = DLQ_ARGUMENT,
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="How many messages to show."),
    offset: int | None = typer.Option(
        None, "--offset", min=0, help="Start at this offset (in every partition, or --partition)."
    ),
    partition: int | None = typer.Option(None, "--partition", "-p", min=0, help="Only this one."),
    output: Output = OUTPUT_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Messages of a DLQ with their position, ids, failure and every header.

    A table first (partition, offset, time, event type, project, media, attempt, category,
    error), then each message in full.
    """
    with _failures_exit() as settings:
        letters = browse.peek(settings, dlq, limit, partition, offset, _timeout(ctx))
    if _as_json(output, json_out):
        emit_json({"dlq": dlq.value, "messages": [letter_document(d) for d in letters]})
    else:
        console = Console()
        if letters:
            console.print(letters_table(letters, dlq.value))
        for letter in letters:
            console.print(letter_view(letter, dlq.value))
        if not letters:
            console.print(f"no messages in the {dlq.value} DLQ at that position")
    if not letters:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("replay", epilog=EXIT_CODES_HELP)
def replay_cmd(
    ctx: typer.Context,
    dlq: DlqName = DLQ_ARGUMENT,
    to: str | None = typer.Option(
        None, "--to", help="Send here instead of the original pending topic."
    ),
    event_ids: str | None = typer.Option(None, "--event-ids", help="Comma-separated event ids."),
    media_ids: str | None = typer.Option(None, "--media-ids", help="Comma-separated media ids."),
    project_id: str | None = typer.Option(None, "--project-id", help="Project id(s), commas."),
    category: str | None = typer.Option(
        None, "--category", help="transient, permanent and/or auth, commas."
    ),
    event_type: str | None = typer.Option(None, "--event-type", help="Event type(s), commas."),
    error_contains: str | None = typer.Option(
        None, "--error-contains", help="Text in the error class or message (any case)."
    ),
    since: str | None = typer.Option(None, "--since", help="DLQ records at or after (ISO)."),
    until: str | None = typer.Option(None, "--until", help="DLQ records before (ISO)."),
    positions: str | None = typer.Option(
        None,
        "--positions",
        help="Only these records: PARTITION:OFFSET or PARTITION:FIRST-LAST, commas.",
    ),
    min_replays: int | None = typer.Option(
        None, "--min-replays", min=1, help="Only records already replayed at least N times."
    ),
    max_messages: int | None = typer.Option(None, "--max", min=1, help="Replay at most N."),
    rate: float | None = typer.Option(None, "--rate", min=0.01, help="At most N messages/s."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count and show; send nothing."),
    max_replays: int = typer.Option(
        3, "--max-replays", min=1, help="Park records already replayed this many times."
    ),
    session: str | None = typer.Option(
        None, "--session", help="Progress name (default: one per DLQ and set of filters)."
    ),
    transactions: bool = typer.Option(
        True,
        "--transactions/--no-transactions",
        help="Sends and progress in one Kafka transaction (exactly once). Off only for clusters "
        "without transactions: a crash may then resend the last chunk.",
    ),
    output: Output = OUTPUT_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Send DLQ records back to their pending topic, resumably; each record once per session.

    The record's key and value are unchanged; its failure headers restart the attempt count,
    count one more replay and mark it replayed. Records already replayed --max-replays times
    are parked: left in the DLQ and listed, with the command that sends them anyway. A
    progress bar with counts shows on stderr when it is a terminal (also with --output json,
    whose document alone goes to stdout).
    """
    json_out = _as_json(output, json_out)
    options = ReplayOptions(
        selection=_selection(
            event_ids,
            media_ids,
            project_id,
            category,
            event_type,
            error_contains,
            since,
            until,
            positions,
            min_replays,
        ),
        to_topic=to,
        max_messages=max_messages,
        rate_per_s=rate,
        dry_run=dry_run,
        max_replays=max_replays,
        session=session,
        transactional=transactions,
    )
    with _failures_exit() as settings:
        outcome = _run_replay(settings, dlq, options, _timeout(ctx))
    warn = Console(stderr=True, highlight=False)
    for warning in outcome.warnings:
        warn.print(Text.assemble(("warning: ", "bold yellow"), warning))
    force = force_command(
        dlq,
        options.selection,
        options.to_topic,
        options.max_replays,
        outcome.done.parked,
        transactional=options.transactional,
    )
    if json_out:
        emit_json(outcome_document(outcome, force))
    else:
        Console().print(outcome_view(outcome))
        if force is not None:
            Console().print(force_line(force), soft_wrap=True)
        if outcome.interrupted:
            Console().print("[yellow]interrupted[/]: run the same command again to continue")
    done = outcome.done
    if done.replayed == 0 or done.parked.total or done.truncated.total or outcome.interrupted:
        raise typer.Exit(EXIT_PARTIAL)


def _selection(
    event_ids: str | None,
    media_ids: str | None,
    project_id: str | None,
    category: str | None,
    event_type: str | None,
    error_contains: str | None,
    since: str | None,
    until: str | None,
    positions: str | None,
    min_replays: int | None,
) -> ReplayFilter:
    try:
        return ReplayFilter(
            event_ids=split_list(event_ids),
            media_ids=split_list(media_ids),
            project_ids=split_list(project_id),
            categories=parse_categories(category),
            event_types=split_list(event_type),
            error_contains=error_contains or None,
            since=parse_instant(since),
            until=parse_instant(until),
            positions=parse_positions(positions),
            min_replays=min_replays,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _run_replay(
    settings: Settings, dlq: DlqName, options: ReplayOptions, timeout_s: float
) -> ReplayOutcome:
    """The replay, with a progress bar (records read of the range, elapsed, left) on stderr
    when stderr is a terminal: never on stdout, which a JSON document may own."""
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(
        *columns,
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task(f"{'scanning' if options.dry_run else 'replaying'} {dlq.value}")

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return replay(settings, dlq, options, timeout_s=timeout_s, progress=advance)


@app.command(epilog=EXIT_CODES_HELP)
def purge(
    ctx: typer.Context,
    dlq: DlqName = DLQ_ARGUMENT,
    before: str | None = typer.Option(
        None, "--before", help="Only records before this ISO datetime (default: all now there)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would go; remove nothing."),
    output: Output = OUTPUT_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Delete a DLQ's records for every reader (Kafka delete-records). Cannot be undone."""
    json_out = _as_json(output, json_out)
    try:
        cutoff = parse_instant(before)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--before") from None
    with _failures_exit() as settings:
        plan = plan_purge(settings, dlq, cutoff, _timeout(ctx))
        if dry_run or plan.removed == 0:
            _show_plan(plan, json_out, dry_run=True, removed=0)
            if not plan.removed and not json_out:
                Console().print(f"nothing to purge in {plan.topic}")
            raise typer.Exit(EXIT_OK if plan.removed else EXIT_PARTIAL)
        confirm_plan(
            plan_view(plan, dry_run=False),
            f"Permanently delete {plan.removed:,} record(s) from {plan.topic}?",
            what="purge",
            yes=yes,
            show=not json_out,
        )
        removed = execute_purge(settings, plan, _timeout(ctx))
    if json_out:
        emit_json(plan_document(plan, dry_run=False, removed=removed))
    else:
        Console().print(f"removed {removed:,} record(s) from {plan.topic}")


def _show_plan(plan: PurgePlan, json_out: bool, *, dry_run: bool, removed: int) -> None:
    if json_out:
        emit_json(plan_document(plan, dry_run=dry_run, removed=removed))
    else:
        Console().print(plan_view(plan, dry_run=dry_run))


def main(prog_name: str = "python -m claimx_flow.dlq") -> None:
    """``python -m claimx_flow.dlq`` (or the runbook's module name, ``prog_name``): the same
    commands, quiet Kafka logs, the local stack's env."""
    prepare(entry_point=True)
    run_guarded(lambda: app(prog_name=prog_name))
