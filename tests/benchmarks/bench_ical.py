"""Calendar benchmark: occurrences per second of the ical connector's parse step, on one core.

    .venv/bin/python tests/benchmarks/bench_ical.py [--calendars 200] [--events 100] [--days 90] [--runs 1] [--profile]

Generates N calendars of M recurring events each (seeded; not timed), as a club's or a
town's Google or Nextcloud export reads: a VTIMEZONE, events weekly on one or two weekdays,
every two weeks or monthly, some daily for a while, a few with EXDATE and a moved or
cancelled occurrence (RECURRENCE-ID), some all-day; HTML and plain descriptions,
locations, GEO, categories. Then times the whole parse step over all of them
(`hub.ingest.parse_payload`: reading with icalendar, expansion with recurring-ical-events
over [now - 1 day, now + DAYS], the items, normalization and content hashes), after one
untimed pass to warm up. Prints occurrences and occurrences/s of process time, the time
for reading and expanding alone, and the peak memory of the process (its maximum resident
set, which includes the generated calendars).
--profile prints the top 30 functions of a cProfile run instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from connectors.ical import ICalOptions, cursor  # noqa: E402
from connectors.ical_occurrences import expand, read_calendars  # noqa: E402
from hub.ingest import parse_payload  # noqa: E402
from hub.models import FetchState, Retrieved, SourceRef  # noqa: E402
from tests.benchmarks.corpus import sentence  # noqa: E402

NOW = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
TITLES = ("Probe", "Training", "Stammtisch", "Wochenmarkt", "Sprechstunde", "Kinderturnen", "Chorprobe",
          "Lauftreff", "Vorlesestunde", "Seniorencafé", "Yoga im Park", "Skatabend", "Jugendtreff")
VTIMEZONE = """BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE"""


def calendar(n: int, events: int) -> bytes:
    """Calendar number `n` with `events` recurring events."""
    rnd = random.Random(n)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Bench//Kalender//DE", f"X-WR-CALNAME:Verein {n}",
             VTIMEZONE]
    for e in range(events):
        lines += _event(rnd, n, e)
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def _event(rnd: random.Random, n: int, e: int) -> list[str]:
    uid = f"ev{e}-cal{n}@verein{n}.example"
    first = (NOW - timedelta(days=rnd.randrange(0, 400))).replace(hour=0, minute=0, second=0)
    all_day = rnd.random() < 0.1
    if all_day:
        start, end = f"DTSTART;VALUE=DATE:{first:%Y%m%d}", f"DTEND;VALUE=DATE:{first + timedelta(days=1):%Y%m%d}"
    else:
        begins = first + timedelta(hours=rnd.choice((9, 10, 15, 17, 18, 19, 20)), minutes=rnd.choice((0, 30)))
        start = f"DTSTART;TZID=Europe/Berlin:{begins:%Y%m%dT%H%M%S}"
        end = f"DTEND;TZID=Europe/Berlin:{begins + timedelta(minutes=rnd.choice((60, 90, 120, 180))):%Y%m%dT%H%M%S}"
    rule = rnd.choices([f"FREQ=WEEKLY;BYDAY={rnd.choice(DAYS)}",
                        f"FREQ=WEEKLY;BYDAY={','.join(sorted(rnd.sample(DAYS, 2), key=DAYS.index))}",
                        f"FREQ=WEEKLY;INTERVAL=2;BYDAY={rnd.choice(DAYS)}",
                        f"FREQ=MONTHLY;BYDAY=1{rnd.choice(DAYS)}",
                        "FREQ=DAILY"], weights=(50, 15, 15, 15, 5))[0]
    description = " ".join(sentence(rnd, rnd.randint(6, 14)) for _ in range(rnd.randint(1, 3)))
    if rnd.random() < 0.3:
        description = f"<p><b>{description}</b><br>Mehr: <a href=\"https://verein{n}.example/{e}\">verein{n}.example</a></p>"
    lines = ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20261101T000000Z", start, end, f"RRULE:{rule}",
             f"SUMMARY:{rnd.choice(TITLES)} {e}", f"DESCRIPTION:{_escaped(description)}",
             f"LOCATION:Vereinsheim {n}\\, Hauptstraße {e}", f"CATEGORIES:Verein,{rnd.choice(TITLES)}"]
    if rnd.random() < 0.3:
        lines.append(f"GEO:{50 + rnd.random():.5f};{8 + rnd.random():.5f}")
    if rnd.random() < 0.2 and not all_day:
        lines.append(f"EXDATE;TZID=Europe/Berlin:{start.split(':')[1]}")
    lines.append("END:VEVENT")
    return lines


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def jobs(calendars: int, events: int, days: int) -> list[tuple[ICalOptions, SourceRef, Retrieved]]:
    out = []
    for n in range(calendars):
        opts = ICalOptions(url=f"https://verein{n}.example/kalender.ics", horizon=timedelta(days=days))
        got = Retrieved(payload=calendar(n, events), state=FetchState(cursor=cursor(NOW, opts)), url=opts.url,
                        content_type="text/calendar")
        out.append((opts, SourceRef(id=f"s{n}", merchant_id=f"m{n}", language="de"), got))
    return out


def parse_all(work: list[tuple[ICalOptions, SourceRef, Retrieved]]) -> int:
    return sum(len(parse_payload("ical", opts, ref, got).items) for opts, ref, got in work)


def expand_all(work: list[tuple[ICalOptions, SourceRef, Retrieved]]) -> int:
    found = 0
    for opts, ref, got in work:
        for cal in read_calendars(got.payload)[0]:
            found += len(expand(cal, ref.timezone, NOW - opts.past, NOW + opts.horizon).occurrences)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calendars", type=int, default=200)
    ap.add_argument("--events", type=int, default=100, help="recurring events per calendar")
    ap.add_argument("--days", type=int, default=90, help="the horizon")
    ap.add_argument("--runs", type=int, default=1, help="timed passes over all calendars")
    ap.add_argument("--profile", action="store_true", help="print a cProfile top 30 instead of timing")
    args = ap.parse_args()

    work = jobs(args.calendars, args.events, args.days)
    size = sum(len(got.payload) for _, _, got in work)
    parse_all(work[:5])  # warm-up: imports, caches
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(parse_all, work)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
        return
    print(f"{args.calendars} calendars of {args.events} recurring events, {size / 1e6:.1f} MB, "
          f"window {args.days} days ahead and 1 day back")
    for _ in range(args.runs):
        start = time.process_time()
        found = expand_all(work)
        spent = time.process_time() - start
        print(f"read + expand: {found:,} occurrences in {spent:.2f} s process time = {found / spent:,.0f} occurrences/s")
        start = time.process_time()
        found = parse_all(work)
        spent = time.process_time() - start
        print(f"whole parse step (items, normalized, hashed): {found:,} occurrences in {spent:.2f} s "
              f"= {found / spent:,.0f} occurrences/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS of this process): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
