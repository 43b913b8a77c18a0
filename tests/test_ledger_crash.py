"""Crash test of the delivery ledger (issue 16): 1,000 records go to a webhook channel while
the publishing process is killed with SIGKILL at random points, 20 times (during a delivery,
while the ledger is written, between runs). A fresh process takes over each time, as `hub
run` after a crash would. Afterwards no record is lost, and every record that arrived more
than once carried the same `webhook-id` each time, so the receiver (which verifies every
delivery with the `standardwebhooks` library) can drop the repeats. The repeats are bounded:
at most the outcomes a run had not yet written (`FLUSH_EVERY`) and those in flight, per kill.

Each publishing process is forked from one that imported the hub already (`FORKER`), so the
20 restarts take milliseconds, not the seconds of a cold start. The suite runs 1,000
records and 20 kills; a longer soak:

    .venv/bin/python tests/test_ledger_crash.py --records 10000 --kills 100
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedules.publishing import FLUSH_EVERY  # noqa: E402
from tests.channelfakes import SECRET, Entry, WebhookReceiver, channel_config, rss  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402

CONCURRENCY = 2
# Processes started and killed: not about the date, so not in make test's second run (--clock-ahead).
pytestmark = pytest.mark.slow

# A process that has imported the hub and forks, on each line it reads, a child that fetches
# (`fetch`) or works the channel off until nothing is left (`publish`, as `hub run`'s publish
# tick would), answering with the child's pid; `wait PID` answers with its exit status.
FORKER = """
import asyncio, os, sys
from hub import config
from hub.http import Fetcher
from hub.moderation import rules_from
from hub.pipeline import Pipeline, select_sources, source_specs
from hub.store import Store
from schedules.clock import SystemClock
from schedules.publishing import ChannelPublisher, prepare_channels

def opened(path):
    settings = config.load(path)
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    store.records.configure(rules_from(settings))
    prepare_channels(settings, store)
    return settings, store

async def fetch(path):
    settings, store = opened(path)
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        reports = await Pipeline(settings, store, fetcher, parse_workers=0).run(select_sources(settings))
    return 0 if all(r.status != "failed" for r in reports) else 1

async def publish(path):
    settings, store = opened(path)
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        publisher = ChannelPublisher(settings, store, fetcher, clock=SystemClock(), owner=f"crash-{os.getpid()}")
        while True:
            [report] = await publisher.publish(["hook"])
            with store.engine.connect() as conn:
                left = conn.exec_driver_sql("SELECT count(*) FROM ledger WHERE status IN ('pending', 'sending')")
                if left.scalar_one() == 0:
                    return 0
            if report.status != "published":
                await asyncio.sleep(0.05)  # a dead process's lease, or nothing due yet

path = sys.argv[1]
for line in sys.stdin:
    command, *rest = line.split()
    if command == "wait":
        _, status = os.waitpid(int(rest[0]), 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1), os.dup2(devnull, 2)
        os._exit(asyncio.run(fetch(path) if command == "fetch" else publish(path)))
    print(pid, flush=True)
"""


class Forker:
    def __init__(self, path: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, "-c", FORKER, str(path)], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def ask(self, line: str) -> int:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def open_rows(db: Path) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute("SELECT count(*) FROM ledger WHERE status IN ('pending', 'sending')").fetchone()[0]


def crash_run(folder: Path, records: int = 1000, kills: int = 20, seed: int = 16) -> dict[str, int]:
    """Publish `records` records to a webhook, killing the publisher `kills` times; the counts."""
    rng = random.Random(seed)
    with FeedServer() as feeds, WebhookReceiver(delay=0.002) as hook:
        entries = [Entry(f"n{i}", f"Neuigkeit {i}", f"Text {i}.", age=timedelta(seconds=i)) for i in range(records)]
        feeds.files["laden.xml"] = rss(entries, feeds.url("").rstrip("/"))
        channel = (f'  - {{id: hook, renderer: webhook, url: "{hook.url("/hook")}", secret: "{SECRET}", '
                   f"concurrency: {CONCURRENCY}}}")
        path = channel_config(folder / "c.yaml", feeds.url("/files/laden.xml"), channel, lease="0.5s")
        forker = Forker(path)
        try:
            assert forker.ask(f"wait {forker.ask('fetch')}") == 0, "the fetch failed"
            assert open_rows(folder / "hub.db") == records
            interrupted = 0
            for _ in range(kills):
                before = len(hook.received)
                child = forker.ask("publish")
                deadline = time.monotonic() + 30
                while len(hook.received) == before and time.monotonic() < deadline:
                    time.sleep(0.002)  # until it delivers: the kill lands somewhere in its work
                time.sleep(rng.uniform(0, 0.15))
                interrupted += open_rows(folder / "hub.db") > 0
                os.kill(child, signal.SIGKILL)
                assert forker.ask(f"wait {child}") in (0, -signal.SIGKILL)
            assert forker.ask(f"wait {forker.ask('publish')}") == 0  # the last one finishes the work
        finally:
            forker.close()
        ids: dict[int, set[str]] = defaultdict(set)
        for delivery in hook.received:
            ids[delivery.data["id"]].add(delivery.id)
        return {"records": records, "kills": kills, "kills_with_work_left": interrupted,
                "received": len(hook.received), "distinct_records": len(ids),
                "duplicates": len(hook.received) - len(ids),
                "records_with_two_ids": sum(len(v) > 1 for v in ids.values()),
                "rejected": len(hook.rejected), "webhook_ids": len({d.id for d in hook.received}),
                "left": open_rows(folder / "hub.db")}


def test_sigkill_twenty_times_loses_nothing_and_every_repeat_has_the_same_id(tmp_path, capsys):
    counts = crash_run(tmp_path, records=1000, kills=20)
    with capsys.disabled():
        print(f"\ncrash test: {counts}")
    assert counts["distinct_records"] == 1000 and counts["left"] == 0  # none lost, none left over
    assert counts["records_with_two_ids"] == 0 and counts["webhook_ids"] == 1000  # a repeat has the first's id
    assert counts["rejected"] == 0  # every delivery verified by standardwebhooks
    assert counts["kills_with_work_left"] == 20  # every kill interrupted work
    assert counts["duplicates"] <= counts["kills"] * (FLUSH_EVERY + CONCURRENCY)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(crash_run(Path(folder), args.records, args.kills, args.seed))
