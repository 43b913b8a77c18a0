"""The identity step of `Store.apply`: every new, changed or gone item finds its record.

Runs inside the transaction that stored the items, right after them, so items and records
never disagree. For each batch:

1. gone items stop being live origins; a record without live origins is removed;
2. changed items get fresh fingerprints; a record's only origin that now matches another
   record moves there (a teaser that got its text), unless a split forbids it;
3. new items are placed: candidates come from blocking keys in indexes (the same canonical
   URL, a link to it, the same merchant within days, an event on the same day with a title
   word in common), never from a scan; the best `hub.identity` match decides, else the item
   founds a new record;
4. every record that changed is merged again (`hub.records`), judged (`hub.moderation`) and
   its revision written.

Fingerprints cost time, so they are computed only where a match is possible: for events
(any merchant's events may match) and for merchants with more than one source. Others get
theirs when first needed as a candidate (a merchant adds a second source). Rows are written
with driver-level executemany (`hub.store.bulk`): this runs for every entry of an ingest.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Connection

from hub import moderation
from hub.identity import POST_WINDOW, Features, Match, event_keys, features, match, probe_keys, stored_keys
from hub.models import Item
from hub.records import Origin, canonical, diff, kind_of, snapshot
from hub.store.bulk import insert_rows, new_ids, to_json
from hub.store.tables import (IdentityKeyRow, IdentitySplitRow, ItemRow, RecordOriginRow, RecordRevisionRow,
                              RecordRow, SourceRow)

ITEMS = ItemRow.__table__
RECORDS = RecordRow.__table__
ORIGINS = RecordOriginRow.__table__
KEYS = IdentityKeyRow.__table__
SPLITS = IdentitySplitRow.__table__
SOURCES = SourceRow.__table__
REVISIONS = RecordRevisionRow.__table__
MAX_IMAGES = 4  # images of one origin downloaded at ingest; the rest on first view (hub.media)
ReadItem = Callable[[Any], Item]


@dataclass(eq=False)
class NewRecord:
    """A record founded in this batch; its id is known once inserted."""

    members: list[Origin] = field(default_factory=list)
    id: int | None = None


@dataclass(eq=False)
class Candidate:
    item_id: int
    features: Features
    record: int | NewRecord


class Placement:
    def __init__(self, conn: Connection, rules: moderation.Rules, now: datetime, read_item: ReadItem,
                 prepared: dict[tuple[str, str], Prepared] | None = None) -> None:
        self.conn = conn
        self.prepared = prepared or {}
        self.rules = rules
        self.now = now
        self.read_item = read_item
        self.zone = rules.timezone
        self.dirty: set[int] = set()
        self.new_records: list[NewRecord] = []
        self.joins: list[tuple[int, Origin]] = []  # (existing record id, new origin)
        self.revisions: list[dict[str, Any]] = []
        self.features: dict[int, Features] = {}
        self.items: dict[int, Item] = {}
        self.multi: set[str] = set()  # merchants with several sources
        self.joined: set[int] = set()  # existing records that got a new origin in this batch

    # --- entry points ---------------------------------------------------------------------

    def apply(self, new: Sequence[tuple[int, Item, datetime]], changed: Sequence[tuple[int, Item, datetime]],
              gone: Sequence[int]) -> None:
        """Place what one `Store.apply` batch stored; (item id, item, fetched at) each."""
        self.multi = multi_source_merchants(self.conn, {i.merchant_id for _, i, _ in [*new, *changed]})
        self._gone(gone)
        unplaced, moving = self._changed(changed)
        for item_id, item, at in [*new, *unplaced]:
            self._fingerprint(item_id, item, at)
        self._place([item_id for item_id, _, _ in [*new, *unplaced]], moving)
        self._write_new()
        self.refresh(self.dirty)
        self.write_revisions()

    def write_revisions(self) -> None:
        for rev in self.revisions:
            if isinstance(rev["record_id"], NewRecord):
                rev["record_id"] = rev["record_id"].id
        if self.revisions:
            self.conn.execute(REVISIONS.insert(), self.revisions)
            self.revisions = []

    def _fingerprint(self, item_id: int, item: Item, at: datetime) -> None:
        self.items[item_id] = item
        full = item.merchant_id in self.multi
        p = self.prepared.get(item.key)
        self.features[item_id] = p.features if p and p.features.full == full else features(
            item, at=at, zone=self.zone, full=full)

    # --- gone and changed -----------------------------------------------------------------

    def _gone(self, item_ids: Sequence[int]) -> None:
        if not item_ids:
            return
        rows = self.conn.execute(select(ORIGINS.c.item_id, ORIGINS.c.record_id)
                                 .where(ORIGINS.c.item_id.in_(item_ids), ORIGINS.c.live)).all()
        if not rows:
            return
        self.conn.execute(update(ORIGINS).where(ORIGINS.c.item_id.in_([r.item_id for r in rows]))
                          .values(live=False, media_pending=False))
        for r in rows:
            self.dirty.add(r.record_id)
            self.revision(r.record_id, "origin_gone", item_id=r.item_id)

    def _changed(self, changed: Sequence[tuple[int, Item, datetime]]
                 ) -> tuple[list[tuple[int, Item, datetime]], dict[int, int]]:
        """Refresh the fingerprints of changed items. Returns the changed items that have no
        origin yet (stored before records existed) and, for each item that is the only live
        origin of its record, that record: such an item may move to a record it now matches."""
        if not changed:
            return [], {}
        ids = [item_id for item_id, _, _ in changed]
        rows = {r.item_id: r for r in self.conn.execute(
            select(ORIGINS.c.item_id, ORIGINS.c.record_id, ORIGINS.c.live).where(ORIGINS.c.item_id.in_(ids)))}
        alone = self._sole_origins({r.record_id for r in rows.values()})
        unplaced, moving, updates = [], {}, []
        for item_id, item, at in changed:
            row = rows.get(item_id)
            if row is None:
                unplaced.append((item_id, item, at))
                continue
            self._fingerprint(item_id, item, at)
            updates.append({"row_item_id": item_id, **_feature_columns(self.features[item_id], item), "live": True})
            self.dirty.add(row.record_id)
            if alone.get(row.record_id) == item_id:
                moving[item_id] = row.record_id
        if updates:
            self.conn.execute(update(ORIGINS).where(ORIGINS.c.item_id == bindparam("row_item_id")), updates)
            self._replace_keys([u["row_item_id"] for u in updates])
        return unplaced, moving

    def _sole_origins(self, record_ids: set[int]) -> dict[int, int]:
        """record id -> its only origin (any state), for records that have exactly one."""
        if not record_ids:
            return {}
        query = (select(ORIGINS.c.record_id, func.min(ORIGINS.c.item_id)).where(ORIGINS.c.record_id.in_(record_ids))
                 .group_by(ORIGINS.c.record_id).having(func.count() == 1))
        return dict(self.conn.execute(query).all())

    # --- placing --------------------------------------------------------------------------

    def _place(self, item_ids: list[int], moving: dict[int, int]) -> None:
        """Give every item in `item_ids` (new) and `moving` (changed, alone) its record."""
        searching = [i for i in [*item_ids, *moving] if self.features[i].full]
        index = _Index()
        for cand in self._candidates(searching):
            index.add(cand)
        blocked = self._blocked_records(list(moving))
        for item_id in item_ids:
            self._place_new(item_id, index)
        for item_id, record_id in moving.items():
            self._move(item_id, record_id, index, blocked.get(item_id, set()))

    def _best(self, item_id: int, index: _Index, blocked: set[int] = frozenset()) -> tuple[Candidate, Match] | None:
        f = self.features[item_id]
        if not f.full:
            return None  # nothing it could match: see the module docstring
        found = []
        for cand in index.lookup(f):
            if cand.item_id == item_id or (isinstance(cand.record, int) and cand.record in blocked):
                continue
            if cand.features.source_id == f.source_id and (f.event_day is None or cand.features.event_day is None):
                continue  # one source's posts never merge (hub.identity); spares the matching
            m = match(f, cand.features)
            if m is not None:
                found.append((m.score, -_record_order(cand.record), cand, m))
        if not found:
            return None
        _, _, cand, m = max(found, key=lambda t: t[:2])
        return cand, m

    def _place_new(self, item_id: int, index: _Index) -> None:
        best = self._best(item_id, index)
        if best is None:
            record: int | NewRecord = NewRecord([self._origin(item_id, "first", 1.0, None)])
            self.new_records.append(record)
        else:
            cand, m = best
            record = cand.record
            origin = self._origin(item_id, m.rule, m.score, cand.item_id)
            if isinstance(record, NewRecord):
                record.members.append(origin)
            else:
                self.joins.append((record, origin))
                self.dirty.add(record)
                self.joined.add(record)
            self.revision(record, "merged", item_id=item_id, rule=m.rule, score=m.score, matched_item_id=cand.item_id)
        if self.features[item_id].full:  # nothing else could match the others
            index.add(Candidate(item_id, self.features[item_id], record))

    def _move(self, item_id: int, old_record: int, index: _Index, blocked: set[int]) -> None:
        if old_record in self.joined:
            return  # no longer alone: a new item joined it in this batch
        best = self._best(item_id, index, blocked | {old_record})
        if best is None or not isinstance(best[0].record, int):
            return
        cand, m = best
        self.conn.execute(update(ORIGINS).where(ORIGINS.c.item_id == item_id).values(
            record_id=cand.record, rule=m.rule, score=m.score, matched_item_id=cand.item_id, linked_at=self.now))
        self.dirty.update({cand.record, old_record})
        self.revision(cand.record, "merged", item_id=item_id, rule=m.rule, score=m.score,
                       matched_item_id=cand.item_id, from_record=old_record)
        self.revision(old_record, "moved", item_id=item_id, to_record=cand.record)

    def _origin(self, item_id: int, rule: str, score: float, matched: int | None) -> Origin:
        return Origin(item_id, self.items[item_id], rule, score, matched, True, self.now)

    def _blocked_records(self, item_ids: list[int]) -> dict[int, set[int]]:
        """item id -> records it must not join: those holding an item it was split from."""
        if not item_ids:
            return {}
        pairs = self.conn.execute(select(SPLITS.c.item_a, SPLITS.c.item_b).where(
            or_(SPLITS.c.item_a.in_(item_ids), SPLITS.c.item_b.in_(item_ids)))).all()
        partners: dict[int, set[int]] = defaultdict(set)
        for a, b in pairs:
            partners[a].add(b)
            partners[b].add(a)
        others = {p for ps in partners.values() for p in ps}
        record_of = dict(self.conn.execute(select(ORIGINS.c.item_id, ORIGINS.c.record_id)
                                           .where(ORIGINS.c.item_id.in_(others))).all()) if others else {}
        return {i: {record_of[p] for p in ps if p in record_of} for i, ps in partners.items()}

    # --- candidates from the store ---------------------------------------------------------

    def _candidates(self, item_ids: list[int]) -> list[Candidate]:
        """Live origins sharing a blocking key with any of `item_ids`, each fingerprinted."""
        if not item_ids:
            return []
        fs = [self.features[i] for i in item_ids]
        conditions = []
        urls = {k for f in fs for k in (f.url_key, *f.link_keys) if k is not None}
        if urls:  # IS NOT NULL lets the planner use the partial index
            conditions.append(and_(ORIGINS.c.url_key.is_not(None), ORIGINS.c.url_key.in_(urls)))
        probes = {k for f in fs for k in probe_keys(f)}
        if probes:
            conditions.append(ORIGINS.c.item_id.in_(select(KEYS.c.item_id).where(KEYS.c.key.in_(probes))))
        conditions += self._merchant_windows(fs)
        if not conditions:
            return []
        rows = self.conn.execute(select(ORIGINS).where(ORIGINS.c.live, or_(*conditions))).all()
        self._complete([r for r in rows if r.title_key is None])
        return [Candidate(r.item_id, self.features.get(r.item_id) or _stored_features(r), r.record_id) for r in rows]

    def _merchant_windows(self, fs: list[Features]) -> list:
        spans: dict[str, list[datetime]] = defaultdict(list)
        for f in fs:
            if f.merchant_id in self.multi:
                spans[f.merchant_id].append(f.at)
        return [and_(ORIGINS.c.merchant_id == m, ORIGINS.c.at.between(min(ats) - POST_WINDOW, max(ats) + POST_WINDOW))
                for m, ats in spans.items()]

    def _complete(self, rows: list) -> None:
        """Text fingerprints for candidates stored without them, computed now and kept."""
        if not rows:
            return
        by_id = {r.item_id: r for r in rows}
        items = {r.id: self.read_item(r) for r in self.conn.execute(select(ITEMS).where(ITEMS.c.id.in_(by_id)))}
        updates = []
        for item_id, item in items.items():
            f = features(item, at=by_id[item_id].at, zone=self.zone)
            self.features[item_id] = f
            updates.append({"row_item_id": item_id, "url_key": f.url_key, **_text_columns(f)})
        if updates:
            self.conn.execute(update(ORIGINS).where(ORIGINS.c.item_id == bindparam("row_item_id")), updates)
            self._replace_keys([u["row_item_id"] for u in updates])

    # --- writing ----------------------------------------------------------------------------

    def _write_new(self) -> None:
        for record, record_id in zip(self.new_records, new_ids(self.conn, RECORDS, len(self.new_records))):
            record.id = record_id
        insert_rows(self.conn, RECORDS, [{"id": r.id, **self._new_record_values(r)} for r in self.new_records])
        origins = [(r.id, o) for r in self.new_records for o in r.members] + self.joins
        insert_rows(self.conn, ORIGINS, [self._origin_values(record_id, o) for record_id, o in origins])
        self._replace_keys([o.item_id for _, o in origins], fresh=True)

    def _new_record_values(self, record: NewRecord) -> dict[str, Any]:
        if len(record.members) == 1:
            p = self.prepared.get(record.members[0].item.key)
            if p is not None:
                return p.record
        return self.record_values(record.members, created=True)

    def _origin_values(self, record_id: int, o: Origin) -> dict[str, Any]:
        ids = {"item_id": o.item_id, "record_id": record_id, "rule": o.rule, "score": o.score,
               "matched_item_id": o.matched_item_id, "linked_at": self.now}
        p = self.prepared.get(o.item.key)
        if p is not None and p.features is self.features[o.item_id]:
            return {**ids, **p.origin}
        f, item = self.features[o.item_id], o.item
        return {**ids, "source_id": item.source_id, "merchant_id": item.merchant_id, "live": True,
                **_feature_columns(f, item)}

    def _replace_keys(self, item_ids: list[int], fresh: bool = False) -> None:
        """Store the blocking keys of these origins (replacing older ones unless `fresh`)."""
        if not fresh and item_ids:
            self.conn.execute(KEYS.delete().where(KEYS.c.item_id.in_(item_ids)))
        insert_rows(self.conn, KEYS, [{"key": k, "item_id": i} for i in item_ids
                                      for k in dict.fromkeys(stored_keys(self.features[i]))])

    def record_values(self, members: Sequence[Origin], *, created: bool,
                      current: moderation.Verdict | None = None) -> dict[str, Any]:
        return record_values(members, self.rules, self.now, created=created, current=current)

    # --- refreshing existing records ----------------------------------------------------------

    def refresh(self, record_ids: set[int]) -> None:
        """Merge, judge and diff every existing record whose origins changed."""
        if not record_ids:
            return
        records = {r.id: r for r in self.conn.execute(select(RECORDS).where(RECORDS.c.id.in_(record_ids)))}
        origins = load_origins(self.conn, record_ids, self.read_item)
        for record_id, row in records.items():
            self._refresh_one(row, origins.get(record_id, []))  # none left: forgotten by retention

    def _refresh_one(self, row: Any, origins: list[Origin]) -> None:
        live = [o for o in origins if o.live]
        if not live:
            self._remove(row)
            return
        current = moderation.Verdict(row.status, row.status_by, row.status_reason)
        values = self.record_values(live, created=False, current=current)
        changes = diff(json.loads(row.snapshot), json.loads(values["snapshot"]))
        if row.removed_at is not None:
            values["removed_at"] = None
            self.revision(row.id, "restored")
        if changes:
            self.revision(row.id, "updated", changes=changes)
        if (values["status"], values["status_by"]) != (row.status, row.status_by):
            self.revision(row.id, "status", actor=values["status_by"], status=values["status"],
                           reason=values["status_reason"])
        self.conn.execute(update(RECORDS).where(RECORDS.c.id == row.id).values(**values))

    def _remove(self, row: Any) -> None:
        if row.removed_at is not None:
            return
        self.conn.execute(update(RECORDS).where(RECORDS.c.id == row.id).values(removed_at=self.now, changed_at=self.now))
        self.revision(row.id, "removed")

    def revision(self, record: int | NewRecord, change: str, *, item_id: int | None = None,
                  actor: str = "hub", **detail: Any) -> None:
        self.revisions.append({"record_id": record, "at": self.now, "change": change, "item_id": item_id,
                               "actor": actor, "detail": json.dumps(detail, ensure_ascii=False, default=str)})


# --- before the write lock ---------------------------------------------------------------------

@dataclass(frozen=True)
class Prepared:
    """What placing one new item needs that the database does not decide: computed by
    `prepare` before the ingest transaction takes the write lock, so writers in other
    processes wait only for the database work."""

    features: Features
    origin: dict[str, Any]  # its origin row, but for ids, rule and link time
    record: dict[str, Any]  # the row of a record of its own (most new items found one)


def prepare(items: Iterable[tuple[Item, datetime]], rules: moderation.Rules,
            multi: set[str]) -> dict[tuple[str, str], Prepared]:
    """(source id, external id) -> Prepared, for items fetched at the given moments;
    `multi`: merchants with several sources (`multi_source_merchants`)."""
    out = {}
    for item, at in items:
        f = features(item, at=at, zone=rules.timezone, full=item.merchant_id in multi)
        origin = {"source_id": item.source_id, "merchant_id": item.merchant_id, "live": True,
                  **_feature_columns(f, item)}
        out[item.key] = Prepared(f, origin, record_values([Origin(0, item, "first", 1.0, None, True, at)],
                                                          rules, at, created=True))
    return out


def multi_source_merchants(conn: Connection, merchant_ids: set[str]) -> set[str]:
    """Merchants with more than one source: only their posts can match each other."""
    if not merchant_ids:
        return set()
    query = (select(SOURCES.c.merchant_id).where(SOURCES.c.merchant_id.in_(merchant_ids))
             .group_by(SOURCES.c.merchant_id).having(func.count() > 1))
    return set(conn.execute(query).scalars())


def record_values(members: Sequence[Origin], rules: moderation.Rules, now: datetime, *, created: bool,
                  current: moderation.Verdict | None = None) -> dict[str, Any]:
    """The row of a record with these origins, judged by the merchant's rules."""
    item = members[0].item if len(members) == 1 else canonical(members)[0]
    kind = kind_of(item.event, item.offer, item.kind)
    if kind != item.kind:  # as `canonical` would say: event data makes an event
        item = item.evolve(kind=kind)
    merchant = rules.of(item.merchant_id)
    verdict = moderation.judge(merchant, item, current)
    sort_at = item.published or now
    values = {"kind": item.kind.value, "merchant_id": item.merchant_id, "status": verdict.status,
              "status_by": verdict.actor, "status_reason": verdict.reason, "sort_at": sort_at,
              "sort_day": _local_day(sort_at, rules.timezone),
              "event_start": item.event.start if item.event else None,
              "expires_at": moderation.expires_at(merchant, item),
              "snapshot": to_json(snapshot(item)), "changed_at": now}
    if created:
        values.update(created_at=now, removed_at=None)
    return values


