"""The identity step of `Store.apply`: every new, changed or gone item finds its record.

Runs inside the transaction that stored the items, right after them, so items and records
never disagree. For each batch:

1. gone items stop being live origins; a record without live origins is removed;
2. changed items get fresh fingerprints; a record's only origin that now matches another
   record moves there (a teaser that got its text), unless a split forbids it;
3. new items are placed: candidates come from blocking keys in indexes (the same canonical
   URL, a link to it, an event on the same day with a title word in common, a post of the
   same merchant within days with a word in common: `hub.identity.index_keys`), never from a
   scan; the best `hub.identity` match decides (a text rule only where `identity.apart`
   finds no sign of two things in the texts), else the item founds a new record;
4. every record that changed is merged again (`hub.records`), judged (`hub.moderation`) and
   its revision written; its row in the search index is rewritten from its live origins, or
   deleted when it has none (`hub.store.searchindex`), as is every new record's written.

Fingerprints cost time, so they are computed only where a match is possible: for events
(any merchant's events may match) and for merchants with more than one source. Others get
theirs when first needed as a candidate, or when their merchant gets a second source (the
partial index `ix_record_origins_unkeyed`). Rows are written with driver-level executemany
(`hub.store.bulk`): this runs for every entry of an ingest.

Bounded work per item, whatever a merchant's volume or the number of events on one day: a
key holds at most `KEY_CAP` items (`EVENT_KEY_CAP` for an event's day and title word); the item
after them makes it common (`identity_common_keys`), and a common key is neither looked up
nor stored again. Of the items an item's keys find,
the `MAX_CANDIDATES` that share the most keys with it are matched (plus those sharing a URL).
"""

from __future__ import annotations

import gc
import json
from collections import Counter, defaultdict, namedtuple
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any, Callable, Iterable, Iterator, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.engine import Connection

from hub import moderation
from hub.identity import (POST_WINDOW, Features, Match, Words, confirm, event_keys, features, hamming, has_details,
                          index_keys, match, reads_texts, sequence, text_dates, word_keys)
from hub.models import Item
from hub.records import Origin, canonical, diff, kind_of, snapshot
import hub.store.ledger as ledger
import hub.store.searchindex as searchindex
from hub.store.bulk import insert_rows, new_ids, placeholders, sqlite_datetime, to_json
from hub.store.version import advance
from hub.store.tables import (IdentityCommonKeyRow, IdentityKeyRow, IdentitySplitRow, ItemRow, RecordOriginRow,
                              RecordRevisionRow, RecordRow, SourceRow)

