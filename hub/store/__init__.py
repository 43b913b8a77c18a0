"""The store: the only owner of database sessions.

SQLite by default (WAL, `synchronous=FULL`, busy timeout), PostgreSQL by URL. Schema changes
are alembic migrations, applied on open. Table classes are SQLModel; the hot paths (item
upserts) use SQLAlchemy Core on the same tables, because the ORM is about 5x slower for
bulk writes (see ../shared/reference/ingest-performance.md).

The store decides what is new, changed and gone: `apply` takes what connectors read and
returns, per source, the keys that were inserted, changed and deleted.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import (Boolean, Engine, and_, bindparam, case, create_engine, event, func, literal_column, or_, select,
                        update)
from sqlalchemy.engine import Connection

from hub.errors import HOLDING, StoreError
from hub.models import Event, FetchState, Item, Kind, Media, Offer, Parsed
from hub.store.bulk import placeholders, sqlite_datetime, to_json
from hub.store.holds import HOLDS
import hub.store.writelocks as writelocks
from hub.store.tokens import TOKEN_CHECKS, check_from
from hub.store.records import Records
from hub.store.tables import ItemRow, SourceRow, UTCDateTime

ITEMS = ItemRow.__table__
SOURCES = SourceRow.__table__
MIGRATIONS = Path(__file__).parent / "migrations"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class IngestPlan:
    """What `Store.plan` worked out before the write lock, for `Store.write` to write."""

    outcomes: tuple[FetchOutcome, ...]
    parsed: list[FetchOutcome]  # those with items
    rows: dict[str, dict[str, tuple]]  # source id -> external id -> row of a new item
    prepared: dict[tuple[str, str], Any]  # item key -> what placing it needs (hub.store.placement)


@dataclass(frozen=True)
class SourceSpec:
    """A configured source, as the store needs to know it."""

    id: str
    merchant_id: str
    connector: str
    # A hash of the source's options (hub.config.options_fingerprint): when it changes, a
    # source held back for a person to act on (an invalid token) is tried again.
    fingerprint: str | None = None


@dataclass(frozen=True)
class FetchOutcome:
    """What happened when one source was fetched; `Store.apply` records it."""

    source_id: str
    at: datetime
    status: Literal["ok", "not_modified", "failed"]
    parsed: Parsed | None = None
    state: FetchState | None = None
    error: str | None = None
    error_code: str | None = None
    fresh_until: datetime | None = None


@dataclass
class UpsertResult:
    source_id: str
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    unchanged: int = 0


BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for another one
# Connections one process keeps and may add; a reader holds one at a time (issue 14: 50
# clients at once). Beyond them a request waits for one (up to a minute) rather
# than failing: web requests run in a thread pool of 40, and each query takes milliseconds.
POOL = {"pool_size": 10, "max_overflow": 10, "pool_timeout": 60, "pool_use_lifo": True}
# A process of a deployment may serve hundreds of towns, each with a pool of its own: by
# default it keeps two idle connections per town, not ten, and opens up to 20 in a burst. A
# pool closes each connection given back beyond what it keeps, and a PostgreSQL connection
# is a server process that starts cold, so a town busier than that opens and closes
# connections all the time: a `hub worker` keeps more (schedules.tasks.TownContexts).
TOWN_KEEPS = 2
TOWN_CONNECTIONS = 20


@dataclass(frozen=True)
class StoredItem:
    """An item as residents and the project manager see it, with its store metadata."""

    id: int
    item: Item
    sort_at: datetime | None
    first_seen_at: datetime | None
    changed_at: datetime | None
    deleted_at: datetime | None


@dataclass(frozen=True)
class SourceStatus:
    id: str
    merchant_id: str
    connector: str
    status: str
    last_fetch_at: datetime | None
    last_ok_at: datetime | None
    last_error: str | None
    error_count: int
    warnings: list[str]
    next_fetch_at: datetime | None
    items: int | None  # its live items; None when not asked for (`source_statuses`)
    # The error code that holds the source back until its options change (a person must act,
    # e.g. the merchant reconnect: `last_error` says what to do); None when it is not held.
    held: str | None = None
    held_at: datetime | None = None
    # What the last check of the source's access token found worth a warning (it runs out
    # within 14 days, lacks a permission; issue 12). Never marks the source as failing.
    token_warnings: list[str] = field(default_factory=list)
    token_checked_at: datetime | None = None


class Store:
    def __init__(self, url: str, *, base_dir: Path | None = None, migrate: bool = True,
                 autocheckpoint: bool = True, schema: str | None = None, keep: int = TOWN_KEEPS) -> None:
        """`autocheckpoint=False` (SQLite): commits never copy the WAL into the database
        file; the owner calls `checkpoint` when it suits it (an ingest worker does so
        after giving up its turn to write, so the other worker is not kept waiting).
        `schema` (PostgreSQL, issue 18): a town's schema; every connection of this store
        works in it (`search_path`), so the store's SQL needs no schema names. `keep`: the
        idle connections a town's store keeps (see TOWN_KEEPS)."""
        self.url = _resolve_sqlite_path(url, base_dir)
        self.schema = schema
        if schema is not None and not self.url.startswith("postgresql"):
            raise StoreError(f"a schema ({schema}) needs a PostgreSQL store, not {self.url!r}",
                             hint="on SQLite each town has a database file of its own (hub.towns)")
        if schema is not None and not _SCHEMA.match(schema):
            raise StoreError(f"'{schema}' is not a usable schema name", hint="lowercase letters, digits and '_'")
        self.engine = _make_engine(self.url, autocheckpoint, schema, keep)
        self.on_close: list[Callable[[], None]] = []  # what writes the last of its buffers first (hub.stats)
        # Canonical records, one per real thing, kept in step with the items (issue 4).
        self.records = Records(self.engine, lambda row: _from_row(row).item)
        if migrate:
            self.migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        from alembic import command  # only the process that opens the store first needs it
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["schema"] = self.schema  # alembic's version table lives in the town's schema
        try:
            with _MIGRATING, self.engine.begin() as conn:
                if self.schema is not None:
                    conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "heads")  # parallel branches of migrations are fine
        except Exception as exc:
            raise StoreError(f"cannot prepare the database at {self.engine.url!r}: {exc}",
                             hint="check store.url in the config and that the database is reachable") from exc
        self.records.backfill()  # items stored before records existed get theirs

    def close(self) -> None:
        for write_the_rest in self.on_close:
            write_the_rest()
        self.on_close.clear()
        self.engine.dispose()

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, as far as readers allow
        (SQLite, PASSIVE: waits for nobody). Nothing to do on PostgreSQL."""
        if self.dialect == "sqlite":
            with self.engine.connect() as conn:
                conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # --- sources ---------------------------------------------------------------------

    def sync_sources(self, specs: Iterable[SourceSpec]) -> None:
        """Make sure every configured source has a row (its state survives restarts). A
        source held back (an invalid token) whose options changed since (its fingerprint)
        is let go: it is due again at once and its failures are forgotten."""
        specs = list(specs)
        with writelocks.write_transaction(self.engine) as conn:
            known = {r.id: r for r in conn.execute(select(SOURCES.c.id, SOURCES.c.merchant_id, SOURCES.c.connector))}
            for spec in specs:
                row = known.get(spec.id)
                if row is None:
                    conn.execute(SOURCES.insert().values(id=spec.id, merchant_id=spec.merchant_id,
                                                         connector=spec.connector, status="new", error_count=0))
                elif (row.merchant_id, row.connector) != (spec.merchant_id, spec.connector):
                    conn.execute(update(SOURCES).where(SOURCES.c.id == spec.id).values(
                        merchant_id=spec.merchant_id, connector=spec.connector))
            self._sync_fingerprints(conn, [s for s in specs if s.fingerprint is not None])

    def _sync_fingerprints(self, conn: Connection, specs: list[SourceSpec]) -> None:
        known = {r.source_id: r for r in conn.execute(select(HOLDS))}
        fresh = [{"source_id": s.id, "fingerprint": s.fingerprint} for s in specs if s.id not in known]
        changed = [s for s in specs if s.id in known and known[s.id].fingerprint != s.fingerprint]
        if fresh:  # another process starting at the same moment may have added them: fine
            conn.execute(_insert(self.dialect, HOLDS).on_conflict_do_nothing(index_elements=["source_id"]), fresh)
        for spec in changed:
            conn.execute(update(HOLDS).where(HOLDS.c.source_id == spec.id)
                         .values(fingerprint=spec.fingerprint, hold=None, held_at=None))
        released = [s.id for s in changed if known[s.id].hold is not None]
        if released:  # due at once (a running scheduler sets it when it next prepares)
            conn.execute(update(SOURCES).where(SOURCES.c.id.in_(released))
                         .values(error_count=0, next_fetch_at=None, fresh_until=None))

    def fetch_states(self, source_ids: Sequence[str]) -> dict[str, FetchState]:
        """Each source's caching state; `hold` is its last error if it is held back."""
        query = (select(SOURCES.c.id, SOURCES.c.etag, SOURCES.c.last_modified, SOURCES.c.cursor,
                        case((HOLDS.c.hold.is_not(None), SOURCES.c.last_error)).label("hold"))
                 .select_from(SOURCES.outerjoin(HOLDS, HOLDS.c.source_id == SOURCES.c.id))
                 .where(SOURCES.c.id.in_(list(source_ids))))
        with self.engine.connect() as conn:
            return {r.id: FetchState(r.etag, r.last_modified, r.cursor, r.hold or None)
                    for r in conn.execute(query)}

    def source_statuses(self, *, item_counts: bool = True) -> list[SourceStatus]:
        """Every source's state. `item_counts=False`: without counting each source's items,
        which reads every item of the store (~0.25 s at 300,000): for what is asked often
        (the cockpit's overview, /healthz) and needs no counts."""
        # A token check applies while the source's options are those it was made with.
        checks = TOKEN_CHECKS.outerjoin(HOLDS, HOLDS.c.source_id == TOKEN_CHECKS.c.source_id)
        current = (select(TOKEN_CHECKS.c.source_id, TOKEN_CHECKS.c.result).select_from(checks)
                   .where(TOKEN_CHECKS.c.fingerprint.is_not_distinct_from(HOLDS.c.fingerprint)).subquery())
        joined = (SOURCES.outerjoin(HOLDS, HOLDS.c.source_id == SOURCES.c.id)
                  .outerjoin(current, current.c.source_id == SOURCES.c.id))
        items = literal_column("NULL")
        if item_counts:
            counts = (select(ITEMS.c.source_id, func.count().label("n")).where(ITEMS.c.deleted_at.is_(None))
                      .group_by(ITEMS.c.source_id).subquery())
            joined, items = joined.outerjoin(counts, counts.c.source_id == SOURCES.c.id), func.coalesce(counts.c.n, 0)
        query = (select(SOURCES, items.label("items"), HOLDS.c.hold, HOLDS.c.held_at,
                        current.c.result.label("token_check"))
                 .select_from(joined).order_by(SOURCES.c.merchant_id, SOURCES.c.id))
        now = utcnow()
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        statuses = []
        for r in rows:
            check = check_from(r.token_check)
            statuses.append(SourceStatus(
                id=r.id, merchant_id=r.merchant_id, connector=r.connector, status=r.status,
                last_fetch_at=r.last_fetch_at, last_ok_at=r.last_ok_at, last_error=r.last_error,
                error_count=r.error_count, warnings=json.loads(r.warnings or "[]"), next_fetch_at=r.next_fetch_at,
                items=r.items, held=r.hold, held_at=r.held_at,
                token_warnings=check.warnings(now) if check else [],
                token_checked_at=check.checked_at if check else None))
        return statuses

    # --- writing what connectors read ------------------------------------------------

    def apply(self, outcomes: Sequence[FetchOutcome]) -> list[UpsertResult]:
        """Record a batch of fetch outcomes in one transaction. For each successful parse,
        returns what was new, changed and gone."""
        return self.write(self.plan(outcomes))

    def plan(self, outcomes: Sequence[FetchOutcome]) -> IngestPlan:
        """The part of `apply` that needs no write lock: what is new or changed (a source's
        items have one writer at a time: leases; `write` judges again under the lock), the
        rows of new items and what placing them needs (identity fingerprints). Done before
        the lock, so that writers in other processes wait only for the database, not for
        this one's Python; an ingest worker does it before its turn to write (hub.ingest)."""
        parsed = [o for o in outcomes if o.status == "ok" and o.parsed is not None]
        with self.engine.connect() as conn:
            before = _known_items(conn, parsed)
            fresh = {o.source_id: [i for i in o.parsed.items if _differs(before[o.source_id].get(i.external_id), i)]
                     for o in parsed}
            prepared = self.records.prepare(conn, [(i, o.at) for o in parsed for i in fresh[o.source_id]])
        rows = {o.source_id: _insert_rows(o, [i for i in fresh[o.source_id] if i.external_id not in before[o.source_id]],
                                          self.dialect) for o in parsed}
        return IngestPlan(tuple(outcomes), parsed, rows, prepared)

    def write(self, plan: IngestPlan) -> list[UpsertResult]:
        """Write what `plan` prepared, in one transaction that holds the write locks (SQLite:
        the database's; PostgreSQL: those of what the batch can match, hub.store.writelocks).
        A transaction PostgreSQL rolled back to break a deadlock is tried again: `plan` stays
        valid (a source has one writer at a time), and the write reads again what it needs."""
        what = f"ingest write of {', '.join(sorted({o.source_id for o in plan.outcomes})[:3]) or 'nothing'}"
        parts = _parts(plan, writelocks.MOST_LOCKS) if self.dialect == "postgresql" else [plan]
        return [result for part in parts for result in writelocks.retrying(lambda part=part: self._write(part), what)]

    def _write(self, plan: IngestPlan) -> list[UpsertResult]:
        results = []
        with self._ingest_transaction() as conn:
            locks = None
            if self.dialect == "postgresql":
                locks = writelocks.WriteLocks(conn, self.schema)
                locks.take_merchants(plan.parsed)
            known = _known_items(conn, plan.parsed)
            if locks is not None:
                locks.take_scopes(plan.parsed, known, plan.prepared, self.records.rules.timezone)
            inserts: list[tuple] = []  # the batch's new items, in one statement
            for outcome in plan.parsed:
                results.append(self._upsert(conn, outcome, known.get(outcome.source_id, {}),
                                            plan.rows[outcome.source_id], inserts))
            if inserts:
                _insert_new(conn, inserts)
            self._record_sources(conn, plan.outcomes)  # before placement, whose end is a turn (hub.store.version)
            self.records.after_upsert(conn, plan.parsed, results, plan.prepared)  # issue 4: identity, same transaction
        return results

    @contextmanager
    def _ingest_transaction(self) -> Iterator[Connection]:
        """A write transaction of ingest. SQLite: it holds the database's write lock from
        its start (BEGIN IMMEDIATE: a deferred transaction that read first could not upgrade
        to a write later), so writers in several processes take turns and what one reads
        (known items, identity candidates) is still true when it writes. PostgreSQL: a plain
        transaction; `write` takes the finer advisory locks (hub.store.writelocks).

        On SQLite, an ingest commit is not fsynced (WAL, synchronous=NORMAL): a power cut
        may roll back the last few, and the next fetch reads the same entries again (the
        feed's ETag rolls back with them). The next FULL commit (a delivery mark,
        anything else) makes every earlier one durable, so nothing already published can
        be lost this way."""
        with self.engine.connect() as conn:
            conn.execution_options(begin="IMMEDIATE")
            sqlite = self.dialect == "sqlite"
            if sqlite:  # outside a transaction: the driver's own connection
                conn.connection.driver_connection.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.begin():
                    yield conn
            finally:
                if sqlite:
                    conn.connection.driver_connection.execute("PRAGMA synchronous=FULL")

    def _upsert(self, conn: Connection, outcome: FetchOutcome, existing: dict[str, Any],
                rows: dict[str, tuple], inserts: list[tuple]) -> UpsertResult:
        """Update and tombstone one source's items; its new items' rows go to `inserts`."""
        assert outcome.parsed is not None
        result = UpsertResult(outcome.source_id)
        updates = []
        for item in outcome.parsed.items:
            row = existing.get(item.external_id)
            digest = item.content_hash
            if row is None:
                inserts.append(rows.get(item.external_id) or _insert_rows(outcome, [item], self.dialect)[item.external_id])
                result.new.append(item.external_id)
            elif row.content_hash == digest and not (outcome.parsed.revive and row.deleted_at is not None):
                result.unchanged += 1  # a tombstoned item that reappears unchanged stays gone (a stale copy)
            else:
                values = _to_row(item, digest, outcome.at)
                del values["first_seen_at"]
                values.update(row_id=row.id, deleted_at=None)
                updates.append(values)
                result.changed.append(item.external_id)
        if updates:
            conn.execute(update(ITEMS).where(ITEMS.c.id == bindparam("row_id")), updates)
        if outcome.parsed.complete:
            result.gone = self._tombstone_missing(conn, outcome, existing)
        if outcome.parsed.gone:
            result.gone += self._tombstone(conn, outcome, [existing[ext] for ext in outcome.parsed.gone
                                                           if ext in existing and ext not in result.gone])
        return result

    def _tombstone_missing(self, conn: Connection, outcome: FetchOutcome, existing: dict) -> list[str]:
        """An entry missing from inside the feed's current window was deleted by the
        merchant; one older than everything the feed still carries merely slid out of
        the window and stays. Entries without dates are never judged."""
        assert outcome.parsed is not None
        dates = [i.published for i in outcome.parsed.items if i.published]
        if not dates:
            return []  # an empty payload is more likely broken than a source that deleted everything
        window_start = min(dates)
        present = {i.external_id for i in outcome.parsed.items}
        return self._tombstone(conn, outcome, [r for ext, r in existing.items() if ext not in present
                                               and r.published and r.published >= window_start])

    def _tombstone(self, conn: Connection, outcome: FetchOutcome, rows: list[Any]) -> list[str]:
        gone = [r for r in rows if r.deleted_at is None]
        if gone:
            conn.execute(update(ITEMS).where(ITEMS.c.id.in_([r.id for r in gone]))
                         .values(deleted_at=outcome.at, changed_at=outcome.at))
        return [r.external_id for r in gone]

    def _record_sources(self, conn: Connection, outcomes: Sequence[FetchOutcome]) -> None:
        """Health and caching state of every source in the batch, in one executemany; a
        failure no retry can fix holds its source back, a success lets it go."""
        conn.execute(_RECORD_SOURCE, [_source_values(o) for o in outcomes])
        held = [o for o in outcomes if o.status == "failed" and o.error_code in HOLDING]
        for o in held:
            insert = _insert(self.dialect, HOLDS).values(source_id=o.source_id, hold=o.error_code, held_at=o.at)
            conn.execute(insert.on_conflict_do_update(index_elements=["source_id"],
                                                      set_={"hold": o.error_code, "held_at": o.at}))
        # A success lets a held source go (a connector that tried it anyway, and it worked).
        ok = [o.source_id for o in outcomes if o.status == "ok"]
        if ok and self._any_held(conn):
            conn.execute(update(HOLDS).where(HOLDS.c.source_id.in_(ok), HOLDS.c.hold.is_not(None))
                         .values(hold=None, held_at=None))

    def _any_held(self, conn: Connection) -> bool:
        return conn.execute(select(HOLDS.c.source_id).where(HOLDS.c.hold.is_not(None)).limit(1)).first() is not None

    # --- reading ---------------------------------------------------------------------

    def items(self, *, limit: int = 50, offset: int = 0, merchant_id: str | None = None,
              source_id: str | None = None, kind: str | None = None, q: str | None = None,
              include_deleted: bool = False) -> list[StoredItem]:
        """Items newest first. `q` matches every word in title, summary or text."""
        query = select(ITEMS)
        conditions = _filters(merchant_id, source_id, kind, q, include_deleted)
        if conditions:
            query = query.where(and_(*conditions))
        query = query.order_by(ITEMS.c.sort_at.desc(), ITEMS.c.id.desc()).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_from_row(r) for r in conn.execute(query)]

    def count_items(self, *, merchant_id: str | None = None, kind: str | None = None, q: str | None = None,
                    include_deleted: bool = False) -> int:
        query = select(func.count()).select_from(ITEMS)
        conditions = _filters(merchant_id, None, kind, q, include_deleted)
        if conditions:
            query = query.where(and_(*conditions))
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def item(self, item_id: int) -> StoredItem | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(ITEMS).where(ITEMS.c.id == item_id)).first()
        return _from_row(row) if row else None


