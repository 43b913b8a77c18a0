"""The CPU side of ingest: parse what was fetched and store it, in worker processes.

The main process only fetches (an event loop full of sockets); every payload it retrieves
crosses to a worker as bytes, and the worker parses, normalizes and stores a whole batch of
sources in one transaction, identity placement included. Only a few counts per source come
back. So parsed items never cross a process boundary (pickling them cost more than parsing),
and the database work of one batch overlaps with the parsing of the next on the other core.

On SQLite, writers take turns: within a process pool by a shared lock (it wakes the next
writer at once, where SQLite's busy handler would sleep), across processes by the database's
own lock (`Store.apply`). On PostgreSQL they write side by side, each locking only what its
items could match (hub.store.writelocks).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Sequence

from hub import plugins
from hub.errors import ConnectorError
from hub.models import Parsed, Retrieved, SourceRef
from hub.moderation import Rules
from hub.normalize import normalize_parsed
from hub.store import FetchOutcome, Store

if TYPE_CHECKING:  # the plugin contract, for the annotation only: the core loads connectors by name
    from connectors.base import ConnectorOptions

log = logging.getLogger("hub.ingest")


@dataclass(frozen=True)
class Fetched:
    """A payload the main process retrieved, on its way to be parsed and stored."""

    source_id: str
    connector: str
    options: ConnectorOptions
    ref: SourceRef
    got: Retrieved
    at: datetime
    pushed: bool = False  # sent by the source itself (WebSub): maybe partial; no caching state


@dataclass(frozen=True)
class Stored:
    """What ingesting one source did: all the main process needs to report and plan."""

    source_id: str
    status: Literal["ok", "not_modified", "failed"]
    error: str | None = None
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    gone: int = 0
    warnings: tuple[str, ...] = ()
    fresh_until: datetime | None = None
    ttl_seconds: int | None = None
    websub: tuple[str, str] | None = None


def ingest(store: Store, work: Sequence[Fetched | FetchOutcome], turn: AbstractContextManager = nullcontext()
           ) -> list[Stored]:
    """Parse every `Fetched` and store the whole batch in one transaction; outcomes that
    are already final (failures, 304s) are recorded in the same transaction. Only the
    write itself holds `turn` (the pool's write lock): parsing and planning do not."""
    outcomes = [parse_fetched(w) if isinstance(w, Fetched) else w for w in work]
    try:
        plan = store.plan(outcomes)
        with turn:
            results = {r.source_id: r for r in store.write(plan)}
    except Exception as exc:  # nothing of this batch was committed; say so to each source
        log.exception("writing %d sources failed", len(outcomes))
        return [Stored(o.source_id, "failed", f"could not be stored: database write failed: {exc}")
                for o in outcomes]
    stored = []
    for o in outcomes:
        r, p = results.get(o.source_id), o.parsed
        stored.append(Stored(
            o.source_id, o.status, o.error, fresh_until=o.fresh_until,
            new=len(r.new) if r else 0, changed=len(r.changed) if r else 0,
            unchanged=r.unchanged if r else 0, gone=len(r.gone) if r else 0,
            warnings=p.warnings if p else (), ttl_seconds=p.ttl_seconds if p else None,
            websub=p.websub if p else None))
    return stored


def parse_fetched(f: Fetched) -> FetchOutcome:
    """Parse one payload; every failure becomes a recorded outcome."""
    try:
        parsed = parse_payload(f.connector, f.options, f.ref, f.got)
    except Exception as exc:
        return connector_failed(f.source_id, f.connector, f.at, exc)
    if f.pushed:  # a push may carry only what changed, so it cannot tell deletions,
        # and it leaves the feed's caching state (ETag) as it was
        return FetchOutcome(f.source_id, f.at, "ok", parsed=replace(parsed, complete=False))
    return FetchOutcome(f.source_id, f.at, "ok", parsed=parsed, state=f.got.state, fresh_until=f.got.fresh_until)


def parse_payload(connector: str, options: Any, ref: SourceRef, got: Retrieved) -> Parsed:
    """A connector's pure parse step, normalized (issue 4: language, links, events in
    prose), with content hashes computed while the items are at hand."""
    parsed = plugins.connector(connector)().parse(options, ref, got)
    parsed = normalize_parsed(parsed, ref.timezone)
    for item in parsed.items:
        item.content_hash
    return parsed


def connector_failed(source_id: str, connector: str, at: datetime, exc: Exception) -> FetchOutcome:
    """The outcome to record when a connector's retrieve or parse raised `exc`. A
    ConnectorError says what is wrong with the source; anything else is a bug in the
    connector, which must not take the other sources down."""
    if isinstance(exc, ConnectorError):
        return failed(source_id, at, str(exc), exc.code, getattr(exc, "retry_after", None))
    log.error("connector %s crashed on source %s", connector, source_id, exc_info=exc)
    return failed(source_id, at, f"unexpected error in the {connector} connector: {exc!r} "
                  "(this is a bug; please report it with the log)", "connector_crashed")


def failed(source_id: str, at: datetime, message: str, code: str, retry_after: float | None = None) -> FetchOutcome:
    fresh_until = at + timedelta(seconds=retry_after) if retry_after else None
    return FetchOutcome(source_id, at, "failed", error=message, error_code=code, fresh_until=fresh_until)


# --- in a worker process ---------------------------------------------------------------------

_turn: Any = None  # the pool's write lock (a multiprocessing lock), set by `start_worker`
_stores: dict[tuple[str, str | None], Store] = {}  # by (url, schema)
# How often a worker looks whether its parent is still there: a worker outlives a killed
# parent by at most this long.
PARENT_CHECK_SECONDS = 0.25


def start_worker(turn: Any, parent: int | None = None) -> None:
    """Pool initializer: keep the write lock and import every connector now, so the first
    real batch does not pay for it.

    A worker takes its orders from the process that started it (`parent`, its pid) and
    from nobody else. Ctrl-C reaches every process of the terminal's process group, but it
    is the parent's to handle (it stops taking work, lets the batches under way finish and
    then shuts the pool down), so a worker ignores SIGINT. And a worker ends by itself soon
    after its parent is gone, however the parent ended: SIGKILL and crashes included, which
    no handler of the parent can see. Without this a worker waited for work forever: it
    reads its tasks from a pipe whose writing end it holds itself, so it never sees the end
    of it (nor, for as long as a worker lives, does multiprocessing's resource tracker,
    whose pipe every worker holds too)."""
    global _turn
    _turn = turn
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by its parent until now
    if parent is not None:
        threading.Thread(target=_exit_without, args=(parent,), name="hub-parent-watch", daemon=True).start()
    for name in plugins.names("hub.connectors"):
        plugins.connector(name)
    gc.freeze()  # what is imported lives as long as the worker: no need to scan it again


def ingest_in_worker(url: str, rules: Rules, work: Sequence[Fetched | FetchOutcome],
                     schema: str | None = None) -> list[Stored]:
    """`ingest` in a pool worker: parse and plan without the lock (in parallel with the
    other workers), write with it, then checkpoint the WAL without it. `schema`: the
    town's PostgreSQL schema (issue 18), without which the rows would land outside it."""
    store = _stores.get((url, schema))
    if store is None:
        # The main process migrated it. Checkpoints happen below, out of the other's way.
        store = _stores[(url, schema)] = Store(url, migrate=False, autocheckpoint=False, schema=schema)
    store.records.configure(rules)
    # SQLite has one writer at a time: the turn wakes the next at once. PostgreSQL's writers
    # lock only what their items could match (hub.store.writelocks): no turn to take.
    stored = ingest(store, work, _turn if store.dialect == "sqlite" else nullcontext())
    store.checkpoint()
    return stored


def _exit_without(parent: int) -> None:
    """End this worker once `parent` is gone (its parent process id changes: the orphan is
    adopted by init or a subreaper). Polling works on any POSIX system and for any way the
    parent ends; Linux's PR_SET_PDEATHSIG would fire when the parent's *thread* that
    started the worker ends, which is not the same thing. A batch being written is not
    committed: its transaction rolls back, and the next run fetches those sources again."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    try:
        log.warning("hub worker %d: the hub process %d is gone; exiting (a batch not yet committed is rolled back)",
                    os.getpid(), parent)
    except Exception:  # stderr may be gone with the parent; exit anyway
        pass
    os._exit(1)
