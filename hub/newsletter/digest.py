"""What an edition carries, and what each subscriber gets of it.

An edition is made of the records residents may see (moderation, the channel's quotas and
expiry apply) that match the channel's `include:` rules and its sections:

- **new**: records the hub first saw since the last edition (published at most
  `LOOKBACK` before it: a merchant's old posts, read for the first time because its feed
  was just added, are not news), newest first;
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

LOOKBACK = timedelta(days=7)  # how old a newly seen record may be and still be news; also the first edition's reach
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


def gather(store: Store, settings: Settings, channel: ChannelConfig, since: datetime,
           now: datetime) -> tuple[list[int], list[int]]:
    """(new, upcoming) record ids for an edition made at `now` after one made at `since`."""
    filters = channel_filters(settings, channel)
    records = store.records
    recent = records.list(limit=CANDIDATES, now=now, **filters)
    new = [r.id for r in recent if r.created_at and r.created_at > since and (r.sort_at or now) > since - LOOKBACK
           and not is_past(r, now)]
    upcoming: list[int] = []
    if "event" in filters["kinds"]:
        events = records.list(limit=CANDIDATES, now=now, order="event_start", starts_from=now - ONGOING,
                              **{**filters, "kinds": ["event"]})
        fresh = set(new)
        upcoming = [r.id for r in events if r.id not in fresh and not is_past(r, now)]
    return new, upcoming


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
    """Picks and arranges a subscriber's records from an edition's entries."""

    def __init__(self, merchants: Iterable[MerchantConfig], sections: Sequence[str], max_items: int,
                 category_title: Callable[[str], str] = lambda c: c) -> None:
        self.category = {m.id: m.category for m in merchants}
        self.sections = list(sections)
        self.max_items = max_items
        self.category_title = category_title

    def wants(self, prefs: Preferences, entry: Entry) -> bool:
        if prefs.kinds and entry.kind not in prefs.kinds:
            return False
        if not (prefs.categories or prefs.merchants):
            return True
        return bool(entry.merchants & set(prefs.merchants)) or any(
            self.category.get(m) in prefs.categories for m in entry.merchants)

    def digest(self, entries: Sequence[Entry], prefs: Preferences) -> Digest | None:
        """The subscriber's mail, or None when nothing new matched."""
        matched = [e for e in entries if self.wants(prefs, e)]
        if not any(e.new for e in matched):
            return None
        chosen = self._fair_share(matched)
        sections = []
        for kind in self.sections:
            mine = sorted((e for e in chosen if e.kind == kind), key=self._group_order)
            if mine:
                groups = tuple(Group(cat, self._group_title(cat), tuple(sorted(members, key=self._display_order)))
                               for cat, members in groupby(mine, key=self._category_of))
                sections.append(Section(kind, SECTION_TITLES[kind], groups))
        key = tuple(e.id for s in sections for g in s.groups for e in g.entries)
        return Digest(tuple(sections), key)

    def _fair_share(self, matched: list[Entry]) -> list[Entry]:
        """At most `max_items`, taken in turns from the sections (new ones first, then the
        soonest events), so that a busy section does not crowd out the others."""
        queues = [sorted((e for e in matched if e.kind == kind), key=self._priority) for kind in self.sections]
        chosen: list[Entry] = []
        while len(chosen) < self.max_items and any(queues):
            for queue in queues:
                if queue and len(chosen) < self.max_items:
                    chosen.append(queue.pop(0))
        return chosen

    def _category_of(self, entry: Entry) -> str | None:
        return self.category.get(entry.record.item.merchant_id)

    def _group_title(self, category: str | None) -> str:
        return self.category_title(category) if category else OTHER

    def _group_order(self, entry: Entry) -> tuple:
        category = self._category_of(entry)
        return (category is None, self._group_title(category).casefold() if category else "", category or "")

    @staticmethod
    def _priority(entry: Entry) -> tuple:
        event = entry.record.item.event
        return (not entry.new, event.start.timestamp() if event else -_newness(entry))

    @staticmethod
    def _display_order(entry: Entry) -> tuple:
        event = entry.record.item.event
        return (event.start.timestamp(), entry.id) if event else (-_newness(entry), -entry.id)


def _newness(entry: Entry) -> float:
    at = entry.record.sort_at or entry.record.created_at
    return at.timestamp() if at else 0.0
