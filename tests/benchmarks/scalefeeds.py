"""The fake feed web of bench_scale.py: one process answering on thousands of loopback
addresses, with one small RSS feed per source, as a town's merchants' sites would.

    python -m tests.benchmarks.scalefeeds HOSTS CHANGE_EVERY [LATENCY_MS]
        prints its port, runs until stdin closes

- `http://<host(h)>:<port>/f/<source>.xml`: the source's feed, three items. Each feed gets a
  new item every CHANGE_EVERY seconds, at its own phase (a hash of the name), so polls
  mostly meet an unchanged feed and now and then a new item, as real feeds do.
- A strong ETag per feed version; a conditional GET of the current version gets 304.
- LATENCY_MS (default 0): each answer waits 0.5 to 1.5 times this long, as a remote host's
  does (real feeds take 50 ms to seconds); the wait costs the server no CPU.
- `http://127.0.0.1:<port>/stats`: requests answered so far, as JSON {"ok": n, "not_modified": n}.

Feeds are made on request (a few hundred bytes each), so 100,000 sources cost no memory.
One listening socket per address (all of 127.0.0.0/8 is loopback on Linux), one port.
"""

from __future__ import annotations

import asyncio
import random
import socket
import sys
import time
import zlib
from email.utils import formatdate

from aiohttp import web


def host(i: int) -> str:
    """Loopback address of host i: 127.1.0.1, 127.1.0.2, ... (250 per third octet)."""
    return f"127.1.{i // 250}.{1 + i % 250}"


def version(source: str, now: float, change_every: float) -> int:
    """Which version of the feed is current: it moves every `change_every` seconds, at a
    phase of its own, so the feeds do not all change in the same second."""
    phase = zlib.crc32(source.encode()) % 10_000 / 10_000 * change_every
    return int((now + phase) // change_every)


def feed(source: str, v: int) -> bytes:
    items = "".join(
        f"<item><title>{source}: Angebot {n}</title><link>https://example.org/{source}/{n}</link>"
        f"<guid>{source}-{n}</guid><pubDate>{formatdate(n * 3600.0, usegmt=True)}</pubDate>"
        f"<description>Neu bei {source}: Angebot Nummer {n}, nur diese Woche.</description></item>"
        for n in range(v, v - 3, -1))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{source}</title>'
            f"<link>https://example.org/{source}</link><description>Feed</description>{items}</channel></rss>").encode()


class FeedWeb:
    def __init__(self, change_every: float, latency: float = 0.0) -> None:
        self.change_every = change_every
        self.latency = latency
        self.ok = 0
        self.not_modified = 0

    async def serve_feed(self, request: web.Request) -> web.Response:
        source = request.match_info["source"]
        if self.latency:
            await asyncio.sleep(self.latency * random.uniform(0.5, 1.5))
        v = version(source, time.time(), self.change_every)
        etag = f'"{source}-{v}"'
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        self.ok += 1
        return web.Response(body=feed(source, v), headers={"ETag": etag, "Content-Type": "application/rss+xml"})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": self.ok, "not_modified": self.not_modified})


def _bound(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    return sock


async def main(hosts: int, change_every: float, latency: float = 0.0) -> None:
    feeds = FeedWeb(change_every, latency)
    app = web.Application()
    app.router.add_get("/f/{source}.xml", feeds.serve_feed)
    app.router.add_get("/stats", feeds.stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    first = _bound("127.0.0.1", 0)
    port = first.getsockname()[1]
    for sock in [first] + [_bound(host(i), port) for i in range(hosts)]:
        await web.SockSite(runner, sock, backlog=512).start()
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the bench closes it
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.0))
