"""What an edition carries, and what each subscriber gets of it.

An edition is made of the records residents may see (moderation, the channel's quotas and
expiry apply) that match the channel's `include:` rules and its sections:

- **new**: records the hub first saw since the last edition (published at most
  `LOOKBACK` before it: a merchant's old posts, read for the first time because its feed
  was just added, are not news), and records published by the project manager since (held
  for review then), newest first;
- **upcoming**: events not yet past, however old their record: they stay in every edition
  until they are over.

No new record, no edition. The record ids are frozen in the edition; a resumed edition
sends the same content (re-read, so a record hidden or removed meanwhile is left out).

Each subscriber gets the records matching their preferences (kinds; categories or
merchants, either one matching), at most `max_items`, shared fairly between the sections:
nothing if none of them is new. A mail shows the sections in the configured order, each
grouped by the organiser's category: events by their start, the rest newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Callable, Iterable, Sequence

from hub.config import ChannelConfig, MerchantConfig, Settings
from hub.newsletter.options import NewsletterOptions
from hub.newsletter.store import Preferences
from hub.records import Record
from hub.store import Store
from hub.store.version import data_version

LOOKBACK = timedelta(days=7)  # how old a newly seen record may be and still be news; also the first edition's reach
# Records are stamped with the time they were fetched, which can be a little before their
# transaction commits: the next edition looks this far behind the last one's time, leaving
# out what that one carried, so a record committed during its making is not missed.
OVERLAP = timedelta(hours=1)
ONGOING = timedelta(days=31)  # how long before now an event still running may have started
CANDIDATES = 500  # most records of one kind an edition looks at
SECTION_TITLES = {"event": "Veranstaltungen", "offer": "Angebote", "post": "Neuigkeiten"}
OTHER = "Weitere"  # the group of records whose organiser has no category


@dataclass(frozen=True)
class Entry:
    """A record in an edition."""

    record: Record
    new: bool
    merchants: frozenset[str]  # the merchants of its live origins

    @property
    def kind(self) -> str:
        return self.record.item.kind.value

    @property
    def id(self) -> int:
        return self.record.id


@dataclass(frozen=True)
class Group:
    category: str | None
    title: str
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Section:
    kind: str
    title: str
    groups: tuple[Group, ...]


@dataclass(frozen=True)
class Digest:
    """One subscriber's mail, arranged: `key` names its content (for caching renders)."""

    sections: tuple[Section, ...]
    key: tuple[int, ...]

    @property
    def entries(self) -> list[Entry]:
        return [e for s in self.sections for g in s.groups for e in g.entries]


# --- the edition: which records --------------------------------------------------------------

def channel_filters(settings: Settings, channel: ChannelConfig) -> dict:
    """The store filters of a channel's `include:` and sections (Records.list keywords)."""
    opts: NewsletterOptions = channel.options
    rule = channel.include
    kinds = [k for k in opts.sections if not rule.kinds or k in rule.kinds]
    filters: dict = {"channel": channel.id, "kinds": kinds}
    if rule.merchants or rule.categories:
        filters["merchants"] = sorted(set(rule.merchants) | {m.id for m in settings.merchants
                                                             if m.category in rule.categories})
    if rule.tags:
        filters["tags"] = list(rule.tags)
    return filters


@dataclass(frozen=True)
class Since:
    """What came before an edition: when the last one was made, the records it carried as
    new, and the newest record revision then (records approved after it are new too)."""

    at: datetime
    carried: frozenset[int] = frozenset()
    revision: int | None = None


def gather(store: Store, settings: Settings, channel: ChannelConfig, since: Since,
           now: datetime) -> tuple[list[int], list[int]]:
    """(new, upcoming) record ids for an edition made at `now`, after `since`."""
    filters = channel_filters(settings, channel)
    records = store.records
    recent = records.list(limit=CANDIDATES, now=now, **filters)
    after = since.at - OVERLAP if since.carried else since.at
    approved = _published_after(store, since.revision) if since.revision is not None else set()
    new = [r.id for r in recent if r.id not in since.carried and (r.created_at and r.created_at > after
                                                                  or r.id in approved)
           and (r.sort_at or now) > since.at - LOOKBACK and not is_past(r, now)]
    upcoming: list[int] = []
    if "event" in filters["kinds"]:
        events = records.list(limit=CANDIDATES, now=now, order="event_start", starts_from=now - ONGOING,
                              **{**filters, "kinds": ["event"]})
        fresh = set(new)
        upcoming = [r.id for r in events if r.id not in fresh and not is_past(r, now)]
    return new, upcoming


def _published_after(store: Store, revision: int) -> set[int]:
    """Records the project manager (or a rule) published after `revision`: held for review
    when the last edition was made, news now."""
    found: set[int] = set()
    while changes := store.records.changes(after=revision, limit=1000):
        found |= {c.record_id for c in changes if c.change == "status" and c.detail.get("status") == "published"}
        revision = changes[-1].id
    return found