ITEMS = ItemRow.__table__
RECORDS = RecordRow.__table__
ORIGINS = RecordOriginRow.__table__
KEYS = IdentityKeyRow.__table__
COMMON = IdentityCommonKeyRow.__table__
SPLITS = IdentitySplitRow.__table__
SOURCES = SourceRow.__table__
REVISIONS = RecordRevisionRow.__table__
MAX_IMAGES = 4  # images of one origin downloaded at ingest; the rest on first view (hub.media)
KEY_CAP = 3  # items one post key holds: a word in more of a merchant's posts of 8 days is common
EVENT_KEY_CAP = 24  # ... one event key (day, title word): "konzert" on a Saturday
MAX_CANDIDATES = 4  # items matched per item, of those its keys find: the ones sharing most keys
CHUNK = 5000  # values per driver-level IN (SQLite allows 32,766 parameters)
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
        self.common: set[int] = set()  # keys known to be common (identity_common_keys)
        self.key_counts: dict[int, int] = {}  # key -> items stored under it, where known
        self.sequences: dict[int, Words] = {}  # item id -> identity.sequence, as needed
        self.dates: dict[int, frozenset[tuple[int, int]]] = {}  # item id -> identity.text_dates, as needed
        self.texts: dict[int, tuple[str, str]] = {}  # stored item id -> (title, plain text), as needed
        self.keys_stored: dict[int, list[int]] = {}  # item id -> its stored_keys, as computed
        self.record_sources: dict[int, set[str]] = defaultdict(set)  # record id -> sources of its live origins
        self.keys_probed: dict[int, list[int]] = {}

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
        self._replace_keys([o.item_id for o in self._new_origins()], fresh=True)  # needs no record id
        self._write_new()
        self.refresh(self.dirty)
        self.write_revisions()

    def write_revisions(self) -> None:
        """The revisions and ledger rows of what this transaction wrote, last: from here to
        COMMIT the town's writers take turns (`version.advance`), so revision ids commit in order."""
        if not (self.revisions or self.new_records):
            return
        advance(self.conn)
        for rev in self.revisions:
            if isinstance(rev["record_id"], NewRecord):
                rev["record_id"] = rev["record_id"].id
        if self.revisions:
            self.conn.execute(REVISIONS.insert(), self.revisions)
        # issue 16: the push channels' delivery ledger, in the same transaction as the change
        ledger.announce(self.conn, self.now, {r.id for r in self.new_records} | {
            rev["record_id"] for rev in self.revisions if rev["change"] in ledger.ANNOUNCED},
            {rev["record_id"] for rev in self.revisions})
        self.revisions = []

    def _fingerprint(self, item_id: int, item: Item, at: datetime) -> None:
        self.items[item_id] = item
        full = item.merchant_id in self.multi
        p = self.prepared.get(item.key)
        if p is not None and p.features.full == full:
            self.features[item_id] = p.features
            self.keys_stored[item_id], self.keys_probed[item_id] = p.stored, p.probes
        else:
            self.features[item_id] = features(item, at=at, zone=self.zone, full=full)
            self.keys_stored.pop(item_id, None)
            self.keys_probed.pop(item_id, None)

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
        self._fingerprint_unkeyed(searching)
        index = self._candidates(searching)
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
        common: frozenset[str] | None = None  # its title words that are common keys: asked when titles count
        for cand in index.lookup(f, self.probe_keys(item_id)):
            if cand.item_id == item_id or (isinstance(cand.record, int) and cand.record in blocked):
                continue
            if f.event_day is None and self._has_source(cand.record, f.source_id):
                continue  # one source's posts never merge (hub.identity), also not through a third
            m = match(f, cand.features)
            if m is not None and m.rule in _BY_TITLE and f.terms:
                if common is None:
                    common = self._common_title_words(f)
                m = match(f, cand.features, common) if common else m
            if m is not None:  # equal matches: the closest text, then the oldest record
                found.append((m.score, -hamming(f.simhash, cand.features.simhash), -_record_order(cand.record), cand, m))
        found.sort(key=lambda t: t[:3], reverse=True)
        self._load_texts([cand.item_id for *_, cand, m in found if reads_texts(m, f, cand.features)])
        for *_, cand, m in found:  # the best match its texts confirm (hub.identity.confirm)
            if m.rule == "same-details" and not has_details(f, cand.features, self._dates(item_id),
                                                            self._dates(cand.item_id)):
                continue  # most of them: no need to compare their words
            if reads_texts(m, f, cand.features):
                m = confirm(m, f, cand.features, self._sequence(item_id), self._sequence(cand.item_id),
                            common if common is not None else self._common_title_words(f) if f.terms else frozenset())
            if m is not None:
                return cand, m
        return None

    def _common_title_words(self, f: Features) -> frozenset[str]:
        """The words of its title that are common keys of its merchant's posts around it:
        no evidence that two titles name the same thing."""
        common = self.common
        return frozenset(w for w in f.title_key.split() if any(k in common for k in word_keys(f, w)))

    def stored_keys(self, item_id: int) -> list[int]:
        keys = self.keys_stored.get(item_id)
        if keys is None:
            keys = self._index_keys(item_id)[0]
        return keys

    def probe_keys(self, item_id: int) -> list[int]:
        keys = self.keys_probed.get(item_id)
        if keys is None:
            keys = self._index_keys(item_id)[1]
        return keys

    def _index_keys(self, item_id: int) -> tuple[list[int], list[int]]:
        stored, probes = self.keys_stored[item_id], self.keys_probed[item_id] = index_keys(self.features[item_id])
        return stored, probes

    def _has_source(self, record: int | NewRecord, source_id: str) -> bool:
        """Whether a live origin of the record is of this source."""
        if isinstance(record, NewRecord):
            return any(o.item.source_id == source_id for o in record.members)
        return source_id in self.record_sources[record]

    def _sequence(self, item_id: int) -> Words:
        """The words `identity.apart` compares: of an item of this batch, or read from the store."""
        found = self.sequences.get(item_id)
        if found is None:
            found = self.sequences[item_id] = sequence(*self._texts(item_id))
        return found

    def _dates(self, item_id: int) -> frozenset[tuple[int, int]]:
        """The days its text names (`identity.text_dates`), as its `_sequence` has them."""
        found = self.sequences.get(item_id)
        if found is not None:
            return found.dates
        dates = self.dates.get(item_id)
        if dates is None:
            dates = self.dates[item_id] = text_dates(*self._texts(item_id))
        return dates

    def _texts(self, item_id: int) -> tuple[str, str]:
        """(title, plain text) of an item of this batch, or of a stored one (`_load_texts`)."""
        item = self.items.get(item_id)
        if item is not None:
            return item.title, item.content_text
        if item_id not in self.texts:
            self._load_texts([item_id])
        return self.texts[item_id]

    def _load_texts(self, item_ids: list[int]) -> None:
        """The texts of the stored candidates a text rule may ask about, in one query."""
        wanted = [i for i in item_ids if i not in self.items and i not in self.texts and i not in self.sequences]
        if wanted:
            rows = self.conn.execute(select(ITEMS.c.id, ITEMS.c.title, ITEMS.c.content_text).where(ITEMS.c.id.in_(wanted)))
            self.texts.update((r.id, (r.title, r.content_text)) for r in rows)

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
                self.record_sources[record].add(origin.item.source_id)
            self.revision(record, "merged", item_id=item_id, rule=m.rule, score=m.score, matched_item_id=cand.item_id)
        if self.features[item_id].full:  # nothing else could match the others
            index.add(Candidate(item_id, self.features[item_id], record), self.stored_keys(item_id))

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

    def _candidates(self, item_ids: list[int]) -> _Index:
        """An index of the live origins that `item_ids` may match, each fingerprinted: those
        with their URL or one they link to, and of those their keys find (a link to them, an
        event on their day, a post of their merchant with words in common), the
        `MAX_CANDIDATES` per item that share the most keys with it. Common keys are skipped."""
        index = _Index(self.common)
        if not item_ids:
            return index
        fs = {i: self.features[i] for i in item_ids}
        probes = {i: self.probe_keys(i) for i in item_ids}
        lists = self._key_lists({k for ks in probes.values() for k in ks})
        index.by_key.update((k, list(ids)) for k, ids in lists.items())
        urls = {k for f in fs.values() for k in (f.url_key, *f.link_keys) if k is not None}
        wanted: set[int] = set()
        for i, keys in probes.items():
            if any(map(lists.__contains__, keys)):  # most find nothing: no ranking
                wanted.update(_ranked(fs[i], keys, lists, self.common, MAX_CANDIDATES))
                wanted.update(lists.get(fs[i].url_key, ()))  # those linking to it, every one
        wanted.difference_update(item_ids)
        rows = self._origin_rows("item_id", wanted)
        if urls:  # IS NOT NULL lets the planner use the partial index
            seen = {r.item_id for r in rows}
            rows += [r for r in self._origin_rows("url_key", urls) if r.item_id not in seen]
        self._complete([r for r in rows if r.title_key is None])
        for r in rows:
            index.add(Candidate(r.item_id, self.features.get(r.item_id) or _stored_features(r), r.record_id),
                      keys=())  # its keys are in by_key already, from the store
        records = sorted({r.record_id for r in rows})
        for chunk in _chunks(records):
            sql = (f"SELECT record_id, source_id FROM record_origins WHERE live AND record_id IN "
                   f"({placeholders(self.conn, len(chunk))})")
            for record_id, source_id in self.conn.exec_driver_sql(sql, tuple(chunk)):
                self.record_sources[record_id].add(source_id)
        return index

    def _origin_rows(self, column: str, values: set[int]) -> list[CandidateRow]:
        """The live origins whose `column` is one of `values`, as `_stored_features` reads
        them (driver level: a batch asks for thousands)."""
        rows = []
        sqlite = self.conn.dialect.name == "sqlite"
        for chunk in _chunks(list(values)):
            sql = (f"SELECT {_CANDIDATE_SQL} FROM record_origins WHERE live AND {column} IS NOT NULL "
                   f"AND {column} IN ({placeholders(self.conn, len(chunk))})")
            for row in self.conn.exec_driver_sql(sql, tuple(chunk)):
                row = CandidateRow._make(row)
                if sqlite:  # as UTCDateTime reads them
                    row = row._replace(at=_utc(row.at), event_start=_utc(row.event_start))
                rows.append(row)
        return rows

    def _key_lists(self, keys: set[int]) -> dict[int, list[int]]:
        """key -> the items stored under it, for the keys that are not common (whose lists
        hold at most `KEY_CAP` items); notes which are common, and how full the others are."""
        if not keys:
            return {}
        self._load_common(keys)
        keys = [k for k in keys if k not in self.common]
        self.key_counts.update(dict.fromkeys(keys, 0))
        lists: dict[int, list[int]] = defaultdict(list)  # the keys that hold any item
        for chunk in _chunks(keys):
            sql = f"SELECT key, item_id FROM identity_keys WHERE key IN ({placeholders(self.conn, len(chunk))})"
            for key, item_id in self.conn.exec_driver_sql(sql, tuple(chunk)):
                lists[key].append(item_id)
        self.key_counts.update((key, len(ids)) for key, ids in lists.items())
        return dict(lists)

    def _load_common(self, keys: set[int]) -> None:
        for chunk in _chunks(list(keys)):
            sql = f"SELECT key FROM identity_common_keys WHERE key IN ({placeholders(self.conn, len(chunk))})"
            self.common.update(self.conn.exec_driver_sql(sql, tuple(chunk)).scalars())

    def _fingerprint_unkeyed(self, item_ids: list[int]) -> None:
        """Origins without text features of the merchants of `item_ids` within days of them:
        posts stored while their merchant had one source (or before migration 0006). They
        get features and keys once, so the keys find them from now on (partial index
        ix_record_origins_unkeyed: nothing to read for a merchant whose origins have theirs)."""
        spans: dict[str, list[datetime]] = defaultdict(list)
        for i in item_ids:
            f = self.features[i]
            if f.terms:
                spans[f.merchant_id].append(f.at)
        if not spans:
            return
        sqlite = self.conn.dialect.name == "sqlite"
        mark = placeholders(self.conn, 1)
        sql = (f"SELECT item_id, at FROM record_origins WHERE title_key IS NULL AND merchant_id = {mark} "
               f"AND at BETWEEN {mark} AND {mark} AND live")  # one statement, prepared once: the partial index
        rows = []
        for merchant, ats in spans.items():
            lo, hi = min(ats) - POST_WINDOW, max(ats) + POST_WINDOW
            params = (merchant, sqlite_datetime(lo), sqlite_datetime(hi)) if sqlite else (merchant, lo, hi)
            rows += [_Unkeyed(item_id, _utc(at)) for item_id, at in self.conn.exec_driver_sql(sql, params)
                     if item_id not in self.features]
        self._complete(rows)

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
            self.keys_stored.pop(item_id, None)
            self.keys_probed.pop(item_id, None)
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
        searchindex.write(self.conn, {r.id: self._search_row(r) for r in self.new_records})

    def _new_origins(self) -> list[Origin]:
        return [o for r in self.new_records for o in r.members] + [o for _, o in self.joins]

    def _search_row(self, record: NewRecord) -> searchindex.Row:
        """A new record's row in the search index: prepared before the write lock for most."""
        if len(record.members) == 1:
            p = self.prepared.get(record.members[0].item.key)
            if p is not None and p.search is not None:
                return p.search
        return searchindex.row(self.conn.dialect.name, [searchindex.parts(o.item) for o in record.members])

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
        """Store the blocking keys of these origins (replacing older ones unless `fresh`),
        each while it holds fewer than `KEY_CAP` items; the item that finds a key full makes
        it common, and a common key is stored no more."""
        if not item_ids:
            return
        if not fresh:
            self.conn.execute(KEYS.delete().where(KEYS.c.item_id.in_(item_ids)))
            for key in {k for i in item_ids for k in self.stored_keys(i)}:
                self.key_counts.pop(key, None)  # one fewer, perhaps: count again
        stored_keys = self.stored_keys
        pairs = [(k, i) for i in item_ids for k in stored_keys(i)]
        counts, common_keys = self.key_counts, self.common
        unknown = {k for k, _ in pairs if k not in counts and k not in common_keys}
        if unknown:
            self._load_common(unknown)
            self.key_counts.update({k: 0 for k in unknown if k not in self.common})
            for chunk in _chunks(list(unknown - self.common)):
                sql = (f"SELECT key, count(*) FROM identity_keys WHERE key IN ({placeholders(self.conn, len(chunk))}) "
                       "GROUP BY key")
                self.key_counts.update(self.conn.exec_driver_sql(sql, tuple(chunk)).all())
        rows, common = [], {}
        event_keys_ = {k for i in item_ids for k in self.features[i].event_keys}
        for pair in pairs:
            key = pair[0]
            if key in common_keys:
                continue
            n = counts.get(key, 0)
            if n >= (EVENT_KEY_CAP if key in event_keys_ else KEY_CAP):
                common_keys.add(key)
                common[key] = self.features[pair[1]].at.date().toordinal()
                continue
            rows.append(pair)
            counts[key] = n + 1
        rows.sort(key=_first)  # B-tree inserts in key order touch fewer pages: ~30% faster
        if rows:  # (key, item id) tuples as they are: no row dicts for insert_rows
            self.conn.exec_driver_sql(f"INSERT INTO identity_keys (key, item_id) VALUES ({placeholders(self.conn, 2)})",
                                      rows)
        _insert_common(self.conn, common)

    def record_values(self, members: Sequence[Origin], *, created: bool,
                      current: moderation.Verdict | None = None) -> dict[str, Any]:
        return record_values(members, self.rules, self.now, created=created, current=current)

    # --- refreshing existing records ----------------------------------------------------------

    def refresh(self, record_ids: set[int]) -> None:
        """Merge, judge and diff every existing record whose origins changed."""
        if not record_ids:
            return
        # Locked (PostgreSQL) before their origins are read: a concurrent merge or the manager's
        # approval commits first, and is read, not overwritten (in id order: no deadlock among writers).
        records = {r.id: r for r in self.conn.execute(select(RECORDS).where(RECORDS.c.id.in_(record_ids))
                                                      .order_by(RECORDS.c.id).with_for_update())}
        origins = load_origins(self.conn, record_ids, self.read_item)
        for record_id, row in records.items():
            self._refresh_one(row, origins.get(record_id, []))  # none left: forgotten by retention
        searchindex.write(self.conn, searchindex.rows_of(self.conn.dialect.name,
                                                         {i: origins.get(i, []) for i in records}))

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


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a batch is prepared or placed: it allocates some
    hundred thousand small objects, nearly all freed by reference counting, and the
    collector's passes over them (and everything else alive) cost a quarter of placing a
    batch of a merchant with several sources. One pass follows, when it is due."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# --- before the write lock ---------------------------------------------------------------------