# --- helpers -------------------------------------------------------------------------------

_KNOWN = (ITEMS.c.id, ITEMS.c.source_id, ITEMS.c.external_id, ITEMS.c.content_hash, ITEMS.c.deleted_at,
          ITEMS.c.published)


def _known_items(conn: Connection, outcomes: Sequence[FetchOutcome]) -> dict[str, dict[str, Any]]:
    """What the store already has of these payloads, by source and external id: every entry
    a payload names (new, changed or gone), and for a complete payload (a feed's whole
    window) the entries dated inside its window, which `_tombstone_missing` judges. Never a
    source's whole history: a source that has posted for years costs what its payload does."""
    known: dict[str, dict[str, Any]] = {o.source_id: {} for o in outcomes}
    named = {o.source_id: {*(i.external_id for i in o.parsed.items), *o.parsed.gone} for o in outcomes}
    # Sources and ids as two lists, which both databases look up in the unique index (a list
    # of pairs is a table scan on SQLite); the few pairs that were not asked for are dropped.
    for sources, ids in _lookups(named):
        query = select(*_KNOWN).where(ITEMS.c.source_id.in_(sources), ITEMS.c.external_id.in_(ids))
        for row in conn.execute(query):
            if row.external_id in named[row.source_id]:
                known[row.source_id][row.external_id] = row
    windows = [(o.source_id, min(dates)) for o in outcomes
               if o.parsed.complete and (dates := [i.published for i in o.parsed.items if i.published])]
    for start in range(0, len(windows), _WINDOWS_PER_QUERY):  # one statement for many sources
        chunk = windows[start:start + _WINDOWS_PER_QUERY]
        # Deleted ones are skipped here, not in SQL: SQLite would then read them all by
        # ix_items_visible_sort instead of each source's by the unique index.
        query = select(*_KNOWN).where(or_(*(
            and_(ITEMS.c.source_id == source_id, ITEMS.c.published >= since) for source_id, since in chunk)))
        for row in conn.execute(query):
            if row.deleted_at is None:
                known[row.source_id].setdefault(row.external_id, row)
    return known


