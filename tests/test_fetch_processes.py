"""`hub fetch` as a real process with its worker processes: however it ends, nothing of it
stays behind, and a stopped run followed by a fresh one stores everything exactly once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub import config
from hub.store import Store
from tests.feedserver import FeedServer
from tests.schedtown import feed, write_config

# Processes started and killed: not about the date, so not in make test's second run (--clock-ahead).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
N = 60  # from 50 sources on, `hub fetch` parses and stores in worker processes

with_workers = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: `hub fetch` starts no workers")


class HubFetch:
    """`hub fetch -c <path>` in a session of its own, like a service or a terminal job.
    Its output goes to a file: the test must not hang on a pipe that orphans keep open."""

    def __init__(self, path: Path) -> None:
        self.log = path.with_suffix(".log")
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "hub", "fetch", "-c", str(path)], cwd=ROOT,
                                         env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), "COLUMNS": "200"},
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.seen: set[int] = set()  # every descendant ever seen

    def descendants(self) -> set[int]:
        found = _descendants(self.proc.pid)
        self.seen |= found
        return found

    def workers(self) -> set[int]:
        return {pid for pid in self.descendants() if "spawn_main" in _cmdline(pid)}

    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def cleanup(self) -> None:
        """Whatever happened: end the process, its group and every descendant seen."""
        for pid in self.seen | {self.proc.pid}:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the group is its own
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has ended; only its parent's wait is missing


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def town(tmp_path: Path, server: FeedServer, delays: list[float], name: str = "stadt") -> Path:
    """A config of len(delays) sources on one loopback server, source i answering after delays[i]."""
    for i in range(len(delays)):
        server.files.setdefault(f"s{i:03d}.xml", feed(f"s{i:03d}"))
    urls = {f"s{i:03d}": server.url(f"/files/s{i:03d}.xml" + (f"?delay={d}" if d else "")) for i, d in enumerate(delays)}
    return write_config(tmp_path / f"{name}.yaml", urls, store_url=f"sqlite:///{tmp_path}/hub.db",
                        schedule=", shutdown_grace: 0.5s",
                        # slow sources (30 s) must still be under way when a test stops the run,
                        # also when a loaded machine takes its time to start the workers
                        fetcher=", host_spacing: 0, max_per_host: 100, max_in_flight: 100, read_timeout: 60",
                        total_timeout=60)


def started(path: Path, server: FeedServer, in_flight: int) -> HubFetch:
    """`hub fetch`, once its workers are up and `in_flight` of its fetches are under way."""
    run = HubFetch(path)
    wait_until(lambda: len(run.workers()) >= 2 and server.in_flight >= in_flight, 30,
               f"two workers and {in_flight} fetches under way ({run.output()})")
    return run


@with_workers
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_process_of_a_killed_hub_fetch_survives_it(tmp_path, sig):
    """The parent is killed the way `kill`, systemd or a container runtime do (SIGTERM to it
    alone), or the way no handler sees (SIGKILL): within a few seconds no worker and no
    resource tracker of it is left."""
    with FeedServer() as server:
        run = started(town(tmp_path, server, [30] * N), server, in_flight=N)
        try:
            children = run.descendants()
            assert len(children) >= 3, [_cmdline(p) for p in children]  # two workers, the resource tracker
            os.kill(run.proc.pid, sig)
            code = run.wait()
            wait_until(lambda: not any(map(_alive, children)), 5,
                       f"{[_cmdline(p) for p in children if _alive(p)]} to end")
        finally:
            run.cleanup()
    if sig == signal.SIGTERM:
        output = " ".join(run.output().split())
        assert code == 143, output
        assert f"stopped by SIGTERM: 0 of {N} sources done; run again to fetch the rest" in output
    else:
        assert code == -signal.SIGKILL


@with_workers
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stopped_hub_fetch_keeps_what_it_fetched_and_the_next_one_stores_the_rest_once(tmp_path, sig):
    """Half the sources answer at once, half only after 30 s. Stopped while the slow half is
    under way, `hub fetch` stores what it has and exits (143, or 130 for Ctrl-C, which
    reaches the whole process group); the next `hub fetch` fetches the rest, and every
    entry is stored once."""
    fast, slow = [0.0] * (N // 2), [30.0] * (N // 2)
    with FeedServer() as server:
        run = started(town(tmp_path, server, fast + slow), server, in_flight=N // 2)
        try:
            wait_until(lambda: len(server.requests) >= N, 10, "every source asked")
            if sig == signal.SIGINT:
                os.killpg(run.proc.pid, signal.SIGINT)  # as the terminal does
            else:
                os.kill(run.proc.pid, signal.SIGTERM)
            code = run.wait()
            children = run.seen
            wait_until(lambda: not any(map(_alive, children)), 5, "every child to end")
        finally:
            run.cleanup()
        first = " ".join(run.output().split())
        assert code == (130 if sig == signal.SIGINT else 143), first
        assert f"stopped by {sig.name}: {N // 2} of {N} sources done; run again to fetch the rest" in first
        assert "Traceback" not in first

        again = subprocess.run([sys.executable, "-m", "hub", "fetch", "-c", str(town(tmp_path, server, [0.0] * N))],
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), "COLUMNS": "200"},
                               capture_output=True, text=True, timeout=60)
    second = " ".join(again.stdout.split())
    assert again.returncode == 0, again.stdout + again.stderr
    assert _totals(first) == (N // 2, 0, N)  # sources done, failed, new entries
    assert _totals(second) == (N, 0, N)  # the fast half answers 304 now
    settings = config.load(tmp_path / "stadt.yaml", env={})
    store = Store(settings.store.url, base_dir=settings.base_dir)
    try:
        statuses = store.source_statuses()
        assert len(statuses) == N and {s.status for s in statuses} == {"ok"} and {s.items for s in statuses} == {2}
        assert store.count_items() == 2 * N
    finally:
        store.close()


@with_workers
def test_ctrl_c_while_the_workers_start_up_is_a_clean_stop(tmp_path):
    """Ctrl-C reaches the workers too, and in their first second they are still importing:
    they must neither die of it with a traceback nor stay behind."""
    with FeedServer() as server:
        run = HubFetch(town(tmp_path, server, [30] * N))
        try:
            wait_until(lambda: run.workers(), 30, "a worker to be started")
            os.killpg(run.proc.pid, signal.SIGINT)
            code = run.wait()
            children = run.seen
            wait_until(lambda: not any(map(_alive, children)), 5, "every child to end")
        finally:
            run.cleanup()
    output = " ".join(run.output().split())
    assert code == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert f"stopped by SIGINT: 0 of {N} sources done" in output


def test_sigterm_during_the_image_downloads_leaves_the_images_waiting(tmp_path):
    """The fetch is done, an image host answers slowly: SIGTERM ends the download within
    the grace, records nothing half, and the entry still waits for its image."""
    with FeedServer() as server:
        image = server.url("/files/bild.jpg?delay=30")
        server.files["bild.jpg"] = b"\xff\xd8\xff"
        server.files["laden.xml"] = (
            '<?xml version="1.0"?><rss version="2.0"><channel><title>Laden</title><item><guid>e1</guid>'
            f'<title>Beitrag</title><enclosure url="{image}" type="image/jpeg" length="1"/></item></channel></rss>'
        ).encode()
        path = write_config(tmp_path / "laden.yaml", {"laden": server.url("/files/laden.xml")},
                            store_url=f"sqlite:///{tmp_path}/hub.db", schedule=", shutdown_grace: 0.5s")
        run = HubFetch(path)
        try:
            wait_until(lambda: server.in_flight, 30, "the image download")
            started = time.monotonic()
            os.kill(run.proc.pid, signal.SIGTERM)
            code = run.wait()
        finally:
            run.cleanup()
    output = " ".join(run.output().split())
    assert code == 143 and time.monotonic() - started < 10, output
    assert "stopped by SIGTERM after the fetch: all 1 sources done; 1 entries wait for their images" in output
    assert "images not downloaded (stopped by SIGTERM): 1 entries wait for their images (1 of this run)" in output
    settings = config.load(path, env={})
    store = Store(settings.store.url, base_dir=settings.base_dir)
    try:
        assert store.count_items() == 1 and store.records.media.count_pending() == 1
        assert store.records.media.lookup([image]) == {}
    finally:
        store.close()


def _totals(output: str) -> tuple[int, int, int]:
    """(sources, failed, new) from the last row of `hub fetch`'s table."""
    found = re.search(r"(\d+) sources │ (\d+) failed │ (\d+) │", output)
    assert found, output
    return tuple(map(int, found.groups()))  # type: ignore[return-value]