@dataclass(frozen=True)
class Prepared:
    """What placing one new item needs that the database does not decide: computed by
    `prepare` before the ingest transaction takes the write lock, so writers in other
    processes wait only for the database work."""

    features: Features
    origin: dict[str, Any]  # its origin row, but for ids, rule and link time
    record: dict[str, Any]  # the row of a record of its own (most new items found one)
    stored: list[int]  # its identity keys (hub.identity.index_keys), once each
    probes: list[int]  # the keys it looks up (hub.identity.index_keys), once each
    search: searchindex.Row | None = None  # its row in the search index as a record of its own (stemmed)


def prepare(items: Iterable[tuple[Item, datetime]], rules: moderation.Rules,
            multi: set[str], dialect: str | None = None) -> dict[tuple[str, str], Prepared]:
    """(source id, external id) -> Prepared, for items fetched at the given moments;
    `multi`: merchants with several sources (`multi_source_merchants`); `dialect`: of the
    database, for the search index's row (stemming is most of its cost)."""
    out = {}
    for item, at in items:
        f = features(item, at=at, zone=rules.timezone, full=item.merchant_id in multi)
        origin = {"source_id": item.source_id, "merchant_id": item.merchant_id, "live": True,
                  **_feature_columns(f, item)}
        out[item.key] = Prepared(f, origin, record_values([Origin(0, item, "first", 1.0, None, True, at)],
                                                          rules, at, created=True),
                                 *(index_keys(f) if f.full else ([], [])),
                                 searchindex.row(dialect, [searchindex.parts(item)]) if dialect else None)
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
    """In-memory blocking index over the batch's candidates and its own placed items: key ->
    item ids (from the store, also those not fetched as candidates, so a key's fullness is
    known), URL key -> items with that URL, item id -> candidate."""

    def __init__(self, common: set[int]) -> None:
        self.common = common
        self.by_key: dict[int, list[int]] = defaultdict(list)
        self.by_url: dict[int, list[int]] = defaultdict(list)
        self.candidates: dict[int, Candidate] = {}

    def add(self, cand: Candidate, keys: Iterable[int]) -> None:
        """`keys`: what it is stored under, once each."""
        item_id = cand.item_id
        self.candidates[item_id] = cand
        if cand.features.url_key is not None:
            self.by_url[cand.features.url_key].append(item_id)
        by_key = self.by_key
        for key in keys:
            by_key[key].append(item_id)

    def lookup(self, f: Features, probes: list[int]) -> list[Candidate]:
        """Those with its URL or one it links to, those linking to it, and the
        `MAX_CANDIDATES` its other keys (`probes`) find that share the most keys with it."""
        by_url = self.by_url
        urls = [u for u in (f.url_key, *f.link_keys) if u is not None and u in by_url]
        if not urls and not any(map(self.by_key.__contains__, probes)):
            return []  # most items: none of their keys holds anything
        ids = [i for u in urls for i in by_url[u]]
        if f.url_key is not None:
            ids += self.by_key.get(f.url_key, ())
        found = {i: c for i in ids if (c := self.candidates.get(i)) is not None}
        for i in _ranked(f, probes, self.by_key, self.common, MAX_CANDIDATES, self.candidates):
            found.setdefault(i, self.candidates[i])
        return list(found.values())


