"""Identity benchmark: place one new item among 1,000,000 existing ones.

    .venv/bin/python tests/benchmarks/bench_identity.py [--items 1000000] [--trials 300] [--db PATH]
    .venv/bin/python tests/benchmarks/bench_identity.py --merchant-posts 100000 [--trials 300]

Builds (or reuses, with --db) a SQLite store of N items from 20,000 merchants through the
real write path (`Store.apply`, identity included): 50 items per merchant, one merchant in
five with a second source that cross-posts a third of its items, 15 % events on 600 places
over a year. Then places new items one at a time (a third cross-posts of stored ones, a
third events, a third plain posts) and prints:

- the time of the identity step alone (candidates from the blocking indexes, matching, the
  record and origin rows; in a transaction rolled back after each trial), median and p95;
- the time of a whole one-item `Store.apply`, commit (fsync) included;
- the memory this needs: the process's peak RSS and the Python allocations of one placement;
- how fast the build placed items in bulk, and the database's size.

Target (issue 4): under 5 ms median per placement, so identity never limits ingest.

With --merchant-posts N it measures the other worst case instead (issue 5): one merchant with
two sources that already has N posts within the ±4 days a post is compared over (a town
hall or a newspaper-like source, scaled up), built through `Store.apply`; then places one
more post of it at a time, half of them cross-posts of a stored post, and prints the median
and p95 of the identity step. Target: under 5 ms median for N = 100,000, however large N.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hub.models import Event, FetchState, Item, Kind, Parsed  # noqa: E402
from hub.store import FetchOutcome, SourceSpec, Store  # noqa: E402
from hub.store.placement import Placement  # noqa: E402
from tests.benchmarks.corpus import WORDS  # noqa: E402

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
MERCHANTS = 20_000
PLACES = [f"{random.Random(p).choice(WORDS)}halle {p}" for p in range(600)]
BATCH_SOURCES = 100  # the pipeline's writer batch


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


_R = random.Random(0)
# Titles mix common words with rarer ones (names, places, products), as real titles do; the
# 20,000 rare words are made of syllables.
SYLLABLES = "ber burg dorf feld hau kir len man nor ost ried sel tal wald wer zin ach bro".split()
RARE = ["".join(_R.choice(SYLLABLES) for _ in range(3)) for _ in range(20_000)]
BODIES = [text(_R, _R.randint(40, 120)) for _ in range(20_000)]  # generating text would dominate the build
TITLES = [f"{text(_R, 2)} {_R.choice(RARE)} {_R.choice(RARE)}".capitalize() for _ in range(50_000)]


def item(rng: random.Random, merchant: int, n: int, source: str) -> Item:
    """Item n of a merchant: the same n from its second source is a cross-post of it."""
    r = random.Random(merchant * 1000 + n)  # the same content from both sources
    published = T0 - timedelta(days=r.uniform(0, 365))
    body = r.choice(BODIES)
    event = None
    if r.random() < 0.15:
        event = Event(start=(published + timedelta(days=r.uniform(1, 60))).replace(minute=0, second=0, microsecond=0),
                      timezone="Europe/Berlin", location=r.choice(PLACES))
    if source.endswith("-b"):  # the second channel words it a little differently
        body = body + " " + text(rng, 3)
    return Item(source, f"{source}-{n}", f"m{merchant}", title=r.choice(TITLES), content_html=f"<p>{body}</p>",
                content_text=body, url=f"https://m{merchant}.example/beitrag/{n}" if source.endswith("-a") else None,
                kind=Kind.EVENT if event else Kind.POST, event=event, language="de", published=published)


def sources_of(merchant: int) -> list[str]:
    return [f"m{merchant}-a", f"m{merchant}-b"] if merchant % 5 == 0 else [f"m{merchant}-a"]


def build(store: Store, total: int) -> float:
    per_merchant = max(1, total // MERCHANTS)
    store.sync_sources([SourceSpec(s, f"m{m}", "feed") for m in range(MERCHANTS) for s in sources_of(m)])
    rng, done, started = random.Random(1), 0, time.perf_counter()
    batch: list[FetchOutcome] = []
    for m in range(MERCHANTS):
        for source in sources_of(m):
            count = per_merchant if source.endswith("-a") else per_merchant // 3
            items = tuple(item(rng, m, n, source) for n in range(count))
            batch.append(FetchOutcome(source, T0, "ok", parsed=Parsed(items, complete=False), state=FetchState()))
            done += count
        if len(batch) >= BATCH_SOURCES or m == MERCHANTS - 1:
            store.apply(batch)
            batch = []
        if m % 2000 == 1999:
            print(f"  built {done:,} items ({done / (time.perf_counter() - started):,.0f}/s)", flush=True)
    return done / (time.perf_counter() - started)


def newcomer(rng: random.Random, trial: int, per_merchant: int) -> Item:
    merchant = rng.randrange(MERCHANTS)
    if trial % 3 == 0:  # a cross-post of a stored item by a merchant with two sources
        merchant -= merchant % 5
        stored = item(rng, merchant, rng.randrange(per_merchant), f"m{merchant}-a")
        return stored.evolve(source_id=f"m{merchant}-b", external_id=f"new-{trial}", url=None)
    fresh = item(rng, merchant, per_merchant + trial, f"m{merchant}-a")
    if trial % 3 == 1 and fresh.event is None:
        start = (T0 + timedelta(days=rng.uniform(1, 60))).replace(minute=0, second=0, microsecond=0)
        fresh = fresh.evolve(kind=Kind.EVENT, event=Event(start=start, timezone="Europe/Berlin",
                                                          location=rng.choice(PLACES)))
    return fresh.evolve(external_id=f"new-{trial}", url=f"https://m{merchant}.example/neu/{trial}")


def merchant_post(n: int, source: str) -> Item:
    """Post n of the one big merchant (--merchant-posts): published within the 4 days
    before T0; the same n from its other source is a cross-post of it."""
    r = random.Random(10_000_000 + n)
    body = f"{r.choice(BODIES)} {' '.join(r.choice(RARE) for _ in range(3))}"
    published = T0 - timedelta(seconds=r.uniform(0, 4 * 86400))
    return Item(source, f"{source}-{n}", "big", title=r.choice(TITLES), content_html=f"<p>{body}</p>",
                content_text=body, url=f"https://big.example/beitrag/{n}" if source == "big-a" else None,
                kind=Kind.POST, language="de", published=published)


def build_merchant(store: Store, total: int) -> float:
    """`total` posts of one merchant with two sources, in batches as an ingest stores them."""
    store.sync_sources([SourceSpec("big-a", "big", "feed"), SourceSpec("big-b", "big", "feed")])
    started = time.perf_counter()
    for start in range(0, total, 1000):
        source = "big-a" if start // 1000 % 2 == 0 else "big-b"
        items = tuple(merchant_post(n, source) for n in range(start, min(total, start + 1000)))
        store.apply([FetchOutcome(source, T0, "ok", parsed=Parsed(items, complete=False), state=FetchState())])
        if start % 20_000 == 19_000:
            print(f"  built {start + 1000:,} posts ({(start + 1000) / (time.perf_counter() - started):,.0f}/s)",
                  flush=True)
    return total / (time.perf_counter() - started)


def run_merchant(args: argparse.Namespace, path: Path) -> None:
    store = Store(f"sqlite:///{path}")
    print(f"building one merchant with {args.merchant_posts:,} posts within 4 days in {path} ...", flush=True)
    rate = build_merchant(store, args.merchant_posts)
    rng = random.Random(7)

    def newcomer(trial: int) -> Item:
        if trial % 2 == 0:  # a cross-post of a stored post, from the source that does not have it
            n = rng.randrange(args.merchant_posts)
            stored = merchant_post(n, "big-a" if n // 1000 % 2 == 0 else "big-b")
            return stored.evolve(source_id="big-b" if stored.source_id == "big-a" else "big-a",
                                 external_id=f"new-{trial}", url=None)
        return merchant_post(args.merchant_posts + trial, "big-a").evolve(external_id=f"new-{trial}")

    next_id = store.count_items() + 1_000_000
    for trial in range(20):  # warm the page cache and the SQLite statement cache
        place_once(store, newcomer(trial), next_id)
    times, merged = [], 0
    for trial in range(args.trials):
        seconds, joined = place_once(store, newcomer(1000 + trial), next_id)
        times.append(seconds)
        merged += joined
    ms = sorted(t * 1000 for t in times)
    print(f"\nstore:                      {store.count_items():,} posts of one merchant (2 sources), within 4 days")
    print(f"bulk placement (build):     {rate:,.0f} posts/s through Store.apply, identity included")
    print(f"place one more post:        median {statistics.median(ms):.2f} ms, p95 {ms[int(len(ms) * .95)]:.2f} ms, "
          f"max {ms[-1]:.2f} ms ({args.trials} trials, half of them cross-posts: {merged} merged)")
    print(f"memory:                     peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    store.close()


def place_once(store: Store, new: Item, item_id: int) -> tuple[float, bool]:
    """The identity step for one new item, timed, then rolled back."""
    with store.engine.connect() as conn:
        tx = conn.begin()
        started = time.perf_counter()
        placement = Placement(conn, store.records.rules, T0, store.records.read_item)
        placement.apply([(item_id, new, T0)], [], [])
        seconds = time.perf_counter() - started
        merged = bool(placement.joins)
        tx.rollback()
    return seconds, merged


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--db", type=Path, help="reuse (or create) this database file")
    parser.add_argument("--merchant-posts", type=int, default=0, metavar="N",
                        help="instead: one merchant with N posts within 4 days (always a fresh store)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-identity-") as folder:
        if args.merchant_posts:
            run_merchant(args, Path(folder) / "merchant.db")
        else:
            run(args, args.db or Path(folder) / "identity.db")


def run(args: argparse.Namespace, path: Path) -> None:
    store = Store(f"sqlite:///{path}")
    existing = store.count_items()
    rate = None
    if existing < args.items * 0.95:
        print(f"building {args.items:,} items from {MERCHANTS:,} merchants in {path} ...", flush=True)
        rate = build(store, args.items)
        existing = store.count_items()
    per_merchant = max(1, args.items // MERCHANTS)

    rng = random.Random(7)
    next_id = existing + 1_000_000
    for trial in range(20):  # warm the page cache and the SQLite statement cache
        place_once(store, newcomer(rng, trial, per_merchant), next_id)
    times, merged = [], 0
    for trial in range(args.trials):
        seconds, joined = place_once(store, newcomer(rng, 1000 + trial, per_merchant), next_id)
        times.append(seconds)
        merged += joined
    tracemalloc.start()  # a pass of its own: tracing allocations slows Python down severalfold
    for trial in range(20):
        place_once(store, newcomer(rng, 3000 + trial, per_merchant), next_id)
    _, peak_alloc = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    applies = []
    for trial in range(50):
        new = newcomer(rng, 5000 + trial, per_merchant)
        started = time.perf_counter()
        store.apply([FetchOutcome(new.source_id, T0, "ok", parsed=Parsed((new,), complete=False), state=FetchState())])
        applies.append(time.perf_counter() - started)

    ms = sorted(t * 1000 for t in times)
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    print(f"\nstore:                      {existing:,} items, {store.records.count(status=None, removed=True, expired=True):,} records")
    if rate:
        print(f"bulk placement (build):     {rate:,.0f} items/s through Store.apply, identity included")
    print(f"place one new item:         median {statistics.median(ms):.2f} ms, p95 {ms[int(len(ms) * .95)]:.2f} ms, "
          f"max {ms[-1]:.2f} ms ({args.trials} trials, {merged} merged into an existing record)")
    print(f"one-item Store.apply:       median {statistics.median(applies) * 1000:.2f} ms (upsert + identity + commit)")
    print(f"memory:                     peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"one placement allocates at most {peak_alloc / 1024:.0f} KiB")
    print(f"database on disk:           {size / 2**30:.2f} GiB ({path})")
    store.close()


if __name__ == "__main__":
    main()
