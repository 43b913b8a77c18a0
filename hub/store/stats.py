"""The store's side of the statistics and metrics (issue 17, migration 0013).

- `stat_counts`: one counter per (day, event, merchant, channel, subject): page views,
  searches (the terms, never who searched), clicks through `/go/{record}`, feed and API
  requests, newsletter deliveries. `hub.stats` counts in memory and adds its counts here in
  batches. Nothing that names a person is a column: no address, no cookie, no user agent.
- `source_fetch_days`: fetches and failures per source and (UTC) day, counted by a trigger
  on `sources` (see migration 0013): what the reliability of a merchant's sources and
  `/metrics`' fetch counters are made of.
- Channel deliveries are read from the delivery ledger, the record of what each channel sent
  (issue 16's `ledger` where the database has it, else the per-item `deliveries`): never
  counted a second time.
"""

from __future__ import annotations

import json
import weakref
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

from sqlalchemy import (JSON, BigInteger, DateTime, MetaData, Table, and_, case, cast, extract, func, inspect, or_,
                        select, type_coerce)
from sqlmodel import Column, Field, SQLModel

from hub.store import ITEMS, SOURCES
from hub.store.holds import HOLDS
from hub.store.placement import RECORDS
from hub.store.tables import DeliveryRow
from hub.store.tokens import TOKEN_CHECKS, check_from

DELIVERIES = DeliveryRow.__table__
_LEDGERS: "weakref.WeakKeyDictionary[Any, Table | None]" = weakref.WeakKeyDictionary()
CountKey = tuple[str, str, str, str, str]  # day (YYYY-MM-DD), event, merchant id, channel, subject


class StatCountRow(SQLModel, table=True):
    __tablename__ = "stat_counts"

    day: str = Field(primary_key=True)
    event: str = Field(primary_key=True)
    merchant_id: str = Field(primary_key=True)  # "" when the event belongs to no merchant
    channel: str = Field(primary_key=True)
    subject: str = Field(primary_key=True)  # a record id, a search term, a feed format, or ""
    n: int = Field(sa_column=Column(BigInteger, nullable=False))


class SourceFetchDayRow(SQLModel, table=True):
    __tablename__ = "source_fetch_days"

    day: str = Field(primary_key=True)
    source_id: str = Field(primary_key=True)
    fetches: int
    failures: int


COUNTS = StatCountRow.__table__
FETCH_DAYS = SourceFetchDayRow.__table__


@dataclass(frozen=True)
class Count:
    day: date
    event: str
    merchant_id: str
    channel: str
    subject: str
    n: int


class SourceState(NamedTuple):
    """The part of `hub.store.SourceStatus` that a source's health state depends on."""

    id: str
    status: str
    last_error: str | None
    last_ok_at: datetime | None  # aware: UTC on SQLite, the session's time zone on PostgreSQL
    warnings: list[str]
    held: str | None


class SourcePlan(NamedTuple):
    """The part of `hub.store.scheduling.SourceSchedule` that a source's health state depends on."""

    interval_seconds: int | None
    push_state: str | None