def revision_now(store: Store) -> int:
    """The newest record revision: an edition notes it (`Since.revision` of the next)."""
    return data_version(store.engine)[1]


def entries(store: Store, new: Sequence[int], upcoming: Sequence[int], now: datetime) -> list[Entry]:
    """The records of an edition as they are now: one hidden, removed, expired or past since
    the edition was made is left out."""
    fresh = set(new)
    found = []
    for record_id in dict.fromkeys([*new, *upcoming]):
        record = store.records.get(record_id)
        if record is None or not _visible(record, now) or is_past(record, now):
            continue
        merchants = frozenset({o.item.merchant_id for o in record.origins if o.live} | {record.item.merchant_id})
        found.append(Entry(record, record_id in fresh, merchants))
    return found


def is_past(record: Record, now: datetime) -> bool:
    """An event is past once it ended; without an end, once its start (an all-day event:
    its day) is over."""
    event = record.item.event
    if event is None:
        return False
    end = event.end or (event.start + timedelta(days=1) if event.all_day else event.start)
    return end <= now


def _visible(record: Record, now: datetime) -> bool:
    return (record.status == "published" and record.removed_at is None
            and (record.expires_at is None or record.expires_at > now))


# --- one subscriber's mail -------------------------------------------------------------------

class Chooser:
    """Picks and arranges each subscriber's records from an edition's entries. What does not
    depend on the subscriber (order, categories, headings) is worked out once, here: a
    digest is then a filter and a few list operations (ten thousand subscribers)."""

    def __init__(self, entries: Sequence[Entry], merchants: Iterable[MerchantConfig], sections: Sequence[str],
                 max_items: int, category_title: Callable[[str], str] = lambda c: c) -> None:
        self.category = {m.id: m.category for m in merchants}
        self.sections = [k for k in sections if k in SECTION_TITLES]
        self.max_items = max_items
        titles: dict[str | None, str] = {}
        for entry in entries:
            cat = self.category.get(entry.record.item.merchant_id)
            if cat not in titles:
                titles[cat] = category_title(cat) if cat else OTHER
        self._group = {e.id: self.category.get(e.record.item.merchant_id) for e in entries}
        self._titles = titles
        # Per section, in the order records are chosen: new ones first, then the soonest events.
        self._ranked = {kind: sorted((e for e in entries if e.kind == kind), key=_priority) for kind in self.sections}
        # The order of the mail: by category name (records without one last), then events by
        # their start, the rest newest first.
        shown = sorted(entries, key=lambda e: (self._group_key(e), _display_order(e)))
        self._position = {e.id: n for n, e in enumerate(shown)}
        self._merchant_categories = {e.id: {self.category.get(m) for m in e.merchants} for e in entries}

    def wants(self, prefs: Preferences, entry: Entry) -> bool:
        if prefs.kinds and entry.kind not in prefs.kinds:
            return False
        if not (prefs.categories or prefs.merchants):
            return True
        return not entry.merchants.isdisjoint(prefs.merchants) or \
            not self._merchant_categories[entry.id].isdisjoint(prefs.categories)

    def digest(self, prefs: Preferences) -> Digest | None:
        """The subscriber's mail, or None when nothing new matched."""
        queues = [[e for e in self._ranked[kind] if self.wants(prefs, e)] for kind in self.sections]
        if not any(e.new for queue in queues for e in queue):
            return None
        chosen = _in_turns(queues, self.max_items)
        sections = []
        for kind in self.sections:
            mine = sorted((e for e in chosen if e.kind == kind), key=lambda e: self._position[e.id])
            if mine:
                groups = tuple(Group(cat, self._titles[cat], tuple(members))
                               for cat, members in ((c, list(m)) for c, m in groupby(mine, key=self._group_of)))
                sections.append(Section(kind, SECTION_TITLES[kind], groups))
        key = tuple(e.id for s in sections for g in s.groups for e in g.entries)
        return Digest(tuple(sections), key)

    def _group_of(self, entry: Entry) -> str | None:
        return self._group[entry.id]

    def _group_key(self, entry: Entry) -> tuple:
        category = self._group[entry.id]
        return (category is None, self._titles[category].casefold(), category or "")


def _in_turns(queues: list[list[Entry]], limit: int) -> list[Entry]:
    """At most `limit` entries, taken in turns from the sections' queues, so that a busy
    section does not crowd out the others."""
    chosen: list[Entry] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue) and len(chosen) < limit:
                chosen.append(queue[depth])
        depth += 1
    return chosen


def _priority(entry: Entry) -> tuple:
    event = entry.record.item.event
    return (not entry.new, event.start.timestamp() if event else -_newness(entry), entry.id)


def _display_order(entry: Entry) -> tuple:
    event = entry.record.item.event
    return (event.start.timestamp(), entry.id) if event else (-_newness(entry), -entry.id)


def _newness(entry: Entry) -> float:
    at = entry.record.sort_at or entry.record.created_at
    return at.timestamp() if at else 0.0
