"""Counting benchmark (issue 17): what counting views adds to a page request.

    .venv/bin/python tests/benchmarks/bench_counting.py [--requests 3000] [--records 300]

A store is filled through the real write path (`Store.apply`: items, records, revisions) with
`--records` posts of a few merchants; the real app (`create_app`) answers resident pages in
this process through its ASGI interface (no network, so the counting is not lost in noise).
Two measurements, each as p50 / p99 / max over `--requests` requests:

1. The counting middleware on its own: `CountingMiddleware` around an app that answers at
   once, against that app alone, per path kind (a record's page, a merchant's page, a search,
   a feed, a static file). The difference is all that counting adds to a request: the
   classification of the path, the count in memory, the wrapped `send`.
2. Whole page requests to the real app with counting and without (the same app with the
   middleware taken out), interleaved so that both see the same machine load. The p99
   difference is what a resident could notice; on a busy machine it is noisy, which is why
   (1) is the number that answers "under 1 ms at p99".

The counts are written by the background thread in batches; one flush of everything counted
is timed too (off the request path).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hub import config, stats  # noqa: E402
from hub.models import Item, Parsed  # noqa: E402
from hub.moderation import rules_from  # noqa: E402
from hub.pipeline import source_specs  # noqa: E402
from hub.store import FetchOutcome, Store  # noqa: E402
from hub.web.admin.counting import CountingMiddleware  # noqa: E402
from hub.web.app import create_app  # noqa: E402

MERCHANTS = ("baeckerei", "buchladen", "verein", "kino")


def town(folder: Path, records: int) -> tuple[config.Settings, Store]:
    path = folder / "config.yaml"
    merchants = "".join(f"  - id: {m}\n    name: {m.title()}\n    sources: [{{connector: rss, url: 'https://{m}.example/feed'}}]\n"
                        for m in MERCHANTS)
    path.write_text(f"store: {{url: 'sqlite:///{folder}/hub.db', data_dir: '{folder}/data'}}\nmerchants:\n{merchants}")
    settings = config.load(path, env={})
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    store.records.configure(rules_from(settings))
    now = datetime.now(timezone.utc)
    for m in MERCHANTS:
        items = [Item(source_id=f"{m}-rss", external_id=f"{m}-{n}", merchant_id=m, title=f"{m} Beitrag {n} Angebot",
                      summary=f"Neuigkeit {n} von {m}", content_html=f"<p>Neuigkeit {n}</p>",
                      content_text=f"Neuigkeit {n}", url=f"https://{m}.example/{n}",
                      published=now - timedelta(hours=n)) for n in range(records // len(MERCHANTS))]
        store.apply([FetchOutcome(f"{m}-rss", now, "ok", parsed=Parsed(tuple(items), complete=True))])
    return settings, store


async def call(app, path: str) -> float:
    """Seconds for one GET of `path` through `app`'s ASGI interface, body read to the end."""
    raw, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": raw, "raw_path": raw.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"Mozilla/5.0 Bench")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    sent = asyncio.Event()

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.body" and not message.get("more_body"):
            sent.set()

    started = time.perf_counter()
    await app(scope, receive, send)
    return time.perf_counter() - started


async def instant(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": b"<p>ok</p>"})


def summary(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"p50 {statistics.median(ordered) * 1e3:7.3f} ms  p99 {p99 * 1e3:7.3f} ms  max {ordered[-1] * 1e3:7.3f} ms"


def p99(seconds: list[float]) -> float:
    return sorted(seconds)[int(len(seconds) * 0.99) - 1]


async def main(requests: int, records: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings, store = town(Path(folder), records)
        record_id = store.records.list(limit=1)[0].id
        paths = {"record page": f"/items/{record_id}", "merchant page": "/m/baeckerei", "search": "/search?q=Angebot",
                 "feed": "/feed.atom?merchant=baeckerei", "static file": "/static/style.css"}

        print(f"1. the counting middleware alone, {requests:,} requests per path")
        counting = CountingMiddleware(instant, settings, store)
        worst = 0.0
        for name, path in paths.items():
            bare, counted = [], []
            for _ in range(requests):
                bare.append(await call(instant, path))
                counted.append(await call(counting, path))
            added = p99(counted) - p99(bare)
            worst = max(worst, added)
            print(f"   {name:14s} without {summary(bare)}\n   {'':14s} with    {summary(counted)}   "
                  f"added at p99: {added * 1e3:6.3f} ms")
        print(f"   => counting adds at most {worst * 1e3:.3f} ms to a request at the 99th percentile (target < 1 ms)")

        print(f"\n2. whole requests to the real app ({records:,} records), interleaved")
        with_counting = create_app(settings, store)
        without = create_app(settings, store)
        without.user_middleware = [m for m in without.user_middleware if m.cls is not CountingMiddleware]
        async with with_counting.router.lifespan_context(with_counting), without.router.lifespan_context(without):
            for name in ("record page", "merchant page", "search"):
                path = paths[name]
                for _ in range(20):  # warm both (templates, caches)
                    await call(with_counting, path)
                    await call(without, path)
                a, b = [], []
                for _ in range(requests // 3):
                    b.append(await call(without, path))
                    a.append(await call(with_counting, path))
                print(f"   {name:14s} without {summary(b)}\n   {'':14s} with    {summary(a)}   "
                      f"difference at p99: {(p99(a) - p99(b)) * 1e3:6.3f} ms")
        pending = stats.pending(store)
        started = time.perf_counter()
        written = stats.flush(store)
        print(f"\n3. one flush: {pending:,} counts in {written:,} counters written in "
              f"{(time.perf_counter() - started) * 1e3:.1f} ms (in the background thread, not on a request)")
        store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--records", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.records))
