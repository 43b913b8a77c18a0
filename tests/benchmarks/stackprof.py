"""A small sampling profiler for a whole process, every thread included (cProfile sees only
the main thread, and a `hub worker` does its database work in `asyncio.to_thread`).

    python tests/benchmarks/stackprof.py OUT.json -m hub worker -c deploy.yaml

runs the module as `python -m` would and, every INTERVAL seconds, records each thread's
stack. At exit (SIGTERM ends a worker cleanly) it writes per function: samples on top of the
stack (self) and samples anywhere in it (inclusive), for stacks that were working, not
waiting; waiting stacks (a select, a lock, an idle pool thread, psycopg waiting for the
server) are counted apart by what they wait in. `summarize(OUT.json)` prints the top lines.
"""

from __future__ import annotations

import atexit
import json
import runpy
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

INTERVAL = 0.005
# Leaf functions that mean "this thread waits" (file name ends with, function name).
WAITS = {("selectors.py", "select"), ("threading.py", "wait"), ("queue.py", "get"), ("thread.py", "_worker"),
         ("waiting.py", "wait_c"), ("waiting.py", "wait_select"), ("waiting.py", "wait_epoll"),
         ("waiting.py", "wait_poll"), ("waiting.py", "wait_async"), ("threading.py", "_wait_for_tstate_lock"),
         ("base_events.py", "_run_once"), ("connection.py", "wait"), ("connection_async.py", "wait")}


OWN = ("hub/", "schedules/")


def _innermost_own(frame) -> str:
    """The innermost frame of the project's own code (hub/, schedules/) in a stack."""
    while frame is not None:
        key = _key(frame)
        if key.startswith(OWN):
            return key
        frame = frame.f_back
    return "(none)"


def _key(frame) -> str:
    code = frame.f_code
    return f"{code.co_filename.rsplit('site-packages/', 1)[-1].replace(str(Path.cwd()) + '/', '')}:{code.co_name}"


class Sampler:
    def __init__(self) -> None:
        self.self_counts: Counter[str] = Counter()
        self.inclusive: Counter[str] = Counter()
        self.waits: Counter[str] = Counter()
        self.waits_under: Counter[str] = Counter()  # waiting stacks by the project's innermost function
        self.samples = 0
        self._stop = threading.Event()

    def run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(INTERVAL):
            for ident, frame in sys._current_frames().items():  # noqa: SLF001 - a profiler's job
                if ident == me:
                    continue
                leaf = frame.f_code
                if (Path(leaf.co_filename).name, leaf.co_name) in WAITS:
                    self.waits[_key(frame)] += 1
                    self.waits_under[_innermost_own(frame)] += 1
                    continue
                self.samples += 1
                self.self_counts[_key(frame)] += 1
                seen = set()
                while frame is not None:
                    key = _key(frame)
                    if key not in seen:
                        seen.add(key)
                        self.inclusive[key] += 1
                    frame = frame.f_back

    def dump(self, path: Path) -> None:
        self._stop.set()
        path.write_text(json.dumps({"interval": INTERVAL, "samples": self.samples,
                                    "self": self.self_counts.most_common(80),
                                    "inclusive": self.inclusive.most_common(150),
                                    "waits": self.waits.most_common(20),
                                    "waits_under": self.waits_under.most_common(30)}, indent=1))


def summarize(path: Path, top: int = 30) -> None:
    data = json.loads(path.read_text())
    total = max(1, data["samples"])
    print(f"{total} working samples ({total * data['interval']:.1f} s of thread time)")
    for title in ("self", "inclusive"):
        print(f"-- {title}")
        for key, n in data[title][:top]:
            print(f"{n / total:6.1%}  {key}")
    print("-- waiting in")
    for key, n in data["waits"][:10]:
        print(f"{n:6d}  {key}")
    print("-- waiting, by the project's innermost function")
    for key, n in data.get("waits_under", [])[:15]:
        print(f"{n:6d}  {key}")


def main() -> None:
    out = Path(sys.argv[1])
    if sys.argv[2] != "-m":
        raise SystemExit("usage: stackprof.py OUT.json -m module [args...]")
    module = sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    sampler = Sampler()
    threading.Thread(target=sampler.run, daemon=True, name="stackprof").start()
    atexit.register(sampler.dump, out)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM ends like Ctrl-C: atexit runs
    started = time.monotonic()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        print(f"stackprof: {time.monotonic() - started:.0f} s sampled into {out}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--summary"]:
        summarize(Path(sys.argv[2]))
    else:
        main()
