"""Canonical records in the store: what residents see, one per real thing.

`Store.apply` calls `after_upsert` in its own transaction, so records always match the
items (see `hub.store.placement`). Reading merges each record's origins (`hub.records`);
the project manager's actions (approve, hide, split) and every automatic change are kept
as revisions, which also serve renderers as a change feed (`changes`): a `removed` entry
means "withdraw it from your channel".
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from itertools import combinations
from typing import Any, Callable, Collection, Literal, Sequence

from sqlalchemy import Engine, bindparam, false, func, literal, select, text, update
from sqlalchemy.engine import Connection

from hub import moderation
from hub.models import Item
from hub.records import Origin, Record, Revision, canonical, tag_key
from hub.store.admin import edits_of
from hub.store.mediadb import MediaIndex
import hub.store.searchindex as searchindex
from hub.store.bulk import new_ids, placeholders
from hub.store.counts import Counts, key_of
from hub.store.tables import ItemTagRow, UTCDateTime
from hub.store.version import VERSION
from hub.store.writelocks import write_transaction
from hub.store.placement import (ITEMS, ORIGINS, RECORDS, REVISIONS, SPLITS, Placement, Prepared, load_origins,
                                 multi_source_merchants, paused_gc, prepare)

BACKFILL_BATCH = 1000
RANKED = 1000  # the newest matches of a search that are ranked by relevance (`_ranked`)
# The filters that narrow a listing to some of a merchant's day (all but status, removal, expiry).
_NARROWING = ("merchant_id", "source_id", "kind", "merchants", "kinds", "tags", "starts_from", "starts_until")
TAGS = ItemTagRow.__table__
# Listings newest first; a calendar by start; a search best match first (`q`; newest without).
Order = Literal["newest", "event_start", "relevance"]


class Records:
    def __init__(self, engine: Engine, read_item: Callable[[Any], Item]) -> None:
        self.engine = engine
        self.read_item = read_item
        self.rules = moderation.Rules()  # publish at once until configured
        self.media = MediaIndex(engine)
        self.counts = Counts()  # exact counts, kept while nothing changed them (hub.store.counts)

    def configure(self, rules: moderation.Rules) -> None:
        """Use the moderation rules of the config (`hub.moderation.rules_from`)."""
        self.rules = rules
        self.counts = Counts()  # quotas may have changed

    # --- writing (inside Store.apply's transaction) -------------------------------------------

    def prepare(self, conn: Connection, items: Sequence[tuple[Item, datetime]]) -> dict[tuple[str, str], Prepared]:
        """What placing these (item, fetched at) needs that the database does not decide;
        run before the write lock is taken (`Store.plan`)."""
        if not items:
            return {}
        multi = multi_source_merchants(conn, {i.merchant_id for i, _ in items})
        with paused_gc():
            return prepare(items, self.rules, multi, conn.dialect.name)

    def after_upsert(self, conn: Connection, outcomes: Sequence, results: Sequence,
                     prepared: dict[tuple[str, str], Prepared] | None = None) -> None:
        """Place the items one `Store.apply` stored, changed or saw deleted."""
        by_source = {r.source_id: r for r in results if r.new or r.changed or r.gone}
        work = [(o, by_source[o.source_id]) for o in outcomes if o.source_id in by_source and o.parsed]
        if not work:
            return
        ids = _item_ids(conn, work)
        new, changed, gone = [], [], []
        for outcome, result in work:
            wanted_new, wanted_changed = set(result.new), set(result.changed)
            for item in outcome.parsed.items:
                key = ids.get((outcome.source_id, item.external_id))
                if key is not None and item.external_id in wanted_new:
                    new.append((key, item, outcome.at))
                elif key is not None and item.external_id in wanted_changed:
                    changed.append((key, item, outcome.at))
            gone += [ids[(outcome.source_id, ext)] for ext in result.gone if (outcome.source_id, ext) in ids]
        _write_tags(conn, new, changed)
        placed = _with_origin(conn, [i for i, _, _ in new])  # another writer placed it first
        changed += [n for n in new if n[0] in placed]
        new = [n for n in new if n[0] not in placed]
        now = max(o.at for o, _ in work)
        with paused_gc():
            Placement(conn, self.rules, now, self.read_item, prepared).apply(new, changed, gone)

    def backfill(self) -> None:
        """Give records to items stored before records existed (an upgraded database)."""
        while True:
            with self.engine.begin() as conn:
                last = conn.execute(select(func.coalesce(func.max(ORIGINS.c.item_id), 0))).scalar_one()
                rows = conn.execute(select(ITEMS).where(ITEMS.c.id > last, ITEMS.c.deleted_at.is_(None))
                                    .order_by(ITEMS.c.id).limit(BACKFILL_BATCH)).all()
                if not rows:
                    return
                now = datetime.now(timezone.utc)
                Placement(conn, self.rules, now, self.read_item).apply(
                    [(r.id, self.read_item(r), r.first_seen_at or now) for r in rows], [], [])

    # --- reading ----------------------------------------------------------------------------

    def list(self, *, limit: int = 50, offset: int = 0, order: Order = "newest", **filters: Any) -> list[Record]:
        """Records newest first (`order="event_start"`: events by their start; "relevance":
        what matches `q` best first, hub.store.searchindex); `filters` as for `_conditions`.
        By default what residents see: published, not removed, not expired."""
        with self.engine.connect() as conn:
            rows = [r for query in self._statements([RECORDS], order, filters, limit, offset)
                    for r in conn.execute(query)]
            return self._load(conn, rows)

    def marks(self, *, limit: int = 50, order: Order = "newest", **filters: Any) -> list[tuple[int, datetime]]:
        """(id, changed_at) of what `list` would show with the same arguments, without
        loading it: what a feed's ETag is made of (an edit, an approval, a removal, an expiry,
        a newcomer: each changes it)."""
        with self.engine.connect() as conn:
            return [(r.id, r.changed_at) for query in self._statements([RECORDS.c.id, RECORDS.c.changed_at], order,
                                                                       filters, limit, 0) for r in conn.execute(query)]

    def edits(self, record_ids: Collection[int]) -> dict[int, int]:
        """record id -> how many revisions it has (merges, edits, status changes, ...): a
        number that only grows, the SEQUENCE a calendar entry needs (hub.web.feeds)."""
        found: dict[int, int] = {}
        ids = list(record_ids)
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 1000):
                chunk = ids[start:start + 1000]
                query = (select(REVISIONS.c.record_id, func.count()).where(REVISIONS.c.record_id.in_(chunk))
                         .group_by(REVISIONS.c.record_id))
                found.update(conn.execute(query).all())
        return found

    def first_origins(self, *, channel: str | None = None, now: datetime | None = None):
        """A subquery of one live item per record residents may see (published, not removed,
        not expired, within `channel`'s quotas): the record's oldest live origin. Push
        channels send these, so a merged record goes out once and moderation applies."""
        visible = select(RECORDS.c.id).where(*self._conditions(channel=channel, now=now))
        return (select(func.min(ORIGINS.c.item_id))
                .join(ITEMS, ITEMS.c.id == ORIGINS.c.item_id)
                .where(ITEMS.c.deleted_at.is_(None), ORIGINS.c.record_id.in_(visible))
                .group_by(ORIGINS.c.record_id))

    def count(self, *, at_most: int | None = None, now: datetime | None = None, **filters: Any) -> int:
        """How many records `list` would show with the same filters, without paging: exact,
        and remembered until a record changes or expires (`hub.store.counts`), so a page
        asking again costs two look-ups by key. `at_most`: count no further (a page that says
        "mehr als 1.000" reads at most that many rows, however many match)."""
        now = now or datetime.now(timezone.utc)
        key = (at_most, key_of(filters))
        with self.engine.connect() as conn:  # one read transaction: the version is the count's
            version = conn.execute(VERSION).one()
            found = self.counts.get(key, version, now)
            if found is not None:
                return found
            found = self._count(conn, now, at_most, filters)
            until = None if filters.get("expired") else conn.execute(self._next_expiry(now, filters)).scalar()
        self.counts.put(key, version, now, _utc(until), found)
        return found

    def _count(self, conn: Connection, now: datetime, at_most: int | None, filters: dict[str, Any]) -> int:
        quotas = self.rules.quotas(filters["channel"]) if filters.get("channel") else {}
        if quotas and at_most is None and not any(filters.get(f) is not None for f in _NARROWING) \
                and not (filters.get("q") or "").strip():
            return self._count_within_quotas(conn, now, quotas, filters)
        query = select(RECORDS.c.id).where(*self._conditions(now=now, **filters))
        if at_most is not None:
            query = query.limit(at_most)
        return conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()

    def _count_within_quotas(self, conn: Connection, now: datetime, quotas: dict[str, int],
                             filters: dict[str, Any]) -> int:
        """A channel's whole listing (a home page) counted as what residents may see less
        what its quotas hold back: per merchant and day, those beyond the first n. Two
        passes over covering indexes (ix_records_shown, ix_records_quota), where asking
        each record whether it is within its quota costs a look-up for every record of a
        merchant with a quota (five times as long at 200,000 records)."""
        shown = self._conditions(now=now, **{**filters, "channel": None})
        total = conn.execute(select(func.count()).select_from(RECORDS).where(*shown)).scalar_one()
        by_quota: dict[int, list[str]] = {}
        for merchant, n in quotas.items():
            by_quota.setdefault(max(0, int(n)), []).append(merchant)
        for n, merchants in by_quota.items():
            days = (select(func.count().label("n")).where(*shown, RECORDS.c.merchant_id.in_(sorted(merchants)))
                    .group_by(RECORDS.c.merchant_id, RECORDS.c.sort_day).subquery())
            total -= conn.execute(select(func.coalesce(func.sum(days.c.n - n), 0)).where(days.c.n > n)).scalar_one()
        return total

    def _next_expiry(self, now: datetime, filters: dict[str, Any]):
        """The first moment after `now` at which a record these filters could show expires
        (index ix_records_shown for what residents see)."""
        shown = [RECORDS.c.expires_at > now]
        if not filters.get("removed"):
            shown.append(RECORDS.c.removed_at.is_(None))
        if filters.get("status", "published"):
            shown.append(RECORDS.c.status == filters.get("status", "published"))
        return select(func.min(RECORDS.c.expires_at)).where(*shown)

    def get(self, record_id: int) -> Record | None:
        with self.engine.connect() as conn:
            rows = conn.execute(select(RECORDS).where(RECORDS.c.id == record_id)).all()
            found = self._load(conn, rows)
        return found[0] if found else None

    def of_item(self, item_id: int) -> int | None:
        """The record an item is an origin of."""
        with self.engine.connect() as conn:
            return conn.execute(select(ORIGINS.c.record_id).where(ORIGINS.c.item_id == item_id)).scalar()

    def revisions(self, record_id: int) -> list[Revision]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(REVISIONS).where(REVISIONS.c.record_id == record_id)
                                .order_by(REVISIONS.c.id)).all()
        return [_revision(r) for r in rows]

    def changes(self, after: int = 0, limit: int = 1000) -> list[Revision]:
        """Every revision after revision id `after`, oldest first: the change feed a renderer
        follows (keeping the last id it saw) to withdraw `removed` records and update
        `updated` ones."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(REVISIONS).where(REVISIONS.c.id > after).order_by(REVISIONS.c.id)
                                .limit(limit)).all()
        return [_revision(r) for r in rows]

    def _conditions(self, *, merchant_id: str | None = None, source_id: str | None = None,
                    kind: str | None = None, q: str | None = None, status: str | None = "published",
                    removed: bool = False, expired: bool = False, channel: str | None = None,
                    now: datetime | None = None, merchants: Collection[str] | None = None,
                    kinds: Collection[str] | None = None, tags: Collection[str] | None = None,
                    starts_from: datetime | None = None, starts_until: datetime | None = None) -> list:
        """`merchant_id`/`source_id`: records with an origin from there; `q`: a resident's
        search (hub.search: stemmed words of the live origins' titles, texts, tags, places,
        or a merchant's name; a `q` with no word to search for finds nothing, a blank one is
        no filter); `status` None: any; `removed`/`expired`: include those; `channel`:
        within that channel's per-merchant daily quotas.

        The filters of the pages and feeds (hub.web.filters), each None for "any", an empty
        collection for "none": `merchants`, records with an origin from one of them; `kinds`,
        one of these kinds; `tags`, a live origin carries one of them (folded, by index);
        `starts_from`/`starts_until`: events starting then (inclusive, exclusive).
        Quotas count what residents may see at all, before these filters: a post over its
        merchant's quota stays hidden on a filtered page too."""
        now = now or datetime.now(timezone.utc)
        conditions = []
        if not removed:
            conditions.append(RECORDS.c.removed_at.is_(None))
        if status:
            conditions.append(RECORDS.c.status == status)
        if not expired:  # one range of ix_records_shown with the test inside it (an OR reads two, and merges)
            conditions.append(func.coalesce(RECORDS.c.expires_at, _NEVER) > now)
        quotas = self.rules.quotas(channel) if channel else {}
        if quotas:
            conditions.append(_within_quota(quotas, removed=removed, status=status, expired=expired, now=now))
        if kind:
            conditions.append(RECORDS.c.kind == kind)
        if merchant_id:  # the club's page shows the concert the town calendar also lists
            conditions.append(RECORDS.c.id.in_(select(ORIGINS.c.record_id).where(ORIGINS.c.merchant_id == merchant_id)))
        if source_id:
            conditions.append(RECORDS.c.id.in_(select(ORIGINS.c.record_id).where(ORIGINS.c.source_id == source_id)))
        if q is not None and q.strip():
            match = self._match(q)
            conditions.append(RECORDS.c.id.in_(match.ids()) if match.found else false())
        conditions += _filters(merchants, kinds, tags, starts_from, starts_until)
        return conditions

    def _statements(self, columns: list, order: Order, filters: dict[str, Any], limit: int, offset: int) -> list:
        """The SELECTs of `columns` of the records `filters` leave, in `order`, from `offset`
        on, at most `limit`: one, or for a search ranked by relevance two (`_ranked`)."""
        q = filters.get("q")
        if order == "relevance" and q is not None and q.strip():
            match = self._match(q)
            if match.found:
                return _ranked(match, columns, self._conditions(**{**filters, "q": None}), limit, offset)
        query = select(*columns).where(*self._conditions(**filters))
        return [query.order_by(*_ORDER["event_start" if order == "event_start" else "newest"])
                .limit(limit).offset(offset)]

    def _match(self, q: str) -> searchindex.Match:
        """`q` against the search index; merchants are named by the config's names."""
        names = {m: r.name for m, r in self.rules.merchants.items() if r.name}
        return searchindex.Match(self.engine.dialect.name, q, names)

    def _load(self, conn: Connection, rows: Sequence[Any]) -> list[Record]:
        origins = load_origins(conn, [r.id for r in rows], self.read_item)
        urls = {m.url for os in origins.values() for o in os for m in o.item.media}
        sizes = {u: (s.width, s.height) for u, s in self.media.lookup(urls, conn).items() if s.width and s.height}
        edits = edits_of(conn, origins)  # issue 17: the project manager's title and image stand
        records = []
        for r in rows:
            if r.id not in origins:
                continue  # every origin forgotten by retention
            item, chosen = canonical(origins[r.id], sizes)
            item = edits[r.id].applied_to(item) if r.id in edits else item
            records.append(Record(id=r.id, item=item, origins=tuple(origins[r.id]), fields_from=chosen,
                                  status=r.status, status_reason=r.status_reason,
                                  label=self.rules.of(item.merchant_id).label, sort_at=r.sort_at,
                                  created_at=r.created_at, changed_at=r.changed_at, removed_at=r.removed_at,
                                  expires_at=r.expires_at))
        return records

    # --- the project manager's actions --------------------------------------------------------

    def approve(self, record_id: int, now: datetime | None = None) -> bool:
        return self._set_status(record_id, "published", now)

    def hide(self, record_id: int, now: datetime | None = None) -> bool:
        return self._set_status(record_id, "hidden", now)

    def _set_status(self, record_id: int, status: str, now: datetime | None) -> bool:
        now = now or datetime.now(timezone.utc)
        with write_transaction(self.engine) as conn:
            done = conn.execute(update(RECORDS).where(RECORDS.c.id == record_id).values(
                status=status, status_by="manager", status_reason=None, changed_at=now)).rowcount
            if done:
                placement = Placement(conn, self.rules, now, self.read_item)
                placement.revision(record_id, "status", actor="manager", status=status)
                placement.write_revisions()
        return bool(done)

    def split(self, record_id: int, item_ids: Sequence[int] | None = None, now: datetime | None = None) -> list[int]:
        """Take `item_ids` (default: every origin but the first) out of the record, each into
        a record of its own, and remember that none of them may be merged with the others
        again. Returns the new records' ids."""
        now = now or datetime.now(timezone.utc)
        with write_transaction(self.engine) as conn:
            origins = load_origins(conn, [record_id], self.read_item).get(record_id, [])
            members = [o.item_id for o in origins]
            leaving = [i for i in (members[1:] if item_ids is None else item_ids) if i in members]
            if len(leaving) == len(members):
                leaving = leaving[1:]  # one origin stays: the record keeps its id
            if not leaving:
                return []
            _remember_splits(conn, members, leaving, now)
            placement = Placement(conn, self.rules, now, self.read_item)
            new_ids = [self._split_off(conn, placement, record_id, o) for o in origins if o.item_id in leaving]
            placement.revision(record_id, "split", actor="manager", moved=dict(zip(leaving, new_ids)))
            placement.refresh({record_id, *new_ids})
            placement.write_revisions()
        return new_ids

    def _split_off(self, conn: Connection, placement: Placement, record_id: int, origin: Origin) -> int:
        """A record of its own for `origin`, with the status the record had (a split does
        not undo an approval)."""
        status = conn.execute(select(RECORDS.c.status, RECORDS.c.status_by).where(RECORDS.c.id == record_id)).one()
        values = placement.record_values([origin], created=True,
                                         current=moderation.Verdict(status.status, status.status_by))
        [new_id] = new_ids(conn, RECORDS, 1)
        conn.execute(RECORDS.insert().values(id=new_id, **values))
        conn.execute(update(ORIGINS).where(ORIGINS.c.item_id == origin.item_id).values(
            record_id=new_id, rule="first", score=1.0, matched_item_id=None, linked_at=placement.now))
        placement.revision(new_id, "split", actor="manager", item_id=origin.item_id, from_record=record_id)
        return new_id


