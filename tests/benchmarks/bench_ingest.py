"""Ingest benchmark: N generated feeds on loopback, through the real fetch -> parse -> store path.

    .venv/bin/python tests/benchmarks/bench_ingest.py [--feeds 1000] [--runs 1] [--feeds-per-merchant 1]

Prints the wall time and entries/s of a first full ingest into an empty SQLite store, the
wall time of a re-poll in which every feed answers 304, and the peak memory: the peak RSS
of the fetching process and of the largest worker, and the peak PSS of all of them
together (shared pages counted once). --runs repeats it all with a fresh store and prints
medians and ranges: this machine's speed varies from run to run (the fetching process's
peak RSS creeps up a few MB per run, as one long-lived process's would). The feeds are served by a separate process
(tests/feedserver.py), each feed on its own loopback address as merchants' feeds live on
their own hosts; the hub's default politeness settings apply. For judging a noisy machine
it also prints the CPU the feed server took on the same two cores, and a floor for the
re-poll: the same conditional GETs by bare aiohttp (50 in flight), nothing else. With
--runs, the medians include the CPU of the first ingest: on a machine others use too, the
workers' CPU compares two versions of the code where wall times cannot.

--feeds-per-merchant N groups the feeds into merchants of N feeds each (feed i belongs to
merchant i // N): the same entries, but each merchant now has N sources, so every entry is
fingerprinted and compared with its merchant's other posts (hub.identity). The first ingest
should cost about the same for N = 1, 10 and 50: identity work per entry is bounded whatever
a merchant's volume.

Targets on a 2-core machine (issue 2): ~35,000 entries in under 5 s, 1,000 x 304 in under
0.5 s, peak memory under 200 MB; (issue 5) first ingest for N = 1, 10, 50 within 1.3x.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from hub import config  # noqa: E402
from hub.http import Fetcher  # noqa: E402
from hub.pipeline import Pipeline, source_specs  # noqa: E402
from hub.store import Store  # noqa: E402

# Merchants' feeds live on their own hosts, and the hub is polite to each (2 requests in
# flight, 0.5 s between starts), so feed i is served on its own loopback address.
SERVER = """
import sys
from tests.benchmarks.bench_ingest import host
from tests.benchmarks.corpus import feed
from tests.feedserver import FeedServer
n = int(sys.argv[1])
srv = FeedServer(host(0), files={f"f{i}.xml": feed(i) for i in range(n)}, aliases=[host(i) for i in range(1, n)])
print(srv.start().port, flush=True)
sys.stdin.read()
"""


WORKERS = os.cpu_count() or 1  # the pipeline's default pool size


def host(i: int) -> str:
    """A loopback address of its own for feed i (all of 127.0.0.0/8 is loopback)."""
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def start_server(n: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(n)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def write_config(folder: Path, port: int, n: int, per_merchant: int = 1) -> Path:
    """Feed i is source s{i} of merchant m{i // per_merchant}."""
    lines = ["platform: {name: Bench}", "store: {url: 'sqlite:///bench.db'}",
             "fetcher: {allow_private_networks: true}", "merchants:"]
    for m in range(0, n, per_merchant):
        lines += [f"  - id: m{m // per_merchant}", f"    name: Händler {m // per_merchant}", "    sources:"]
        lines += [f"      - {{connector: rss, id: s{i}, url: 'http://{host(i)}:{port}/files/f{i}.xml'}}"
                  for i in range(m, min(n, m + per_merchant))]
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def workers() -> list[Path]:
    """/proc folders of this process's worker processes."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and "multiprocessing" in (stat.parent / "cmdline").read_text():
                found.append(stat.parent)
        except (OSError, ValueError):
            continue
    return found


class PeakMemory(threading.Thread):
    """Samples the proportional set size (PSS: shared pages split between the processes
    that map them) of this process plus its workers every 100 ms and keeps the peak: the
    memory the ingest as a whole takes, which a sum of RSS figures would overstate."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb = 0.0
        self._folders = [Path("/proc/self"), *workers()]  # the pool is started: its workers live on
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.1):
            total = 0
            for folder in self._folders:
                try:
                    text = (folder / "smaps_rollup").read_text()
                except OSError:
                    continue
                total += int(text.split("\nPss:")[1].split()[0])
            self.peak_mb = max(self.peak_mb, total / 1024)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak_mb


