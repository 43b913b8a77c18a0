"""The delivery ledger's rules, free of I/O (issue 16). The store keeps the ledger
(`hub.store.ledger`); the publish tick works it off (`schedules.publishing`).

- Which records a channel wants (`ChannelRules`): its kinds, merchants (a category is turned
  into its merchants when the channel is prepared) and tags, as the YAML's `include:` says.
- When a failed delivery is tried again (`retry_at`): Standard Webhooks' schedule (5 s, 5 min,
  30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h), each delay varied by up to ±20% so that
  the deliveries of one outage do not all return at the same second, never sooner than the
  channel's own Retry-After; after about three days the delivery is given up ("failed").
- How a pace spreads deliveries (`Pace`): at most N an hour, evenly, none in quiet hours;
  what waited is sent afterwards at the same pace, never in a burst.
- The id a delivery keeps on every attempt (`delivery_id`): a webhook's `webhook-id`,
  Mastodon's `Idempotency-Key`, the `id` of a JSON line. The same (channel, record,
  version) always gives the same id, also after a crash, so a receiver can drop a repeat.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Collection, Iterable, Mapping
from zoneinfo import ZoneInfo

from hub.records import tag_key

RETRY_DELAYS = (timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
                timedelta(hours=5), timedelta(hours=10), timedelta(hours=14), timedelta(hours=20),
                timedelta(hours=24))
JITTER = 0.2
# A delivery whose next try would come later than this after its first is given up: the
# schedule above ends at about 3 days 4 hours; a long Retry-After must not stretch it much.
GIVE_UP_AFTER = timedelta(days=3, hours=12)
FOREVER = timedelta(days=36500)  # how long a channel with a stable delivery id recognises a repeat

_QUIET = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def delivery_id(channel_id: str, record_id: int, version: int) -> str:
    """`msg_` and 26 base32 characters: stable for one version of a record on one channel."""
    digest = hashlib.sha256(f"{channel_id}\x1f{record_id}\x1f{version}".encode()).digest()
    return "msg_" + base64.b32encode(digest[:16]).decode().rstrip("=").lower()


def retry_at(now: datetime, attempts: int, first_try: datetime, retry_after: float | None = None,
             rng: random.Random | None = None) -> datetime | None:
    """When to try a delivery again after its `attempts`-th attempt failed at `now`, or None
    to give it up. The channel's `retry_after` (seconds) is honoured as the least wait."""
    if attempts > len(RETRY_DELAYS):
        return None
    base = RETRY_DELAYS[attempts - 1].total_seconds()
    delay = base * (1 + (rng or random).uniform(-JITTER, JITTER))
    if retry_after is not None:
        delay = max(delay, retry_after)
    at = now + timedelta(seconds=delay)
    return None if at - first_try > GIVE_UP_AFTER else at


@dataclass(frozen=True)
class ChannelRules:
    """Which records a channel wants. Empty `kinds`/`tags` and None `merchants`: any.
    `tags` are folded as `hub.records.tag_key` folds them (the `item_tags` table's form)."""

    kinds: tuple[str, ...] = ()
    merchants: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()

    def wants(self, kind: str, merchants: Collection[str], tags: Collection[str]) -> bool:
        """`merchants`: of the record's live origins; `tags`: theirs, folded."""
        if self.kinds and kind not in self.kinds:
            return False
        if self.merchants is not None and not any(m in self.merchants for m in merchants):
            return False
        return not self.tags or any(t in self.tags for t in tags)

    def as_json(self) -> dict[str, Any]:
        return {"kinds": list(self.kinds), "merchants": None if self.merchants is None else list(self.merchants),
                "tags": list(self.tags)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChannelRules:
        merchants = data.get("merchants")
        return cls(tuple(data.get("kinds") or ()), None if merchants is None else tuple(merchants),
                   tuple(data.get("tags") or ()))


def rules_for(kinds: Iterable[str], merchants: Iterable[str], categories: Iterable[str], tags: Iterable[str],
              merchant_categories: Mapping[str, str | None]) -> ChannelRules:
    """A channel's `include:` as rules: its categories become the merchants that have them."""
    categories = set(categories)
    chosen = set(merchants) | {m for m, c in merchant_categories.items() if c is not None and c in categories}
    named = bool(set(merchants) or categories)
    return ChannelRules(tuple(sorted(set(kinds))), tuple(sorted(chosen)) if named else None,
                        tuple(sorted({k for k in map(tag_key, tags) if k})))


def parse_quiet(value: str) -> tuple[time, time]:
    """`"22:00-07:00"` as (start, end); the hours may wrap around midnight."""
    match = _QUIET.match(value)
    if not match:
        raise ValueError(f"'{value}' is not a time range; write it like \"22:00-07:00\"")
    h1, m1, h2, m2 = map(int, match.groups())
    if (h1, m1) == (h2, m2):
        raise ValueError(f"'{value}' starts and ends at the same time")
    return time(h1, m1), time(h2, m2)


@dataclass(frozen=True)
class Pace:
    """At most `per_hour` deliveries an hour, spread evenly, none in the `quiet` hours
    (local time of `timezone`). No `per_hour`: as fast as the channel takes them."""

    per_hour: float | None = None
    quiet: tuple[time, time] | None = None
    timezone: str = "Europe/Berlin"

    @property
    def spacing(self) -> timedelta | None:
        return timedelta(seconds=3600 / self.per_hour) if self.per_hour else None

    def is_quiet(self, now: datetime) -> bool:
        if self.quiet is None:
            return False
        start, end = self.quiet
        local = now.astimezone(ZoneInfo(self.timezone)).time()
        return start <= local < end if start < end else (local >= start or local < end)

    def quiet_ends(self, now: datetime) -> datetime:
        """The first moment after `now` outside the quiet hours (`now` itself if it is)."""
        if not self.is_quiet(now):
            return now
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        end = local.replace(hour=self.quiet[1].hour, minute=self.quiet[1].minute, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(now.tzinfo)

    def budget(self, now: datetime, next_slot: datetime | None, window: timedelta) -> int | None:
        """How many deliveries may start now (None: no limit).

        Slots are `spacing` apart. A slot that passed within the last `window` (the publish
        tick) still counts, so deliveries keep their cadence although runs come only every
        tick; older slots are not saved up: after quiet hours or a quiet spell the backlog
        goes out at the pace, never in a burst."""
        if self.is_quiet(now):
            return 0
        spacing = self.spacing
        if spacing is None:
            return None
        start = self._start(now, next_slot, window)
        return 0 if start > now else int((now - start) / spacing) + 1

    def taken(self, n: int, now: datetime, next_slot: datetime | None, window: timedelta) -> datetime | None:
        """The next slot once `n` of the slots `budget` offered were used (the rest are left
        for the next run)."""
        spacing = self.spacing
        if spacing is None or n <= 0:
            return next_slot
        return self._start(now, next_slot, window) + n * spacing

    @staticmethod
    def _start(now: datetime, next_slot: datetime | None, window: timedelta) -> datetime:
        """The first slot this run may use: the one due, if it passed within `window`; else
        now (a slot missed longer ago is not caught up)."""
        return now if next_slot is None or next_slot < now - window else next_slot
