"""Enriching a batch of tasks from the ClaimX API: one handler per event type, batched by project.

A batch is planned before any call is made: each project is fetched once (or not at all when a
recent fetch is cached), media are fetched once per project for every file event of the batch,
and each task assignment and video report once. Every task then yields either its rows and
download tasks or a classified failure — never nothing.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

import pyarrow as pa
from cachetools import TTLCache

from claimx_flow.delta.tables import (
    CONTACTS,
    MEDIA,
    PROJECTS,
    VIDEO_COLLAB,
    TableRow,
    TableSpec,
    convert,
)
from claimx_flow.enrichment import rows
from claimx_flow.enrichment.turns import Turns
from claimx_flow.errors import ClaimxError, ErrorCategory
from claimx_flow.models import EnrichmentTask, NewDownloadTask
from claimx_flow.models.messages import DOWNLOAD_TASK_MAX_BYTES

T = TypeVar("T")

SELECTIVE_MEDIA_LIMIT = 5

PROJECT_EVENTS = {"PROJECT_CREATED", "PROJECT_MFN_ADDED"}
MEDIA_EVENTS = {"PROJECT_FILE_ADDED"}
TASK_EVENTS = {"CUSTOM_TASK_ASSIGNED", "CUSTOM_TASK_COMPLETED"}
POLICYHOLDER_EVENTS = {"POLICYHOLDER_INVITED": "invited", "POLICYHOLDER_JOINED": "joined"}
VIDEO_EVENTS = {"VIDEO_COLLABORATION_INVITE_SENT", "VIDEO_COLLABORATION_COMPLETED"}
XA_EVENTS = {"PROJECT_AUTO_XA_LINKING_UNSUCCESSFUL"}
KNOWN_EVENTS = PROJECT_EVENTS | MEDIA_EVENTS | TASK_EVENTS | set(POLICYHOLDER_EVENTS)
KNOWN_EVENTS |= VIDEO_EVENTS | XA_EVENTS


class ClaimXApi(Protocol):
    """The calls the handlers make (``claimx_flow.api.ClaimXApiClient`` in production)."""

    async def get_project(self, project_id: str) -> dict[str, Any]: ...

    async def get_media(
        self, project_id: str, media_ids: list[str] | None = None
    ) -> list[dict[str, Any]]: ...

    async def get_task_assignment(self, assignment_id: str) -> dict[str, Any]: ...

    async def get_video_collaboration(self, project_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Enriched:
    """A task done: the rows to write and the downloads to start."""

    task: EnrichmentTask
    rows: list[TableRow] = field(default_factory=list)
    downloads: list[NewDownloadTask] = field(default_factory=list)


@dataclass(frozen=True)
class EnrichmentFailed:
    """A task that could not be enriched, and how its failure is to be routed."""

    task: EnrichmentTask
    category: ErrorCategory
    error_class: str
    message: str
    spends_attempt: bool = True
    """False when the failure is the stage's, not the task's (stopping before it was done):
    it waits in the tier of the attempts it has had, not one further towards the DLQ."""

    @classmethod
    def from_error(cls, task: EnrichmentTask, error: BaseException) -> EnrichmentFailed:
        category = getattr(error, "category", None)
        if not isinstance(category, ErrorCategory):
            # A shape or type problem in a response will not fix itself on retry.
            category = ErrorCategory.PERMANENT
        return cls(task, category, type(error).__name__, str(error))


Outcome = Enriched | EnrichmentFailed


@dataclass(frozen=True)
class EnrichedBatch:
    """One outcome per task, in order, plus the project rows the batch's pre-flight produced.

    Project rows belong to the batch, not to a task: if they rode on one task and that task
    failed, the project row would be lost while the cache claimed it was written.
    """

    outcomes: list[Outcome]
    project_rows: list[TableRow]
    project_tables: dict[str, pa.Table] = field(default_factory=dict)
    """``project_rows`` already in Arrow, one table per table name, each in the order its rows
    have in ``project_rows``: converted once to be checked, and not again to be written."""


class EnrichmentError(ClaimxError):
    """A task that is wrong in itself: unknown type, missing id, media not in the project."""

    category = ErrorCategory.PERMANENT

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class ProjectCache:
    """Recently written projects, so a burst of events costs one project call, not one each.
    Only the ids: nothing reads a cached answer, and 10,000 answers of tens of kilobytes each
    would be hundreds of megabytes."""

    def __init__(self, maxsize: int = 10_000, ttl_s: float = 300.0) -> None:
        self._entries: TTLCache[str, bool] = TTLCache(maxsize=maxsize, ttl=ttl_s)

    def written(self, project_id: str) -> bool:
        """Whether a batch wrote the project's row within the last ``ttl_s``."""
        return project_id in self._entries

    def remember(self, project_id: str) -> None:
        self._entries[project_id] = True


