"""Counting what the platform achieved (issue 17): views, searches, clicks, feed and API
requests, newsletter and channel deliveries, per day, merchant and channel.

Counted on the server, without cookies and without anything about the person: a count is
(day, event, merchant, channel, subject) + n, where the subject is a record id, a search
term, a feed's format or nothing. No address, user agent or cookie is ever looked at for
counting, except that a request from a self-declared robot (its user agent says "bot") is
not counted; the user agent is not kept.

Counting must not slow pages down: `count` adds to a dictionary in memory (a lock and an
addition, a few microseconds); a background thread adds the counts to the store every
`FLUSH_SECONDS` in one transaction, and `close` (app shutdown, process exit) writes the rest.

Anything that delivers something calls one function:

    from hub import stats
    stats.count(store, "newsletter_delivery", channel="weekly", n=len(sent))

Channels that record their deliveries in the delivery ledger (`deliveries`) need not call
it: their `sent` rows are the count (hub.store.stats). Count there only what leaves no
ledger row, or it is counted twice.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import weakref
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hub.store.stats import CountKey, StatsStore

log = logging.getLogger("hub.stats")
FLUSH_SECONDS = 30.0
MAX_PENDING = 50_000  # distinct counters kept in memory while the store cannot be written
MAX_TERM = 80  # characters of a search term kept

# What is counted, with the words the cockpit uses for it.
EVENTS = {
    "page_view": "Aufrufe der Übersichten",
    "record_view": "Aufrufe von Beiträgen",
    "merchant_view": "Aufrufe von Teilnehmerseiten",
    "search": "Suchen",
    "click": "Klicks zur Website des Teilnehmers",
    "feed_request": "Feed-Abrufe",
    "api_request": "API-Abrufe",
    "newsletter_delivery": "Newsletter-Zustellungen",
    "channel_delivery": "Zustellungen an Kanäle",
}
_HIDDEN_TERM = "(ausgeblendet: sah nach persönlichen Daten aus)"
_PERSONAL = re.compile(r"@|\d[\d\s/().+-]{5,}\d")  # an e-mail address, a phone number


def search_term(query: str) -> str | None:
    """A search as it is counted: spaces collapsed, case folded, cut to MAX_TERM; what looks
    like an e-mail address or a phone number is counted without its text. None: nothing."""
    term = " ".join(query.split()).casefold()[:MAX_TERM]
    if not term:
        return None
    return _HIDDEN_TERM if _PERSONAL.search(term) else term


class Tally:
    """Counts in memory for one store, written to it in batches."""

    def __init__(self, store, timezone: str = "Europe/Berlin", every: float = FLUSH_SECONDS) -> None:
        self.stats = StatsStore(store)
        self.zone = ZoneInfo(timezone)
        self.every = every
        self._pending: Counter[tuple[str, str, str, str, str, int | None]] = Counter()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def count(self, event: str, *, merchant: str | None = None, channel: str = "", subject: str = "",
              record: int | None = None, n: int = 1, at: datetime | None = None) -> None:
        """Count `n` of `event` today (platform time). `record`: a record id, whose merchant
        is looked up when the counts are written (and which becomes the subject)."""
        if n <= 0:
            return
        day = (at.astimezone(self.zone) if at else datetime.now(self.zone)).date().isoformat()
        key = (day, event, merchant or "", channel, subject, record)
        with self._lock:
            if len(self._pending) >= MAX_PENDING and key not in self._pending:
                return  # the store has been unwritable for long: drop what would grow memory
            self._pending[key] += n
            if self._thread is None and not self._closed:
                self._start()

    def flush(self) -> int:
        """Write what was counted so far; returns how many counters were written. On a
        failure the counts stay in memory for the next try."""
        with self._flushing:
            with self._lock:
                pending, self._pending = self._pending, Counter()
            if not pending:
                return 0
            try:
                counts = self._resolved(pending)
                self.stats.add(counts)
            except Exception as exc:  # the database is away for a moment: say why, without a traceback
                log.warning("could not write %d counters (%s); keeping them for the next try", len(pending),
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                with self._lock:
                    self._pending.update(pending)
                return 0
            return len(counts)

    def close(self) -> None:
        """Stop the background writer and write what is left."""
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.flush()

    def pending(self) -> int:
        with self._lock:
            return sum(self._pending.values())

    def _resolved(self, pending: Counter) -> dict[CountKey, int]:
        records = {k[5] for k in pending if k[5] is not None}
        merchants = self.stats.merchants_of(records) if records else {}
        counts: Counter[CountKey] = Counter()
        for (day, event, merchant, channel, subject, record), n in pending.items():
            if record is not None:
                merchant, subject = merchants.get(record, merchant), str(record)
            counts[(day, event, merchant, channel, subject)] += n
        return dict(counts)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hub-stats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.every)
            if self._closed:
                return
            self.flush()


_TALLIES: "weakref.WeakKeyDictionary[Any, Tally]" = weakref.WeakKeyDictionary()
_TALLIES_LOCK = threading.Lock()


def tally_for(store, timezone: str = "Europe/Berlin") -> Tally:
    """The one `Tally` of this process for `store` (shared by every app the store serves,
    also across a reload of the config)."""
    with _TALLIES_LOCK:
        tally = _TALLIES.get(store)
        if tally is None or tally._closed:
            tally = _TALLIES[store] = Tally(store, timezone)
            store.on_close.append(tally.close)  # its counts go in while the store is still there
        return tally


def count(store, event: str, *, merchant: str | None = None, channel: str = "", subject: str = "",
          record: int | None = None, n: int = 1, timezone: str | None = None) -> None:
    """Count `n` of `event` (one of `EVENTS`) for `store`: the one function anything that
    delivers or serves something calls. Cheap; written in batches."""
    tally = _TALLIES.get(store) or tally_for(store, timezone or "Europe/Berlin")
    tally.count(event, merchant=merchant, channel=channel, subject=subject, record=record, n=n)


def flush(store) -> int:
    """Write `store`'s counts now (tests, `hub publish` before it exits)."""
    tally = _TALLIES.get(store)
    return tally.flush() if tally is not None else 0


def pending(store) -> int:
    """Counts of this process for `store` not written yet."""
    tally = _TALLIES.get(store)
    return tally.pending() if tally is not None else 0


@atexit.register
def _write_the_rest() -> None:
    for tally in list(_TALLIES.values()):
        try:
            tally.close()
        except Exception:  # the store may be gone already at exit
            log.debug("could not write the last counts", exc_info=True)


# --- reading a month back ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One counter of a month: a day, what, whose, where, about what, how many."""

    day: date
    event: str
    merchant_id: str
    channel: str
    subject: str
    n: int


def month_rows(store, month: date, zone: str) -> list[Row]:
    """Everything counted in `month` (platform time), the deliveries of the ledger included,
    day by day."""
    from hub.activity import bounds, next_month

    reader = StatsStore(store)
    last = next_month(month) - timedelta(days=1)
    rows = [Row(c.day, c.event, c.merchant_id, c.channel, c.subject, c.n) for c in reader.counts(month, last)]
    start, end = bounds(month, zone)
    tz = ZoneInfo(zone)
    delivered: Counter[tuple[date, str, str]] = Counter()
    for sent_at, channel, merchant, n in reader.deliveries(start, end):
        delivered[(sent_at.astimezone(tz).date(), channel, merchant)] += n
    rows += [Row(day, "channel_delivery", merchant, channel, "", n) for (day, channel, merchant), n in delivered.items()]
    return sorted(rows, key=lambda r: (r.day, r.event, r.merchant_id, r.channel, r.subject))
