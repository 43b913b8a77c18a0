"""Listing benchmark: the store time of what the pages ask for, at 200,000 records and more.

    .venv/bin/python tests/benchmarks/bench_listing.py [--records 200000] [--db PATH] [--trials 50] [--plans]

Builds (or reuses, with --db) a SQLite store of N records through the real write path
(`Store.apply`, identity and search index included): 200 merchants, one in four with a
quota of 3 posts a day on the platform, a year and a half of posts, 15 % events (a year back
to three months ahead), 5 % offers, German titles and texts. Then times, store side only
(`store.records.list` of one page of 20 and `store.records.count`, what a page asks for):

- the home page (the platform channel's quotas), page 1 and page 50;
- the agenda: events from now, by start;
- one merchant's records;
- a search (`q=`, relevance), alone and with a kind filter;

and prints median and p95 in ms, the time of a first count (nothing remembered: the first
request after a change), and SQLite's plan of each (--plans). Target (issue 14):
the home page well under 10 ms at 200,000 records; no query that scans the whole table.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hub import moderation  # noqa: E402
from hub.models import Event, FetchState, Item, Kind, Offer, Parsed  # noqa: E402
from hub.store import FetchOutcome, SourceSpec, Store  # noqa: E402
from hub.store.counts import Counts  # noqa: E402
from tests.benchmarks.corpus import WORDS  # noqa: E402

MERCHANTS = 200
PAGE = 20
NOUNS = ("Konzert Konzerte Lesung Lesungen Weihnachtsmarkt Weihnachtsmärkte Flohmarkt Flohmärkte Stadtfest "
         "Führung Führungen Kinderturnen Vortrag Vorträge Sommerfest Ausstellung Theater Kabarett Chorprobe "
         "Sprechstunde Wochenmarkt Brötchen Stollen Angebot Rabatt Gutschein Mittagstisch Eröffnung Jubiläum "
         "Spieltag Turnier Sperrmüll Gemeinderat Bürgersprechstunde Yoga Kurs Workshop Basar").split()
PLACES = [f"{w}halle" for w in ("Stadt", "Turn", "Fest", "Markt", "Kultur", "Sport")] + ["Rathaus", "Kirche St. Marien"]


def quotas() -> moderation.Rules:
    """One merchant in four may show 3 posts a day on the platform."""
    return moderation.Rules({f"m{m}": moderation.MerchantRules(quota={"platform": 3})
                             for m in range(0, MERCHANTS, 4)})


def item(merchant: int, n: int, now: datetime) -> Item:
    r = random.Random(merchant * 100_003 + n)
    published = now - timedelta(days=r.uniform(0, 540))
    title = f"{r.choice(NOUNS)} {r.choice(WORDS)} {r.choice(NOUNS)}"
    body = " ".join(r.choice(WORDS) if r.random() < 0.8 else r.choice(NOUNS) for _ in range(r.randint(20, 120)))
    event = offer = None
    kind = Kind.POST
    roll = r.random()
    if roll < 0.15:
        start = (now + timedelta(days=r.uniform(-365, 90))).replace(minute=0, second=0, microsecond=0)
        published = min(published, start - timedelta(days=r.uniform(1, 30)))
        event, kind = Event(start=start, timezone="Europe/Berlin", location=r.choice(PLACES)), Kind.EVENT
    elif roll < 0.20:
        offer = Offer(price=f"{r.randint(1, 40)},{r.randint(0, 99):02d}", currency="EUR",
                      valid_until=published + timedelta(days=r.uniform(1, 60)))
        kind = Kind.OFFER
    return Item(f"m{merchant}-rss", f"e{n}", f"m{merchant}", title=title, content_html=f"<p>{body}</p>",
                content_text=body, url=f"https://m{merchant}.example/{n}", kind=kind, event=event, offer=offer,
                language="de", published=published, tags=(r.choice(NOUNS),) if r.random() < 0.3 else ())


def build(store: Store, total: int, now: datetime) -> None:
    per = total // MERCHANTS
    store.sync_sources([SourceSpec(f"m{m}-rss", f"m{m}", "rss") for m in range(MERCHANTS)])
    started = time.perf_counter()
    for first in range(0, MERCHANTS, 5):
        batch = [FetchOutcome(f"m{m}-rss", now, "ok", state=FetchState(),
                              parsed=Parsed(tuple(item(m, n, now) for n in range(per)), complete=False))
                 for m in range(first, min(MERCHANTS, first + 5))]
        store.apply(batch)
        done = (first + 5) * per
        if first % 20 == 15:
            print(f"  {done:,} items ({done / (time.perf_counter() - started):,.0f}/s)", flush=True)


def timed(fn, trials: int) -> tuple[float, float]:
    for _ in range(3):
        fn()
    times = []
    for _ in range(trials):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95)]


def plan(store: Store, order: str = "newest", **filters) -> list[str]:
    """SQLite's plan of the ids `list` would ask for with these arguments (the first page)."""
    from hub.store.placement import RECORDS

    steps = []
    with store.engine.connect() as conn:
        for query in store.records._statements([RECORDS.c.id], order, filters, PAGE, 0):
            compiled = query.compile(store.engine, compile_kwargs={"render_postcompile": True})
            params = tuple(compiled.params[name] for name in compiled.positiontup)
            steps += [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), params)]
    return steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--db", type=Path, help="reuse (or create) this database file")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--plans", action="store_true", help="print SQLite's plan of each listing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-listing-") as folder:
        path = args.db or Path(folder) / "listing.db"
        fresh = not path.exists()
        store = Store(f"sqlite:///{path}")
        store.records.configure(quotas())
        now = datetime.now(timezone.utc)
        if fresh:
            print(f"building {args.records:,} records in {path} ...", flush=True)
            started = time.perf_counter()
            build(store, args.records, now)
            print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
        with store.engine.connect() as conn:  # the planner's statistics, as migration 0011 and housekeeping keep them
            conn.connection.driver_connection.execute("ANALYZE")
        n = store.records.count(status=None, removed=True, expired=True)
        print(f"\nstore: {n:,} records, {path.stat().st_size / 1e6:,.0f} MB\n")
        cases = {
            "home (quotas), page 1": dict(channel="platform"),
            "home (quotas), page 50": dict(channel="platform", offset=49 * PAGE),
            "events from now, by start": dict(channel="platform", kinds=["event"], order="event_start",
                                              starts_from=now),
            "one merchant": dict(channel="platform", merchants=["m7"]),
            "search 'Konzerte'": dict(channel="platform", q="Konzerte", order="relevance"),
            "search 'Weihnachtsmärkte' events": dict(channel="platform", q="Weihnachtsmärkte Stadthalle",
                                                     order="relevance", kinds=["event"]),
        }
        print(f"{'listing':34} {'list median/p95 ms':>20} {'count median/p95 ms':>21} {'first count':>12} "
              f"{'count':>8}")
        for name, case in cases.items():
            listing = dict(case)
            counting = {k: v for k, v in case.items() if k not in ("offset", "order")}
            lm, lp = timed(lambda: store.records.list(limit=PAGE, **listing), args.trials)
            store.records.counts = Counts()  # nothing remembered: what the first request after a change costs
            started = time.perf_counter()
            total = store.records.count(**counting)
            first = (time.perf_counter() - started) * 1000
            cm, cp = timed(lambda: store.records.count(**counting), args.trials)
            print(f"{name:34} {lm:9.2f} / {lp:8.2f} {cm:10.2f} / {cp:8.2f} {first:12.2f} {total:8,}")
            if args.plans:
                for step in plan(store, **{k: v for k, v in listing.items() if k != "offset"}):
                    print(f"    {step}")
        store.close()


if __name__ == "__main__":
    main()
