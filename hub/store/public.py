"""Reading records for the public interfaces that walk the whole store page by page: the
JSON API (`hub.web.api`) and the sitemap (`hub.web.seo`).

A walk must not skip or repeat a record when new ones arrive between two pages, and a late
page must cost what the first one costs: so pages follow a key (keyset pagination), never
an offset. A page of a listing continues after the (sort key, id) of the last row of the
previous one; the sitemap walks record ids. The filters are the listings' own
(`Records._conditions`: published, not removed, not expired, within quotas, plus the pages'
filters), so a page here shows what the resident pages show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Collection, Iterator, NamedTuple

from sqlalchemy import func, or_, select

from hub.records import Record
from hub.store.placement import RECORDS, SOURCES
from hub.store.records import _ORDER, Order, Records

_KEY = {"newest": RECORDS.c.sort_at, "event_start": RECORDS.c.event_start}


class Position(NamedTuple):
    """Where a page ends: the last row's sort key (publication or event start) and id."""

    key: datetime
    id: int


@dataclass(frozen=True)
class Slice:
    """One page of a listing, before its records are loaded: enough for an ETag."""

    marks: list[tuple[int, datetime]]  # (id, changed_at) of each row, in order
    next: Position | None  # where the next page starts; None on the last page
    _rows: list[Any] = field(default_factory=list, repr=False)


class Chunk(NamedTuple):
    """A range of record ids for one sitemap file: ids in (first - 1, last]."""

    number: int
    count: int
    lastmod: datetime | None


class PublicReader:
    def __init__(self, records: Records) -> None:
        self.records = records
        self.engine = records.engine

    def slice(self, *, order: Order = "newest", after: Position | None = None, limit: int = 20,
              **filters: Any) -> Slice:
        """Up to `limit` records after `after` in `order` (newest first, or events by start),
        narrowed by `filters` as `Records.list` is. One query; the records load with `load`."""
        key = _KEY[order]
        conditions = self.records._conditions(**filters) + [key.is_not(None)]
        if after is not None:  # the range on the key alone is what lets the index seek to the page
            if order == "newest":
                conditions += [key <= after.key, or_(key < after.key, RECORDS.c.id < after.id)]
            else:
                conditions += [key >= after.key, or_(key > after.key, RECORDS.c.id > after.id)]
        query = select(RECORDS).where(*conditions).order_by(*_ORDER[order]).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        shown = rows[:limit]
        last = shown[-1] if len(rows) > limit else None
        following = Position(getattr(last, key.name), last.id) if last is not None else None
        return Slice([(r.id, r.changed_at) for r in shown], following, shown)

    def load(self, found: Slice) -> list[Record]:
        """The records of a slice, merged from their origins (a record whose every origin
        was forgotten by retention is left out)."""
        if not found._rows:
            return []
        with self.engine.connect() as conn:
            return self.records._load(conn, found._rows)

    def connectors(self, source_ids: Collection[str]) -> dict[str, str]:
        """source id -> connector kind ("rss", "facebook", ...), for a record's origins."""
        if not source_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(SOURCES.c.id, SOURCES.c.connector).where(SOURCES.c.id.in_(list(source_ids))))
            return dict(rows.all())

    # --- the sitemap: every record page that exists ------------------------------------------

    def chunks(self, size: int) -> list[Chunk]:
        """The non-empty ranges of `size` record ids among the pages that exist (published,
        not removed; expired ones too: their pages still answer), with each range's count
        and latest change. One aggregate query over the id index."""
        number = ((RECORDS.c.id - 1) // size).label("chunk")
        query = (select(number, func.count(), func.max(RECORDS.c.changed_at)).where(*self._pages())
                 .group_by(number).order_by(number))
        with self.engine.connect() as conn:
            return [Chunk(int(n) + 1, count, _utc(lastmod)) for n, count, lastmod in conn.execute(query)]

    def pages(self, *, first_id: int = 1, last_id: int | None = None, batch: int = 5000
              ) -> Iterator[tuple[int, datetime]]:
        """(id, changed_at) of every record page from `first_id` to `last_id`, by id, read
        `batch` rows at a time: a million records never sit in memory at once."""
        after = first_id - 1
        while True:
            conditions = [*self._pages(), RECORDS.c.id > after]
            if last_id is not None:
                conditions.append(RECORDS.c.id <= last_id)
            query = select(RECORDS.c.id, RECORDS.c.changed_at).where(*conditions).order_by(RECORDS.c.id).limit(batch)
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            yield from ((r.id, r.changed_at) for r in rows)
            if len(rows) < batch:
                return
            after = rows[-1].id

    def last_changes(self) -> dict[str | None, datetime]:
        """When record pages last changed: None -> any; "event", "offer", "post" -> of that
        kind; "m:<id>" -> of that organiser merchant. One aggregate query."""
        query = (select(RECORDS.c.kind, RECORDS.c.merchant_id, func.max(RECORDS.c.changed_at)).where(*self._pages())
                 .group_by(RECORDS.c.kind, RECORDS.c.merchant_id))
        found: dict[str | None, datetime] = {}
        with self.engine.connect() as conn:
            for kind, merchant_id, raw in conn.execute(query):
                at = _utc(raw)
                if at is not None:
                    for key in (None, kind, f"m:{merchant_id}"):
                        found[key] = max(at, found.get(key, at))
        return found

    def _pages(self) -> list:
        return self.records._conditions(expired=True)


def _utc(value: Any) -> datetime | None:
    """An aggregate's datetime, aware and in UTC (SQLite may hand back a naive one or text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
