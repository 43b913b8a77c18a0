"""`hub run -c deploy.yaml` on the embedded tier (issue 18): one process serves every town
(by the Host header) and runs one embedded scheduler per town, and follows `hub towns
reload` without a restart: a town added gets its sources fetched and its host served, a town
changed gets its scheduler restarted, a town removed gets its scheduler stopped.

Everything runs against a loopback feed server; each town's feeds carry the town's name in
their titles, and the source ids are the same in every town, so a record on the wrong
town's page would show."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import pytest
from typer.testing import CliRunner

from hub.cli import app as cli
from hub.cli.towns import register
from hub.store.townregistry import TownRegistry
from hub.towns import load_deployment
from schedules.townsrunner import TownsRunner
from tests.feedserver import FeedServer
from tests.runtimetown import feeds, town_config

# Timeless: its feeds are dated relative to now and it checks nothing calendar-bound.
pytestmark = pytest.mark.timeless

ROOT = Path(__file__).resolve().parent.parent
TOWNS = ("musterstadt", "beispielheim", "neustadt")


def write_town(folder: Path, town: str, server: FeedServer, n: int = 2, slow: bool = False) -> Path:
    urls = {f"q{i}": server.url(f"/files/{town}-{i}.xml") for i in range(n)}  # the same ids in every town
    if slow:  # a site that answers after 30 s: its fetch is in flight when the town stops
        urls["slow"] = server.url(f"/files/{town}-0.xml?delay=30")
    return town_config(folder / f"{town}.yaml", town, f"http://{town}.test", urls)


def held_leases(folder: Path, town: str) -> list[tuple]:
    """The town's sources some process holds a lease on, and whether each was fetched."""
    with sqlite3.connect(folder / "data" / "towns" / town / "hub.db") as conn:
        return conn.execute("SELECT id, last_fetch_at FROM sources WHERE lease_owner IS NOT NULL").fetchall()


def write_deployment(folder: Path, towns: list[str], runtime: str | None = None,
                     store_url: str = "sqlite:///data/deployment.db") -> Path:
    lines = [f"store: {{url: '{store_url}'}}"] + ([f"runtime: {runtime}"] if runtime else [])
    lines += ["towns:"] + [f"  {town}: {town}.yaml" for town in towns]
    path = folder / "deploy.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fetches(server: FeedServer) -> Counter:
    """Feed requests per town."""
    return Counter(r.path.split("/files/")[1].split("-")[0] for r in server.requests if r.path.startswith("/files/"))


def page(port: int, host: str, path: str = "/") -> tuple[int, str]:
    try:
        with urlopen(Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host}), timeout=5) as answer:
            return answer.status, answer.read().decode()
    except HTTPError as exc:
        return exc.code, exc.read().decode()
    except (URLError, OSError):
        return 0, ""


def wait_for(condition, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds:g} s for {what}"
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shows(port: int, town: str) -> bool:
    """The town's page lists its first feed's records."""
    status, text = page(port, f"{town}.test")
    return status == 200 and f"{town}0 0" in text and f"{town}1 0" in text


@pytest.mark.slow
def test_hub_run_of_a_deployment_fetches_and_serves_every_town_and_follows_towns_reload(tmp_path: Path) -> None:
    files = {name: body for town in TOWNS for name, body in feeds(town, 2).items()}
    with FeedServer(files=files) as server:
        for town in TOWNS[:2]:
            write_town(tmp_path, town, server)
        path = write_deployment(tmp_path, list(TOWNS[:2]))
        port = free_port()
        log_path = tmp_path / "run.log"
        with hub_run(path, port, log_path) as run:
            for town in TOWNS[:2]:
                wait_for(lambda: shows(port, town), f"{town}'s records on its page")
            for town in TOWNS[:2]:  # each town's pages show its own records only
                for other in TOWNS:
                    if other != town:
                        assert other not in page(port, f"{town}.test")[1], f"{town}'s page shows {other}"
            assert page(port, "neustadt.test")[0] == 404
            assert set(fetches(server)) == set(TOWNS[:2])

            write_town(tmp_path, "neustadt", server)
            write_deployment(tmp_path, list(TOWNS))
            result = CliRunner().invoke(cli, ["towns", "reload", "-c", str(path)])
            assert result.exit_code == 0, result.output
            wait_for(lambda: shows(port, "neustadt"), "the added town's records on its page")
            assert fetches(server)["neustadt"] == 2
            assert "musterstadt" not in page(port, "neustadt.test")[1]
            assert run.poll() is None
    text = log_path.read_text()
    assert "Traceback" not in text, text
    for town in TOWNS:  # every town's scheduler stopped cleanly
        assert re.search(rf"scheduler \S+/{town} stopped", text), text
    assert run.returncode == 0


