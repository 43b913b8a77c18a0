"""The delivery ledger (outbox) of push channels (issue 16, migration 0015).

- `ledger_channels`: each push channel as the store knows it: which records it wants (its
  rules, `hub.ledger.ChannelRules`), whether it is active, disabled (a webhook answered 410)
  or paused (its token was refused), until when it must wait (a channel-wide Retry-After),
  its pace's next slot and its last error. Written by `schedules.publishing.prepare_channels`
  from the config, so every process that writes records (an ingest worker, the cockpit,
  `hub items approve`) knows the channels without the config.
- `ledger`: one row per (channel, record, version). `announce` writes them in the very
  transaction that creates, changes or removes a record (`hub.store.placement` calls it
  where it writes revisions), for every channel whose rules want the record ("publish"), or
  that had it and no longer may show it ("withdraw"): no change can be lost between the
  record and its deliveries. A newer version supersedes an older one not yet sent; an
  older one that may have reached the channel is sent (or resolved) first. A store with a
  ledger outbox (`attach_outbox`: the scaled tier's workers) also queues a publish job per
  channel that got rows, in that same transaction (rows and job commit together or not at all).
- `ledger_copies`: what each channel holds of a record, once it confirmed it: its own id
  for the copy (a status, a message, a post), its address, what the publisher keeps about
  it (media ids, the kind of message) and the hash of the content it shows. An update edits
  that copy, a withdrawal deletes it.

A row's life: pending -> sending (claimed under a lease by one run) -> sent | skipped |
pending again (retry at a later time) | failed (given up) | unconfirmed (the request may
have reached a channel that cannot tell a repeat: a person checks) | superseded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

from sqlalchemy import (BigInteger, Index, Text, UniqueConstraint, and_, bindparam, case, delete, exists, func, or_,
                        select, update)
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Column, Field, SQLModel

from hub.ledger import ChannelRules
from hub.store.bulk import placeholders, sqlite_datetime
from hub.store.tables import RecordRevisionRow, RecordRow, UTCDateTime

RECORDS = RecordRow.__table__
REVISIONS = RecordRevisionRow.__table__
CHUNK = 5000  # values per driver-level IN
OPEN = ("pending", "sending", "unconfirmed")  # a row in one of these holds back the record's newer versions
FINAL = ("sent", "skipped", "superseded", "failed")
# The revisions that change what a channel shows (a new record needs none): an edit of its
# fields, by its sources or the project manager, its status, its removal or return, a split.
ANNOUNCED = frozenset({"updated", "edited", "status", "removed", "restored", "split"})
_STALE = ("the hub stopped while this delivery was under way (the process ended or lost its lease); "
          "whether it arrived is unknown")


def _dt(**kw) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), **kw))


class LedgerChannelRow(SQLModel, table=True):
    __tablename__ = "ledger_channels"

    id: str = Field(primary_key=True)
    renderer: str
    rules: str = Field(sa_column=Column(Text, nullable=False))  # JSON of ChannelRules
    fingerprint: str | None = None  # of the channel's options: a change lifts a disable or pause
    state: str = "active"  # active | disabled | paused | removed
    state_reason: str | None = Field(default=None, sa_column=Column(Text))
    state_at: datetime | None = _dt()
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    hold_until: datetime | None = _dt()  # nothing is sent before (a channel-wide Retry-After)
    next_slot_at: datetime | None = _dt()  # the pace's next slot
    last_sent_at: datetime | None = _dt()
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    last_error_at: datetime | None = _dt()


class LedgerRow(SQLModel, table=True):
    __tablename__ = "ledger"
    # Two indexes besides the key, each written for every row at ingest: the unique one also
    # finds a channel's rows of a record, the other what a channel has to do, oldest first.
    __table_args__ = (UniqueConstraint("channel_id", "record_id", "version", name="uq_ledger_delivery"),
                      Index("ix_ledger_work", "channel_id", "status", "id"))

    id: int | None = Field(default=None, primary_key=True)
    channel_id: str
    record_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    version: int = Field(sa_column=Column(BigInteger, nullable=False))  # the record's newest revision id, 0 when new
    op: str  # publish | withdraw
    status: str  # pending | sending | sent | skipped | superseded | failed | unconfirmed
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))  # when the change happened
    attempts: int = 0
    next_try_at: datetime | None = _dt()
    first_try_at: datetime | None = _dt()
    last_try_at: datetime | None = _dt()
    doubt_since: datetime | None = _dt()  # since when an attempt may have reached the channel
    lease_owner: str | None = None
    lease_until: datetime | None = _dt()
    event: str | None = None  # created | updated | deleted, once decided
    remote_id: str | None = None
    sent_at: datetime | None = _dt()
    detail: str | None = Field(default=None, sa_column=Column(Text))  # the last error, or why it was skipped


class LedgerCopyRow(SQLModel, table=True):
    __tablename__ = "ledger_copies"

    channel_id: str = Field(primary_key=True)
    record_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    remote_id: str | None = None
    remote_url: str | None = Field(default=None, sa_column=Column(Text))
    state: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON: the publisher's own notes
    content_hash: str | None = None
    version: int = Field(sa_column=Column(BigInteger, nullable=False))
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


CHANNELS = LedgerChannelRow.__table__
LEDGER = LedgerRow.__table__
COPIES = LedgerCopyRow.__table__


# --- at ingest: in the record's own transaction -----------------------------------------------

# Queues a "publish these channels" job on the connection, in the rows' transaction (the
# scaled tier's outbox). The store core knows no job queue: the runtime attaches it.
LedgerOutbox = Callable[[Connection, Sequence[str]], None]
_OUTBOX = "hub_ledger_outbox"  # the engine's execution option that carries it


def attach_outbox(engine: Engine, outbox: LedgerOutbox | None) -> None:
    """Let every transaction of `engine` that writes ledger rows call `outbox` with the
    channels that got rows (None: detach). Connections opened after this see it."""
    engine.update_execution_options(**{_OUTBOX: outbox})


def announce(conn: Connection, now: datetime, touched: Collection[int], revised: Collection[int] = ()) -> int:
    """Write a ledger row for every channel that wants (or wanted, and must now withdraw)
    one of the `touched` records, in the caller's transaction. `revised`: the records that
    got revisions in it (a record without one is new: version 0). Returns the rows written."""
    if not touched:
        return 0
    channels = [(r[0], ChannelRules.from_json(json.loads(r[1]))) for r in conn.exec_driver_sql(
        "SELECT id, rules FROM ledger_channels WHERE state <> 'removed' ORDER BY id")]
    if not channels:
        return 0
    ids = sorted(set(touched))
    facts = _facts(conn, ids)
    merchants = _merchants(conn, ids) if any(r.merchants is not None for _, r in channels) else {}
    wanted_tags = sorted({t for _, r in channels for t in r.tags})
    tags = _tags(conn, ids, wanted_tags) if wanted_tags else {}
    revised = set(revised)
    old = [i for i in ids if i in revised]  # a record new in this transaction has no rows yet
    versions = _versions(conn, old)
    known = _known(conn, [c for c, _ in channels], old)
    rows, stale = [], []
    for record_id in ids:
        if record_id not in facts:
            continue
        kind, shown = facts[record_id]
        version = versions.get(record_id, 0)
        for channel_id, rules in channels:
            if shown and rules.wants(kind, merchants.get(record_id, ()), tags.get(record_id, ())):
                op = "publish"
            elif (channel_id, record_id) in known:
                op = "withdraw"
            else:
                continue
            rows.append((channel_id, record_id, version, op))
            if (channel_id, record_id) in known:
                stale.append((channel_id, record_id, version))
    _insert(conn, rows, now)
    outbox = conn.get_execution_options().get(_OUTBOX)
    if outbox is not None and rows:
        outbox(conn, sorted({channel_id for channel_id, *_ in rows}))
    if stale:  # what was not sent yet (and cannot have been) is replaced by the newer version
        conn.exec_driver_sql(
            "UPDATE ledger SET status = 'superseded' WHERE channel_id = {0} AND record_id = {0} AND version < {0} "
            "AND status = 'pending' AND doubt_since IS NULL".format(placeholders(conn, 1)), stale)
    return len(rows)


def _insert(conn: Connection, rows: list[tuple], now: datetime) -> None:
    if not rows:
        return
    at = sqlite_datetime(now) if conn.dialect.name == "sqlite" else now
    conn.exec_driver_sql(
        f"INSERT INTO ledger (channel_id, record_id, version, op, status, attempts, created_at) "
        f"VALUES ({placeholders(conn, 7)}) ON CONFLICT (channel_id, record_id, version) DO NOTHING",
        [(c, r, v, op, "pending", 0, at) for c, r, v, op in rows])


def _chunked(conn: Connection, sql: str, ids: Sequence[int], *extra: Any) -> Iterable[tuple]:
    """`sql` with `{ids}` replaced by the marks of a chunk of `ids` (then `extra` parameters)."""
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        yield from conn.exec_driver_sql(sql.format(ids=placeholders(conn, len(chunk))), (*chunk, *extra))


def _facts(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[str, bool]]:
    """record id -> (kind, whether residents may see it: published and not removed)."""
    sql = "SELECT id, kind, status, removed_at FROM records WHERE id IN ({ids})"
    return {r[0]: (r[1], r[2] == "published" and r[3] is None) for r in _chunked(conn, sql, ids)}


def _merchants(conn: Connection, ids: Sequence[int]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    sql = "SELECT record_id, merchant_id FROM record_origins WHERE live AND record_id IN ({ids})"
    for record_id, merchant_id in _chunked(conn, sql, ids):
        found.setdefault(record_id, set()).add(merchant_id)
    return found


def _tags(conn: Connection, ids: Sequence[int], wanted: Sequence[str]) -> dict[int, set[str]]:
    """record id -> the tags (folded, from `item_tags`) of its live origins that a channel asks for."""
    found: dict[int, set[str]] = {}
    sql = ("SELECT o.record_id, t.tag FROM record_origins o JOIN item_tags t ON t.item_id = o.item_id "
           f"WHERE o.live AND o.record_id IN ({{ids}}) AND t.tag IN ({placeholders(conn, len(wanted))})")
    for record_id, tag in _chunked(conn, sql, ids, *wanted):
        found.setdefault(record_id, set()).add(tag)
    return found


def _versions(conn: Connection, ids: Sequence[int]) -> dict[int, int]:
    sql = "SELECT record_id, max(id) FROM record_revisions WHERE record_id IN ({ids}) GROUP BY record_id"
    return dict(_chunked(conn, sql, ids)) if ids else {}


def _known(conn: Connection, channels: Sequence[str], ids: Sequence[int]) -> set[tuple[str, int]]:
    """(channel, record) of these records that have ledger rows (the unique index, per channel)."""
    found: set[tuple[str, int]] = set()
    for channel in channels if ids else ():
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            sql = (f"SELECT DISTINCT record_id FROM ledger WHERE channel_id = {placeholders(conn, 1)} "
                   f"AND record_id IN ({placeholders(conn, len(chunk))})")
            found.update((channel, r) for r, in conn.exec_driver_sql(sql, (channel, *chunk)))
    return found


# --- what the publish tick reads and writes ---------------------------------------------------

@dataclass(frozen=True)
class ChannelSpec:
    """A push channel as the config says: its renderer, rules and options' fingerprint."""

    renderer: str
    rules: ChannelRules
    fingerprint: str | None = None


