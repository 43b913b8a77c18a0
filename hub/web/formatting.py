"""German date formatting for resident pages, without a locale database: the server's
locale must not decide how Musterstadt reads its dates."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

WEEKDAYS = ("Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So.")
MONTHS = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
          "Oktober", "November", "Dezember")


def datum(dt: datetime | None, zone: str = "Europe/Berlin", with_time: bool = True) -> str:
    """`Sa., 21. November 2026, 10:15 Uhr` in the town's time zone."""
    if dt is None:
        return ""
    local = dt.astimezone(ZoneInfo(zone))
    text = f"{WEEKDAYS[local.weekday()]}, {local.day}. {MONTHS[local.month - 1]} {local.year}"
    return f"{text}, {local:%H:%M} Uhr" if with_time else text


def relativ(dt: datetime | None, now: datetime | None = None) -> str:
    """`vor 5 Minuten`, `vor 3 Tagen`; older than a month gives an empty string."""
    if dt is None:
        return ""
    seconds = ((now or datetime.now(timezone.utc)) - dt).total_seconds()
    if seconds < 0:
        return ""
    for size, one, many in ((86400, "einem Tag", "Tagen"), (3600, "einer Stunde", "Stunden"),
                            (60, "einer Minute", "Minuten")):
        n = int(seconds // size)
        if n >= 1:
            return "" if size == 86400 and n > 30 else (f"vor {one}" if n == 1 else f"vor {n} {many}")
    return "gerade eben"