def _local_day(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).date().isoformat()  # ZoneInfo(...) is cached by zoneinfo


# --- helpers -------------------------------------------------------------------------------

class _Index:
    """In-memory blocking index over the batch's candidates and its own placed items."""

    def __init__(self) -> None:
        self.by: dict[tuple, list[Candidate]] = defaultdict(list)

    def add(self, cand: Candidate) -> None:
        f = cand.features
        keys = [("u", f.url_key), *(("k", k) for k in stored_keys(f)), ("m", f.merchant_id)]
        for key in keys:
            if key[1] is not None:
                self.by[key].append(cand)

    def lookup(self, f: Features) -> list[Candidate]:
        keys = [("u", f.url_key), *(("u", k) for k in f.link_keys), *(("k", k) for k in probe_keys(f)),
                ("m", f.merchant_id)]
        found: dict[int, Candidate] = {}
        for key in keys:
            if key[1] is not None:
                found.update((id(c), c) for c in self.by.get(key, ()))
        return list(found.values())


def _record_order(record: int | NewRecord) -> int:
    """Older records first when two match equally well; records of this batch last."""
    return record if isinstance(record, int) else 2**62


def _signed(h: int) -> int:
    """A 64-bit unsigned SimHash as a signed BIGINT."""
    return h - (1 << 64) if h >= 1 << 63 else h