@dataclass(frozen=True)
class ChannelState:
    id: str
    renderer: str
    state: str
    state_reason: str | None
    state_at: datetime | None
    created_at: datetime
    hold_until: datetime | None
    next_slot_at: datetime | None
    last_sent_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


@dataclass(frozen=True)
class Claimed:
    """A ledger row a run has claimed (or, in a dry run, would claim)."""

    id: int
    channel_id: str
    record_id: int
    version: int
    op: str
    attempts: int
    created_at: datetime
    first_try_at: datetime | None
    doubt_since: datetime | None


@dataclass(frozen=True)
class Copy:
    """What a channel holds of a record."""

    remote_id: str | None
    remote_url: str | None = None
    state: Mapping[str, Any] = field(default_factory=dict)
    content_hash: str | None = None
    version: int = 0


@dataclass(frozen=True)
class Outcome:
    """How one claimed row ended this run. `status`: sent | skipped | pending (try again at
    `next_try_at`) | failed | unconfirmed | released (not attempted: given back unchanged).
    `copy`: the channel's copy afterwards when it changed (`drop_copy`: it is gone)."""

    row_id: int
    record_id: int
    version: int
    status: str
    event: str | None = None
    detail: str | None = None
    next_try_at: datetime | None = None
    doubt_since: datetime | None = None
    copy: Copy | None = None
    drop_copy: bool = False