@pytest.mark.slow
@pytest.mark.postgres
def test_hub_run_of_a_procrastinate_deployment_serves_only_and_says_so(tmp_path: Path, pg_url: str) -> None:
    """With `runtime: procrastinate` the workers fetch (`hub worker`); `hub run` serves."""
    with FeedServer(files=feeds("musterstadt", 2)) as server:
        write_town(tmp_path, "musterstadt", server)
        path = write_deployment(tmp_path, ["musterstadt"], runtime="procrastinate", store_url=pg_url)
        port = free_port()
        log_path = tmp_path / "run.log"
        with hub_run(path, port, log_path) as run:
            wait_for(lambda: page(port, "musterstadt.test")[0] == 200, "the town's page")
            time.sleep(1.5)  # the embedded tier would have fetched by now (its fetch tick: every second)
            assert fetches(server) == Counter()
    text = log_path.read_text()
    assert "runtime procrastinate: this process serves the towns' pages only" in text, text
    assert "Traceback" not in text and "scheduler" not in text, text
    assert run.returncode in (0, 130)  # as `hub serve`, which ends a Ctrl-C with 130


@contextmanager
def hub_run(path: Path, port: int, log_path: Path) -> Iterator[subprocess.Popen]:
    """`hub run -c path` on `port`, its output in `log_path`; ended with Ctrl-C (SIGINT)."""
    with log_path.open("w") as log:
        run = subprocess.Popen([sys.executable, "-m", "hub", "run", "-c", str(path), "--port", str(port)],
                               cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log,
                               stderr=subprocess.STDOUT)
        try:
            yield run
        finally:
            run.send_signal(signal.SIGINT)
            run.wait(timeout=30)


async def until(condition, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds:g} s for {what}"
        await asyncio.sleep(0.05)


async def test_the_runner_starts_restarts_and_stops_town_schedulers_as_towns_reload_says(tmp_path: Path) -> None:
    files = {name: body for town in TOWNS for name, body in feeds(town, 3).items()}
    with FeedServer(files=files) as server:
        write_town(tmp_path, "musterstadt", server)
        write_town(tmp_path, "beispielheim", server, slow=True)
        path = write_deployment(tmp_path, list(TOWNS[:2]))
        deployment = load_deployment(path)
        register(deployment)
        runner = TownsRunner(deployment, registry=TownRegistry(deployment.store_url), poll_seconds=3600)
        await runner.start()
        try:
            assert sorted(runner.towns) == ["beispielheim", "musterstadt"]
            await until(lambda: fetches(server) == Counter(musterstadt=2, beispielheim=3) and server.in_flight == 1,
                        "both towns' fetches, beispielheim's slow one still in flight")
            assert ("slow", None) in held_leases(tmp_path, "beispielheim")
            before = runner.towns["musterstadt"].scheduler

            # an edit not yet checked by `hub towns reload` changes nothing
            write_town(tmp_path, "musterstadt", server, n=3)
            assert not await runner.refresh()
            assert runner.towns["musterstadt"].scheduler is before

            # reload: musterstadt changed (a third source), beispielheim removed, neustadt added
            write_town(tmp_path, "neustadt", server)
            write_deployment(tmp_path, ["musterstadt", "neustadt"])
            gone = runner.towns["beispielheim"].scheduler
            register(load_deployment(path))
            assert await runner.refresh()
            assert sorted(runner.towns) == ["musterstadt", "neustadt"]
            assert runner.towns["musterstadt"].scheduler is not before
            assert gone._aps.state == before._aps.state == 0  # APScheduler's STATE_STOPPED
            await until(lambda: fetches(server)["neustadt"] == 2 and fetches(server)["musterstadt"] == 3,
                        "the new town's sources and the changed town's new one")
            assert held_leases(tmp_path, "beispielheim") == []  # the removed town's fetch was handed back
            assert fetches(server)["beispielheim"] == 3
            assert not await runner.refresh()  # the same generation: nothing to do
        finally:
            await runner.stop()
            runner.registry.close()
        assert runner.towns == {}


def test_towns_stores_opened_side_by_side_in_threads_all_migrate(tmp_path: Path) -> None:
    """`hub run` opens a town's store for its scheduler while the web opens it for a first
    request, in two threads; alembic keeps a migration in module globals, so the store
    migrates one at a time (it failed with "table items already exists" or KeyError 'config')."""
    from concurrent.futures import ThreadPoolExecutor

    from hub.store import Store

    def open_and_close(i: int) -> None:
        Store(f"sqlite:///{tmp_path / f'town{i % 3}.db'}").close()  # two threads per file, three files

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(open_and_close, range(6)))
