"""Identity's share of a first ingest, by CPU: bench_ingest's corpus replayed in one process.

    .venv/bin/python tests/benchmarks/bench_placement.py [--feeds 1000] [--feeds-per-merchant 1 10 50]
                                                         [--runs 3] [--profile OUT.prof]

bench_ingest measures wall time through fetching, two worker processes and a feed server,
on a machine whose speed varies from minute to minute. This one takes the network and the
processes away: the corpus's feeds are parsed once (connector and normalizer, as a worker
does), then stored in batches of 50 sources into a fresh SQLite store, `Store.plan` (rows
and fingerprints, before the write turn) and `Store.write` (placement, the transaction)
timed by thread CPU. The same batches for every N, so the difference between N = 1 and
N = 10 is what identity costs (hub.identity: a merchant with one source needs none) and
between N = 10 and N = 50 whether it grows with a merchant's volume. The fastest of
--runs is printed: CPU time only ever grows with what else the machine does.
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hub import config  # noqa: E402
from hub.ingest import Fetched, parse_fetched  # noqa: E402
from hub.models import FetchState, Retrieved, SourceRef  # noqa: E402
from hub.pipeline import source_specs  # noqa: E402
from hub.store import FetchOutcome, Store  # noqa: E402
from tests.benchmarks.bench_ingest import write_config  # noqa: E402
from tests.benchmarks.corpus import feed  # noqa: E402

BATCH = 50  # sources a worker stores in one transaction (about what bench_ingest's see)
FETCHED_AT = datetime(2026, 11, 23, tzinfo=timezone.utc)  # the corpus's entries are of the days before


def parsed_corpus(feeds: int, folder: Path) -> tuple[list[FetchOutcome], float]:
    """Every feed parsed once, and the thread CPU that took; sources s{i} of merchants m{i}
    as bench_ingest names them (`regrouped` makes them another merchant's)."""
    settings = config.load(write_config(folder, 1, feeds))
    payloads = [feed(i) for i in range(feeds)]
    began = time.thread_time()
    outcomes = []
    for payload, (merchant, source) in zip(payloads, settings.sources()):
        ref = SourceRef(id=source.id, merchant_id=merchant.id, timezone=settings.platform.timezone)
        got = Retrieved(payload, FetchState(), source.options.url, "application/rss+xml")
        outcomes.append(parse_fetched(Fetched(source.id, source.connector, source.options, ref, got, FETCHED_AT)))
    return outcomes, time.thread_time() - began


def regrouped(outcomes: list[FetchOutcome], per_merchant: int) -> list[FetchOutcome]:
    """The same items as posts of merchant m{i // per_merchant}, as bench_ingest groups them."""
    return [replace(o, parsed=replace(o.parsed, items=tuple(replace(item, merchant_id=f"m{i // per_merchant}")
                                                            for item in o.parsed.items)))
            for i, o in enumerate(outcomes)]


def replay(outcomes: list[FetchOutcome], feeds: int, per_merchant: int, profile: cProfile.Profile | None
           ) -> tuple[float, float, int]:
    """(plan CPU, write CPU, records) of storing `outcomes` into a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = config.load(write_config(Path(tmp), 1, feeds, per_merchant))
        store = Store(settings.store.url, base_dir=settings.base_dir)
        store.sync_sources(source_specs(settings))
        plan_cpu = write_cpu = 0.0
        for start in range(0, len(outcomes), BATCH):
            began = time.thread_time()
            if profile:
                profile.enable()
            plan = store.plan(outcomes[start:start + BATCH])
            planned = time.thread_time()
            store.write(plan)
            if profile:
                profile.disable()
            plan_cpu += planned - began
            write_cpu += time.thread_time() - planned
        records = store.records.count(status=None, removed=True, expired=True)
        store.close()
    return plan_cpu, write_cpu, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--feeds-per-merchant", type=int, nargs="+", default=[1, 10, 50], metavar="N")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", metavar="OUT", help="write a cProfile of the last N's plan and write phases")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus, parse_cpu = parsed_corpus(args.feeds, Path(tmp))
    entries = sum(len(o.parsed.items) for o in corpus if o.parsed)
    print(f"corpus: {args.feeds} feeds, {entries} entries, parsed in {parse_cpu:.2f} s CPU "
          f"({parse_cpu / entries * 1e6:.0f} µs an entry)")
    base = None
    for n in args.feeds_per_merchant:
        profile = cProfile.Profile() if args.profile and n == args.feeds_per_merchant[-1] else None
        outcomes = regrouped(corpus, n)
        runs = [replay(outcomes, args.feeds, n, profile if i == 0 else None) for i in range(args.runs)]
        plan_cpu, write_cpu, records = min(runs, key=lambda r: r[0] + r[1])
        total = plan_cpu + write_cpu
        base = base or parse_cpu + total
        print(f"N = {n:>3}: plan {plan_cpu:.2f} s, write {write_cpu:.2f} s CPU ({total / entries * 1e6:.0f} µs an "
              f"entry), {records:,} records; with the parse {parse_cpu + total:.2f} s, "
              f"{(parse_cpu + total) / base:.2f}x N = {args.feeds_per_merchant[0]}", flush=True)
        if profile:
            profile.dump_stats(args.profile)


if __name__ == "__main__":
    main()