@dataclass(eq=False)
class _Promise:
    """A batch's word to the batches waiting for a project: whether it writes the row."""

    written: asyncio.Future[bool]
    awaited: bool = False
    """A batch waits on it: told as soon as the row is built and known to fit its tables."""
    rows: list[TableRow] | None = None
    """The project's rows once built: a batch that comes to wait after that checks them itself
    rather than wait for the end of the batch that built them."""


class _Calls:
    """Each distinct API call of a batch made once, however many tasks need it."""

    def __init__(self) -> None:
        self._started: dict[tuple[str, ...], asyncio.Task[Any]] = {}
        self.promised: dict[str, _Promise] = {}
        """For each project this batch fetches: whether the batch writes its row, told to a batch
        already waiting once the row is built and found to fit, and at the latest when this
        batch is done."""

    def made(self, key: tuple[str, ...]) -> bool:
        return key in self._started

    def once(self, key: tuple[str, ...], call: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        task = self._started.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._started[key] = task
        # Shielded: a task that gives up waiting (its deadline) must not cancel the call for
        # the others that share it.
        return asyncio.shield(task)  # type: ignore[return-value]

    def abandon(self) -> None:
        """The batch is done: cancel its calls still running. No one waits for them any more,
        and against a slow API each would keep a client slot for its every retry, so later
        batches' calls queued behind them and ran out of their deadlines too."""
        for task in self._started.values():
            task.cancel()


class Enricher:
    """Turns batches of enrichment tasks into outcomes, one per task, in order."""

    def __init__(
        self,
        api: ClaimXApi,
        cache: ProjectCache | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        deadline_s: float | None = None,
        turns: Turns | None = None,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        """``deadline_s`` bounds each group of tasks from its turn (``turns``; without them,
        every group starts at once); ``on_progress`` is told whenever a group is done, which
        a read of thousands of tasks may take minutes to be."""
        self._api = api
        self._cache = cache or ProjectCache()
        self._clock = clock
        self._deadline_s = deadline_s
        self._turns = turns
        self._on_progress = on_progress
        # Projects a batch under way is fetching, and whether it writes their rows: batches
        # overlap, and a later one waits for that answer rather than fetch (and write) the
        # project again, as if it had started after the earlier batch.
        self._promised: dict[str, _Promise] = {}

    async def enrich(self, tasks: Sequence[EnrichmentTask]) -> EnrichedBatch:
        calls = _Calls()
        project_rows: dict[str, list[TableRow]] = {}
        try:
            batch = await self._enrich(tasks, calls, project_rows)
        except BaseException:
            self._settle(calls, {})  # nothing of it is written
            raise
        finally:
            calls.abandon()
        self._settle(calls, project_rows)
        return batch

    def _settle(self, calls: _Calls, project_rows: dict[str, list[TableRow]]) -> None:
        """A batch is done: the projects whose rows it hands on are cached from now on (not
        from their answer: a batch past its deadline writes no row), and batches still
        waiting on its projects learn whether it wrote them."""
        for project_id, promise in calls.promised.items():
            written = project_id in project_rows
            if written:
                self._cache.remember(project_id)
            if self._promised.get(project_id) is promise:
                del self._promised[project_id]
            _tell(promise, written)

    async def _enrich(
        self,
        tasks: Sequence[EnrichmentTask],
        calls: _Calls,
        project_rows: dict[str, list[TableRow]],
    ) -> EnrichedBatch:
        now = self._clock()
        media_wanted = _media_ids_by_project(tasks)
        groups = _groups(tasks)
        done = await asyncio.gather(
            *(
                self._bounded(
                    [tasks[i] for i in group],
                    lambda g: self._group(g, calls, now, media_wanted, project_rows),
                )
                for group in groups
            ),
            return_exceptions=True,
        )
        outcomes: dict[int, Outcome] = {}
        for group, result in zip(groups, done, strict=True):
            if isinstance(result, BaseException):
                raise result  # cancellation and the like are not the tasks' fault
            outcomes.update(zip(group, result, strict=True))
        unfit, tables = _checked(project_rows)
        for project_id, error in unfit.items():
            del project_rows[project_id]
            for index, task in enumerate(tasks):
                if task.project_id == project_id and task.event_type not in XA_EVENTS:
                    outcomes[index] = EnrichmentFailed.from_error(task, error)
        return EnrichedBatch(
            [outcomes[index] for index in range(len(tasks))],
            [row for batch_rows in project_rows.values() for row in batch_rows],
            tables,
        )

    async def _bounded(
        self,
        group: list[EnrichmentTask],
        work: Callable[[list[EnrichmentTask]], Awaitable[list[Outcome]]],
    ) -> list[Outcome]:
        """``work`` on ``group`` in its turn, within the deadline counted from the turn; past
        it, or turned away by a stop, each task is a transient failure (its retry tier), and
        the batch's other tasks keep what they finished. A group that makes no call (an XA
        link, a type no handler knows) is done at once, without a turn."""
        if not _calls_api(group[0]):
            return await work(group)
        turns = self._turns
        if turns is not None and not await turns.take():
            self._progressed()
            return _stopped(group, "the stage stopped before this task's turn")
        try:
            deadline, stopping = self._deadline_s, False
            closing = turns.closing_in() if turns is not None else None
            if closing is not None and (deadline is None or closing < deadline):
                deadline, stopping = closing, True  # no group outlasts the drain
            if deadline is None:
                return await work(group)
            if deadline <= 0:  # given its turn as the stage closed: start no call
                return _stopped(group, "the stage stopped before it was enriched")
            try:
                # A timeout, not wait_for: no task of its own per group (wait_for makes one,
                # and a batch of project events is a group per task).
                async with asyncio.timeout(deadline):
                    return await work(group)
            except TimeoutError:
                if stopping:
                    return _stopped(group, "the stage stopped before it was enriched")
                reason = f"not enriched within {deadline:.0f}s of its turn (a slow API)"
                return _transient(group, "TimeoutError", reason)
        finally:
            if turns is not None:
                turns.give()
            self._progressed()

    def _progressed(self) -> None:
        if self._on_progress is not None:
            self._on_progress()

    async def _group(
        self,
        group: list[EnrichmentTask],
        calls: _Calls,
        now: datetime,
        media_wanted: dict[str, list[str]],
        project_rows: dict[str, list[TableRow]],
    ) -> list[Outcome]:
        """A task alone, or one project's file events together: those wait once for the project
        and its media, then build their rows in turn, without a coroutine each (one per task,
        with its shielded wait for the shared media call, cost more than the row)."""
        first = group[0]
        if first.event_type not in MEDIA_EVENTS:
            return [await _caught(first, self._one(first, calls, now, project_rows))]
        try:
            await self._pre_flight(first, calls, now, project_rows)
        except Exception as error:
            return [EnrichmentFailed.from_error(task, error) for task in group]
        by_id: dict[str, dict[str, Any]] = {}
        unfetched: Exception | None = None
        if media_wanted[first.project_id]:  # else no task has a media id to look up
            try:
                by_id = await self._project_media(first.project_id, calls, media_wanted)
            except Exception as error:
                unfetched = error
        outcomes: list[Outcome] = []
        for task in group:
            try:
                media_id = _required(task.media_id, "media_id", task.event_type)
                if unfetched is not None:
                    outcomes.append(EnrichmentFailed.from_error(task, unfetched))
                else:
                    outcomes.append(_media(task, media_id, by_id, now))
            except Exception as error:
                outcomes.append(EnrichmentFailed.from_error(task, error))
        return outcomes

    async def _one(
        self,
        task: EnrichmentTask,
        calls: _Calls,
        now: datetime,
        project_rows: dict[str, list[TableRow]],
    ) -> Outcome:
        """Any task but a file event (those go by project, through ``_group``)."""
        kind = task.event_type
        if kind not in KNOWN_EVENTS:
            raise EnrichmentError("UNKNOWN_EVENT_TYPE", f"no handler for event type {kind!r}")
        if kind in XA_EVENTS:
            return Enriched(task, [_xa_row(task, now)])
        await self._pre_flight(task, calls, now, project_rows)
        if kind in PROJECT_EVENTS:
            return Enriched(task, _mfn_rows(task, now))
        if kind in POLICYHOLDER_EVENTS:
            return Enriched(task, [_policyholder_row(task, now)])
        if kind in TASK_EVENTS:
            assignment_id = _required(task.task_assignment_id, "task_assignment_id", kind)
            assignment = await calls.once(
                ("task", assignment_id), lambda: self._api.get_task_assignment(assignment_id)
            )
            return Enriched(task, rows.task_rows(assignment, task.project_id, task.event_id, now))
        return await self._video(task, calls, now)

    async def _pre_flight(
        self,
        task: EnrichmentTask,
        calls: _Calls,
        now: datetime,
        project_rows: dict[str, list[TableRow]],
    ) -> None:
        """Make sure the project row exists: fetched once per batch unless recently written.

        Project events always fetch (they are about the project itself); other events only
        when no batch wrote the project recently, and none under way is fetching it (then they
        wait for that batch, and fetch for themselves only if it wrote no row).
        """
        project_id = task.project_id
        key = ("project", project_id)
        if task.event_type not in PROJECT_EVENTS:
            earlier = None if calls.made(key) else self._promised.get(project_id)
            if earlier is not None:
                if earlier.rows is not None and not earlier.written.done():
                    if _fit(earlier.rows):
                        return  # built, and fit: the earlier batch writes it
                else:
                    earlier.awaited = True
                    if await asyncio.shield(earlier.written):
                        return  # the earlier batch wrote it; if not, this one fetches itself
            elif self._cache.written(project_id):
                return
        promise = calls.promised.get(project_id)
        if promise is None and not calls.made(key):
            promise = _Promise(asyncio.get_running_loop().create_future())
            calls.promised[project_id] = promise
            self._promised.setdefault(project_id, promise)
        try:
            response = await calls.once(key, lambda: self._api.get_project(project_id))
            if project_id not in project_rows:
                project = rows.project_row(response, task.event_id, now)
                contacts = rows.contact_rows(response, project_id, task.event_id, now)
                project_rows[project_id] = [
                    (PROJECTS.name, project),
                    *((CONTACTS.name, contact) for contact in contacts),
                ]
        except BaseException:
            # No row from this batch (no answer, or one no row can be built from): a batch
            # waiting for it fetches for itself now, not once this whole batch is done.
            _tell(promise, False)
            raise
        # The row is this batch's now (project rows belong to the batch, not to a task, and
        # leave with it whatever becomes of its tasks); a batch waiting for it need not wait
        # for the rest of this one, once the rows are known to fit their tables (found unfit at
        # the batch's end, they are not written). Checked only then: one conversion per
        # project is what ``_checked`` spares. A batch that comes later checks them itself.
        if promise is not None:
            promise.rows = project_rows[project_id]
            if promise.awaited:
                _tell(promise, _fit(promise.rows))

    def _project_media(
        self, project_id: str, calls: _Calls, wanted: dict[str, list[str]]
    ) -> Awaitable[dict[str, dict[str, Any]]]:
        """The project's media by id, fetched once per batch: only the batch's ids when they are
        few (one selective query, asked again as the whole list if the API refuses one of its
        ids), else the whole list."""
        ids = wanted[project_id]
        selective = ids if len(ids) <= SELECTIVE_MEDIA_LIMIT else None
        return calls.once(("media", project_id), lambda: self._media_by_id(project_id, selective))

    async def _media_by_id(
        self, project_id: str, selective: list[str] | None
    ) -> dict[str, dict[str, Any]]:
        """The project's media by id, indexed once per call rather than scanned once per event."""
        try:
            items = await self._api.get_media(project_id, selective)
        except ClaimxError as error:  # the API's errors carry their HTTP status
            if selective is None or len(selective) < 2 or getattr(error, "status", None) != 400:
                raise
            # One id the API refuses (a 400 for the query; an unknown project is a 404) must
            # not cost the others: the whole list has theirs, and the refused one fails alone
            # as not found.
            items = await self._api.get_media(project_id)
        by_id: dict[str, dict[str, Any]] = {}
        for item in items:
            by_id.setdefault(str(item.get("mediaID", item.get("mediaId"))), item)
        return by_id

    async def _video(self, task: EnrichmentTask, calls: _Calls, now: datetime) -> Outcome:
        found = await calls.once(
            ("video", task.project_id),
            lambda: self._api.get_video_collaboration(task.project_id),
        )
        if found is None:
            raise EnrichmentError(
                "VIDEO_NOT_FOUND", f"no video collaboration for project {task.project_id}"
            )
        row = rows.video_row(found, task.project_id, task.event_id, now)
        return Enriched(task, [(VIDEO_COLLAB.name, row)])


def _tell(promise: _Promise | None, written: bool) -> None:
    """Tell the batches waiting for a project whether this batch writes its row (once)."""
    if promise is not None and not promise.written.done():
        promise.written.set_result(written)


def _fit(project: list[TableRow]) -> bool:
    """Whether a project's rows fit their tables: ``_checked`` of that project alone, as the
    batch's end will check it."""
    unfit, _ = _checked({"": project})
    return not unfit


def _media(
    task: EnrichmentTask, media_id: str, by_id: dict[str, dict[str, Any]], now: datetime
) -> Enriched:
    """A file event's media row and download task, from its project's media: plain code, not
    a coroutine, since everything it needs was fetched once for the whole group."""
    item = by_id.get(media_id)
    if item is None:
        raise EnrichmentError(
            "MEDIA_NOT_FOUND", f"media {media_id} is not in project {task.project_id}"
        )
    row = rows.media_row(item, task.project_id, task.event_id, now)
    if not row.get("full_download_link"):
        raise EnrichmentError("NO_DOWNLOAD_LINK", f"media {media_id} has no download link")
    download = NewDownloadTask(
        media_id=media_id,
        project_id=task.project_id,
        download_url=row["full_download_link"],
        file_name=row.get("media_name") or "",
        file_type=row.get("media_type") or "",
        expires_at=row.get("expires_at"),
        source_event_id=task.event_id,
    )
    _fits(download)
    return Enriched(task, [(MEDIA.name, row)], [download])


_ROOM_CHARS = (DOWNLOAD_TASK_MAX_BYTES - 1024) // 6
"""Text that fits a task whatever it holds: a character takes at most 6 bytes of JSON (a control
character escaped), and the keys, counts and expiry well under 1 KiB."""


def _fits(download: NewDownloadTask) -> None:
    """Refuse a download task the download stage would refuse (``DOWNLOAD_TASK_MAX_BYTES``).

    A link is the API's text, bounded only by the answer's size: one past the broker's
    ``max.message.bytes`` (1 MB by default) failed the send at the epoch's snapshot, and the
    replay asked the API again and failed again, for good. Usual tasks are sized by their
    text's length; only a long one is written to be measured."""
    chars = (
        sum(len(text) for text in (download.download_url, download.file_name, download.file_type))
        + len(download.media_id)
        + len(download.project_id)
        + len(download.source_event_id)
    )
    if chars <= _ROOM_CHARS:
        return
    try:
        size = len(download.to_json())
    except ValueError:  # a lone surrogate: no JSON holds it
        raise EnrichmentError(
            "DOWNLOAD_TASK_UNENCODABLE",
            f"media {download.media_id}: its download task holds text that is not UTF-8",
        ) from None
    if size > DOWNLOAD_TASK_MAX_BYTES:
        raise EnrichmentError(
            "DOWNLOAD_TASK_TOO_LARGE",
            f"media {download.media_id}: its download task is {size} bytes, over the limit "
            f"of {DOWNLOAD_TASK_MAX_BYTES}",
        )


def _media_ids_by_project(tasks: Iterable[EnrichmentTask]) -> dict[str, list[str]]:
    """Each project's distinct media ids, in order (a dict per project, so no list scan each)."""
    wanted: dict[str, dict[str, None]] = defaultdict(dict)
    for task in tasks:
        if task.event_type in MEDIA_EVENTS and task.media_id:
            wanted[task.project_id][task.media_id] = None
    return defaultdict(list, {project: list(ids) for project, ids in wanted.items()})


def _checked(
    project_rows: dict[str, list[TableRow]],
) -> tuple[dict[str, rows.PayloadError], dict[str, pa.Table]]:
    """The projects whose rows do not fit their tables, and why; and the rows of the others,
    converted, by table.

    Rows built once per project and batch must fit before any task relies on them: one refused
    at the commit would dead-letter whichever message it travelled with, after that message's
    own rows and downloads had landed. So a project whose rows do not fit fails every task of
    it that needed its answer (all but XA links). Checked for the whole batch at once, and
    bisected only when something does not fit: one conversion per project cost a third of the
    stage's CPU when every event is a project of its own. The tables are kept for the write,
    which would otherwise convert the same rows again.
    """
    unfit: dict[str, rows.PayloadError] = {}
    converted: list[tuple[TableSpec, pa.Table, list[str]]] = []
    for spec in (PROJECTS, CONTACTS):
        built: list[tuple[str, list[dict[str, Any]]]] = [
            (project_id, [row for table, row in table_rows if table == spec.name])
            for project_id, table_rows in project_rows.items()
            if project_id not in unfit
        ]
        table, kept, refused = convert(built, partial(_arrow, spec))
        for (project_id, _), error in refused:
            unfit[project_id] = rows.PayloadError(str(error))
        if table is not None:
            # Each row's project, so that a project found unfit by a later table can go.
            owners = [project_id for project_id, project in kept for _ in project]
            converted.append((spec, table, owners))
    tables: dict[str, pa.Table] = {}
    for spec, table, owners in converted:
        if unfit:
            table = table.filter(pa.array([owner not in unfit for owner in owners], pa.bool_()))
        if table.num_rows:
            tables[spec.name] = table
    return unfit, tables


def _arrow(spec: TableSpec, part: Sequence[tuple[str, list[dict[str, Any]]]]) -> pa.Table:
    return spec.to_arrow([row for _, project in part for row in project])


def _groups(tasks: Sequence[EnrichmentTask]) -> list[list[int]]:
    """Task positions to enrich together, in order of first position: each project's file
    events as one group, every other task alone."""
    groups: list[list[int]] = []
    files: dict[str, list[int]] = {}
    for index, task in enumerate(tasks):
        if task.event_type not in MEDIA_EVENTS:
            groups.append([index])
        elif task.project_id in files:
            files[task.project_id].append(index)
        else:
            files[task.project_id] = [index]
            groups.append(files[task.project_id])
    return groups


def _calls_api(task: EnrichmentTask) -> bool:
    """Whether the task's group calls the API (an XA link, or a type no handler knows, is
    done, or failed, at once)."""
    return task.event_type in KNOWN_EVENTS and task.event_type not in XA_EVENTS


def _transient(group: list[EnrichmentTask], error_class: str, reason: str) -> list[Outcome]:
    return [EnrichmentFailed(task, ErrorCategory.TRANSIENT, error_class, reason) for task in group]


def _stopped(group: list[EnrichmentTask], reason: str) -> list[Outcome]:
    """Tasks a stopping stage did not get to: back to their tier, no attempt spent."""
    return [
        EnrichmentFailed(task, ErrorCategory.TRANSIENT, "Stopping", reason, spends_attempt=False)
        for task in group
    ]


async def _caught(task: EnrichmentTask, work: Awaitable[Outcome]) -> Outcome:
    """The task's outcome, its failure included; cancellation and the like are passed on."""
    try:
        return await work
    except Exception as error:
        return EnrichmentFailed.from_error(task, error)


def _required(value: str | None, name: str, event_type: str) -> str:
    if not value:
        raise EnrichmentError("MISSING_FIELD", f"{event_type} event without {name}")
    return value


def _mfn_rows(task: EnrichmentTask, now: datetime) -> list[TableRow]:
    if task.event_type != "PROJECT_MFN_ADDED":
        return []
    mfn = _required(task.master_file_name, "master_file_name", task.event_type)
    return [(PROJECTS.name, _partial_project(task, now, master_file_name=mfn))]


def _policyholder_row(task: EnrichmentTask, now: datetime) -> TableRow:
    column = f"policyholder_{POLICYHOLDER_EVENTS[task.event_type]}_at"
    return (PROJECTS.name, _partial_project(task, now, **{column: task.ingested_at}))


def _xa_row(task: EnrichmentTask, now: datetime) -> TableRow:
    return (
        PROJECTS.name,
        _partial_project(task, now, xa_autolink_fail=True, xa_autolink_fail_at=task.ingested_at),
    )


def _partial_project(task: EnrichmentTask, now: datetime, **values: Any) -> dict[str, Any]:
    """Only the columns an event sets; the merge keeps every other column as it is."""
    return {"project_id": task.project_id, **values, **rows.lineage(task.event_id, now)}
