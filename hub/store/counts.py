"""Exact counts of listings, remembered while nothing could have changed them.

A page shows how many pages a listing has, so it asks `Records.count` on every request; an
exact count reads every row that matches (the home page of a town with 200,000 records:
160,000 rows, and a quota check for some), however few the page shows. The answer only
changes when records change or time passes one of their expiry moments, so it is kept:

- with the store's data version it was counted at (the newest record id and the newest
  revision id: a new record takes a new id and every change of a record writes a revision,
  whichever process commits it; `hub.store.version`), read in the same transaction;
- valid from the moment `now` it was counted for until the next moment a record leaves the
  listings by expiring (`until`), so an event that ends drops out of the count on time.

A count asked with another version, or for a moment outside that span, is counted again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any, Hashable, NamedTuple

MAX_ENTRIES = 512  # distinct listings (filters) remembered; the least recently used go first


class _Entry(NamedTuple):
    version: Any
    since: datetime
    until: datetime | None  # None: no record expires after `since`
    count: int


class Counts:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()  # web requests count from many threads

    def get(self, key: Hashable, version: Any, now: datetime) -> int | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.version != version or now < entry.since or (
                    entry.until is not None and now >= entry.until):
                return None
            self._entries.move_to_end(key)
            return entry.count

    def put(self, key: Hashable, version: Any, since: datetime, until: datetime | None, count: int) -> None:
        with self._lock:
            self._entries[key] = _Entry(version, since, until, count)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def key_of(filters: dict[str, Any]) -> Hashable:
    """A hashable key for a listing's filters: collections in a fixed order (an empty one
    stays apart from None: "none" is not "any")."""
    def frozen(value: Any) -> Hashable:
        if isinstance(value, (list, tuple, set, frozenset)):
            return ("in", tuple(sorted(map(repr, value))))
        return repr(value)

    return tuple(sorted((name, frozen(value)) for name, value in filters.items() if value is not None))