def reset_peak_rss() -> None:
    """Start this process's peak RSS (VmHWM) afresh, so each run reports its own."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb(folder: Path) -> float:
    """The peak resident set size (VmHWM) of a process so far, in MB."""
    return int((folder / "status").read_text().split("VmHWM:")[1].split()[0]) / 1024


def cpu_seconds(pool: list[Path], server_pid: int) -> tuple[float, float, float]:
    """CPU time so far of this process, of its worker processes and of the feed server
    (from /proc): on a busy machine, steadier figures than wall time."""
    return time.process_time(), sum(map(_cpu_of, pool)), _cpu_of(Path(f"/proc/{server_pid}"))


def _cpu_of(folder: Path) -> float:
    fields = (folder / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bare_repoll(urls: list[str]) -> float:
    """Wall time of one conditional GET per URL by bare aiohttp, 50 in flight, after a
    first round that learns the ETags: what the re-poll cannot beat on this machine."""
    limit = asyncio.Semaphore(50)
    etags: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        async def get(url: str) -> int:
            async with limit, session.get(url, headers={"If-None-Match": etags.get(url, "")}) as response:
                await response.read()
                etags[url] = response.headers.get("ETag", "")
                return response.status
        await asyncio.gather(*map(get, urls))
        started = time.perf_counter()
        statuses = await asyncio.gather(*map(get, urls))
        elapsed = time.perf_counter() - started
    if set(statuses) != {304}:
        raise SystemExit(f"the bare re-poll was not all 304: {sorted(set(statuses))}")
    return elapsed


async def ingest(path: Path, server_pid: int) -> dict[str, float]:
    settings = config.load(path)
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    sources = settings.sources()
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        pipeline = Pipeline(settings, store, fetcher)
        await pipeline.start_workers()  # as in `hub run`, where the workers live as long as the process
        gc.freeze()  # as `hub run` does once set up
        figures, memory, pool = {}, PeakMemory(), workers()
        reset_peak_rss()
        memory.start()
        for run in ("first", "again"):
            started, cpu = time.perf_counter(), cpu_seconds(pool, server_pid)
            reports = await pipeline.run(sources)
            figures[run] = time.perf_counter() - started
            figures[f"{run}_cpu_main"], figures[f"{run}_cpu_workers"], figures[f"{run}_cpu_server"] = (
                after - before for after, before in zip(cpu_seconds(pool, server_pid), cpu))
            figures[f"{run}_reports"] = reports
        figures["pss_mb"] = memory.stop()
        figures["main_rss_mb"] = peak_rss_mb(Path("/proc/self"))
        figures["worker_rss_mb"] = max(map(peak_rss_mb, pool))
        pipeline.close()
        gc.unfreeze()  # what this run left behind must not outlive it (--runs)
    first, again = figures.pop("first_reports"), figures.pop("again_reports")
    failed = [r for r in first + again if r.status == "failed"]
    if failed:
        raise SystemExit(f"{len(failed)} fetches failed, e.g. {failed[0].source_id}: {failed[0].error}")
    if any(r.status != "not_modified" for r in again):
        raise SystemExit("the re-poll was not all 304")
    figures["records"] = store.records.count(status=None, removed=True, expired=True)
    store.close()
    figures["entries"] = sum(r.new for r in first)
    figures["floor"] = await bare_repoll([s.options.url for _, s in sources])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--feeds-per-merchant", type=int, default=1, metavar="N",
                        help="group the feeds into merchants of N feeds (sources) each")
    parser.add_argument("--runs", type=int, default=1,
                        help="repeat the whole measurement (a fresh store each time); "
                             "this machine's speed varies, so several runs tell more than one")
    args = parser.parse_args()
    proc, port = start_server(args.feeds)
    runs = []
    try:
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                path = write_config(Path(tmp), port, args.feeds, args.feeds_per_merchant)
                runs.append(asyncio.run(ingest(path, proc.pid)))
            report(args.feeds, runs[-1], args.feeds_per_merchant)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    if len(runs) > 1:
        for name, key, form in (("first ingest", "first", "{:.2f} s"),
                                ("  CPU, workers", "first_cpu_workers", "{:.2f} s"),
                                ("  CPU, fetching", "first_cpu_main", "{:.2f} s"), ("re-poll, all 304", "again", "{:.3f} s"),
                                ("floor, bare aiohttp", "floor", "{:.3f} s"), ("peak PSS, all", "pss_mb", "{:.0f} MB"),
                                ("peak RSS, fetching", "main_rss_mb", "{:.0f} MB"),
                                ("peak RSS, a worker", "worker_rss_mb", "{:.0f} MB")):
            values = sorted(f[key] for f in runs)
            print(f"{name + ':':24}median {form.format(statistics.median(values))}, range "
                  f"{form.format(values[0])} to {form.format(values[-1])} over {len(values)} runs")


def report(feeds: int, f: dict[str, float], per_merchant: int = 1) -> None:
    print(f"feeds:                  {feeds} ({per_merchant} per merchant: {-(-feeds // per_merchant)} merchants)")
    print(f"first ingest:           {f['first']:.2f} s, {f['entries']:.0f} entries, "
          f"{f['entries'] / f['first']:,.0f} entries/s; {f['records']:,.0f} records")
    print(f"  CPU:                  {f['first_cpu_main']:.2f} s fetching process, {f['first_cpu_workers']:.2f} s workers "
          f"({f['first_cpu_server']:.2f} s feed server)")
    print(f"re-poll, all 304:       {f['again']:.3f} s")
    print(f"  CPU:                  {f['again_cpu_main']:.2f} s fetching process, {f['again_cpu_workers']:.2f} s workers "
          f"({f['again_cpu_server']:.2f} s feed server)")
    print(f"  floor, bare aiohttp:  {f['floor']:.3f} s")
    print(f"peak memory:            {f['pss_mb']:.0f} MB all {1 + WORKERS} processes (PSS); peak RSS "
          f"{f['main_rss_mb']:.0f} MB fetching process, {f['worker_rss_mb']:.0f} MB largest worker", flush=True)


if __name__ == "__main__":
    main()
