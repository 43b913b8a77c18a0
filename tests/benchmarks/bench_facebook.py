"""Facebook benchmark: N pages of M posts each from the fake Graph API, through the real fetch
-> parse -> store path.

    .venv/bin/python tests/benchmarks/bench_facebook.py [--pages 500] [--posts 100] [--runs 1]

Prints, for a first sync into an empty SQLite store and for an incremental sync with nothing
new: the wall time, posts per second and Graph calls per page, with the CPU of the fetching
process, of the worker processes and of the fake Graph API (a separate process on the same
cores). Targets (issue 12): one call per page when nothing changed; a first sync at least as
fast per post as feed ingest (`bench_ingest.py`, docs/performance.md).

The posts are generated (seeded): German text of one to five sentences with hashtags and
sometimes a link, a post every two days or so, one in three with a photo, one in ten an
album of two to five, one in ten a shared link, some with a place or an event, as a page
of a shop or club looks; Graph-shaped, with signed image URLs. The fake Graph API serves
them as Meta does: 100 per page at most, `next` until the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hub import config  # noqa: E402
from hub.http import Fetcher  # noqa: E402
from hub.pipeline import Pipeline, source_specs  # noqa: E402
from hub.store import Store  # noqa: E402
from tests.benchmarks.bench_ingest import cpu_seconds, workers  # noqa: E402
from tests.benchmarks.corpus import WORDS, sentence  # noqa: E402

SERVER = """
import sys
from tests.benchmarks.bench_facebook import populate
from hub.demo.graphapi import FakeGraph
graph = FakeGraph()
populate(graph, int(sys.argv[1]), int(sys.argv[2]))
print(graph.start().port, flush=True)
sys.stdin.read()
"""
TAGS = ("angebot", "musterstadt", "wochenmarkt", "frischgebacken", "verein", "advent", "regional", "heimat")


def page_id(i: int) -> str:
    return f"{104500000000000 + i}"


def token(i: int) -> str:
    return f"EAABbench{i:05d}" + "x" * 40


def populate(graph, pages: int, posts: int) -> None:
    """`pages` pages of `posts` posts each, generated from seeds (page i is always the same)."""
    for i in range(pages):
        rng = random.Random(i)
        page = graph.add_page(page_id(i), token(i), f"Händler {i}")
        for j in range(posts):
            text = " ".join(sentence(rng, rng.randint(6, 22)) for _ in range(rng.randint(1, 5)))
            if rng.random() < 0.2:
                text += f" Mehr unter https://merchant{i}.example/beitrag/{j}?utm_source=facebook"
            text += "".join(f" #{t}" for t in rng.sample(TAGS, rng.randint(0, 3)))
            kind = rng.random()
            page.post(text, age=timedelta(days=2 * j, hours=rng.randint(0, 20)),
                      photos=[graph.photo(None, 960, 720)] if kind < 0.33 else [],
                      album=[graph.photo(None, 720, 960) for _ in range(rng.randint(2, 5))] if 0.33 <= kind < 0.43
                      else [],
                      share=(f"https://merchant{i}.example/blog/{j}", sentence(rng, 4), sentence(rng, 10))
                      if 0.43 <= kind < 0.53 else None,
                      event=(f"https://www.facebook.com/events/{900000 + j}/", sentence(rng, 3))
                      if 0.53 <= kind < 0.56 else None,
                      place={"name": f"{rng.choice(WORDS)} Musterstadt", "location": {
                          "street": "Marktplatz 1", "zip": "12345", "city": "Musterstadt"}} if rng.random() < 0.05
                      else None)


def start_server(pages: int, posts: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(pages), str(posts)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def write_config(folder: Path, port: int, pages: int) -> Path:
    lines = ["platform: {name: Bench}", "store: {url: 'sqlite:///bench.db'}",
             "fetcher: {allow_private_networks: true}", f"facebook: {{graph_url: 'http://127.0.0.1:{port}'}}",
             "merchants:"]
    for i in range(pages):
        lines += [f"  - id: m{i}", f"    name: Händler {i}", "    sources:",
                  f'      - {{connector: facebook, id: s{i}, page_id: "{page_id(i)}", access_token: "{token(i)}"}}']
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def graph_calls(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_fake/calls") as response:
        return json.load(response)["requests"]


async def sync(path: Path, port: int, server_pid: int) -> dict[str, float]:
    settings = config.load(path)
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    sources = settings.sources()
    figures: dict[str, float] = {}
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        pipeline = Pipeline(settings, store, fetcher)
        await pipeline.start_workers()
        gc.freeze()
        pool = workers()
        for run in ("first", "again"):
            calls, started, cpu = graph_calls(port), time.perf_counter(), cpu_seconds(pool, server_pid)
            reports = await pipeline.run(sources)
            figures[run] = time.perf_counter() - started
            figures[f"{run}_calls"] = graph_calls(port) - calls
            figures[f"{run}_cpu_main"], figures[f"{run}_cpu_workers"], figures[f"{run}_cpu_server"] = (
                after - before for after, before in zip(cpu_seconds(pool, server_pid), cpu))
            failed = [r for r in reports if r.status == "failed"]
            if failed:
                raise SystemExit(f"{len(failed)} syncs failed, e.g. {failed[0].source_id}: {failed[0].error}")
            figures[f"{run}_new"] = sum(r.new for r in reports)
            figures[f"{run}_read"] = sum(r.new + r.changed + r.unchanged for r in reports)
            figures[f"{run}_changed"] = sum(r.changed + r.gone for r in reports)
            figures[f"{run}_unchanged_pages"] = sum(r.status == "not_modified" for r in reports)
        pipeline.close()
        gc.unfreeze()
    store.close()
    return figures


def report(pages: int, posts: int, f: dict[str, float]) -> None:
    print(f"pages:                  {pages} with {posts} posts each")
    print(f"first sync:             {f['first']:.2f} s, {f['first_new']:.0f} posts, "
          f"{f['first_new'] / f['first']:,.0f} posts/s, {f['first_calls'] / pages:.2f} Graph calls per page")
    print(f"  CPU:                  {f['first_cpu_main']:.2f} s fetching process, {f['first_cpu_workers']:.2f} s "
          f"workers ({f['first_cpu_server']:.2f} s fake Graph API)")
    print(f"incremental, no news:   {f['again']:.2f} s, {f['again_calls'] / pages:.2f} Graph calls per page; "
          f"{f['again_unchanged_pages']:.0f} pages as they were (nothing parsed), {f['again_read']:.0f} posts "
          f"parsed again ({f['again_changed']:.0f} changed or gone)")
    print(f"  CPU:                  {f['again_cpu_main']:.2f} s fetching process, {f['again_cpu_workers']:.2f} s "
          f"workers ({f['again_cpu_server']:.2f} s fake Graph API)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1, help="repeat with a fresh store; prints medians")
    args = parser.parse_args()
    proc, port = start_server(args.pages, args.posts)
    runs = []
    try:
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                path = write_config(Path(tmp), port, args.pages)
                runs.append(asyncio.run(sync(path, port, proc.pid)))
            report(args.pages, args.posts, runs[-1])
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    if len(runs) > 1:
        for name, key in (("first sync", "first"), ("incremental, no news", "again")):
            values = sorted(f[key] for f in runs)
            print(f"{name + ':':24}median {statistics.median(values):.2f} s, range {values[0]:.2f} to "
                  f"{values[-1]:.2f} s over {len(values)} runs")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
