"""`hub fetch` as a real process with its worker processes: however it ends, nothing of it
stays behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.feedserver import FeedServer
from tests.schedtown import feed, write_config

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
                                         env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
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
                        fetcher=", host_spacing: 0, max_per_host: 100, max_in_flight: 100")


def started(path: Path, server: FeedServer, in_flight: int) -> HubFetch:
    """`hub fetch`, once its workers are up and `in_flight` of its fetches are under way."""
    run = HubFetch(path)
    wait_until(lambda: len(run.workers()) >= 2 and server.in_flight >= in_flight, 30,
               f"two workers and {in_flight} fetches under way ({run.output()})")
    return run


@with_workers
@pytest.mark.parametrize("sig", [signal.SIGKILL], ids=["SIGKILL"])
def test_no_process_of_a_killed_hub_fetch_survives_it(tmp_path, sig):
    """The parent is killed the way no handler sees (SIGKILL): within a few seconds no
    worker and no resource tracker of it is left."""
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
    assert code == -signal.SIGKILL
