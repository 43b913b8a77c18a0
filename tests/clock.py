"""A clock that tests move by hand (the outside edge the scheduler reads time from)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


class ManualClock:
    def __init__(self, start: datetime | None = None) -> None:
        # Real time by default: what servers and the store stamp (Retry-After, first_seen_at)
        # then lines up with what the scheduler plans with.
        self._now = start or datetime.now(timezone.utc)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now
