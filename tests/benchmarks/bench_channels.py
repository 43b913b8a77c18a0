"""Benchmark of the push channels' delivery ledger (issue 16):

1. the ledger's overhead per record at ingest: `Store.apply` of `--records` new records
   (sources of 500 entries each, as fetches bring them) into an empty SQLite store, with no
   push channel, with one, and with four (one of them choosing by tags), each timed; the
   difference per record is what writing the ledger rows in the records' transaction costs;
2. deliveries per second to a webhook receiver on loopback: `--records` records, each
   delivered once (signed as Standard Webhooks say) by the publish runs `hub run` would make,
   from the first claim to the last ledger mark. The receiver runs in a process of its own
   (it has a core to itself, as a real one would) and verifies every signature with the
   official `standardwebhooks` library. Target: at least 500 deliveries a second.

    .venv/bin/python tests/benchmarks/bench_channels.py [--records 10000] [--runs 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hub import config  # noqa: E402
from hub.http import Fetcher  # noqa: E402
from hub.ledger import ChannelRules  # noqa: E402
from hub.models import Item, Parsed  # noqa: E402
from hub.store import FetchOutcome, SourceSpec, Store  # noqa: E402
import hub.store.ledger as store_ledger  # noqa: E402
from hub.store.ledger import ChannelSpec, LedgerStore  # noqa: E402
from schedules.clock import SystemClock  # noqa: E402
from schedules.publishing import ChannelPublisher, prepare_channels  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PER_SOURCE = 500
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)

RECEIVER = """
import sys
from aiohttp import web
from standardwebhooks import Webhook

verifier = Webhook(sys.argv[1])
seen = {"n": 0, "bad": 0}

async def hook(request):
    body = await request.read()
    try:
        verifier.verify(body, dict(request.headers))
    except Exception:
        seen["bad"] += 1
        return web.Response(status=400)
    seen["n"] += 1
    return web.Response(status=204)

async def count(request):
    return web.json_response(seen)

app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/count", count)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=lambda *a: print("ready", flush=True))
"""


def entries(source: int, n: int) -> list[Item]:
    tags = ("Markt",) if source % 4 == 0 else ("Angebot",)
    return [Item(source_id=f"s{source}", external_id=f"e{i}", merchant_id=f"m{source}", title=f"Neuigkeit {source}-{i}",
                 summary=f"Kurz {i}", content_html=f"<p>Text {source} {i} vom Markt.</p>",
                 content_text=f"Text {source} {i} vom Markt.", url=f"https://m{source}.example/{i}",
                 published=T0 - timedelta(minutes=i), tags=tags) for i in range(n)]


def fetched(source: int, records: int) -> FetchOutcome:
    """What a fetch of source `source` brings: its share of `records`, PER_SOURCE at most."""
    n = min(PER_SOURCE, records - source * PER_SOURCE)
    return FetchOutcome(f"s{source}", T0, "ok", parsed=Parsed(tuple(entries(source, n))))


def ingest_seconds(folder: Path, records: int, channels: dict[str, ChannelRules]) -> float:
    """Seconds `Store.apply` takes for `records` new records with these channels."""
    store = Store(f"sqlite:///{folder}/ingest-{len(channels)}.db")
    sources = (records + PER_SOURCE - 1) // PER_SOURCE
    store.sync_sources([SourceSpec(f"s{i}", f"m{i}", "rss") for i in range(sources)])
    LedgerStore(store).sync_channels({c: ChannelSpec("webhook", r) for c, r in channels.items()}, T0)
    batches = [[fetched(i, records)] for i in range(sources)]
    started = time.perf_counter()
    for batch in batches:
        store.apply(batch)
    seconds = time.perf_counter() - started
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT count(*) FROM ledger").scalar_one()
    assert (rows == 0) == (not channels), rows
    store.close()
    return seconds


def overhead(records: int, runs: int) -> None:
    """The setups' runs interleaved (a shared machine's load then touches each alike), and
    the time spent inside `hub.store.ledger.announce` itself, measured directly."""
    print(f"1. ledger at ingest: {records:,} new records, Store.apply in batches of {PER_SOURCE}")
    setups = {"no push channel": {}, "1 channel": {"hook": ChannelRules()},
              "4 channels": {"hook": ChannelRules(), "events": ChannelRules(kinds=("event",)),
                             "m0": ChannelRules(merchants=("m0", "m1")), "markt": ChannelRules(tags=("markt",))}}
    times: dict[str, list[float]] = {name: [] for name in setups}
    inside: dict[str, list[float]] = {name: [] for name in setups}
    announce = store_ledger.announce

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return announce(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    store_ledger.announce = timed
    try:
        for _ in range(runs):
            for name, channels in setups.items():
                spent = [0.0]
                with tempfile.TemporaryDirectory() as folder:
                    times[name].append(ingest_seconds(Path(folder), records, channels))
                inside[name].append(spent[0])
    finally:
        store_ledger.announce = announce
    best = {name: min(t) for name, t in times.items()}  # the least disturbed run of each
    for name in setups:
        print(f"   {name:16} best {best[name]:5.2f} s ({best[name] / records * 1e6:5.1f} µs a record; runs "
              f"{', '.join(f'{t:.2f}' for t in times[name])}); in announce: "
              f"{statistics.median(inside[name]) / records * 1e6:5.1f} µs a record")
    base = best["no push channel"]
    for name in ("1 channel", "4 channels"):
        extra = (best[name] - base) / records * 1e6
        print(f"   end to end with {name}: {extra:+.1f} µs a record ({(best[name] / base - 1) * 100:+.1f}%, best "
              "runs compared; on a busy machine the noise can be larger than this)")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def deliver(folder: Path, records: int, port: int, profile: bool) -> tuple[float, int]:
    path = folder / "c.yaml"
    path.write_text(f"""
