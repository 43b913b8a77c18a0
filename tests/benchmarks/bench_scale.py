"""Load simulation of the scaled tier (issue 18): many towns on PostgreSQL, `hub worker`
processes and one `hub serve`, fetching 100,000 sources from thousands of loopback hosts.

    .venv/bin/python tests/benchmarks/bench_scale.py [--sources 100000] [--workers 2 | --compare]
        [--seconds 180] [--interval 15m] [--hosts 2000] [--concurrency 16] [--latency MS]

Each run: a fresh PostgreSQL database (HUB_TEST_PG, default postgres@127.0.0.1:5432; dropped
at the end), four towns holding 55/25/15/5 % of the sources (fair shares), one merchant per
source, the sources spread over `--hosts` loopback hosts (127.1.x.y) served by ONE separate
feed-server process (tests/benchmarks/scalefeeds.py: small feeds, ETag/304, a new item per
feed every `--change-every`, each answer after `--latency` ms x 0.5-1.5, as remote hosts
take; 0: at once, which makes every worker CPU-bound). `hub migrate`, then W `hub worker` and one `hub serve`; every
`--sample` seconds it reads each town's dispatch figures (the functions behind `hub status
--json`), the feed server's request counts, the processes' CPU and RSS, and times a town page
and `/metrics` on the web process. `--compare` runs 1 and then 2 workers, each on a fresh
database, and prints the throughput ratio.

The schedule: every source is polled every `--interval` (schedule.min_interval =
max_interval), and the first fetches are spread evenly over the first interval, so the
demand is sources / interval fetches per second from the first second on. The first pass is
the heavy one (every answer a 200 with three new items to parse and store; later polls are
mostly 304), so a run that keeps up during the first interval keeps up after it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402

from hub import config as config_mod  # noqa: E402
from hub.fleet_metrics import fleet_status  # noqa: E402
from tests.benchmarks.scalefeeds import host  # noqa: E402

ADMIN = os.environ.get("HUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HUB = [sys.executable, "-m", "hub"]
SHARES = (55, 25, 15, 5)  # per cent of the sources per town: one big town, some small ones
TICKS = os.sysconf("SC_CLK_TCK")
PROFILER = str(Path(__file__).with_name("stackprof.py"))


# --- the deployment ---------------------------------------------------------------------------

def split(n: int, shares: tuple[int, ...] = SHARES) -> list[int]:
    """n sources in the given per-cent shares (the last town gets the rounding)."""
    counts = [n * s // sum(shares) for s in shares[:-1]]
    return counts + [n - sum(counts)]


def write_deployment(folder: Path, store_url: str, n: int, hosts: int, feed_port: int, web_port: int,
                     interval: int) -> Path:
    """Town configs (one merchant per source, one line each: the YAML is written, not dumped)
    and the deployment file naming them."""
    towns, first = {}, 0
    for t, count in enumerate(split(n)):
        town = f"town{t}"
        lines = [f"platform: {{name: Stadt {t}, base_url: 'http://{town}.bench:{web_port}'}}",
                 "fetcher: {allow_private_networks: true, retries: 0}",
                 # First fetches at the town's share of the demand: spread over one interval
                 # (`prepare` spaces them 1 / first_fetches_per_second apart).
                 f"schedule: {{min_interval: {interval}s, max_interval: {interval}s, "
                 f"first_fetches_per_second: {count / interval:.6f}, lease: 2m, publish_tick: 30s}}", "merchants:"]
        lines += [f"  - {{id: m{i}, name: Händler {i}, sources: [{{connector: rss, id: s{i}, "
                  f"url: 'http://{host(i % hosts)}:{feed_port}/f/s{i}.xml'}}]}}" for i in range(first, first + count)]
        (folder / f"{town}.yaml").write_text("\n".join(lines) + "\n")
        towns[town] = f"{town}.yaml"
        first += count
    path = folder / "deploy.yaml"
    path.write_text("\n".join([f"store: {{url: '{store_url}'}}", "runtime: procrastinate", "towns:"]
                              + [f"  {town}: {file}" for town, file in towns.items()]) + "\n")
    return path


def time_config_load(folder: Path) -> tuple[int, float]:
    """Seconds `hub.config.load` takes for the biggest town (every process does it at start)."""
    biggest = folder / "town0.yaml"
    started = time.perf_counter()
    settings = config_mod.load(biggest)
    return len(settings.sources()), time.perf_counter() - started


# --- processes ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_feeds(hosts: int, change_every: float, latency_ms: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.benchmarks.scalefeeds", str(hosts), str(change_every),
                             str(latency_ms)],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def start_hub(args: list[str], log: Path, *, plain: bool = True) -> subprocess.Popen:
    """`hub ARGS`, or with plain=False `python ARGS` (a profiler wrapping `-m hub ...`)."""
    return subprocess.Popen([*HUB, *args] if plain else [sys.executable, *args], cwd=ROOT, stdout=log.open("a"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of each PostgreSQL server process (every database's: the machine is shared)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            found[int(stat.parent.name)] = cpu_seconds(int(stat.parent.name))
    return found


def machine_ticks() -> list[int]:
    """The machine's CPU time so far, all cores, in clock ticks: user, nice, system, idle,
    iowait, irq, softirq, steal (/proc/stat)."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def machine_busy(before: list[int], after: list[int]) -> dict[str, float]:
    """Shares of all cores' time between two `machine_ticks`: busy (not idle nor iowait), and
    of it user, system and interrupts (the kernel's loopback networking is much of these)."""
    d = [b - a for a, b in zip(before, after)]
    total = max(1, sum(d))
    return {"busy": (total - d[3] - d[4]) / total, "user": (d[0] + d[1]) / total, "system": d[2] / total,
            "interrupts": (d[5] + d[6]) / total, "steal": d[7] / total}


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the processes took between two snapshots (those that ended meanwhile are missed)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def feed_stats(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as answer:
        stats = json.load(answer)
    return stats["ok"] + stats["not_modified"]


def timed_get(port: int, path: str, host_header: str) -> float | None:
    """Milliseconds for one GET on the web process, None when it failed."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host_header})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
    except OSError:
        return None
    return (time.perf_counter() - started) * 1000


def wait_for_web(port: int, host_header: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while timed_get(port, "/healthz", host_header) is None and timed_get(port, "/", host_header) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"hub serve did not answer on port {port} within {timeout:.0f} s")
        time.sleep(0.5)


# --- one run --------------------------------------------------------------------------------------

@dataclass
class Sample:
    at: float  # seconds since the workers started
    requests: int  # feed-server requests so far
    due: int
    in_flight: int
    lag: float  # the worst town's lag behind schedule, seconds
    fetched: dict[str, int]  # per town: sources fetched within the figures' window
    jobs_todo: int
    page_ms: float | None
    metrics_ms: float | None
    lock_waits: int = 0  # ingest writers waiting for another's scope lock (merchant, day, URL)
    turn_waits: int = 0  # ... for a town's turn (the data version's row, hub/store/version.py)


@dataclass
class Run:
    workers: int
    sources: int
    interval: int
    samples: list[Sample] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds during the run
    rss: dict[str, float] = field(default_factory=dict)  # role -> peak RSS MiB
    machine: dict[str, float] = field(default_factory=dict)  # `machine_busy` during the run
    sessions: int = 0  # database connections opened during the run
    db_bytes_migrated: int = 0
    db_bytes: int = 0
    items: int = 0
    warmup: float = 30.0

    def rate(self) -> float:
        """Feed requests per second after the warm-up."""
        steady = [s for s in self.samples if s.at >= self.warmup]
        if len(steady) < 2:
            return 0.0
        return (steady[-1].requests - steady[0].requests) / (steady[-1].at - steady[0].at)

    @property
    def demand(self) -> float:
        return self.sources / self.interval


class Databases:
    """The bench's PostgreSQL databases: one migrated template, and a copy of it per run
    (CREATE DATABASE ... TEMPLATE takes seconds; `hub migrate` of 100,000 sources minutes)."""

    def __init__(self) -> None:
        self.base = ADMIN.rsplit("/", 1)[0]
        self.names: list[str] = []

    def create(self, template: str | None = None) -> tuple[str, str]:
        """(name, store URL) of a new database, empty or a copy of `template`."""
        name = f"hub_scale_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self.names.append(name)
        return name, self.url(name)

    def url(self, name: str) -> str:
        return self.base.replace("postgresql://", "postgresql+psycopg://") + f"/{name}"

    def connect(self, name: str):
        return psycopg.connect(f"{self.base}/{name}", autocommit=True)

    def drop(self, name: str) -> None:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.names.remove(name)

    def drop_all(self) -> None:
        for name in list(self.names):
            self.drop(name)


def database_size(conn) -> int:
    return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def count_items(conn, towns: list[str]) -> int:
    return sum(conn.execute(f"SELECT count(*) FROM town_{t}.items").fetchone()[0] for t in towns)


@dataclass
class Setup:
    """What every run shares: the folder of configs, the ports, the migrated template."""

    folder: Path
    feed_port: int
    feed_pid: int
    web_port: int
    template: str
    template_bytes: int


def prepare_template(args, dbs: Databases, folder: Path, feed_port: int, feed_pid: int) -> Setup:
    name, url = dbs.create()
    web_port = free_port()
    deploy = write_deployment(folder, url, args.sources, args.hosts, feed_port, web_port, args.runs[0][1])
    started = time.perf_counter()
    subprocess.run([*HUB, "migrate", "-c", str(deploy)], cwd=ROOT, check=True, stdout=(args.logs / "migrate.log").open("w"),
                   stderr=subprocess.STDOUT)
    print(f"hub migrate of {args.sources:,} sources in {len(SHARES)} towns: {time.perf_counter() - started:.0f} s")
    with dbs.connect(name) as conn:
        size = database_size(conn)
    return Setup(folder, feed_port, feed_pid, web_port, name, size)


def run(args, dbs: Databases, setup: Setup, workers: int, interval: int) -> Run:
    name, store_url = dbs.create(template=setup.template)
    result = Run(workers, args.sources, interval, warmup=args.warmup, db_bytes_migrated=setup.template_bytes)
    log = args.logs / f"run-{workers}w-{interval}s.log"
    try:
        deploy = write_deployment(setup.folder, store_url, args.sources, args.hosts, setup.feed_port, setup.web_port,
                                  interval)
        print(f"\n-- run: {workers} worker(s), every source every {interval} s "
              f"({args.sources / interval:.0f} fetches/s wanted); log {log}", flush=True)
        measure(args, result, deploy, name, store_url, setup, log)
        with dbs.connect(name) as conn:
            result.db_bytes = database_size(conn)
            result.items = count_items(conn, [f"town{t}" for t in range(len(SHARES))])
    finally:
        if not args.keep:
            dbs.drop(name)
        else:
            print(f"kept database {name}")
    return result


def town_stores(store_url: str) -> dict:
    """Each town's store, opened straight on its schema (loading 100,000 sources' configs
    again would take the bench minutes; the figures need only the tables)."""
    from hub.store import Store

    return {f"town{t}": Store(store_url, schema=f"town_town{t}", migrate=False) for t in range(len(SHARES))}


def ingest_waits(conn) -> tuple[int, int]:
    """Connections of this database waiting (for an advisory lock: another writer's merchant,
    day or URL, hub/store/writelocks.py; for the data version's row: a town's turn)."""
    return conn.execute(
        "SELECT count(*) FILTER (WHERE wait_event = 'advisory'), "
        "count(*) FILTER (WHERE wait_event IN ('transactionid', 'tuple') AND query LIKE 'UPDATE data_version%') "
        "FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").fetchone()


def sessions(conn) -> int:
    """Connections opened to this database so far (each a new server process: its CPU is
    not in "postgres (all)" once it has ended)."""
    return conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def registered_workers(conn) -> int:
    return conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0]


def measure(args, result: Run, deploy: Path, name: str, store_url: str, setup: Setup, log: Path) -> None:
    web_port, feed_port = setup.web_port, setup.feed_port
    town_host = f"town0.bench:{web_port}"
    with ExitStack() as stack:
        started = time.monotonic()
        web = start_hub(["serve", "-c", str(deploy), "--port", str(web_port)], log)
        stack.callback(stop, [web])
        # The web first: its start registers the towns (a reload), and a worker that saw the
        # registry before that reads every town's config again once it notices (minutes at
        # 100,000 sources, fetching at a tenth of its pace meanwhile; see docs/performance.md).
        wait_for_web(web_port, town_host, timeout=600)
        worker = ["worker", "-c", str(deploy), "--concurrency", str(args.concurrency)]
        profiled = [PROFILER, str(args.profile), "-m", "hub"] if args.profile else []
        pool = [start_hub([*profiled, *worker] if i == 0 and profiled else worker, log, plain=not (i == 0 and profiled))
                for i in range(result.workers)]
        stack.callback(stop, pool)
        stores = town_stores(store_url)
        for store in stores.values():
            stack.callback(store.close)
        jobs_engine = create_engine(store_url)
        stack.callback(jobs_engine.dispose)
        # Every process reads all town configs at start (minutes for 100,000 sources): the
        # clock starts when all workers are registered.
        db = stack.enter_context(Databases().connect(name))
        while registered_workers(db) < result.workers:
            if any(p.poll() is not None for p in pool + [web]):
                raise SystemExit(f"a hub process ended early; see {log}")
            time.sleep(1)
        print(f"processes ready after {time.monotonic() - started:.0f} s (each reads every town's config)")
        roles = {"workers": [p.pid for p in pool], "web": [web.pid], "feed server": [setup.feed_pid]}
        cpu0 = {role: sum(map(cpu_seconds, pids)) for role, pids in roles.items()}
        pg0, machine0, sessions0 = postgres_cpu(), machine_ticks(), sessions(db)
        t0 = time.monotonic()
        print(f"{'t s':>5} {'fetch/s':>8} {'due':>7} {'flight':>6} {'lag s':>6} {'jobs':>5} "
              f"{'page ms':>8} {'metrics ms':>10} {'lock':>4} {'turn':>4}  fetched per town (5 min window)")
        last = None
        while (elapsed := time.monotonic() - t0) < args.seconds:
            sample = take_sample(elapsed, stores, jobs_engine, feed_port, web_port, town_host)
            sample.lock_waits, sample.turn_waits = ingest_waits(db)
            result.samples.append(sample)
            for role, pids in roles.items():
                result.rss[role] = max(result.rss.get(role, 0.0), sum(map(rss_mib, pids)))
            rate = ((sample.requests - last.requests) / (sample.at - last.at)) if last else 0.0
            print(f"{sample.at:5.0f} {rate:8.1f} {sample.due:7d} {sample.in_flight:6d} {sample.lag:6.1f} "
                  f"{sample.jobs_todo:5d} {_ms(sample.page_ms):>8} {_ms(sample.metrics_ms):>10} "
                  f"{sample.lock_waits:4d} {sample.turn_waits:4d}  "
                  + " ".join(f"{n}" for n in sample.fetched.values()), flush=True)
            last = sample
            if any(p.poll() is not None for p in pool + [web]):
                raise SystemExit(f"a hub process ended early; see {log}")
            time.sleep(max(0.0, args.sample - (time.monotonic() - t0 - sample.at)))
        result.cpu = {role: sum(map(cpu_seconds, pids)) - cpu0[role] for role, pids in roles.items()}
        result.cpu["postgres (all)"] = cpu_since(pg0, postgres_cpu())
        result.cpu["wall"] = time.monotonic() - t0
        result.machine = machine_busy(machine0, machine_ticks())
        result.sessions = sessions(db) - sessions0


def take_sample(elapsed: float, stores, jobs_engine, feed_port: int, web_port: int, town_host: str) -> Sample:
    requests = feed_stats(feed_port)
    statuses = fleet_status(stores, datetime.now(timezone.utc), jobs_engine=jobs_engine)
    todo = sum(n for s in statuses for (queue, status), n in s.jobs.items() if queue == "fetch" and status == "todo")
    return Sample(at=elapsed, requests=requests, due=sum(s.figures.due for s in statuses),
                  in_flight=sum(s.figures.in_flight for s in statuses),
                  lag=max((s.figures.lag_seconds for s in statuses), default=0.0),
                  fetched={s.town: s.figures.fetched for s in statuses}, jobs_todo=todo,
                  page_ms=timed_get(web_port, "/", town_host), metrics_ms=timed_get(web_port, "/metrics", town_host))


def _ms(value: float | None) -> str:
    return "failed" if value is None else f"{value:.0f}"


# --- the report --------------------------------------------------------------------------------

def report(result: Run) -> None:
    steady = [s for s in result.samples if s.at >= result.warmup] or result.samples
    lags = sorted(s.lag for s in steady)
    pages = sorted(s.page_ms for s in steady if s.page_ms is not None)
    metrics = sorted(s.metrics_ms for s in steady if s.metrics_ms is not None)
    wall = result.cpu.get("wall", 1.0)
    print(f"\n== {result.workers} worker(s), {result.sources:,} sources every {result.interval} s: "
          f"demand {result.demand:.1f} fetches/s")
    print(f"sustained fetches/s after {result.warmup:.0f} s warm-up: {result.rate():.1f} "
          f"({result.rate() / result.demand:.0%} of demand)")
    print(f"lag behind schedule after warm-up: median {_pct(lags, 0.5):.1f} s, max {lags[-1] if lags else 0:.1f} s "
          f"(interval {result.interval} s: {'under' if lags and lags[-1] < result.interval else 'NOT under'} one interval)")
    print(f"due at the end: {steady[-1].due if steady else 0:,}; fetch jobs waiting at most: "
          f"{max((s.jobs_todo for s in steady), default=0)}; ingest writers waiting, mean: for a scope lock "
          f"{sum(s.lock_waits for s in steady) / max(1, len(steady)):.1f}, for a town's turn "
          f"{sum(s.turn_waits for s in steady) / max(1, len(steady)):.1f}")
    print("CPU during the run (share of one core): " + ", ".join(
        f"{role} {sec:.0f} s ({sec / wall:.0%})" for role, sec in result.cpu.items() if role != "wall"))
    m, cores = result.machine, os.cpu_count() or 1
    if m:
        listed = sum(sec for role, sec in result.cpu.items() if role != "wall") / wall
        print(f"machine ({cores} cores): busy {m['busy']:.0%} (user {m['user']:.0%}, system {m['system']:.0%}, "
              f"interrupts {m['interrupts']:.0%}, steal {m['steal']:.0%}); the processes above took "
              f"{listed / cores:.0%} of it; the rest is the kernel, other services and the {result.sessions / wall:.1f} "
              "database connections opened per second (their server processes ended before they could be counted)")
    print("peak RSS: " + ", ".join(f"{role} {mib:.0f} MiB" for role, mib in result.rss.items()))
    print(f"web: town page p50 {_pct(pages, 0.5):.0f} ms / max {pages[-1] if pages else 0:.0f} ms; "
          f"/metrics p50 {_pct(metrics, 0.5):.0f} ms / max {metrics[-1] if metrics else 0:.0f} ms "
          f"({len(pages)} + {len(metrics)} requests)")
    grown = result.db_bytes - result.db_bytes_migrated
    print(f"database: {result.db_bytes / 2**20:.0f} MiB ({result.db_bytes / result.sources:,.0f} bytes per source); "
          f"after migrate {result.db_bytes_migrated / 2**20:.0f} MiB "
          f"({result.db_bytes_migrated / result.sources:,.0f} bytes per source); "
          f"{result.items:,} items stored, {grown / max(1, result.items):,.0f} bytes per item of growth")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def estimate(result: Run, target: int, interval: int, items_per_source: int) -> None:
    """Workers and database size for `target` sources, from one run's figures: the run with
    the best rate per worker (a saturated one: what a worker can do, not what was asked)."""
    per_worker = result.rate() / result.workers
    fetched = max(1, result.samples[-1].requests - result.samples[0].requests)
    cpu_per_fetch = result.cpu.get("workers", 0.0) / fetched
    pg_per_fetch = result.cpu.get("postgres (all)", 0.0) / fetched
    need = target / interval
    per_source = result.db_bytes_migrated / result.sources
    per_item = (result.db_bytes - result.db_bytes_migrated) / max(1, result.items)
    items = target * items_per_source
    size = target * per_source + items * per_item
    print(f"\n== estimate for {target:,} sources polled every {interval // 60} min on average: {need:,.0f} fetches/s")
    print(f"from the run of {result.workers} worker(s) every {result.interval} s: {per_worker:.1f} fetches/s per "
          f"worker process, {cpu_per_fetch * 1000:.1f} ms of worker CPU and {pg_per_fetch * 1000:.1f} ms of "
          f"PostgreSQL CPU per fetch (first fetches: a 200, three new items parsed and stored)")
    print(f"worker processes at that pace: {need / max(per_worker, 1e-9):,.0f}; cores: "
          f"{need * cpu_per_fetch:,.1f} for workers + {need * pg_per_fetch:,.1f} for PostgreSQL "
          f"(a re-poll answered 304 costs far less: this is the upper bound)")
    print(f"database: {per_source:,.0f} bytes per source x {target:,} = {target * per_source / 2**30:.1f} GiB, "
          f"plus {items_per_source} items kept per source = {items / 1e6:,.0f} M items x {per_item:,.0f} bytes "
          f"= {items * per_item / 2**30:,.0f} GiB: about {size / 2**30:,.0f} GiB")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=100_000)
    parser.add_argument("--hosts", type=int, default=2_000, help="loopback hosts the sources are spread over")
    parser.add_argument("--workers", type=int, default=2, help="hub worker processes")
    parser.add_argument("--compare", action="store_true", help="run 1 worker, then 2, and print the ratio")
    parser.add_argument("--seconds", type=float, default=180, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=30, help="seconds left out of the sustained rate")
    parser.add_argument("--interval", type=int, default=900, help="seconds between two polls of a source")
    parser.add_argument("--change-every", type=float, default=3600, help="seconds between a feed's new items")
    parser.add_argument("--concurrency", type=int, default=32, help="jobs per worker process at once")
    parser.add_argument("--latency", type=float, default=0, help="ms the feed server waits before each answer "
                        "(x 0.5-1.5), as remote hosts do; 0 answers at once and makes the workers CPU-bound")
    parser.add_argument("--sample", type=float, default=10, help="seconds between samples")
    parser.add_argument("--profile", type=Path, help="sample the first worker's stacks into this JSON file "
                        "(tests/benchmarks/stackprof.py; print it with stackprof.py --summary FILE)")
    parser.add_argument("--runs", type=parse_runs, help="runs as WORKERS:INTERVAL pairs, e.g. 1:300,2:300,2:1800 "
                        "(default: --workers at --interval; --compare: 1 and 2 workers at --interval)")
    parser.add_argument("--skip-config-timing", action="store_true", help="do not time hub.config.load")
    parser.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()) / "bench_scale_logs",
                        help="folder for the hub processes' logs (kept)")
    parser.add_argument("--estimate-sources", type=int, default=1_000_000, help="sources of the printed estimate")
    parser.add_argument("--estimate-interval", type=int, default=900, help="mean poll interval of the estimate, s")
    parser.add_argument("--items-per-source", type=int, default=100, help="items kept per source in the estimate")
    parser.add_argument("--keep", action="store_true", help="keep the databases (for a look afterwards)")
    args = parser.parse_args()
    if args.runs is None:
        args.runs = [(1, args.interval), (2, args.interval)] if args.compare else [(args.workers, args.interval)]
    return args


def main() -> None:
    args = parse_args()
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores, shared)")
    dbs = Databases()
    args.logs.mkdir(parents=True, exist_ok=True)
    print(f"logs of the hub processes: {args.logs}")
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        write_deployment(folder, "postgresql+psycopg://x@127.0.0.1/x", args.sources, args.hosts, 1, 1, 900)
        print(f"town configs for {args.sources:,} sources written in {time.perf_counter() - started:.2f} s")
        if not args.skip_config_timing:
            n, seconds = time_config_load(folder)
            print(f"hub.config.load of the biggest town ({n:,} sources): {seconds:.1f} s "
                  f"({seconds / n * 1000:.2f} ms per source; every hub process pays it at start)")
        feeds, feed_port = start_feeds(args.hosts, args.change_every, args.latency)
        try:
            setup = prepare_template(args, dbs, folder, feed_port, feeds.pid)
            results = [run(args, dbs, setup, workers, interval) for workers, interval in args.runs]
        finally:
            feeds.stdin.close()
            feeds.wait(timeout=30)
            if not args.keep:
                dbs.drop_all()
    for result in results:
        report(result)
    pairs = [(a, b) for a in results for b in results
             if a.workers == 1 and b.workers == 2 and a.interval == b.interval and a.rate() > 0]
    for one, two in pairs:
        print(f"\nthroughput 2 workers / 1 worker (every {one.interval} s): {two.rate():.1f} / {one.rate():.1f} "
              f"= {two.rate() / one.rate():.2f}x")
        if one.machine and two.machine:  # the workers share the cores with everything else
            per_one, per_two = (r.rate() / max(r.machine["busy"], 1e-9) for r in (one, two))
            print(f"the machine's busy CPU: {one.machine['busy']:.0%} -> {two.machine['busy']:.0%} "
                  f"({two.machine['busy'] / max(one.machine['busy'], 1e-9):.2f}x); fetches/s per busy share of the "
                  f"machine: {per_one:.0f} -> {per_two:.0f} ({per_two / per_one:.2f}x: 1.00x is linear in the CPU "
                  "there was)")
    estimate(max(results, key=lambda r: r.rate() / r.workers), args.estimate_sources, args.estimate_interval,
             args.items_per_source)


def parse_runs(text: str) -> list[tuple[int, int]]:
    """"1:300,2:300,2:1800" -> [(1, 300), (2, 300), (2, 1800)]: worker processes, interval s."""
    try:
        runs = [tuple(int(x) for x in part.split(":")) for part in text.split(",")]
    except ValueError:
        runs = []
    if not runs or any(len(r) != 2 or min(r) < 1 for r in runs):
        raise argparse.ArgumentTypeError(f"--runs {text!r}: expected WORKERS:SECONDS pairs, e.g. 1:300,2:300,2:1800")
    return runs  # type: ignore[return-value]


if __name__ == "__main__":
    main()
