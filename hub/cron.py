"""Channel schedules: cron expressions evaluated in the platform's time zone.

croniter lives only here. It steps through *wall-clock* times (naive datetimes), and each
candidate is placed in the zone afterwards, which makes daylight-saving changes explicit:

- a time that does not exist (spring forward, 02:30 on the last Sunday of March in Berlin)
  runs one hour later, at the same offset it had before the change (03:30 CEST);
- a time that exists twice (fall back, 02:30 on the last Sunday of October) runs once, at
  its first occurrence (CEST). Expressions that fire more often than hourly skip the repeated
  hour's second pass.

A weekly "0 7 * * MON" therefore runs at 07:00 Berlin time all year (06:00 UTC in winter,
05:00 UTC in summer).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from croniter import croniter

_HINT = ('write five fields "minute hour day-of-month month day-of-week" such as "0 7 * * MON" '
         "(Mondays 07:00), or @hourly, @daily, @weekly, @monthly")


def check_cron(expr: str) -> str:
    """`expr` if it is a cron expression the hub runs; ValueError saying how to write one."""
    fields = expr.split()
    if not expr.strip().startswith("@") and len(fields) != 5:
        raise ValueError(f"a schedule has five fields, this one has {len(fields)}; {_HINT}")
    if not croniter.is_valid(expr):
        raise ValueError(f"not a valid cron expression; {_HINT}")
    return expr


def next_run(expr: str, after: datetime, zone: str) -> datetime:
    """The first time strictly after `after` (aware) at which `expr` fires in `zone`, in UTC."""
    tz = ZoneInfo(zone)
    wall = after.astimezone(tz).replace(tzinfo=None)
    # Start one hour back in wall time: a time skipped by spring forward (02:30) runs at
    # 03:30, so it may be earlier on the wall than `after` (03:10) and still be later in UTC.
    steps = croniter(expr, wall - timedelta(hours=1))
    while True:
        candidate = steps.get_next(datetime).replace(tzinfo=tz, fold=0).astimezone(timezone.utc)
        if candidate > after:
            return candidate
