"""Scheduling benchmark: 10,000 sources on one local host, through the real fetch path, for a
few minutes of fake time.

    .venv/bin/python tests/benchmarks/bench_schedule.py [--sources 10000] [--minutes 10]

Every source is configured `every: 5m` and all start new, as when a town's hub starts for
the first time. A clock moved by hand stands in for time: each fake second, the fetch tick
runs (`FetchDispatcher.tick`, as APScheduler would call it) and its fetches complete over
real loopback HTTP before the clock moves on. The feeds are served by a separate process
(tests/feedserver.py) that counts concurrent requests; each answer takes 2 ms, so requests
that the hub sends at the same time do overlap at the server.

Prints:
- the most requests the server saw in flight at once (one host: must be <= 2);
- the scheduling overhead per source without network: finding due sources, claiming them,
  and planning and recording their next fetch, for all sources at once, in batches of 500
  as the tick takes them (target under 1 ms);
- the most fetches started in one (fake) second against the mean per second (target < 2x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hub import config  # noqa: E402
from hub.http import Fetcher  # noqa: E402
from hub.pipeline import Pipeline, SourceReport, source_specs  # noqa: E402
from hub.store import Store  # noqa: E402
from schedules.fetching import FetchDispatcher  # noqa: E402
from tests.clock import ManualClock  # noqa: E402

SERVER = """
import json, sys
from tests.schedtown import feed
from tests.feedserver import FeedServer
srv = FeedServer(files={f"f{i}.xml": feed(f"f{i}", posts=5) for i in range(int(sys.argv[1]))}).start()
print(srv.port, flush=True)
for line in sys.stdin:  # "stats": how many requests, and the most ever in flight at once
    print(json.dumps({"requests": len(srv.requests), "max_in_flight": srv.max_in_flight}), flush=True)
"""


def start_server(n: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(n)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def server_stats(proc: subprocess.Popen) -> dict:
    proc.stdin.write("stats\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def write_config(folder: Path, port: int, n: int, db: str) -> Path:
    lines = ["platform: {name: Bench}", f"store: {{url: 'sqlite:///{db}'}}",
             "fetcher: {allow_private_networks: true, host_spacing: 0, max_per_host: 2}", "merchants:"]
    for i in range(n):
        url = f"http://127.0.0.1:{port}/files/f{i}.xml?delay=0.002"
        lines += [f"  - id: m{i}", f"    name: Händler {i}", "    sources:",
                  f"      - {{connector: rss, id: s{i}, every: 5m, url: '{url}'}}"]
    path = folder / f"{db}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def run(path: Path, seconds: int) -> tuple[Counter, float, int]:
    """Tick once per fake second; returns fetch starts per second, real time and fetches."""
    settings = config.load(path)
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    clock = ManualClock()
    starts: Counter = Counter()
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        pipeline = Pipeline(settings, store, fetcher, parse_workers=0)
        dispatcher = FetchDispatcher(settings, store, pipeline, clock=clock, owner="bench")
        dispatcher.prepare()
        began = time.perf_counter()
        for second in range(seconds):
            clock.advance(1)
            starts[second] = len(await dispatcher.tick())
            await dispatcher.drain()
        real = time.perf_counter() - began
    store.close()
    return starts, real, sum(starts.values())


async def overhead(path: Path, batch: int = 500) -> float:
    """Seconds per source for due -> claim -> plan -> record, all due at once, no network.
    Runs on the store the fetch run left behind, so posting history is there to count."""
    settings = config.load(path)
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    clock = ManualClock()
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        pipeline = Pipeline(settings, store, fetcher, parse_workers=0)
        dispatcher = FetchDispatcher(settings, store, pipeline, clock=clock, owner="bench")
        dispatcher.prepare()
        clock.advance(3600)  # everything due
        plans, n = dispatcher.plans, len(settings.sources())
        began = time.perf_counter()
        done = 0
        while done < n:
            due = plans.due_sources(clock.now(), batch)
            claimed = plans.claim_sources(due, clock.now(), "bench", clock.now() + timedelta(minutes=5))
            await dispatcher.plan_next([SourceReport(sid, "m", "not_modified") for sid in claimed])
            done += len(claimed)
        per_source = (time.perf_counter() - began) / n
    store.close()
    return per_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    proc, port = start_server(args.sources)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = write_config(Path(tmp), port, args.sources, "bench.db")
            starts, real, fetches = asyncio.run(run(path, int(args.minutes * 60)))
            stats = server_stats(proc)
            per_source = asyncio.run(overhead(path))
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    busy = [starts[s] for s in sorted(starts)]
    mean = sum(busy) / len(busy)
    print(f"sources:                          {args.sources} on one host, every 5m")
    print(f"fake time:                        {args.minutes:g} min in {real:.0f} s real")
    print(f"fetches:                          {fetches} ({stats['requests']} requests at the server)")
    print(f"max concurrent requests per host: {stats['max_in_flight']} (must be <= 2)")
    print(f"scheduling overhead per source:   {per_source * 1000:.3f} ms without network (target < 1 ms)")
    print(f"fetches started per second:       max {max(busy)}, mean {mean:.1f}, "
          f"max/mean {max(busy) / mean:.2f} (target < 2)")


if __name__ == "__main__":
    main()