def _feature_columns(f: Features, item: Item) -> dict[str, Any]:
    images = [m.url for m in item.media if m.type == "image"][:MAX_IMAGES]
    return {"at": f.at, "url_key": f.url_key, "event_day": f.event_day, "event_start": f.event_start,
            "event_all_day": f.all_day, "event_detected": bool(item.event and item.event.detected),
            "images": to_json(images) if images else None, "media_pending": bool(images), **_text_columns(f)}


def _text_columns(f: Features) -> dict[str, Any]:
    if not f.full:
        return {"title_key": None, "place_key": None, "simhash": None, "text_words": None, "prices": None,
                "link_keys": None}
    return {"title_key": f.title_key, "place_key": f.place_key, "simhash": _signed(f.simhash),
            "text_words": f.text_words,
            "prices": " ".join(sorted(f.prices)), "link_keys": " ".join(map(str, sorted(f.link_keys)))}


def _stored_features(r: Any) -> Features:
    return Features(source_id=r.source_id, merchant_id=r.merchant_id, at=r.at, url_key=r.url_key,
                    event_start=r.event_start, event_day=r.event_day, all_day=r.event_all_day,
                    title_key=r.title_key or "",
                    place_key=r.place_key or "", simhash=(r.simhash or 0) % (1 << 64), text_words=r.text_words or 0,
                    prices=frozenset((r.prices or "").split()),
                    link_keys=frozenset(int(k) for k in (r.link_keys or "").split()),
                    event_keys=event_keys(r.event_day, r.title_key or ""), full=r.title_key is not None)


def load_origins(conn: Connection, record_ids: Iterable[int], read_item: ReadItem) -> dict[int, list[Origin]]:
    """record id -> its origins (live first, then in the order they joined), with their items."""
    rows = conn.execute(select(ORIGINS).where(ORIGINS.c.record_id.in_(list(record_ids)))
                        .order_by(ORIGINS.c.record_id, ORIGINS.c.linked_at, ORIGINS.c.item_id)).all()
    items = {r.id: read_item(r) for r in conn.execute(select(ITEMS).where(ITEMS.c.id.in_([o.item_id for o in rows])))}
    out: dict[int, list[Origin]] = defaultdict(list)
    for o in rows:
        item = items.get(o.item_id)
        if item is None:
            continue  # forgotten by retention long after it was deleted
        if o.event_detected and item.event is not None:
            item = item.evolve(event=replace(item.event, detected=True))
        out[o.record_id].append(Origin(o.item_id, item, o.rule, o.score, o.matched_item_id, o.live, o.linked_at))
    for origins in out.values():
        origins.sort(key=lambda o: not o.live)
    return dict(out)

