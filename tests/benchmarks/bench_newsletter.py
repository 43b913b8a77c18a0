"""Benchmark: render and send one newsletter edition to 10,000 subscribers with individual
topics, through a real SMTP server on loopback. Prints mails per second and peak memory.

    .venv/bin/python tests/benchmarks/bench_newsletter.py [--subscribers 10000] [--records 60]
    .venv/bin/python tests/benchmarks/bench_newsletter.py --profile      # where the time goes
    .venv/bin/python tests/benchmarks/bench_newsletter.py --crash        # the full crash soak:
                                                   # 5,000 subscribers, 10 SIGKILLs, resumed each time

The SMTP server (aiosmtpd, accepting every mail) runs in a process of its own, so the sender
has its core to itself, as it would beside a real relay. The town: 40 merchants in 8
categories, `--records` records of the week (a third events, offers, posts; some with an
image), each subscriber with topics drawn at random (kinds, categories, merchants or
none), so mails differ. Timed: everything `hub publish --channel` does for the edition,
from claiming it to the last ledger mark: loading its records, choosing each subscriber's,
rendering (HTML with inlined CSS, and text), composing, pacing (`rate` set out of the way),
SMTP hand-off, marks.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import pstats
import random
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hub.models import Kind  # noqa: E402
from hub.newsletter.job import NewsletterJob  # noqa: E402
from hub.newsletter.store import Preferences  # noqa: E402
from tests.newsletter_town import Town, free_port  # noqa: E402

CATEGORIES = ["gastronomie", "einzelhandel", "verein", "verwaltung", "kultur", "sport", "bildung", "kirche"]


def smtp_server(port: int, ready) -> None:
    from aiosmtpd.controller import Controller

    class Accept:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    controller = Controller(Accept(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def build(folder: Path, port: int, subscribers: int, records: int, seed: int = 15) -> Town:
    from tests import newsletter_town

    rng = random.Random(seed)
    newsletter_town.MERCHANTS[:] = [(f"m{i:02d}", f"Teilnehmer {i}", CATEGORIES[i % len(CATEGORIES)],
                                     "Anzeige" if i % 7 == 0 else None) for i in range(40)]
    town = Town(folder, port, rate=100_000, max_items=30)
    now = datetime.now(timezone.utc)
    kinds = [Kind.EVENT, Kind.OFFER, Kind.POST]
    for n in range(records):
        kind = kinds[n % 3]
        town.add(f"m{rng.randrange(40):02d}", f"Beitrag {n}: {rng.choice(['Markt', 'Konzert', 'Angebot', 'Lesung'])}",
                 at=now - timedelta(hours=rng.randint(1, 150)), kind=kind,
                 start=now + timedelta(days=rng.randint(1, 20)) if kind == Kind.EVENT else None,
                 price="9.90" if kind == Kind.OFFER else None, image=n % 2 == 0)
    prefs = []
    for _ in range(subscribers):
        prefs.append(Preferences(
            categories=tuple(rng.sample(CATEGORIES, rng.randint(1, 3))) if rng.random() < 0.5 else (),
            kinds=tuple(rng.sample(["event", "offer", "post"], rng.randint(1, 2))) if rng.random() < 0.5 else (),
            merchants=tuple(f"m{i:02d}" for i in rng.sample(range(40), 2)) if rng.random() < 0.2 else ()))
    town.subscribe_many([f"leser{n:05d}@example.org" for n in range(subscribers)], prefs)
    return town


def bench(subscribers: int, records: int, profile: bool) -> None:
    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=smtp_server, args=(port, ready), daemon=True)
    server.start()
    ready.wait(10)
    with tempfile.TemporaryDirectory() as folder:
        town = build(Path(folder), port, subscribers, records)
        job = NewsletterJob(town.settings, town.store, owner="bench")
        now = datetime.now(timezone.utc)
        edition = job.make_edition(town.channel, now.replace(second=0, microsecond=0), now)
        print(f"edition {edition.id}: {len(edition.new)} new records, {len(edition.upcoming)} upcoming events, "
              f"{edition.recipients:,} recipients")
        rss_before = _rss_mib()
        profiler = cProfile.Profile() if profile else None
        server_cpu = _cpu_seconds(server.pid)
        started, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        [report] = asyncio.run(job.publish_now("wochenpost"))
        if profiler:
            profiler.disable()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        server_cpu = _cpu_seconds(server.pid) - server_cpu
        town.close()
    server.terminate()
    mails = report.counts["sent"]
    print(f"sent {mails:,} mails ({report.counts['skipped']:,} subscribers had nothing new for their topics) "
          f"in {seconds:.1f} s: {mails / seconds:,.0f} mails/s (render + SMTP hand-off + ledger)")
    print(f"CPU per mail: sender {cpu / mails * 1000:.2f} ms (one core would send {mails / cpu:,.0f} mails/s), "
          f"SMTP server {server_cpu / mails * 1000:.2f} ms; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB resident "
          f"(the process held {rss_before:,.0f} MiB before the send: town, store, libraries)")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def _rss_mib() -> float:
    """This process's resident memory now (Linux /proc)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def crash(subscribers: int, kills: int) -> None:
    from tests.test_newsletter_crash import crash_run

    with tempfile.TemporaryDirectory() as folder:
        run = crash_run(Path(folder), subscribers, kills)
    print(f"crash soak: {run.summary()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=None)
    parser.add_argument("--records", type=int, default=60)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--crash", action="store_true", help="the SIGKILL soak instead of the throughput run")
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    if args.crash:
        crash(args.subscribers or 5000, args.kills)
    else:
        bench(args.subscribers or 10_000, args.records, args.profile)


if __name__ == "__main__":
    main()
