"""Several real `hub run` processes on one store: nothing twice, nothing lost, clean stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.request import urlopen

import pytest

from hub import config
from hub.pipeline import source_specs
from hub.store import Store, utcnow
from hub.store.scheduling import ScheduleStore
from schedules.publishing import prepare_channels
from tests.feedserver import FeedServer
from tests.schedtown import feed, write_config

# Processes started and killed: not about the date, so not in make test's second run (--clock-ahead).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FAST = ", tick: 0.2s, publish_tick: 0.3s, batch: 20, lease: 3s, shutdown_grace: 0.5s"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubRun:
    """`hub run -c <path>` in its own process."""

    def __init__(self, path: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "hub", "run", "-c", str(path), "--port", str(self.port)],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})

    def wait_ready(self) -> None:
        wait_until(lambda: self._healthy(), 20)

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, self.proc.communicate()[0]
        try:
            return urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out = self.proc.communicate(timeout=20)[0]
        return self.proc.returncode, out


def wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def town_config(tmp_path: Path, server: FeedServer, n: int, db_url: str, name: str, delay: float) -> Path:
    for i in range(n):
        server.files.setdefault(f"s{i:03d}.xml", feed(f"s{i:03d}"))
    urls = {f"s{i:03d}": server.url(f"/files/s{i:03d}.xml?delay={delay}") for i in range(n)}
    channel = f"  - {{id: archiv, renderer: jsonlines, path: '{tmp_path}/archiv.jsonl'}}"
    return write_config(tmp_path / f"{name}.yaml", urls, store_url=db_url, channels=channel, schedule=FAST,
                        fetcher=f", host_spacing: 0, max_per_host: 8, contact_url: 'https://{name}.example'")


def open_store(path: Path, due_in: float | None = None) -> Store:
    """The store the processes share; with `due_in`, every source falls due that much later."""
    settings = config.load(path, env={})
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    prepare_channels(settings, store)
    if due_in is not None:
        ids = [s.id for _, s in settings.sources()]
        ScheduleStore(store).prepare_sources(ids, utcnow() + timedelta(seconds=due_in), timedelta(0))
    return store


def archived(tmp_path: Path) -> Counter:
    path = tmp_path / "archiv.jsonl"
    lines = path.read_text().split("\n")[:-1] if path.exists() else []  # a line being written is not done
    return Counter(json.loads(line)["item"]["external_id"] for line in lines)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    return f"sqlite:///{tmp_path}/hub.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_two_hub_runs_on_one_store_fetch_each_source_once_and_publish_each_item_once(tmp_path, db_url):
    with FeedServer() as server:
        paths = [town_config(tmp_path, server, 200, db_url, name, delay=0.02) for name in ("eins", "zwei")]
        store = open_store(paths[0], due_in=5)  # both are up before anything is due
        runs = [HubRun(p) for p in paths]
        try:
            for run in runs:
                run.wait_ready()
            wait_until(lambda: len(archived(tmp_path)) == 400, 40)
            time.sleep(1.5)  # more ticks on both: still nothing fetched or sent twice
        finally:
            results = [run.stop() for run in runs]
        requests = list(server.requests)
    assert [code for code, _ in results] == [0, 0], results
    per_path = Counter(r.path for r in requests)
    assert len(per_path) == 200 and set(per_path.values()) == {1}
    per_process = Counter(r.headers["user-agent"].split("+")[1] for r in requests)
    assert set(per_process) == {"https://eins.example)", "https://zwei.example)"}, per_process
    assert set(archived(tmp_path).values()) == {1}
    assert {s.status for s in store.source_statuses()} == {"ok"}
    store.close()


def started_mid_fetch(tmp_path: Path, server: FeedServer, n: int, delay: float, busy: int
                      ) -> tuple[Path, Store, HubRun]:
    """One `hub run` on a fresh SQLite store, once `busy` of its fetches are under way."""
    path = town_config(tmp_path, server, n, f"sqlite:///{tmp_path}/hub.db", "eins", delay)
    store = open_store(path)
    run = HubRun(path)
    wait_until(lambda: server.in_flight >= busy, 60)  # a loaded machine starts `hub run` slowly
    return path, store, run


def test_a_killed_hub_run_loses_no_work(tmp_path):
    with FeedServer() as server:
        path, store, first = started_mid_fetch(tmp_path, server, 40, delay=0.5, busy=1)
        first.stop(signal.SIGKILL)
        plans = ScheduleStore(store)
        held = 40 - len(plans.due_sources(utcnow(), 100))
        assert held > 0  # the dead process still holds leases ...
        second = HubRun(path)
        try:
            wait_until(lambda: len(archived(tmp_path)) == 80, 30)  # ... which pass, and the work is done
        finally:
            code, output = second.stop()
        per_path = Counter(r.path.split("?")[0] for r in server.requests)
    assert code == 0, output
    assert len(per_path) == 40 and max(per_path.values()) <= 2
    assert set(archived(tmp_path).values()) == {1}
    assert {s.status for s in store.source_statuses()} == {"ok"} and store.count_items() == 80
    store.close()


def test_sigterm_stops_taking_work_and_hands_back_what_it_could_not_finish(tmp_path):
    with FeedServer() as server:
        _, store, run = started_mid_fetch(tmp_path, server, 10, delay=30, busy=8)
        started = time.monotonic()
        code, output = run.stop(signal.SIGTERM)
    assert code == 0, output
    assert time.monotonic() - started < 10  # grace 0.5 s, not the 30 s the fetches would take
    assert "unfinished fetches abandoned" in output
    assert len(ScheduleStore(store).due_sources(utcnow(), 100)) == 10  # leases handed back, all due
    assert {s.status for s in store.source_statuses()} == {"new"} and store.count_items() == 0
    store.close()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: no worker processes")
def test_no_worker_of_a_killed_hub_run_survives_it(tmp_path):
    """`hub run` keeps its pool of worker processes for its whole life; killed where no
    handler sees it (SIGKILL, the OOM killer), it leaves none of them behind."""
    from tests.test_fetch_processes import _alive, _cmdline, _descendants

    with FeedServer() as server:
        for i in range(60):  # from 50 sources in one fetch on, the workers parse and store
            server.files[f"s{i:03d}.xml"] = feed(f"s{i:03d}")
        urls = {f"s{i:03d}": server.url(f"/files/s{i:03d}.xml?delay=30") for i in range(60)}
        path = write_config(tmp_path / "eins.yaml", urls, store_url=f"sqlite:///{tmp_path}/hub.db",
                            schedule=", tick: 0.2s, batch: 100, shutdown_grace: 0.5s",
                            fetcher=", host_spacing: 0, max_per_host: 100, max_in_flight: 100")
        # All due at one instant, so one tick claims them all and that fetch starts the pool
        # (new sources alone would fall due a tenth of a second apart, over several ticks).
        open_store(path, due_in=2).close()
        run = HubRun(path)
        children: set[int] = set()
        try:
            wait_until(lambda: server.in_flight >= 60, 30)
            children = _descendants(run.proc.pid)
            assert sum("spawn_main" in _cmdline(pid) for pid in children) >= 2, [_cmdline(p) for p in children]
            run.proc.kill()
            run.proc.wait(timeout=10)
            wait_until(lambda: not any(map(_alive, children)), 5)
        finally:
            for pid in children | {run.proc.pid}:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            run.proc.communicate(timeout=10)