@dataclass(frozen=True)
class ChannelChange:
    """What a run changes about its channel as a whole."""

    next_slot_at: datetime | None = None
    sent_at: datetime | None = None
    error: str | None = None
    hold_until: datetime | None = None
    state: str | None = None  # disabled | paused
    state_reason: str | None = None


@dataclass(frozen=True)
class ChannelSummary:
    """One line of `hub channels`."""

    channel: ChannelState
    counts: Mapping[str, int]  # status -> rows
    due: int  # pending rows due now
    next_try_at: datetime | None  # the earliest retry of a pending row not yet due


class LedgerStore:
    def __init__(self, store) -> None:
        self.store = store
        self.engine = store.engine

    # --- channels ---------------------------------------------------------------------------

    def sync_channels(self, specs: Mapping[str, ChannelSpec], now: datetime) -> None:
        """A row per push channel of the config, with its current rules. A disabled or
        paused channel whose options changed (a new URL, a new token) is active again; one
        no longer configured is `removed` (its rows stay, nothing new is written for it)."""
        with self.engine.begin() as conn:
            known = {r.id: r for r in conn.execute(select(CHANNELS))}
            for channel_id, spec in specs.items():
                rules = json.dumps(spec.rules.as_json(), sort_keys=True)
                row = known.get(channel_id)
                if row is None:
                    conn.execute(_dialect_insert(conn, CHANNELS).values(
                        id=channel_id, renderer=spec.renderer, rules=rules, fingerprint=spec.fingerprint,
                        state="active", created_at=now).on_conflict_do_nothing(index_elements=["id"]))
                    continue
                values: dict[str, Any] = {"renderer": spec.renderer, "rules": rules, "fingerprint": spec.fingerprint}
                changed = row.fingerprint != spec.fingerprint
                if row.state == "removed" or (row.state in ("disabled", "paused") and changed):
                    values.update(state="active", state_reason=None, state_at=now, hold_until=None)
                if any(getattr(row, k) != v for k, v in values.items()):
                    conn.execute(update(CHANNELS).where(CHANNELS.c.id == channel_id).values(**values))
            gone = [cid for cid, r in known.items() if cid not in specs and r.state != "removed"]
            if gone:
                conn.execute(update(CHANNELS).where(CHANNELS.c.id.in_(gone))
                             .values(state="removed", state_reason="no longer in the config", state_at=now))

    def channel(self, channel_id: str) -> ChannelState | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(CHANNELS).where(CHANNELS.c.id == channel_id)).first()
        return _channel(row) if row else None

    def enable(self, channel_id: str, now: datetime) -> bool:
        """Lift a disable or pause by hand (`hub channels enable`)."""
        with self.engine.begin() as conn:
            return conn.execute(update(CHANNELS).where(CHANNELS.c.id == channel_id,
                                                       CHANNELS.c.state.in_(("disabled", "paused")))
                                .values(state="active", state_reason=None, state_at=now, hold_until=None)).rowcount == 1

    # --- claiming --------------------------------------------------------------------------

    def reclaim_stale(self, channel_id: str, now: datetime, dedup: timedelta | None) -> int:
        """Rows whose run ended without a word (its lease passed): the request may have gone
        out. Where the channel recognises a repeat (`dedup`: for how long) they are tried
        again at once, with the same delivery id; elsewhere a person must check them."""
        stale = and_(LEDGER.c.channel_id == channel_id, LEDGER.c.status == "sending", LEDGER.c.lease_until < now)
        with self.engine.begin() as conn:
            rows = conn.execute(select(LEDGER.c.id, LEDGER.c.doubt_since, LEDGER.c.last_try_at).where(stale)).all()
            again, doubtful = [], []
            for r in rows:
                since = r.doubt_since or r.last_try_at or now
                repeatable = dedup is not None and since + dedup > now
                (again if repeatable else doubtful).append({"p_id": r.id, "p_since": since})
            common = {"lease_owner": None, "lease_until": None, "doubt_since": _p("since", UTCDateTime())}
            if again:
                conn.execute(update(LEDGER).where(LEDGER.c.id == _p("id"), LEDGER.c.status == "sending")
                             .values(status="pending", next_try_at=None, detail=_STALE, **common), again)
            if doubtful:
                conn.execute(update(LEDGER).where(LEDGER.c.id == _p("id"), LEDGER.c.status == "sending")
                             .values(status="unconfirmed", detail=_STALE + "; check the channel, then `hub "
                                     "channels retry` or `hub channels mark-sent`", **common), doubtful)
        return len(rows)

    def claim(self, channel_id: str, now: datetime, owner: str, until: datetime, limit: int) -> list[Claimed]:
        """Take up to `limit` rows that are due, oldest first, under a lease until `until`."""
        if limit <= 0:
            return []
        due = _due(channel_id, now).limit(limit)
        if self.store.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        statement = (update(LEDGER).where(LEDGER.c.id.in_(due.scalar_subquery()), LEDGER.c.status == "pending")
                     .values(status="sending", lease_owner=owner, lease_until=until, attempts=LEDGER.c.attempts + 1,
                             last_try_at=now, first_try_at=func.coalesce(LEDGER.c.first_try_at, now))
                     .returning(*_CLAIMED))
        with self.engine.begin() as conn:
            rows = conn.execute(statement).all()
        return sorted((_claimed(r) for r in rows), key=lambda c: c.id)

    def renew(self, owner: str, row_ids: Collection[int], until: datetime) -> set[int]:
        """Extend the lease of the claimed rows that are still this run's, just before they go
        out; returns their ids. A run slowed down past its lease (a loaded machine) may have
        lost some to another run, which sends them: this run must not send them too."""
        if not row_ids:
            return set()
        statement = (update(LEDGER).where(LEDGER.c.id.in_(list(row_ids)), LEDGER.c.status == "sending",
                                          LEDGER.c.lease_owner == owner)
                     .values(lease_until=until).returning(LEDGER.c.id))
        with self.engine.begin() as conn:
            return set(conn.execute(statement).scalars())

    def peek(self, channel_id: str, now: datetime, limit: int) -> list[Claimed]:
        """What `claim` would take now, untouched (a dry run)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_CLAIMED).where(LEDGER.c.id.in_(_due(channel_id, now).limit(limit)))
                                .order_by(LEDGER.c.id)).all()
        return [_claimed(r) for r in rows]

    def copies(self, channel_id: str, record_ids: Collection[int]) -> dict[int, Copy]:
        ids = list(record_ids)
        found = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                query = select(COPIES).where(COPIES.c.channel_id == channel_id,
                                             COPIES.c.record_id.in_(ids[start:start + CHUNK]))
                found.update({r.record_id: Copy(r.remote_id, r.remote_url, json.loads(r.state), r.content_hash,
                                                r.version) for r in conn.execute(query)})
        return found

    def records(self, record_ids: Collection[int]) -> dict[int, Any]:
        """The records (`hub.records.Record`), whatever their status: a withdrawal needs
        the last state of a hidden or removed one."""
        ids = list(record_ids)
        with self.engine.connect() as conn:
            rows = [r for start in range(0, len(ids), CHUNK)
                    for r in conn.execute(select(RECORDS).where(RECORDS.c.id.in_(ids[start:start + CHUNK])))]
            return {r.id: r for r in self.store.records._load(conn, rows)}

    def visible(self, channel_id: str, record_ids: Collection[int], now: datetime) -> set[int]:
        """Those of `record_ids` residents may see now on `channel_id`: published, not
        removed, not expired, within the merchant's daily quota for the channel."""
        ids = list(record_ids)
        conditions = self.store.records._conditions(channel=channel_id, now=now)
        with self.engine.connect() as conn:
            return {i for start in range(0, len(ids), CHUNK) for i in conn.execute(
                select(RECORDS.c.id).where(RECORDS.c.id.in_(ids[start:start + CHUNK]), *conditions)).scalars()}

    def sent_since(self, channel_id: str, since: datetime) -> int:
        """Deliveries the channel confirmed since `since` (its own rate limit's window)."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(LEDGER).where(
                LEDGER.c.channel_id == channel_id, LEDGER.c.status == "sent", LEDGER.c.sent_at >= since)).scalar_one()

    # --- finishing ---------------------------------------------------------------------------

    def finish(self, channel_id: str, owner: str, outcomes: Sequence[Outcome], now: datetime,
               change: ChannelChange = ChannelChange()) -> None:
        """Record how the claimed rows ended, the channel's copies and the channel's state, in
        one transaction. A row another run has taken meanwhile is left to it; the copy is
        recorded all the same (the channel holds it)."""
        with self.engine.begin() as conn:
            for status, group in _grouped(outcomes).items():
                conn.execute(_FINISH[status], [_finish_params(o, owner, now) for o in group])
            self._write_copies(conn, channel_id, outcomes, now)
            retried = [o for o in outcomes if o.status in ("pending", "failed") and o.doubt_since is None]
            if retried:  # a newer version waits behind it: the newer one is what goes out
                newer = LEDGER.alias("newer")
                has_newer = exists().where(newer.c.channel_id == LEDGER.c.channel_id,
                                           newer.c.record_id == LEDGER.c.record_id, newer.c.version > LEDGER.c.version,
                                           newer.c.status == "pending")
                conn.execute(update(LEDGER).where(LEDGER.c.id.in_([o.row_id for o in retried]),
                                                  LEDGER.c.status.in_(("pending", "failed")), has_newer)
                             .values(status="superseded"))
            values = _channel_values(change, now)
            if values:
                conn.execute(update(CHANNELS).where(CHANNELS.c.id == channel_id).values(**values))

    def _write_copies(self, conn: Connection, channel_id: str, outcomes: Sequence[Outcome], now: datetime) -> None:
        dropped = [o.record_id for o in outcomes if o.drop_copy]
        if dropped:
            conn.execute(delete(COPIES).where(COPIES.c.channel_id == channel_id, COPIES.c.record_id.in_(dropped)))
        kept = [{"channel_id": channel_id, "record_id": o.record_id, "remote_id": o.copy.remote_id,
                 "remote_url": o.copy.remote_url, "state": json.dumps(dict(o.copy.state), default=str),
                 "content_hash": o.copy.content_hash, "version": o.version, "at": now}
                for o in outcomes if o.copy is not None and not o.drop_copy]
        if kept:
            insert = _dialect_insert(conn, COPIES)
            conn.execute(insert.on_conflict_do_update(
                index_elements=["channel_id", "record_id"],
                set_={k: insert.excluded[k] for k in ("remote_id", "remote_url", "state", "content_hash", "version",
                                                      "at")}), kept)

    # --- a person's actions (`hub channels ...`) -------------------------------------------------

    def retry(self, channel_id: str, now: datetime, record_id: int | None = None) -> int:
        """Send failed and unconfirmed rows again (with a fresh set of attempts). For an
        unconfirmed one the person has checked that it did not arrive."""
        where = [LEDGER.c.channel_id == channel_id, LEDGER.c.status.in_(("failed", "unconfirmed"))]
        if record_id is not None:
            where.append(LEDGER.c.record_id == record_id)
        with self.engine.begin() as conn:
            return conn.execute(update(LEDGER).where(*where).values(
                status="pending", attempts=0, next_try_at=None, first_try_at=None, doubt_since=None,
                detail="sent again by hand")).rowcount

    def mark_sent(self, channel_id: str, record_id: int, now: datetime, remote_id: str | None = None,
                  remote_url: str | None = None) -> bool:
        """A person found an unconfirmed delivery on the channel: it counts as sent, with the
        channel's id for the copy if they give it (else updates and removals of the record
        cannot reach that copy, and the next version is sent as new)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(LEDGER.c.id, LEDGER.c.version, LEDGER.c.op).where(
                LEDGER.c.channel_id == channel_id, LEDGER.c.record_id == record_id,
                LEDGER.c.status == "unconfirmed").order_by(LEDGER.c.version.desc())).first()
            if row is None:
                return False
            event = "deleted" if row.op == "withdraw" else "created"
            conn.execute(update(LEDGER).where(LEDGER.c.id == row.id).values(
                status="sent", event=event, remote_id=remote_id, sent_at=now, detail="marked as sent by hand"))
            outcome = Outcome(row.id, record_id, row.version, "sent", event, drop_copy=row.op == "withdraw",
                              copy=None if row.op == "withdraw" or remote_id is None else Copy(remote_id, remote_url))
            self._write_copies(conn, channel_id, [outcome], now)
        return True

    # --- reading: `hub channels`, /metrics ---------------------------------------------------------

    def summaries(self, now: datetime) -> list[ChannelSummary]:
        due = and_(LEDGER.c.status == "pending", or_(LEDGER.c.next_try_at.is_(None), LEDGER.c.next_try_at <= now))
        with self.engine.connect() as conn:
            channels = [_channel(r) for r in conn.execute(select(CHANNELS).order_by(CHANNELS.c.id))]
            counts: dict[str, dict[str, int]] = {}
            for channel_id, status, n in conn.execute(select(LEDGER.c.channel_id, LEDGER.c.status, func.count())
                                                      .group_by(LEDGER.c.channel_id, LEDGER.c.status)):
                counts.setdefault(channel_id, {})[status] = n
            dues = dict(conn.execute(select(LEDGER.c.channel_id, func.count()).where(due)
                                     .group_by(LEDGER.c.channel_id)).all())
            later = dict(conn.execute(select(LEDGER.c.channel_id, func.min(LEDGER.c.next_try_at))
                                      .where(LEDGER.c.status == "pending", LEDGER.c.next_try_at > now)
                                      .group_by(LEDGER.c.channel_id)).all())
        return [ChannelSummary(c, counts.get(c.id, {}), dues.get(c.id, 0), _utc(later.get(c.id))) for c in channels]

    def problems(self, channel_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The newest failed and unconfirmed rows of a channel, with why."""
        query = (select(LEDGER.c.record_id, LEDGER.c.version, LEDGER.c.op, LEDGER.c.status, LEDGER.c.attempts,
                        LEDGER.c.last_try_at, LEDGER.c.detail)
                 .where(LEDGER.c.channel_id == channel_id, LEDGER.c.status.in_(("failed", "unconfirmed")))
                 .order_by(LEDGER.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def backlogs(self) -> dict[str, int]:
        """channel id -> rows it has still to send (pending or being sent), for active channels too."""
        with self.engine.connect() as conn:
            found = dict.fromkeys(conn.execute(select(CHANNELS.c.id).where(CHANNELS.c.state != "removed")).scalars(), 0)
            found.update(conn.execute(select(LEDGER.c.channel_id, func.count())
                                      .where(LEDGER.c.status.in_(("pending", "sending")),
                                             LEDGER.c.channel_id.in_(list(found)))
                                      .group_by(LEDGER.c.channel_id)).all())
        return found

    # --- upkeep -------------------------------------------------------------------------------

    def prune(self, before: datetime) -> int:
        """Forget finished rows older than `before` (the copies stay: they are what updates
        and removals need), and copies of records that no longer exist."""
        with self.engine.begin() as conn:
            n = conn.execute(delete(LEDGER).where(LEDGER.c.status.in_(FINAL), LEDGER.c.created_at < before)).rowcount
            conn.execute(delete(COPIES).where(COPIES.c.record_id.not_in(select(RECORDS.c.id))))
        return n


# --- helpers -------------------------------------------------------------------------------------

_CLAIMED = (LEDGER.c.id, LEDGER.c.channel_id, LEDGER.c.record_id, LEDGER.c.version, LEDGER.c.op, LEDGER.c.attempts,
            LEDGER.c.created_at, LEDGER.c.first_try_at, LEDGER.c.doubt_since)


def _claimed(r: Any) -> Claimed:
    return Claimed(r.id, r.channel_id, r.record_id, r.version, r.op, r.attempts, _utc(r.created_at),
                   _utc(r.first_try_at), _utc(r.doubt_since))


def _due(channel_id: str, now: datetime):
    """The rows of a channel due now, oldest first; a record's newer version waits while an
    older one is open (being sent, retried after a doubtful attempt, or unconfirmed)."""
    older = LEDGER.alias("older")
    blocked = exists().where(older.c.channel_id == LEDGER.c.channel_id, older.c.record_id == LEDGER.c.record_id,
                             older.c.version < LEDGER.c.version, older.c.status.in_(OPEN))
    return (select(LEDGER.c.id).where(LEDGER.c.channel_id == channel_id, LEDGER.c.status == "pending",
                                      or_(LEDGER.c.next_try_at.is_(None), LEDGER.c.next_try_at <= now), ~blocked)
            .order_by(LEDGER.c.id))


def _p(name: str, type_: Any = None):
    return bindparam(f"p_{name}", type_=type_)


def _grouped(outcomes: Sequence[Outcome]) -> dict[str, list[Outcome]]:
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(o.status, []).append(o)
    return groups


_MINE = and_(LEDGER.c.id == _p("id"), LEDGER.c.status == "sending", LEDGER.c.lease_owner == _p("owner"))
_RELEASE = {"lease_owner": None, "lease_until": None}
_FINISH = {
    "sent": update(LEDGER).where(_MINE).values(status="sent", event=_p("event"), remote_id=_p("remote_id"),
                                               sent_at=_p("now", UTCDateTime()), detail=_p("detail"), **_RELEASE),
    "skipped": update(LEDGER).where(_MINE).values(status="skipped", event=_p("event"), detail=_p("detail"), **_RELEASE),
    "pending": update(LEDGER).where(_MINE).values(status="pending", next_try_at=_p("next", UTCDateTime()),
                                                  doubt_since=_p("doubt", UTCDateTime()), detail=_p("detail"),
                                                  **_RELEASE),
    "failed": update(LEDGER).where(_MINE).values(status="failed", doubt_since=_p("doubt", UTCDateTime()),
                                                 detail=_p("detail"), **_RELEASE),
    "unconfirmed": update(LEDGER).where(_MINE).values(status="unconfirmed", doubt_since=_p("doubt", UTCDateTime()),
                                                      detail=_p("detail"), **_RELEASE),
    # not attempted after all (the channel asked to wait): as it was before the claim
    "released": update(LEDGER).where(_MINE).values(
        status="pending", attempts=LEDGER.c.attempts - 1,
        first_try_at=case((LEDGER.c.attempts <= 1, None), else_=LEDGER.c.first_try_at),
        next_try_at=_p("next", UTCDateTime()), **_RELEASE),
}


def _finish_params(o: Outcome, owner: str, now: datetime) -> dict[str, Any]:
    return {"p_id": o.row_id, "p_owner": owner, "p_now": now, "p_event": o.event,
            "p_remote_id": o.copy.remote_id if o.copy is not None else None, "p_detail": o.detail,
            "p_next": o.next_try_at, "p_doubt": o.doubt_since}


def _channel_values(change: ChannelChange, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if change.next_slot_at is not None:
        values["next_slot_at"] = change.next_slot_at
    if change.sent_at is not None:
        values["last_sent_at"] = change.sent_at
    if change.error is not None:
        values.update(last_error=change.error, last_error_at=now)
    if change.hold_until is not None:
        values["hold_until"] = change.hold_until
    if change.state is not None:
        values.update(state=change.state, state_reason=change.state_reason, state_at=now)
    return values


def _channel(r: Any) -> ChannelState:
    return ChannelState(r.id, r.renderer, r.state, r.state_reason, _utc(r.state_at), _utc(r.created_at),
                        _utc(r.hold_until), _utc(r.next_slot_at), _utc(r.last_sent_at), r.last_error,
                        _utc(r.last_error_at))


def _utc(value: Any) -> datetime | None:
    """A datetime as UTC; an aggregate's (SQLite hands those back as text) too."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _dialect_insert(conn: Connection, table: Any) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