_WINDOWS_PER_QUERY = 100


def _lookups(named: dict[str, set[str]], most: int = 2000) -> Iterator[tuple[list[str], list[str]]]:
    """(sources, ids) lists of at most about `most` ids each (the databases' bound-parameter
    limits), covering every (source, id) in `named`."""
    sources: list[str] = []
    ids: set[str] = set()
    for sid, wanted in named.items():
        ordered = sorted(wanted)
        for start in range(0, len(ordered), most):
            sources.append(sid)
            ids.update(ordered[start:start + most])
            if len(ids) >= most:
                yield sorted(set(sources)), sorted(ids)
                sources, ids = [], set()
    if ids:
        yield sorted(set(sources)), sorted(ids)


def _p(name: str, type_: Any = None):
    return bindparam(f"p_{name}", type_=type_)  # p_: executemany forbids column names as parameters


# One statement for every kind of outcome, so a whole batch is one executemany: a failure
# counts up and keeps the caching state; a success or 304 resets the error count.
_RECORD_SOURCE = (
    update(SOURCES).where(SOURCES.c.id == _p("id")).values(
        last_fetch_at=_p("at", UTCDateTime()),
        status=_p("status"),
        last_ok_at=case((_p("ok", Boolean()), _p("at", UTCDateTime())), else_=SOURCES.c.last_ok_at),
        last_error=_p("error"),
        last_error_code=_p("error_code"),
        error_count=case((_p("ok", Boolean()), 0), else_=SOURCES.c.error_count + 1),
        etag=case((_p("has_state", Boolean()), _p("etag")), else_=SOURCES.c.etag),
        last_modified=case((_p("has_state", Boolean()), _p("last_modified")), else_=SOURCES.c.last_modified),
        cursor=case((_p("has_state", Boolean()), _p("cursor")), else_=SOURCES.c.cursor),
        warnings=case((_p("has_parsed", Boolean()), _p("warnings")), else_=SOURCES.c.warnings),
        fresh_until=func.coalesce(_p("fresh_until", UTCDateTime()), SOURCES.c.fresh_until),
    ))