# --- helpers ------------------------------------------------------------------------------------

_NEVER = literal(datetime(9999, 12, 31, tzinfo=timezone.utc), UTCDateTime())  # what does not expire expires then


def _utc(value: Any) -> datetime | None:
    """An aggregate's datetime, aware and in UTC (SQLite hands back text)."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)


def _item_ids(conn: Connection, work: Sequence) -> dict[tuple[str, str], int]:
    """(source id, external id) -> item id of what the batch stored, changed or saw gone
    (driver level, by the unique (source, external id) index: a source's older items are
    not read, however many it has)."""
    found: dict[tuple[str, str], int] = {}
    for outcome, result in work:
        externals = list({*result.new, *result.changed, *result.gone})
        for start in range(0, len(externals), 5000):
            chunk = externals[start:start + 5000]
            sql = (f"SELECT id, external_id FROM items WHERE source_id = {placeholders(conn, 1)} "
                   f"AND external_id IN ({placeholders(conn, len(chunk))})")
            for item_id, external in conn.exec_driver_sql(sql, (outcome.source_id, *chunk)):
                found[(outcome.source_id, external)] = item_id
    return found


def _with_origin(conn: Connection, item_ids: list[int]) -> set[int]:
    """Which of these items already have a record (driver level: the list holds every new
    item of a batch, and SQLAlchemy would render a bind parameter for each)."""
    if not item_ids:
        return set()
    sql = f"SELECT item_id FROM record_origins WHERE item_id IN ({placeholders(conn, len(item_ids))})"
    return {item_id for item_id, in conn.exec_driver_sql(sql, tuple(item_ids))}


_ORDER = {"newest": (RECORDS.c.sort_at.desc(), RECORDS.c.id.desc()),
          "event_start": (RECORDS.c.event_start, RECORDS.c.id)}


def _ranked(match: searchindex.Match, columns: list, conditions: list, limit: int, offset: int) -> list:
    """A search's records in order of relevance: the `RANKED` newest matches (by record
    id: in the order they arrived) best first, then the older ones newest first.

    Ranking costs time for every record ranked (the score, the record's row, its quota),
    and a common word in a town's years of posts matches most of them: so the ranked
    records are the newest that match and pass the filters, read from the index in id
    order until there are enough (what is recent matters to residents, and the best of a
    thousand is a fine first page); a page beyond them continues with the older matches in
    that same order. The index is read once, joined with the records, never looked up again."""
    found = (select(RECORDS.c.id.label("id"), match.rank.label("score"))
             .select_from(match.table.join(RECORDS, match.key == RECORDS.c.id))
             .where(match.condition, *conditions).order_by(match.key.desc()))
    statements = []
    if offset < RANKED:
        best = found.limit(RANKED).subquery("best")
        statements.append(select(*columns).join(best, best.c.id == RECORDS.c.id)
                          .order_by(best.c.score, *_ORDER["newest"]).limit(min(limit, RANKED - offset)).offset(offset))
    if offset + limit > RANKED:
        start = max(offset, RANKED)
        statements.append(select(*columns).select_from(match.table.join(RECORDS, match.key == RECORDS.c.id))
                          .where(match.condition, *conditions).order_by(match.key.desc())
                          .limit(offset + limit - start).offset(start))
    return statements


def _filters(merchants: Collection[str] | None, kinds: Collection[str] | None, tags: Collection[str] | None,
             starts_from: datetime | None, starts_until: datetime | None) -> list:
    conditions = []
    if merchants is not None:
        of_merchants = select(ORIGINS.c.record_id).where(ORIGINS.c.merchant_id.in_(list(merchants)))
        conditions.append(RECORDS.c.id.in_(of_merchants) if merchants else false())
    if kinds is not None:
        conditions.append(RECORDS.c.kind.in_(list(kinds)) if kinds else false())
    if tags is not None:
        keys = sorted({tag_key(t) for t in tags} - {""})
        conditions.append(RECORDS.c.id.in_(select(ORIGINS.c.record_id).join(TAGS, TAGS.c.item_id == ORIGINS.c.item_id)
                                           .where(TAGS.c.tag.in_(keys), ORIGINS.c.live)) if keys else false())
    if starts_from is not None or starts_until is not None:
        conditions.append(RECORDS.c.event_start.is_not(None))
    if starts_from is not None:
        conditions.append(RECORDS.c.event_start >= starts_from)
    if starts_until is not None:
        conditions.append(RECORDS.c.event_start < starts_until)
    return conditions


def _write_tags(conn: Connection, new: Sequence[tuple[int, Item, datetime]],
                changed: Sequence[tuple[int, Item, datetime]]) -> None:
    """Keep `item_tags` in step with the items this batch stored or changed (driver level,
    like the items: a batch holds thousands). Another writer may have stored a new item's
    tags first: the same rows, kept."""
    if changed:
        ids = [item_id for item_id, _, _ in changed]
        for start in range(0, len(ids), 5000):
            chunk = ids[start:start + 5000]
            conn.exec_driver_sql(f"DELETE FROM item_tags WHERE item_id IN ({placeholders(conn, len(chunk))})",
                                 tuple(chunk))
    rows = [(item_id, key) for item_id, item, _ in [*new, *changed] for key in map(tag_key, item.tags) if key]
    if rows:  # "#Advent" and "advent" on one item are one row: the second is a conflict, skipped
        conn.exec_driver_sql(f"INSERT INTO item_tags (item_id, tag) VALUES ({placeholders(conn, 2)}) "
                             "ON CONFLICT DO NOTHING", rows)


def _within_quota(quotas: dict[str, int], *, removed: bool, status: str | None, expired: bool, now: datetime):
    """The records within their merchant's daily quota: the first n of each local day, in
    order of publication, so a later post never pushes out an earlier one.

    Asked of each record a listing reads (newest first, until its page is full), not
    ranked over the whole table: a record of a merchant with quota n is in when fewer than
    n records residents may see came before it on the merchant's day. The covering index
    ix_records_quota finds them, and the look-up stops at the n-th (OFFSET n - 1): a page
    costs its records times the quota, whatever the table holds. Written as SQL text: the
    same correlated subquery built as SQLAlchemy expressions cost more (~2 ms a request)
    than running it."""
    by_quota: dict[int, list[str]] = {}
    for merchant, n in sorted(quotas.items()):
        by_quota.setdefault(max(0, int(n)), []).append(merchant)
    shown = ["earlier.removed_at IS NULL"] if not removed else []
    params = [bindparam("quota_all", sorted(quotas), expanding=True, unique=True)]
    if status:
        shown.append(":quota_status = earlier.status")
        params.append(bindparam("quota_status", status, unique=True))
    if not expired:
        shown.append("(earlier.expires_at IS NULL OR earlier.expires_at > :quota_now)")
        params.append(bindparam("quota_now", now, type_=UTCDateTime(), unique=True))
    within = ["records.merchant_id NOT IN :quota_all"]
    for n, merchants in sorted(by_quota.items()):
        if n == 0:
            continue  # none of theirs
        name = f"quota_{n}"
        params.append(bindparam(name, merchants, expanding=True, unique=True))
        within.append(
            f"(records.merchant_id IN :{name} AND NOT EXISTS (SELECT 1 FROM records AS earlier "
            "WHERE earlier.merchant_id = records.merchant_id AND earlier.sort_day = records.sort_day "
            "AND earlier.sort_at <= records.sort_at AND (earlier.sort_at < records.sort_at OR earlier.id < records.id) "
            f"{''.join(' AND ' + c for c in shown)} LIMIT 1 OFFSET {n - 1}))")
    return text("(" + " OR ".join(within) + ")").bindparams(*params)


def _remember_splits(conn: Connection, members: list[int], leaving: list[int], now: datetime) -> None:
    staying = [m for m in members if m not in leaving]
    pairs = {tuple(sorted(p)) for p in combinations(leaving, 2)} | {tuple(sorted((a, b))) for a in leaving for b in staying}
    known = set(conn.execute(select(SPLITS.c.item_a, SPLITS.c.item_b).where(
        SPLITS.c.item_a.in_(members), SPLITS.c.item_b.in_(members))).all())
    fresh = [{"item_a": a, "item_b": b, "at": now} for a, b in pairs if (a, b) not in known]
    if fresh:
        conn.execute(SPLITS.insert(), fresh)


def _revision(r: Any) -> Revision:
    return Revision(id=r.id, record_id=r.record_id, at=r.at, change=r.change, actor=r.actor, item_id=r.item_id,
                    detail=json.loads(r.detail))