class StatsStore:
    def __init__(self, store) -> None:
        self.store = store
        self.engine = store.engine

    # --- writing --------------------------------------------------------------------------

    def add(self, counts: Mapping[CountKey, int]) -> None:
        """Add these counts to the stored ones, in one transaction."""
        if not counts:
            return
        from sqlalchemy.dialects import postgresql, sqlite

        insert = (postgresql.insert if self.store.dialect == "postgresql" else sqlite.insert)(COUNTS)
        upsert = insert.on_conflict_do_update(index_elements=["day", "event", "merchant_id", "channel", "subject"],
                                              set_={"n": COUNTS.c.n + insert.excluded.n})
        rows = [{"day": k[0], "event": k[1], "merchant_id": k[2], "channel": k[3], "subject": k[4], "n": n}
                for k, n in sorted(counts.items())]  # in key order: no deadlock between two writers
        with self.engine.begin() as conn:
            conn.execute(upsert, rows)

    def merchants_of(self, record_ids: Iterable[int]) -> dict[int, str]:
        """record id -> its organiser."""
        ids = list(set(record_ids))
        found: dict[int, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 1000):
                found.update(conn.execute(select(RECORDS.c.id, RECORDS.c.merchant_id)
                                          .where(RECORDS.c.id.in_(ids[start:start + 1000]))).all())
        return found

    # --- reading: the statistics ----------------------------------------------------------

    def counts(self, first: date, last: date, events: Sequence[str] | None = None) -> list[Count]:
        """Every stored count of the days `first`..`last` (inclusive)."""
        query = select(COUNTS).where(COUNTS.c.day >= first.isoformat(), COUNTS.c.day <= last.isoformat())
        if events:
            query = query.where(COUNTS.c.event.in_(list(events)))
        with self.engine.connect() as conn:
            return [Count(date.fromisoformat(r.day), r.event, r.merchant_id, r.channel, r.subject, r.n)
                    for r in conn.execute(query.order_by(COUNTS.c.day))]

    def deliveries(self, start: datetime, end: datetime) -> list[tuple[datetime, str, str, int]]:
        """(sent at, channel, merchant, 1) of every delivery the ledger marks sent in [start, end)."""
        ledger = self._ledger()
        if ledger is not None:  # one row per record and version a channel sent
            query = (select(ledger.c.sent_at, ledger.c.channel_id, RECORDS.c.merchant_id)
                     .join(RECORDS, RECORDS.c.id == ledger.c.record_id)
                     .where(ledger.c.status == "sent", ledger.c.sent_at >= start, ledger.c.sent_at < end))
        else:
            query = (select(DELIVERIES.c.sent_at, DELIVERIES.c.channel_id, ITEMS.c.merchant_id)
                     .join(ITEMS, ITEMS.c.id == DELIVERIES.c.item_id)
                     .where(DELIVERIES.c.status == "sent", DELIVERIES.c.sent_at >= start, DELIVERIES.c.sent_at < end))
        with self.engine.connect() as conn:
            return [(r.sent_at, r.channel_id, r.merchant_id, 1) for r in conn.execute(query)]

    def _ledger(self) -> Table | None:
        """The delivery ledger of issue 16 (`ledger`: a row per channel, record and version),
        if this database has it; it took over what `deliveries` says was sent (migration 0015),
        so the two are never counted together. None: only the per-item `deliveries`."""
        engine = self.engine
        if engine not in _LEDGERS:
            found = None
            if inspect(engine).has_table("ledger"):
                table = Table("ledger", MetaData(), autoload_with=engine)
                if {"channel_id", "record_id", "status", "sent_at", "created_at"} <= set(table.c.keys()):
                    found = table
            _LEDGERS[engine] = found
        return _LEDGERS[engine]

    # --- reading: sources and merchants ---------------------------------------------------

    def error_codes(self) -> dict[str, str | None]:
        """source id -> the code of its last error (None when it works)."""
        with self.engine.connect() as conn:
            return dict(conn.execute(select(SOURCES.c.id, SOURCES.c.last_error_code)).all())

    def source_states(self, now: datetime) -> Iterator[tuple[SourceState, str | None, list[str], SourcePlan]]:
        """Per source what `hub.health.state_of` reads, and nothing else (for /metrics of a big
        town: no item counts, no schedules' dates): (the source, its last error code, its token
        check's warnings at `now`, its plan). As `Store.source_statuses` and
        `ScheduleStore.source_schedules` tell them: a token check counts while the source's
        options are those it was made with; a source held back has no interval."""
        checks = TOKEN_CHECKS.outerjoin(HOLDS, HOLDS.c.source_id == TOKEN_CHECKS.c.source_id)
        current = (select(TOKEN_CHECKS.c.source_id, TOKEN_CHECKS.c.result).select_from(checks)
                   .where(TOKEN_CHECKS.c.fingerprint.is_not_distinct_from(HOLDS.c.fingerprint)).subquery())
        last_ok = SOURCES.c.last_ok_at
        if self.store.dialect == "postgresql":  # aware already: no conversion per row (100,000 of them)
            last_ok = type_coerce(last_ok, DateTime(timezone=True))
        query = (select(SOURCES.c.id, SOURCES.c.status, SOURCES.c.last_error, last_ok,
                        SOURCES.c.warnings, SOURCES.c.last_error_code, SOURCES.c.interval_seconds,
                        SOURCES.c.push_state, HOLDS.c.hold, current.c.result)
                 .select_from(SOURCES.outerjoin(HOLDS, HOLDS.c.source_id == SOURCES.c.id)
                              .outerjoin(current, current.c.source_id == SOURCES.c.id)))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        for sid, status, error, last_ok, warnings, code, interval, push, hold, check in rows:
            token = check_from(check) if check else None
            yield (SourceState(sid, status, error, last_ok, json.loads(warnings) if warnings else [], hold), code,
                   token.warnings(now) if token else [], SourcePlan(None if hold else interval, push))

    def items_per_week(self, now: datetime, weeks: int = 8) -> dict[str, tuple[int, float]]:
        """source id -> (items posted in the last 7 days, usual items a week over the `weeks`
        weeks before). Posted: published, else first seen (`sort_at`); deleted ones count."""
        week = now - timedelta(days=7)
        since = week - timedelta(days=7 * weeks)
        recent = func.sum(case((ITEMS.c.sort_at >= week, 1), else_=0))
        before = func.sum(case((ITEMS.c.sort_at < week, 1), else_=0))
        query = (select(ITEMS.c.source_id, recent, before)
                 .where(ITEMS.c.sort_at >= since, ITEMS.c.sort_at <= now).group_by(ITEMS.c.source_id))
        with self.engine.connect() as conn:
            return {sid: (int(r or 0), (b or 0) / weeks) for sid, r, b in conn.execute(query)}

    def fetch_days(self, first: date, last: date) -> dict[str, tuple[int, int]]:
        """source id -> (fetches, failures) over the days `first`..`last`."""
        query = (select(FETCH_DAYS.c.source_id, func.sum(FETCH_DAYS.c.fetches), func.sum(FETCH_DAYS.c.failures))
                 .where(FETCH_DAYS.c.day >= first.isoformat(), FETCH_DAYS.c.day <= last.isoformat())
                 .group_by(FETCH_DAYS.c.source_id))
        with self.engine.connect() as conn:
            return {sid: (int(f or 0), int(x or 0)) for sid, f, x in conn.execute(query)}

    def fetch_totals(self) -> dict[str, tuple[int, int]]:
        """connector -> (fetches, failures) ever counted (for /metrics)."""
        query = (select(SOURCES.c.connector, func.sum(FETCH_DAYS.c.fetches), func.sum(FETCH_DAYS.c.failures))
                 .join(SOURCES, SOURCES.c.id == FETCH_DAYS.c.source_id).group_by(SOURCES.c.connector))
        with self.engine.connect() as conn:
            return {c: (int(f or 0), int(x or 0)) for c, f, x in conn.execute(query)}

    def posted_counts(self, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
        """(merchant id, connector, items) posted (by `sort_at`) in [start, end), counted by
        the database: a big town's month holds tens of thousands of items."""
        query = (select(ITEMS.c.merchant_id, SOURCES.c.connector, func.count())
                 .join(SOURCES, SOURCES.c.id == ITEMS.c.source_id)
                 .where(ITEMS.c.sort_at >= start, ITEMS.c.sort_at < end)
                 .group_by(ITEMS.c.merchant_id, SOURCES.c.connector))
        with self.engine.connect() as conn:
            return [(m, c, int(n)) for m, c, n in conn.execute(query)]

    def posting_delays(self, start: datetime, end: datetime) -> dict[str, list[int]]:
        """merchant id -> microseconds from publication to first sight of its items posted in
        [start, end), but those of a source's first fetch (posted long before the hub knew
        it): computed by the database, so no item's times are read into Python."""
        first, counts = self._delay_counts()
        query = (select(ITEMS.c.merchant_id, self._delay_micros(ITEMS.c.published, ITEMS.c.first_seen_at))
                 .select_from(ITEMS.join(SOURCES, SOURCES.c.id == ITEMS.c.source_id)
                              .outerjoin(first, first.c.source_id == ITEMS.c.source_id))
                 .where(ITEMS.c.sort_at >= start, ITEMS.c.sort_at < end, counts))
        delays: dict[str, list[int]] = defaultdict(list)
        with self.engine.connect() as conn:
            for merchant_id, micros in conn.execute(query):
                delays[merchant_id].append(int(micros))
        return dict(delays)

    def last_posts(self) -> dict[str, datetime]:
        """merchant id -> when it last posted anything (`sort_at` of its newest item), for
        the merchants with sources. One look into `ix_items_merchant_sort` per merchant,
        where grouping the items by merchant would read all of them."""
        merchants = select(SOURCES.c.merchant_id).distinct().subquery()
        newest = (select(func.max(ITEMS.c.sort_at)).where(ITEMS.c.merchant_id == merchants.c.merchant_id)
                  .scalar_subquery())
        with self.engine.connect() as conn:
            rows = conn.execute(select(merchants.c.merchant_id, newest)).all()
        return {m: _utc(at) for m, at in rows if at is not None}

    def record_fields(self, start: datetime, end: datetime, fields: Mapping[str, Sequence[str]]
                      ) -> dict[tuple[str, str], tuple[int, dict[str, int]]]:
        """(merchant id, kind) -> (records posted in [start, end), field -> how many of them
        have it), a field being had when any of its snapshot keys holds a value (`fields`,
        e.g. "date": ("event_start", "offer_valid_until")): what completeness looks at,
        counted by the database, which reads the snapshots' JSON itself."""
        names = list(fields)
        query = (select(RECORDS.c.merchant_id, RECORDS.c.kind, func.count(),
                        *(func.sum(case((or_(*(func.coalesce(self._snapshot_value(k), "") != "" for k in fields[n])),
                                         1), else_=0)) for n in names))
                 .where(RECORDS.c.sort_at >= start, RECORDS.c.sort_at < end, RECORDS.c.removed_at.is_(None))
                 .group_by(RECORDS.c.merchant_id, RECORDS.c.kind))
        with self.engine.connect() as conn:
            return {(m, kind): (int(n), {name: int(have or 0) for name, have in zip(names, counts)})
                    for m, kind, n, *counts in conn.execute(query)}

    def _snapshot_value(self, key: str):
        """A record's snapshot field as text (NULL when absent: the snapshot leaves out empty fields)."""
        if self.store.dialect == "postgresql":
            return func.json_extract_path_text(cast(RECORDS.c.snapshot, JSON), key)
        return func.json_extract(RECORDS.c.snapshot, f"$.{key}")

    # --- reading: for /metrics ------------------------------------------------------------

    def records_by_status(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(RECORDS.c.status, func.count()).where(RECORDS.c.removed_at.is_(None))
                                .group_by(RECORDS.c.status)).all()
        return dict(rows)

    def ledger_by_status(self) -> dict[tuple[str, str], int]:
        """(channel, status) -> rows of the delivery ledger."""
        table = self._ledger()
        table = DELIVERIES if table is None else table
        with self.engine.connect() as conn:
            rows = conn.execute(select(table.c.channel_id, table.c.status, func.count())
                                .group_by(table.c.channel_id, table.c.status)).all()
        return {(c, s): n for c, s, n in rows}

    def ingest_delay_histogram(self, since: datetime, bounds: Sequence[float]) -> DelayHistogram:
        """Seconds from publication to first sight, of the items first seen since `since`
        (not those of a source's first fetch: they were posted long before the hub knew it),
        counted per bucket by the database: the work in Python does not grow with the items."""
        first, counts = self._delay_counts()
        delays = (select(self._delay_micros(ITEMS.c.published, ITEMS.c.first_seen_at).label("micros"))
                  .select_from(ITEMS.outerjoin(first, first.c.source_id == ITEMS.c.source_id))
                  .where(ITEMS.c.first_seen_at >= since, counts))
        with self.engine.connect() as conn:
            return _histogram_from(conn.execute(_counted(_computed_once(delays), bounds)).one(), bounds)

    def publish_delay_histograms(self, since: datetime, bounds: Sequence[float]) -> dict[str, DelayHistogram]:
        """channel -> seconds from the hub's news (an item first seen; with the ledger of issue
        16, a record's change) to its delivery, for deliveries sent since `since`, counted per
        bucket by the database."""
        ledger = self._ledger()
        if ledger is not None:
            delays = (select(ledger.c.channel_id, self._delay_micros(ledger.c.created_at, ledger.c.sent_at)
                             .label("micros"))
                      .where(ledger.c.status == "sent", ledger.c.sent_at >= since))
        else:
            delays = (select(DELIVERIES.c.channel_id, self._delay_micros(ITEMS.c.first_seen_at, DELIVERIES.c.sent_at)
                             .label("micros"))
                      .select_from(DELIVERIES.join(ITEMS, ITEMS.c.id == DELIVERIES.c.item_id))
                      .where(DELIVERIES.c.status == "sent", DELIVERIES.c.sent_at >= since))
        delays = _computed_once(delays)
        query = _counted(delays, bounds, delays.c.channel_id).group_by(delays.c.channel_id)
        with self.engine.connect() as conn:
            return {row[0]: _histogram_from(row[1:], bounds) for row in conn.execute(query)}

    def _delay_counts(self):
        """(each source's first fetch day, to join on items' source_id; the condition under
        which an item's delay from publication to first sight counts): it has a publication
        date and was first seen after the day of its source's first fetch (what that fetch
        found was posted long before the hub knew the source)."""
        first = (select(FETCH_DAYS.c.source_id, func.min(FETCH_DAYS.c.day).label("day"))
                 .group_by(FETCH_DAYS.c.source_id).subquery())
        seen_day = self._utc_day(ITEMS.c.first_seen_at)
        return first, and_(ITEMS.c.published.is_not(None), or_(first.c.day.is_(None), seen_day > first.c.day))

    def _delay_micros(self, start, end):
        """max(0, end - start) in whole microseconds: exact integers on both databases (no
        float seconds, whose rounding could move a delay across a bucket's bound)."""
        delay = self._micros(end) - self._micros(start)
        return func.greatest(delay, 0) if self.store.dialect == "postgresql" else func.max(delay, 0)

    def _micros(self, column):
        """Microseconds since 1970 of a stored UTC time. SQLite keeps it as the text
        'YYYY-MM-DD HH:MM:SS.ffffff' and its date functions round to milliseconds: whole
        seconds by strftime, the fraction read from the text."""
        if self.store.dialect == "postgresql":
            return cast(extract("epoch", column) * 1_000_000, BigInteger)
        seconds = cast(func.strftime("%s", func.substr(column, 1, 19)), BigInteger)
        fraction = cast(func.substr(func.substr(column, 21, 6).op("||")("000000"), 1, 6), BigInteger)
        return seconds * 1_000_000 + fraction

    def _utc_day(self, column):
        """'YYYY-MM-DD' of a stored time in UTC, as the fetch-day trigger of migration 0013 writes it."""
        if self.store.dialect == "postgresql":
            return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
        return func.substr(column, 1, 10)


@dataclass(frozen=True)
class DelayHistogram:
    """Delays counted per bucket: `buckets[i]` delays at most `bounds[i]` seconds (cumulative)."""

    buckets: tuple[int, ...]
    count: int
    seconds: float  # the sum of the delays


def _computed_once(delays):
    """The delays as a materialized CTE: each row's delay is computed once, not once for each
    bucket it is compared with (both databases would otherwise inline the expression)."""
    return delays.cte("delays").prefix_with("MATERIALIZED")


def _counted(delays, bounds: Sequence[float], *keys):
    """SELECT keys..., how many delays, their sum (microseconds), and per bound how many are
    at most that long: Prometheus' cumulative buckets, the bound included (`le`)."""
    micros = delays.c.micros
    return select(*keys, func.count(), func.coalesce(func.sum(micros), 0),
                  *(func.coalesce(func.sum(case((micros <= round(b * 1_000_000), 1), else_=0)), 0) for b in bounds))


def _histogram_from(row: Sequence, bounds: Sequence[float]) -> DelayHistogram:
    count, micros, *buckets = row
    return DelayHistogram(tuple(int(b) for b in buckets), int(count), int(micros) / 1_000_000)


def _utc(value: Any) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
