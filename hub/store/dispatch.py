"""The store's side of dispatch at scale (issue 18): claiming a town's due sources in batches
grouped by host, per-host politeness kept in the database, and the figures operators watch.

A claim is one short transaction:

1. Pick the oldest due sources whose lease is free, at most `per_host` per host, at most
   `limit` in all, from hosts that are *ready*: their `dispatch_hosts.next_allowed_at` has
   passed and none of their sources is in flight (a live lease). The picked rows are locked
   with `FOR UPDATE SKIP LOCKED` on PostgreSQL: a second dispatcher ticking at the same moment
   skips them and takes the next ones instead of waiting.
2. Lock the picked hosts' rows of `dispatch_hosts` (again SKIP LOCKED) and check they are
   still ready. A host whose row another claimer holds is left to that claimer, so two
   claimers never both start one host, even when each picked different sources of it.
3. Queue each batch's job on the claim's own connection (the `enqueue` hook, the scaled tier's
   outbox: procrastinate's job rows commit with the leases or not at all). A batch whose job
   cannot be queued now (`AlreadyQueued`: one for its host still waits) is rolled back to its
   savepoint and left unclaimed; the other batches go on.
4. Set the kept sources' lease and each host's `next_allowed_at` (now + `spacing` x the
   batch's size: a polite worker needs that long to fetch the batch), then commit.

So across all workers a host has at most one batch in flight, and batch starts are spaced.
Sources without a host (Facebook via the Graph API) are not host-limited. In-flight counts
come from the sources' leases, so a worker killed mid-batch blocks its hosts only until its
leases pass. On SQLite (one writer) the same statements run under BEGIN IMMEDIATE.

The politeness table lives in each town's store, so it spaces the fetches of one town; two
towns that read the same host each keep their own spacing towards it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, NamedTuple

from sqlalchemy import Column, MetaData, String, Table, and_, delete, exists, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from hub.store import Store, _p
from hub.store.holds import HOLDS
from hub.store.ledger import LEDGER
from hub.store.tables import UTCDateTime
from hub.store.writelocks import write_transaction

# The columns of `sources` a claim needs, `host` (migration 0016) among them. A view of its
# own: the table class (hub.store.tables) stays as the rest of the store knows it.
_META = MetaData()
SOURCES = Table("sources", _META, Column("id", String, primary_key=True), Column("host", String),
                Column("status", String), Column("next_fetch_at", UTCDateTime()),
                Column("last_fetch_at", UTCDateTime()), Column("lease_owner", String),
                Column("lease_until", UTCDateTime()))
HOSTS = Table("dispatch_hosts", _META, Column("host", String, primary_key=True),
              Column("next_allowed_at", UTCDateTime()), Column("last_claim_at", UTCDateTime()))


class Batch(NamedTuple):
    """Sources of one host (None: not host-limited), claimed together for one job."""

    host: str | None
    source_ids: list[str]


class AlreadyQueued(Exception):
    """Raised by a claim's `enqueue` hook when a batch's job cannot be queued now (a job with
    its queueing lock still waits): the claim leaves that batch's sources unclaimed."""


# Queues a claimed batch's job on the claim's connection, inside the claim's transaction.
Enqueue = Callable[[Connection, Batch], None]


@dataclass(frozen=True)
class DispatchFigures:
    """One town's dispatch and delivery state at `now`, for /metrics and `hub status`."""

    sources: int  # with a schedule (not held, not unconfigured)
    due: int  # due now and not in flight: the backlog
    in_flight: int  # leased: claimed and not yet planned again
    lag_seconds: float  # now - the oldest due source's next_fetch_at (0 when none is due)
    hosts: int
    hosts_waiting: int  # hosts whose next batch may not start yet (politeness)
    fetched: int  # sources fetched within the window
    failed: int  # ... of them, the last fetch failed
    published: int  # channel deliveries sent within the window
    publish_errors: int  # deliveries that failed or are in doubt, tried within the window
    publish_backlog: int  # deliveries waiting (pending)


class DispatchStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    def sync_hosts(self, hosts: Mapping[str, str | None]) -> None:
        """Note each source's host (source id -> host, None for none) and give every host a
        politeness row. Only rows that differ are written, so a restart of a big town costs
        one read. Sources not in `hosts` keep theirs; hosts no source has any more go."""
        with self.engine.connect() as conn:
            known = {r.id: r.host for r in conn.execute(select(SOURCES.c.id, SOURCES.c.host))}
            have = set(conn.execute(select(HOSTS.c.host)).scalars())
        changed = [{"p_id": sid, "p_host": host} for sid, host in hosts.items()
                   if sid in known and known[sid] != host]
        wanted = {h for h in {**known, **{s: h for s, h in hosts.items() if s in known}}.values() if h}
        with self.engine.begin() as conn:
            if changed:
                conn.execute(update(SOURCES).where(SOURCES.c.id == _p("id")).values(host=_p("host")), changed)
            if wanted - have:
                conn.execute(_insert(self.store.dialect, HOSTS).on_conflict_do_nothing(index_elements=["host"]),
                             [{"host": h} for h in sorted(wanted - have)])
            if have - wanted:
                conn.execute(delete(HOSTS).where(HOSTS.c.host.in_(sorted(have - wanted))))

    def claim(self, now: datetime, *, limit: int, per_host: int, spacing: timedelta, owner: str,
              until: datetime, hostless_batch: int | None = None, enqueue: Enqueue | None = None,
              pack: int | None = None) -> list[Batch]:
        """Claim up to `limit` due sources, at most `per_host` of one host, and lease them to
        `owner` until `until`; returns them as batches per host, oldest due first. Sources
        without a host come in batches of `hostless_batch` (default `per_host`): a job's size.
        `pack`: put the batches of several hosts together, up to this many sources, as one
        batch without a host (one job fetches them side by side, each host at its spacing):
        a job of a source or two costs more in queueing than in fetching. The politeness
        holds all the same: a host is claimed again only once none of its sources is in
        flight. `enqueue`: queue each batch's job in the claim's transaction (see the
        module's doc); batches it refuses with `AlreadyQueued` are neither leased nor returned."""
        if limit <= 0:
            return []
        if per_host <= 0:
            raise ValueError(f"per_host must be at least 1, not {per_host}")
        pg = self.store.dialect == "postgresql"
        with write_transaction(self.engine) as conn:  # SQLite: the write lock first (one writer)
            picked = conn.execute(_pick(now, limit, per_host, lock=pg)).all()
            hosts = sorted({r.host for r in picked if r.host is not None})
            ready = set(conn.execute(_lock_ready_hosts(hosts, now, lock=pg)).scalars()) if hosts else set()
            taken = [r for r in picked if r.host is None or r.host in ready]
            per_host_batches = _batches(taken, hostless_batch or per_host)
            batches = _packed(per_host_batches, pack) if pack else per_host_batches
            if enqueue is not None:
                batches = [b for b in batches if _enqueued(conn, enqueue, b)]
            if not batches:
                return []
            kept = {i for b in batches for i in b.source_ids}
            conn.execute(update(SOURCES).where(SOURCES.c.id.in_(sorted(kept)))
                         .values(lease_owner=owner, lease_until=until))
            spaced = [{"p_host": b.host, "p_next": now + spacing * len(b.source_ids), "p_now": now}
                      for b in per_host_batches if b.host is not None and b.source_ids[0] in kept]
            if spaced:
                conn.execute(update(HOSTS).where(HOSTS.c.host == _p("host"))
                             .values(next_allowed_at=_p("next", UTCDateTime()),
                                     last_claim_at=_p("now", UTCDateTime())), spaced)
        return batches

    def figures(self, now: datetime, window: timedelta) -> DispatchFigures:
        """The town's dispatch figures at `now`; "recent" means within `window` before it."""
        since = now - window
        free = or_(SOURCES.c.lease_until.is_(None), SOURCES.c.lease_until < now)
        scheduled = and_(SOURCES.c.next_fetch_at.is_not(None), _not_held())
        due = and_(scheduled, SOURCES.c.next_fetch_at <= now, free)
        recent = SOURCES.c.last_fetch_at >= since
        sources = select(
            func.count().filter(scheduled), func.count().filter(due), func.min(SOURCES.c.next_fetch_at).filter(due),
            func.count().filter(SOURCES.c.lease_until >= now), func.count().filter(recent),
            func.count().filter(and_(recent, SOURCES.c.status == "failing")))
        hosts = select(func.count(), func.count().filter(HOSTS.c.next_allowed_at > now))
        tried = LEDGER.c.last_try_at >= since
        ledger = select(func.count().filter(and_(LEDGER.c.status == "sent", LEDGER.c.sent_at >= since)),
                        func.count().filter(and_(LEDGER.c.status.in_(("failed", "unconfirmed")), tried)),
                        func.count().filter(LEDGER.c.status == "pending"))
        with self.engine.connect() as conn:
            n, n_due, oldest, in_flight, fetched, failed = conn.execute(sources).one()
            n_hosts, waiting = conn.execute(hosts).one()
            published, errors, backlog = conn.execute(ledger).one()
        oldest = UTCDateTime().process_result_value(oldest, conn.dialect) if oldest is not None else None
        lag = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        return DispatchFigures(n, n_due, in_flight, lag, n_hosts, waiting, fetched, failed, published, errors,
                               backlog)


