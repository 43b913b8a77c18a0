"""The locks that let ingest writers of one town write side by side on PostgreSQL (issue 18).

SQLite has one writer at a time (BEGIN IMMEDIATE) and needs none of this. On PostgreSQL a
write transaction of `Store.write` takes, before it reads anything placement relies on,
transaction-scoped advisory locks on the scopes its items can be matched in, and the
town's turn only for its last part (below):

1. **Its merchants** (of its sources and of its items): a source has one writer at a time
   (leases), and this makes it exact even when a lease ran out; post keys (`identity.index_keys`)
   are per merchant, so every post key an item probes or stores, and every origin that
   `Placement._fingerprint_unkeyed` completes (the merchant's own posts), lies in it.
2. **Its event days**: event keys are per (local day, title word), and events match only
   on their day (`identity.event_keys`, `index_keys`).
3. **Its URL keys**, one lock each: an item's own URL key (others with
   that URL, others linking to it: `index_keys`) and every URL it links to (others with that
   URL: `_Index.lookup`, `_candidates`; its stored link keys: `index_keys`).

Two items can only be matched when one's probe keys meet the other's stored keys or URL
columns (`Placement._candidates` finds candidates in no other way), and each such key lies in
one of these scopes of both items. (Today two merchants' items match by URL only as events
of one day, which the day locks cover already; the URL locks also keep the counts of link
keys, `KEY_CAP`, exact, and hold whatever the rules of `hub.identity` become.) So two writers whose items could match take a lock in
common and take turns; writers whose lock sets are disjoint read and write nothing the other
relies on, and their outcome is that of running one after the other. The lock set covers:

- new and changed items: the features `Store.plan` prepared (`IngestPlan.prepared`). An item
  whose prepared features are not `full` (a post of a merchant with one source) matches
  nothing and stores no keys, but its merchant may have got a second source between plan and
  write, and placement then fingerprints it in full: its own URL key and its link keys are
  locked as well (cheap: no text features). An item without prepared features (a writer that
  judged it unchanged, a revived tombstone) is fingerprinted here in full.
- changed and gone items as they were: the merchant, event day, URL and link keys of their
  origin rows (`_old_scopes`), whose keys the write deletes or stops being live.
- candidates completed late (`Placement._complete`): from `_fingerprint_unkeyed` they are posts
  of a merchant the writer holds; from a URL look-up (origins stored before migration 0006,
  with a URL key but no text features), the URL's lock is held. The keys written for them
  may lie in scopes the writer does not hold (another merchant's post keys): the same key rows
  a writer holding that scope would write, so common keys are inserted ON CONFLICT DO NOTHING.

Locks are taken in few statements, each sorted: first every merchant, then (once the items
the batch knows are read) a lock-all of the days, one of the URLs, then the days and URLs.
A lock-all is taken shared, so writers with few days and URLs still overlap; a
batch with more than `MOST_LOCKS` of them (a first fetch of a calendar, of a site's archive;
`Store.write` splits a batch of several sources below that) takes it exclusively instead of thousands of locks, which PostgreSQL keeps in a shared
table of limited size (`max_locks_per_transaction` times connections). All writers take
them in that one order, so they cannot deadlock on them; only a merchant learnt in the
second step (an origin stored under another merchant, after a source was given to another
merchant) is taken out of that order, and the rare deadlock it may cause is retried like any
other (`retrying`).

What the writers do side by side is all of a write but its last part: the items, their tags,
identity keys, candidates, placement decisions, new records, origins, search rows, merges.
From writing its revisions to COMMIT a writer holds its town's turn: the row of the data
version, which it moves (`hub.store.version.advance`), so revision ids commit in the order they
were taken: the change feed and the ledger's versions rely on it. Record ids may commit out
of order; the data version, not the newest record id, tells readers that something changed.
The project manager's actions take the turn the same way, last, after their record rows.
"""

from __future__ import annotations

import hashlib
import logging
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from hub.identity import features, link_keys, local_day, url_key

log = logging.getLogger("hub.store")

WRITE_ATTEMPTS = 4  # a write that hit a deadlock or serialization failure is tried this often in all
RETRY_PAUSE = 0.05  # seconds before the second attempt, doubling: the other writer finishes first
RETRYABLE = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
CHUNK = 5000
MOST_LOCKS = 256  # days or URLs one batch locks one by one; beyond, all of that kind at once

T = TypeVar("T")