def _source_values(o: FetchOutcome) -> dict[str, Any]:
    ok = o.status != "failed"
    state = o.state or FetchState()
    warnings = json.dumps(list(o.parsed.warnings), ensure_ascii=False) if o.parsed is not None else None
    return {"p_id": o.source_id, "p_at": o.at, "p_status": "ok" if ok else "failing", "p_ok": ok,
            "p_error": None if ok else o.error, "p_error_code": None if ok else o.error_code,
            "p_has_state": o.state is not None, "p_etag": state.etag, "p_last_modified": state.last_modified,
            "p_cursor": state.cursor, "p_has_parsed": o.parsed is not None, "p_warnings": warnings,
            "p_fresh_until": o.fresh_until}


# alembic keeps the migration under way in module globals: two threads of one process that
# migrate at once (two towns' stores opened side by side) break each other's migration.
_MIGRATING = threading.Lock()


def _insert(dialect: str, table: Any) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _resolve_sqlite_path(url: str, base_dir: Path | None) -> str:
    """`sqlite:///data/hub.db` is relative to the config file's folder, and its folder is
    created, so the embedded default works from a fresh clone."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == "sqlite:///:memory:":
        return url
    path = Path(url[len(prefix):])
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return prefix + str(path)


_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _make_engine(url: str, autocheckpoint: bool = True, schema: str | None = None,
                 keep: int = TOWN_KEEPS) -> Engine:
    if url.startswith("sqlite"):
        _bind_nulls_and_flags_directly()
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               **(POOL if url != "sqlite:///:memory:" else {}))

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            # Transactions are begun by SQLAlchemy (below), not by the driver's implicit
            # BEGIN before the first write, so a writer can ask for BEGIN IMMEDIATE.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives power loss; a lost "sent" mark would mean a duplicate.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # Checkpoint every ~32 MB of WAL instead of 4 MB: a first ingest writes ~100 MB,
            # and each checkpoint is an extra copy plus fsync.
            cur.execute(f"PRAGMA wal_autocheckpoint={8000 if autocheckpoint else 0}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN " + conn.get_execution_options().get("begin", ""))

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    # A town's schema first; `public` after it keeps shared tables (procrastinate's, the towns
    # registry) reachable. Set at connect, so it costs no round trip per checkout.
    if schema is None:
        return create_engine(url, pool_pre_ping=True, **POOL)
    keep = max(1, min(keep, TOWN_CONNECTIONS))
    return create_engine(url, pool_pre_ping=True, connect_args={"options": f"-c search_path={schema},public"},
                         **{**POOL, "pool_size": keep, "max_overflow": TOWN_CONNECTIONS - keep})


def _bind_nulls_and_flags_directly() -> None:
    """sqlite3 binds int, float, str and bytes as they are, but sends every other value,
    None and booleans included, through its adapter lookup, which fails by way of an
    AttributeError each time: ~3,000 instructions per NULL or flag, a fifth of the database
    time of an ingest (items have many empty columns). With an adapter registered for them,
    the lookup ends at once and they bind as before. (Process-wide, and the same values.)"""
    sqlite3.register_adapter(type(None), {}.get)  # None -> None, without a Python call
    sqlite3.register_adapter(bool, int)


_INSERT_COLUMNS = (
    "source_id", "external_id", "merchant_id", "kind", "title", "summary", "content_html", "content_text",
    "url", "origin_url", "media", "tags", "language", "published", "updated", "sort_at", "event_start",
    "event_end", "event_timezone", "event_all_day", "event_location", "event_cancelled", "event_latitude",
    "event_longitude", "offer_price", "offer_currency", "offer_valid_from", "offer_valid_until", "content_hash", "first_seen_at", "changed_at")


def _parts(plan: IngestPlan, most: int) -> list[IngestPlan]:
    """`plan` as parts of whole sources with at most `most` new or changed items each (a
    source with more is a part of its own), for one transaction each on PostgreSQL: a write
    locks each URL it writes, and beyond `most` all of the town's at once, writing alone
    (hub.store.writelocks). A worker's shared batch in a first pass (dozens of feeds of 20
    entries) would take that lock every time."""
    fresh = [sum(item.key in plan.prepared for item in o.parsed.items) if o.parsed else 0 for o in plan.outcomes]
    if sum(fresh) <= most:
        return [plan]
    groups: list[list[FetchOutcome]] = [[]]
    size = 0
    for outcome, n in zip(plan.outcomes, fresh):
        if size + n > most and groups[-1]:
            groups.append([])
            size = 0
        groups[-1].append(outcome)
        size += n
    parsed = {id(o) for o in plan.parsed}
    return [IngestPlan(tuple(group), [o for o in group if id(o) in parsed], plan.rows, plan.prepared)
            for group in groups]


def _insert_new(conn: Connection, rows: list[tuple]) -> None:
    """Insert new items (`_insert_rows`) with one driver-level executemany. Two writers may
    race on the same new entry; the unique key decides, quietly (ON CONFLICT DO NOTHING)."""
    sql = (f"INSERT INTO items ({', '.join(_INSERT_COLUMNS)}) VALUES ({placeholders(conn, len(_INSERT_COLUMNS))}) "
           "ON CONFLICT (source_id, external_id) DO NOTHING")
    conn.exec_driver_sql(sql, rows)


def _differs(row: Any, item: Item) -> bool:
    return row is None or row.content_hash != item.content_hash


def _insert_rows(outcome: FetchOutcome, items: Sequence[Item], dialect: str) -> dict[str, tuple]:
    """external id -> the values of its INSERT, for these items of `outcome`.

    This is the ingest hot path: SQLAlchemy's per-value bind processing cost more than
    SQLite itself needs here, so rows are built as tuples and datetimes encoded the way
    `UTCDateTime` stores them."""
    dt = sqlite_datetime if dialect == "sqlite" else _same
    at = dt(outcome.at)
    return {item.external_id: _insert_values(item, dt, at) for item in items}


def _insert_values(item: Item, dt, at: Any) -> tuple:
    event, offer = item.event, item.offer
    published = dt(item.published) if item.published else None
    return (
        item.source_id, item.external_id, item.merchant_id, item.kind.value, item.title, item.summary,
        item.content_html, item.content_text, item.url, item.origin_url, _media_json(item), _tags_json(item),
        item.language, published, dt(item.updated) if item.updated else None, published or at,
        dt(event.start) if event else None, dt(event.end) if event and event.end else None,
        event.timezone if event else None, bool(event and event.all_day), event.location if event else None,
        bool(event and event.cancelled), event.latitude if event else None, event.longitude if event else None,
        offer.price if offer else None, offer.currency if offer else None,
        dt(offer.valid_from) if offer and offer.valid_from else None,
        dt(offer.valid_until) if offer and offer.valid_until else None,
        item.content_hash, at, at)


def _same(value: Any) -> Any:
    return value


def _media_json(item: Item) -> str:
    return to_json([_media_dict(m) for m in item.media]) if item.media else "[]"


def _tags_json(item: Item) -> str:
    return to_json(item.tags) if item.tags else "[]"


def _filters(merchant_id, source_id, kind, q, include_deleted) -> list:
    conditions = []
    if not include_deleted:
        conditions.append(ITEMS.c.deleted_at.is_(None))
    if merchant_id:
        conditions.append(ITEMS.c.merchant_id == merchant_id)
    if source_id:
        conditions.append(ITEMS.c.source_id == source_id)
    if kind:
        conditions.append(ITEMS.c.kind == kind)
    for word in (q or "").split():
        pattern = f"%{word}%"
        conditions.append(or_(ITEMS.c.title.ilike(pattern), ITEMS.c.summary.ilike(pattern),
                              ITEMS.c.content_text.ilike(pattern)))
    return conditions


def _to_row(item: Item, digest: str, at: datetime) -> dict[str, Any]:
    event, offer = item.event, item.offer
    return {
        "source_id": item.source_id, "external_id": item.external_id, "merchant_id": item.merchant_id,
        "kind": item.kind.value, "title": item.title, "summary": item.summary,
        "content_html": item.content_html, "content_text": item.content_text, "url": item.url,
        "origin_url": item.origin_url,
        "media": _media_json(item), "tags": _tags_json(item),
        "language": item.language, "published": item.published, "updated": item.updated,
        "sort_at": item.published or at,
        "event_start": event.start if event else None, "event_end": event.end if event else None,
        "event_timezone": event.timezone if event else None, "event_all_day": bool(event and event.all_day),
        "event_location": event.location if event else None, "event_cancelled": bool(event and event.cancelled),
        "event_latitude": event.latitude if event else None, "event_longitude": event.longitude if event else None,
        "offer_price": offer.price if offer else None, "offer_currency": offer.currency if offer else None,
        "offer_valid_from": offer.valid_from if offer else None,
        "offer_valid_until": offer.valid_until if offer else None,
        "content_hash": digest, "first_seen_at": at, "changed_at": at, "deleted_at": None,
    }


def _media_dict(m: Media) -> dict[str, Any]:
    return {k: v for k, v in (("url", m.url), ("type", m.type), ("mime_type", m.mime_type), ("width", m.width),
                              ("height", m.height), ("alt", m.alt)) if v is not None}


def _from_row(r: Any) -> StoredItem:
    event = None
    if r.event_start:
        event = Event(start=_in_zone(r.event_start, r.event_timezone), end=_in_zone(r.event_end, r.event_timezone),
                      timezone=r.event_timezone, all_day=r.event_all_day, location=r.event_location,
                      cancelled=r.event_cancelled, latitude=r.event_latitude, longitude=r.event_longitude)
    offer = None
    if r.offer_price or r.offer_currency or r.offer_valid_from or r.offer_valid_until:
        offer = Offer(price=r.offer_price, currency=r.offer_currency, valid_from=r.offer_valid_from,
                      valid_until=r.offer_valid_until)
    item = Item(source_id=r.source_id, external_id=r.external_id, merchant_id=r.merchant_id, title=r.title,
                summary=r.summary, content_html=r.content_html, content_text=r.content_text, url=r.url,
                kind=Kind(r.kind), media=tuple(Media(**m) for m in json.loads(r.media)),
                tags=tuple(json.loads(r.tags)), language=r.language, published=r.published, updated=r.updated,
                event=event, offer=offer, origin_url=r.origin_url)
    return StoredItem(id=r.id, item=item, sort_at=r.sort_at, first_seen_at=r.first_seen_at,
                      changed_at=r.changed_at, deleted_at=r.deleted_at)


def _in_zone(value: datetime | None, zone: str | None) -> datetime | None:
    if value is None or not zone:
        return value
    return value.astimezone(ZoneInfo(zone))