def procrastinate_jobs(engine) -> dict[tuple[str, str, str], int] | None:
    """Jobs in procrastinate's table by (town, queue, status), the town being the job's
    `town` argument ("" for none); None when the database has no such table (the embedded
    tier, or `hub migrate` not run yet). Plain SQL: the core does not import procrastinate."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        if conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
            return None
        rows = conn.execute(text("SELECT coalesce(args->>'town', ''), queue_name, status::text, count(*) "
                                 "FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
                                 "GROUP BY 1, 2, 3"))
        return {(town, queue, status): n for town, queue, status, n in rows}


# --- the claim's statements ------------------------------------------------------------------

CANDIDATES_PER_SOURCE = 4  # the oldest due sources a claim ranks per source it may take


def _pick(now: datetime, limit: int, per_host: int, *, lock: bool):
    """The oldest due, free sources of ready hosts (and of none), `per_host` a host at most.
    Ranked among the oldest `CANDIDATES_PER_SOURCE` x `limit` of them (by the index on
    next_fetch_at), not among every due source: when workers fall behind, tens of thousands
    are due, and ranking them all made each tick slower just when more were needed."""
    due = and_(SOURCES.c.next_fetch_at <= now, or_(SOURCES.c.lease_until.is_(None), SOURCES.c.lease_until < now),
               _not_held())
    oldest = (select(SOURCES.c.id, SOURCES.c.host, SOURCES.c.next_fetch_at)
              .where(due, or_(SOURCES.c.host.is_(None), SOURCES.c.host.in_(select(HOSTS.c.host).where(_ready(now)))))
              .order_by(SOURCES.c.next_fetch_at, SOURCES.c.id).limit(limit * CANDIDATES_PER_SOURCE).subquery())
    ranked = (select(oldest.c.id, oldest.c.host, oldest.c.next_fetch_at,
                     func.row_number().over(partition_by=oldest.c.host,
                                            order_by=(oldest.c.next_fetch_at, oldest.c.id)).label("rank"))
              .subquery())
    chosen = (select(ranked.c.id).where(or_(ranked.c.host.is_(None), ranked.c.rank <= per_host))
              .order_by(ranked.c.next_fetch_at, ranked.c.id).limit(limit))
    query = (select(SOURCES.c.id, SOURCES.c.host).where(SOURCES.c.id.in_(chosen), due)
             .order_by(SOURCES.c.next_fetch_at, SOURCES.c.id))
    # The due test again on the locked rows: one another claimer changed meanwhile is re-read.
    return query.with_for_update(skip_locked=True, of=SOURCES) if lock else query


def _lock_ready_hosts(hosts: list[str], now: datetime, *, lock: bool):
    query = select(HOSTS.c.host).where(HOSTS.c.host.in_(hosts), _ready(now))
    return query.with_for_update(skip_locked=True) if lock else query


def _ready(now: datetime):
    """A host may start a batch: its spacing has passed and none of its sources is in flight."""
    in_flight = SOURCES.alias("in_flight")
    return and_(or_(HOSTS.c.next_allowed_at.is_(None), HOSTS.c.next_allowed_at <= now),
                ~exists().where(in_flight.c.host == HOSTS.c.host, in_flight.c.lease_until >= now))


def _enqueued(conn: Connection, enqueue: Enqueue, batch: Batch) -> bool:
    """Queue `batch`'s job under a savepoint: a refusal undoes only this batch's job row (a
    failed statement would otherwise abort the whole claim's transaction)."""
    try:
        with conn.begin_nested():
            enqueue(conn, batch)
    except AlreadyQueued:
        return False
    return True


def _batches(rows, chunk: int) -> list[Batch]:
    """Group claimed rows (in due order) per host, the batch of the oldest due source first;
    hostless ones go in chunks of `chunk`."""
    groups: dict[object, list[str]] = {}
    hostless = 0
    for row in rows:
        if row.host is None:
            key: object = (None, hostless // chunk)
            hostless += 1
        else:
            key = row.host
        groups.setdefault(key, []).append(row.id)
    return [Batch(key if isinstance(key, str) else None, ids) for key, ids in groups.items()]


def _packed(batches: list[Batch], most: int) -> list[Batch]:
    """Batches put together, in order, into host-less batches of at most `most` sources
    (a host's batch is never split: its sources are fetched by one job, at its spacing)."""
    packed: list[Batch] = []
    for batch in batches:
        if packed and len(packed[-1].source_ids) + len(batch.source_ids) <= most:
            packed[-1].source_ids.extend(batch.source_ids)
        else:
            packed.append(Batch(None, list(batch.source_ids)))
    return packed


def _not_held():
    return SOURCES.c.id.not_in(select(HOLDS.c.source_id).where(HOLDS.c.hold.is_not(None)))


def _insert(dialect: str, table):
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
