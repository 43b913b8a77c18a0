"""The store's scheduling side: when sources and channels are due, who holds them, and the
delivery ledger. Used by `schedules/` only.

"Never twice" rests on compare-and-set updates that each process runs the same way:
a source or channel is claimed by one UPDATE that sets `lease_owner`/`lease_until` only
where the row is due and its lease is free (or has passed), and returns the rows it took.
On SQLite the write lock serializes such updates; on PostgreSQL a row lock does, and the
WHERE clause is checked again once the lock is held. A crashed holder's lease simply passes
and the row is due again. Each (channel, item) pair gets one ledger row, claimed before
the item is sent.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Mapping, Sequence

from sqlalchemy import case, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from hub.store import BUSY_TIMEOUT_MS, ITEMS, SOURCES, Store, _p
from hub.store.holds import HOLDS
from hub.store.placement import COMMON, KEYS, ORIGINS, RECORDS, REVISIONS, SPLITS
import hub.store.searchindex as searchindex
from hub.store.records import TAGS
from hub.store.tables import ChannelRow, DeliveryRow, UTCDateTime

log = logging.getLogger("hub.maintenance")

CHANNELS = ChannelRow.__table__
DELIVERIES = DeliveryRow.__table__
HELD_REASON = "not fetched until a person acts (see its last error) and its options in the config change"


@dataclass(frozen=True)
class SourceFacts:
    """What the polling policy needs from the store about one source."""

    failures: int
    recent_posts: int  # items posted within `history`
    span: timedelta  # from the source's oldest known post to now
    push_live: bool


@dataclass(frozen=True)
class SourceSchedule:
    """A source's schedule, as `hub sources` shows it."""

    next_fetch_at: datetime | None
    interval_seconds: int | None
    reason: str | None
    push_state: str | None
    push_lease_until: datetime | None


@dataclass(frozen=True)
class Subscription:
    source_id: str
    state: str | None
    hub: str | None
    topic: str | None
    secret: str | None
    requested_at: datetime | None
    lease_until: datetime | None


class ScheduleStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    # --- sources: due, claimed, planned --------------------------------------------------

    def prepare_sources(self, configured: Iterable[str], now: datetime, step: timedelta) -> None:
        """Make the configured sources schedulable: a new one is due `step` after the one
        before it (so a thousand new sources do not all start in the same second), and one
        no longer configured is no longer due."""
        configured = set(configured)
        with self.engine.connect() as conn:
            rows = conn.execute(select(SOURCES.c.id, SOURCES.c.next_fetch_at)).all()
        new = sorted(r.id for r in rows if r.next_fetch_at is None and r.id in configured)
        first = [{"p_id": sid, "p_at": now + step * i} for i, sid in enumerate(new)]
        gone = [{"p_id": r.id} for r in rows if r.id not in configured and r.next_fetch_at is not None]
        with self.engine.begin() as conn:
            if first:  # only where still unset: another process may have done it already
                conn.execute(update(SOURCES).where(SOURCES.c.id == _p("id"), SOURCES.c.next_fetch_at.is_(None))
                             .values(next_fetch_at=_p("at", UTCDateTime())), first)
            if gone:
                conn.execute(update(SOURCES).where(SOURCES.c.id == _p("id")).values(next_fetch_at=None), gone)

    def due_sources(self, now: datetime, limit: int) -> list[str]:
        """Ids of sources due at `now` and free to claim, longest overdue first. A source held
        back for a person to act on (an invalid token) is never due until its options change."""
        query = (select(SOURCES.c.id).where(SOURCES.c.next_fetch_at <= now, _lease_free(SOURCES, now), _not_held())
                 .order_by(SOURCES.c.next_fetch_at).limit(limit))
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def claim_sources(self, ids: Sequence[str], now: datetime, owner: str, until: datetime) -> list[str]:
        """Take the lease of those `ids` that are still due and free; returns the ids taken."""
        if not ids:
            return []
        statement = (update(SOURCES)
                     .where(SOURCES.c.id.in_(list(ids)), SOURCES.c.next_fetch_at <= now, _lease_free(SOURCES, now),
                            _not_held())
                     .values(lease_owner=owner, lease_until=until).returning(SOURCES.c.id))
        with self.engine.begin() as conn:
            return list(conn.execute(statement).scalars())

    def renew_leases(self, ids: Sequence[str], owner: str, until: datetime) -> list[str]:
        """Extend the leases of those `ids` that `owner` still holds (passed or not: nobody
        took them since); returns their ids. A retried job takes its own sources over so."""
        if not ids:
            return []
        statement = (update(SOURCES).where(SOURCES.c.id.in_(list(ids)), SOURCES.c.lease_owner == owner)
                     .values(lease_until=until).returning(SOURCES.c.id))
        with self.engine.begin() as conn:
            return list(conn.execute(statement).scalars())

    def postpone(self, due: Mapping[str, datetime], now: datetime) -> None:
        """Move unclaimed sources to a later due time (a busy host's overflow)."""
        if not due:
            return
        statement = (update(SOURCES).where(SOURCES.c.id == _p("id"), _lease_free(SOURCES, now))
                     .values(next_fetch_at=_p("at", UTCDateTime())))
        with self.engine.begin() as conn:
            conn.execute(statement, [{"p_id": sid, "p_at": at} for sid, at in due.items()])

    def release_sources(self, ids: Iterable[str], owner: str) -> None:
        """Give up leases (shutdown): the sources are due again right away, for anyone."""
        ids = list(ids)
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(update(SOURCES).where(SOURCES.c.id.in_(ids), SOURCES.c.lease_owner == owner)
                         .values(lease_owner=None, lease_until=None))

    def source_facts(self, ids: Sequence[str], now: datetime, history: timedelta) -> dict[str, SourceFacts]:
        """Per source: consecutive failures, posting history, whether push is live."""
        posted = func.coalesce(ITEMS.c.published, ITEMS.c.first_seen_at)
        recent = func.sum(case((posted >= now - history, 1), else_=0))
        posts = (select(ITEMS.c.source_id, recent.label("recent"), func.min(posted).label("oldest"))
                 .where(ITEMS.c.source_id.in_(list(ids)), posted <= now).group_by(ITEMS.c.source_id))
        rows = (select(SOURCES.c.id, SOURCES.c.error_count, SOURCES.c.push_state, SOURCES.c.push_lease_until)
                .where(SOURCES.c.id.in_(list(ids))))
        with self.engine.connect() as conn:
            known = {r.source_id: (int(r.recent), now - r.oldest) for r in conn.execute(posts)}
            facts = {}
            for r in conn.execute(rows):
                recent_posts, span = known.get(r.id, (0, history))
                facts[r.id] = SourceFacts(r.error_count, recent_posts, span,
                                          _push_live(r.push_state, r.push_lease_until, now))
            return facts

    def record_plans(self, plans: Mapping[str, tuple[datetime, timedelta, str]], owner: str) -> None:
        """Store each source's next fetch (at, interval, reason) and release its lease. A
        lease that passed and went to another process is left to that process."""
        if not plans:
            return
        statement = (update(SOURCES).where(SOURCES.c.id == _p("id"), SOURCES.c.lease_owner == _p("owner"))
                     .values(next_fetch_at=_p("at", UTCDateTime()), interval_seconds=_p("seconds"),
                             interval_reason=_p("reason"), lease_owner=None, lease_until=None))
        params = [{"p_id": sid, "p_owner": owner, "p_at": at, "p_seconds": int(interval.total_seconds()),
                   "p_reason": reason} for sid, (at, interval, reason) in plans.items()]
        with self.engine.begin() as conn:
            conn.execute(statement, params)

    def source_schedules(self) -> dict[str, SourceSchedule]:
        """Each source's plan; a source held back for a person has none until its options change."""
        query = (select(SOURCES.c.id, SOURCES.c.next_fetch_at, SOURCES.c.interval_seconds,
                        SOURCES.c.interval_reason, SOURCES.c.push_state, SOURCES.c.push_lease_until, HOLDS.c.hold)
                 .select_from(SOURCES.outerjoin(HOLDS, HOLDS.c.source_id == SOURCES.c.id)))
        with self.engine.connect() as conn:
            return {r.id: SourceSchedule(None, None, HELD_REASON, r.push_state, r.push_lease_until) if r.hold else
                    SourceSchedule(r.next_fetch_at, r.interval_seconds, r.interval_reason, r.push_state,
                                   r.push_lease_until) for r in conn.execute(query)}

    # --- WebSub subscriptions ------------------------------------------------------------

    def subscription(self, source_id: str) -> Subscription | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_SUBSCRIPTION).where(SOURCES.c.id == source_id)).first()
        return _subscription(row) if row else None

    def subscriptions(self, ids: Sequence[str]) -> dict[str, Subscription]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_SUBSCRIPTION).where(SOURCES.c.id.in_(list(ids))))
            return {r.id: _subscription(r) for r in rows}

    def push_requested(self, source_id: str, hub: str, topic: str, secret: str, now: datetime) -> None:
        self._set_push(source_id, push_state="pending", push_hub=hub, push_topic=topic, push_secret=secret,
                       push_requested_at=now, push_error=None)

    def push_renewing(self, source_id: str, now: datetime) -> None:
        self._set_push(source_id, push_requested_at=now)

    def push_problem(self, source_id: str, error: str, *, keep_state: bool) -> None:
        """Note a failed request to the hub; a live subscription stays live until its lease ends."""
        self._set_push(source_id, push_error=error, **({} if keep_state else {"push_state": "failed"}))

    def push_verified(self, source_id: str, topic: str, lease_until: datetime) -> bool:
        """The hub confirmed a subscription we asked for; False if we asked for no such thing."""
        return self._set_push(source_id, topic, push_state="live", push_lease_until=lease_until, push_error=None)

    def push_denied(self, source_id: str, topic: str, reason: str) -> bool:
        return self._set_push(source_id, topic, push_state="denied", push_error=reason)

    def push_renewals(self, before: datetime) -> list[Subscription]:
        """Live subscriptions whose lease ends before `before`."""
        query = select(*_SUBSCRIPTION).where(SOURCES.c.push_state == "live", SOURCES.c.push_lease_until < before)
        with self.engine.connect() as conn:
            return [_subscription(r) for r in conn.execute(query)]

    def _set_push(self, source_id: str, topic: str | None = None, **values: object) -> bool:
        """Update push columns; with `topic`, only a pending or live subscription to it."""
        statement = update(SOURCES).where(SOURCES.c.id == source_id)
        if topic is not None:
            statement = statement.where(SOURCES.c.push_topic == topic,
                                        SOURCES.c.push_state.in_(("pending", "live")))
        with self.engine.begin() as conn:
            return conn.execute(statement.values(**values)).rowcount == 1

    # --- channels ------------------------------------------------------------------------

    def sync_channels(self, schedules: Mapping[str, str | None], first_runs: Mapping[str, datetime],
                      now: datetime) -> None:
        """A row per channel; a channel whose cron expression changed starts over from
        `first_runs`."""
        with self.engine.connect() as conn:
            known = {r.id: r.schedule for r in conn.execute(select(CHANNELS.c.id, CHANNELS.c.schedule))}
        fresh = [{"id": cid, "schedule": expr, "created_at": now, "next_run_at": first_runs[cid]}
                 for cid, expr in schedules.items() if cid not in known]
        changed = [{"p_id": cid, "p_schedule": expr, "p_at": first_runs[cid]}
                   for cid, expr in schedules.items() if cid in known and known[cid] != expr]
        with self.engine.begin() as conn:
            if fresh:
                conn.execute(_insert(self.store.dialect, CHANNELS).on_conflict_do_nothing(index_elements=["id"]),
                             fresh)
            if changed:
                conn.execute(update(CHANNELS).where(CHANNELS.c.id == _p("id"))
                             .values(schedule=_p("schedule"), next_run_at=_p("at", UTCDateTime())), changed)

    def claim_channel(self, channel_id: str, now: datetime, owner: str, until: datetime, *, due_only: bool) -> bool:
        """Take the channel's lease if it is free (and, with `due_only`, if it is due)."""
        statement = update(CHANNELS).where(CHANNELS.c.id == channel_id, _lease_free(CHANNELS, now))
        if due_only:
            statement = statement.where(CHANNELS.c.next_run_at <= now)
        with self.engine.begin() as conn:
            return conn.execute(statement.values(lease_owner=owner, lease_until=until)).rowcount == 1

    def extend_channel(self, channel_id: str, owner: str, until: datetime) -> None:
        """Keep the channel's lease for a run that is still working (if it is still its own)."""
        with self.engine.begin() as conn:
            conn.execute(update(CHANNELS).where(CHANNELS.c.id == channel_id, CHANNELS.c.lease_owner == owner)
                         .values(lease_until=until))

    def finish_channel(self, channel_id: str, owner: str, now: datetime, status: str, error: str | None,
                       next_run_at: datetime | None) -> None:
        """Record a run and release the lease; `next_run_at` None keeps the schedule as it is."""
        values: dict[str, object] = {"lease_owner": None, "lease_until": None, "last_run_at": now,
                                     "last_status": status, "last_error": error}
        if next_run_at is not None:
            values["next_run_at"] = next_run_at
        with self.engine.begin() as conn:
            conn.execute(update(CHANNELS).where(CHANNELS.c.id == channel_id, CHANNELS.c.lease_owner == owner)
                         .values(**values))

    def delivery_statuses(self, channel_id: str) -> dict[int, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(DELIVERIES.c.item_id, DELIVERIES.c.status)
                                .where(DELIVERIES.c.channel_id == channel_id))
            return {r.item_id: r.status for r in rows}

    # --- maintenance ---------------------------------------------------------------------

    def forget_deleted(self, before: datetime) -> int:
        """Delete items tombstoned before `before`, with everything that points at them:
        deliveries, their origin in a record, identity keys, tags and remembered splits; then the
        records left without any origin (removed long ago), with their revisions, and the
        notes of identity keys that became common before then (they are about posts and
        events of days long past; a key noted again is merely capped again). By then no
        feed window still carries the items, so the tombstones have done their job."""
        old = select(ITEMS.c.id).where(ITEMS.c.deleted_at < before)
        orphaned = select(RECORDS.c.id).where(RECORDS.c.removed_at.is_not(None),
                                              RECORDS.c.id.not_in(select(ORIGINS.c.record_id)))
        with self.engine.begin() as conn:
            conn.execute(delete(DELIVERIES).where(DELIVERIES.c.item_id.in_(old)))
            conn.execute(delete(ORIGINS).where(ORIGINS.c.item_id.in_(old)))
            conn.execute(delete(KEYS).where(KEYS.c.item_id.in_(old)))
            conn.execute(delete(TAGS).where(TAGS.c.item_id.in_(old)))
            conn.execute(delete(SPLITS).where(or_(SPLITS.c.item_a.in_(old), SPLITS.c.item_b.in_(old))))
            forgotten = conn.execute(delete(ITEMS).where(ITEMS.c.deleted_at < before)).rowcount
            conn.execute(delete(REVISIONS).where(REVISIONS.c.record_id.in_(orphaned)))
            searchindex.drop_where(conn, orphaned)  # none left (removed records are not indexed): to be sure
            conn.execute(delete(RECORDS).where(RECORDS.c.id.in_(orphaned)))
            conn.execute(delete(COMMON).where(COMMON.c.day < before.date().toordinal()))
        return forgotten

    def housekeeping(self) -> bool:
        """SQLite: refresh the planner's statistics and fold the WAL back into the database,
        so the -wal file does not grow without bound. PostgreSQL's autovacuum does both.

        Housekeeping yields to writers: it never waits for a lock, and whatever a busy
        database does not allow now is left for the next run. Returns whether it all got done."""
        if self.store.dialect != "sqlite":
            return True
        with self.engine.connect() as conn:
            # The driver's connection, outside any transaction: SQLAlchemy would BEGIN first,
            # and a checkpoint inside a transaction fails ("database table is locked").
            raw = conn.connection.driver_connection
            raw.execute("PRAGMA busy_timeout=0")
            try:
                raw.execute("PRAGMA optimize")
                busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.OperationalError as exc:  # a writer holds the lock: next time
                log.info("housekeeping postponed: %s", exc)
                return False
            finally:
                raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if busy:  # readers or a writer were active: it checkpointed what it could (as PASSIVE)
            log.info("WAL checkpoint partly postponed: the database was busy")
        return not busy


# --- helpers -------------------------------------------------------------------------------

_SUBSCRIPTION = (SOURCES.c.id, SOURCES.c.push_state, SOURCES.c.push_hub, SOURCES.c.push_topic,
                 SOURCES.c.push_secret, SOURCES.c.push_requested_at, SOURCES.c.push_lease_until)


def _subscription(row) -> Subscription:
    return Subscription(row.id, row.push_state, row.push_hub, row.push_topic, row.push_secret,
                        row.push_requested_at, row.push_lease_until)


def _not_held():
    return SOURCES.c.id.not_in(select(HOLDS.c.source_id).where(HOLDS.c.hold.is_not(None)))


def _lease_free(table, now: datetime):
    return or_(table.c.lease_until.is_(None), table.c.lease_until < now)


def _push_live(state: str | None, lease_until: datetime | None, now: datetime) -> bool:
    return state == "live" and lease_until is not None and lease_until > now


def _insert(dialect: str, table):
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
