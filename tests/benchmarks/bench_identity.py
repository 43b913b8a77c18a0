"""Identity benchmark: place one new item among 1,000,000 existing ones.

    .venv/bin/python tests/benchmarks/bench_identity.py [--items 1000000] [--trials 300] [--db PATH]

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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-identity-") as folder:
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