platform: {{name: Benchstadt, base_url: "https://bench.example"}}
store: {{url: "sqlite:///{folder}/hub.db"}}
fetcher: {{allow_private_networks: true}}
channels:
  - {{id: hook, renderer: webhook, url: "http://127.0.0.1:{port}/hook", secret: "{SECRET}"}}
""")
    settings = config.load(path, env={})
    store = Store(settings.store.url, base_dir=settings.base_dir)
    prepare_channels(settings, store)
    sources = (records + PER_SOURCE - 1) // PER_SOURCE
    store.sync_sources([SourceSpec(f"s{i}", f"m{i}", "rss") for i in range(sources)])
    for i in range(sources):
        store.apply([fetched(i, records)])
    ledger = LedgerStore(store)
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        publisher = ChannelPublisher(settings, store, fetcher, clock=SystemClock(), owner="bench")
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        sent = 0
        while True:
            [report] = await publisher.publish(["hook"])
            sent += report.sent
            if report.status == "nothing new" or report.failed:
                break
        seconds = time.perf_counter() - started
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    [summary] = ledger.summaries(datetime.now(timezone.utc))
    assert summary.counts == {"sent": records}, summary.counts
    store.close()
    return seconds, sent


def deliveries(records: int, runs: int, profile: bool) -> None:
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, SECRET, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == "ready"
        print(f"2. deliveries to a webhook receiver (another process, every signature verified): {records:,} records")
        rates = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as folder:
                seconds, sent = asyncio.run(deliver(Path(folder), records, port, profile))
            rates.append(sent / seconds)
            print(f"   {sent:,} delivered in {seconds:.2f} s: {sent / seconds:,.0f} deliveries/s")
        import json
        from urllib.request import urlopen

        seen = json.load(urlopen(f"http://127.0.0.1:{port}/count"))
        print(f"   median {statistics.median(rates):,.0f} deliveries/s (target: at least 500); the receiver verified "
              f"{seen['n']:,}, rejected {seen['bad']}")
    finally:
        receiver.terminate()
        receiver.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="profile the deliveries (one run)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; SQLite (WAL, synchronous=FULL)")
    if not args.profile:
        overhead(args.records, args.runs)
    deliveries(args.records, 1 if args.profile else args.runs, args.profile)


if __name__ == "__main__":
    main()