def _ranked(f: Features, keys: Iterable[int], lists: dict[int, list[int]], common: set[int], limit: int,
            among: dict[int, Candidate] | None = None) -> list[int]:
    """The `limit` item ids that the most of these keys (of `f`, once each) hold (fewer keys:
    a later pick), of the keys that are not common and would not be with `f` (`KEY_CAP`
    items, or `EVENT_KEY_CAP` for its event keys, hold them already); only those `among` if
    given."""
    found: list[int] = []
    events = f.event_keys
    if events:
        for key in keys:
            ids = lists.get(key)
            if ids and len(ids) < (EVENT_KEY_CAP if key in events else KEY_CAP) and key not in common:
                found += ids
    else:  # a post: every key has the one cap
        for key in keys:
            ids = lists.get(key)
            if ids and len(ids) < KEY_CAP and key not in common:
                found += ids
    if among is not None:
        found = [i for i in found if i in among]
    if len(found) <= limit:
        return list(dict.fromkeys(found))
    counts = Counter(found)
    if len(counts) <= limit:
        return list(counts)
    return [i for i, _ in sorted(counts.items(), key=_second, reverse=True)[:limit]]


_BY_TITLE = frozenset({"similar-offer", "similar-title-and-text", "same-details"})  # the rules that compare titles
_first = itemgetter(0)
_second = itemgetter(1)


def _insert_common(conn: Connection, common: dict[int, int]) -> None:
    """Keys that became common (key -> day). Another writer may have made one common first
    (a key outside the scopes it locks: hub.store.writelocks): that row stands."""
    if common:
        conn.exec_driver_sql(f"INSERT INTO identity_common_keys (key, day) VALUES ({placeholders(conn, 2)}) "
                             "ON CONFLICT (key) DO NOTHING", list(common.items()))


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]


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


_CANDIDATE_FIELDS = ("item_id", "record_id", "source_id", "merchant_id", "at", "url_key", "event_start", "event_day",
                     "event_all_day", "title_key", "place_key", "simhash", "text_words", "prices", "link_keys")
CandidateRow = namedtuple("CandidateRow", _CANDIDATE_FIELDS)  # what `_stored_features` reads
_CANDIDATE_SQL = ", ".join(_CANDIDATE_FIELDS)


_Unkeyed = namedtuple("_Unkeyed", "item_id at")  # what `_complete` reads of a row


def _utc(value: Any) -> datetime | None:
    """A datetime as SQLite hands it back ("2026-11-22 11:00:00.000000"), as UTC."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)


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