class WriteLocks:
    """The advisory locks of one ingest write transaction on PostgreSQL; `town`: the
    store's schema (None: the database's own), which namespaces every lock."""

    def __init__(self, conn: Connection, town: str | None) -> None:
        self.conn = conn
        self.town = town or ""
        self.held: set[int] = set()

    # --- step 1: before anything is read -------------------------------------------------

    def take_merchants(self, outcomes: Sequence[Any]) -> None:
        """Every merchant of these outcomes' sources and items."""
        merchants = {i.merchant_id for o in outcomes for i in o.parsed.items}
        sources = sorted({o.source_id for o in outcomes})
        if sources:
            merchants.update(m for m, in self.conn.exec_driver_sql(
                "SELECT DISTINCT merchant_id FROM sources WHERE id = ANY(%s)", (sources,)))
        self._take(self._id("merchant", m) for m in merchants)

    # --- step 2: once the batch's known items are read -----------------------------------

    def take_scopes(self, outcomes: Sequence[Any], known: dict[str, dict[str, Any]],
                    prepared: dict[tuple[str, str], Any], zone: str) -> None:
        """The event days and URL keys of what the batch writes (new and changed items as
        they will be, changed and gone ones as they were), and any merchant of the old
        rows not held yet."""
        merchants: set[str] = set()
        days: set[int] = set()
        urls: set[int] = set()
        touched: list[int] = []  # ids of stored items the batch may change or tombstone
        for o in outcomes:
            stored = known.get(o.source_id, {})
            present = set()
            for item in o.parsed.items:
                present.add(item.external_id)
                row = stored.get(item.external_id)
                if row is not None and row.content_hash == item.content_hash and not (
                        o.parsed.revive and row.deleted_at is not None):
                    continue  # unchanged: the write leaves it be
                if row is not None:
                    touched.append(row.id)
                day, keys = _new_scopes(item, o.at, prepared.get(item.key), zone)
                if day is not None:
                    days.add(day)
                urls.update(keys)
            touched += [row.id for ext, row in stored.items() if ext not in present and row.deleted_at is None]
        for merchant, day, keys in self._old_scopes(touched):
            merchants.add(merchant)
            if day is not None:
                days.add(day)
            urls.update(keys)
        self._take(self._id("merchant", m) for m in merchants)
        self._take_each(("day", days), ("url", urls))

    def _take_each(self, *scopes: tuple[str, set[int]]) -> None:
        """For each kind of scope its lock-all, shared (or, for more than `MOST_LOCKS`
        scopes, exclusive: one lock instead of thousands in PostgreSQL's shared lock table,
        and the batch writes alone among those with scopes of that kind); then the scopes'
        own locks, sorted."""
        few = [(kind, values) for kind, values in scopes if values and len(values) <= MOST_LOCKS]
        for kind, values in scopes:
            if values:
                shared = "_shared" if len(values) <= MOST_LOCKS else ""
                self.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock{shared}({self._id(kind, 'all')})")
        self._take(self._id(kind, v) for kind, values in few for v in values)

    def _old_scopes(self, item_ids: list[int]) -> Iterable[tuple[str, int | None, list[int]]]:
        """(merchant, event day, URL and link keys) of these items' origins as stored."""
        for start in range(0, len(item_ids), CHUNK):
            chunk = item_ids[start:start + CHUNK]
            for merchant, day, own, links in self.conn.exec_driver_sql(
                    "SELECT merchant_id, event_day, url_key, link_keys FROM record_origins WHERE item_id = ANY(%s)",
                    (chunk,)):
                yield merchant, day, [k for k in (own, *map(int, (links or "").split())) if k is not None]

    # --- helpers ---------------------------------------------------------------------------

    def _id(self, kind: str, value: Any) -> int:
        """A 64-bit advisory lock id of (town, kind, value), as a signed BIGINT."""
        digest = hashlib.blake2b(f"hub-write:{self.town}:{kind}:{value}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    def _take(self, ids: Iterable[int]) -> None:
        """Take these locks (those not held yet) in ascending order, in one statement: a
        function scan of a sorted array locks in the array's order."""
        wanted = sorted(set(ids) - self.held)
        if wanted:
            self.conn.exec_driver_sql("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k",
                                      (wanted,)).all()
            self.held.update(wanted)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that reads, then writes (syncing sources, the project manager's actions).
    SQLite: it takes the write lock at its start (BEGIN IMMEDIATE), waiting for other writers
    as long as the busy timeout allows; a deferred one that read before another process
    wrote could not write at all ("database is locked" at once). PostgreSQL: a plain one."""
    with engine.connect() as conn:
        conn.execution_options(begin="IMMEDIATE")
        with conn.begin():
            yield conn


def _new_scopes(item: Any, at: Any, p: Any, zone: str) -> tuple[int | None, list[int]]:
    """(event day, URL and link keys) of an item as this batch writes it."""
    if p is not None and p.features.full:
        f = p.features
        return f.event_day, [k for k in (f.url_key, *f.link_keys) if k is not None]
    if p is not None:  # a post of a merchant with one source (events are always full)
        own = url_key(item.url)
        day = local_day(item.event.start, zone) if item.event else None
        return day, [k for k in (own, *link_keys(item.content_html, own)) if k is not None]
    f = features(item, at=at, zone=zone, full=True)
    return f.event_day, [k for k in (f.url_key, *f.link_keys) if k is not None]


def retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure: PostgreSQL rolled the transaction back whole."""
    orig = getattr(exc, "orig", None)
    return isinstance(exc, DBAPIError) and getattr(orig, "sqlstate", None) in RETRYABLE


def retrying(write: Callable[[], T], what: str, attempts: int = WRITE_ATTEMPTS,
             pause: float = RETRY_PAUSE) -> T:
    """`write()`, tried again (up to `attempts` in all) when PostgreSQL broke a deadlock or a
    serialization failure by rolling it back: nothing of it was written, and it reads again
    what it needs. One log line per retry."""
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except DBAPIError as exc:
            if attempt == attempts or not retryable(exc):
                raise
            reason = type(exc.orig).__name__
            log.warning("%s: %s, rolled back; trying again (%d of %d)", what, reason, attempt + 1, attempts)
            time.sleep(pause * 2 ** (attempt - 1))
    raise AssertionError("unreachable")
