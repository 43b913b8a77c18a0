"""A cache of rendered resident answers, invalidated when records change (issue 14, part 8).

Residents' pages, feeds and the public API read many records and render many of them; the
same few URLs are asked for over and over. `PageCache` is an ASGI middleware that keeps the
finished answer of such a GET (status 200, no cookie) in memory, keyed by path, query and
the language the request asks for, and hands it out again while

- the store's data version is the one the answer was made from: every change of a record
  (new, merged, edited, approved, hidden, removed) writes a revision, so the newest
  revision id is a version that any writer's commit moves, in this process or another;
- and it is younger than `ttl`: what time alone changes (an event starting, an offer
  expiring, "vor 3 Minuten") is at most that stale.

The version costs one query by primary key per request, so an answer is never older than
the last commit; `ttl` is measured on the wall clock, so a moved clock (tests) expires
answers too. A conditional request whose ETag still matches gets its 304 from the cache. Anything else (the admin area, hooks, other
methods, cookies set, large bodies) passes through untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# What residents read; never the admin area, hooks or media.
_EXACT = frozenset({"/", "/events", "/offers", "/search", "/embed", "/embed.css", "/sitemap.xml", "/robots.txt",
                    "/feed.atom", "/feed.rss", "/feed.json", "/events.ics"})
# The feeds out date a version only once the second it was first served in is over
# (hub.web.feeds): an answer without its Last-Modified yet is kept for that second only
# (a burst of readers of a new version still costs one rendering).
_DATED = frozenset({"/feed.atom", "/feed.rss", "/feed.json", "/events.ics"})
_PREFIXES = ("/m/", "/items/", "/sitemap", "/api/v1/")
_NEVER = ("/api/v1/admin",)
_VARY = (b"accept-language", b"accept")  # request headers an answer may depend on
MAX_BODY = 2 * 1024 * 1024


def cacheable(path: str) -> bool:
    """Whether answers for `path` may be cached: resident pages, feeds and the public API."""
    if path.startswith(_NEVER):
        return False
    return path in _EXACT or path.startswith(_PREFIXES)


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    etag: bytes | None
    version: Any
    made: float
    for_this_second: bool = False  # an undated feed: good until the wall clock's second ends


class PageCache:
    """ASGI middleware. `version()` returns the store's data version; it blocks, so it runs
    in a thread unless `in_thread` is False (SQLite answers it in microseconds, less than
    the hand-over to a thread costs)."""

    def __init__(self, app: ASGIApp, version: Callable[[], Any], *, max_entries: int = 1024,
                 ttl: float = 60.0, in_thread: bool = True) -> None:
        self.app, self.version, self.in_thread = app, version, in_thread
        self.max_entries, self.ttl = max_entries, ttl
        self.entries: OrderedDict[tuple, _Answer] = OrderedDict()
        self.filling: dict[tuple, asyncio.Event] = {}  # answers being rendered: one rendering per burst
        self.hits = self.misses = 0

    def clear(self) -> None:
        """Forget every answer (the config changed: names, quotas, the look)."""
        self.entries.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or not cacheable(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if b"authorization" in headers or b"cookie" in headers:  # someone signed in: not a resident's view
            await self.app(scope, receive, send)
            return
        key = (scope["path"], scope.get("query_string", b""), *(headers.get(h, b"") for h in _VARY))
        version = await run_in_threadpool(self.version) if self.in_thread else self.version()
        by_date = b"if-modified-since" in headers and b"if-none-match" not in headers
        # by_date: the app dates its answers; an ETag decides first when both are sent (RFC 9110)
        if not by_date and await self._replayed(key, version, headers, scope, send):
            return
        self.misses += 1
        if scope["method"] == "HEAD" or b"if-none-match" in headers or b"if-modified-since" in headers:
            await self.app(scope, receive, send)  # no body to keep (the app answers 304 itself)
            return
        filling = self.filling.get(key)
        if filling is not None:  # another request renders this answer right now: wait for it
            await filling.wait()
            if await self._replayed(key, version, headers, scope, send):
                return
        self.filling[key] = done = asyncio.Event()
        try:
            await self._fill(key, version, scope["path"] in _DATED, scope, receive, send)
        finally:
            if self.filling.get(key) is done:
                del self.filling[key]
            done.set()

    async def _replayed(self, key: tuple, version: Any, headers: dict, scope: Scope, send: Send) -> bool:
        """Answer from the cache if it holds a usable answer for `key`."""
        answer = self.entries.get(key)
        if answer is None or answer.version != version or not 0 <= time.time() - answer.made < self.ttl:
            return False
        if answer.for_this_second and int(time.time()) != int(answer.made):
            return False
        self.entries.move_to_end(key)
        self.hits += 1
        await _replay(answer, headers.get(b"if-none-match"), scope["method"] == "HEAD", send)
        return True

    async def _fill(self, key: tuple, version: Any, dated: bool, scope: Scope, receive: Receive, send: Send) -> None:
        started: dict[str, Any] = {}
        chunks: list[bytes] = []
        keep = True

        async def capture(message: Message) -> None:
            nonlocal keep
            if message["type"] == "http.response.start":
                started.update(message)
                names = {name.lower() for name, _ in message.get("headers", [])}
                keep = message["status"] == 200 and b"set-cookie" not in names
            elif message["type"] == "http.response.body" and keep:
                chunks.append(message.get("body", b""))
                keep = sum(map(len, chunks)) <= MAX_BODY
                if not message.get("more_body", False) and keep:
                    self._keep(key, version, started, b"".join(chunks), dated)
            await send(message)

        await self.app(scope, receive, capture)

    def _keep(self, key: tuple, version: Any, start: Message, body: bytes, dated: bool) -> None:
        headers = list(start.get("headers", []))
        etag = next((value for name, value in headers if name.lower() == b"etag"), None)
        undated = dated and not any(name.lower() == b"last-modified" for name, _ in headers)
        self.entries[key] = _Answer(start["status"], headers, body, etag, version, time.time(), undated)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)


async def _replay(answer: _Answer, if_none_match: bytes | None, head: bool, send: Send) -> None:
    if answer.etag is not None and if_none_match is not None and _matches(if_none_match, answer.etag):
        kept = [(n, v) for n, v in answer.headers if n.lower() in (b"etag", b"cache-control", b"last-modified",
                                                                     b"vary", b"content-security-policy")]
        await send({"type": "http.response.start", "status": 304, "headers": kept})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    await send({"type": "http.response.body", "body": b"" if head else answer.body})


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    """RFC 9110's weak comparison: `W/"x"` and `"x"` are the same tag."""
    def bare(tag: bytes) -> bytes:
        return tag.strip().removeprefix(b"W/")

    return if_none_match.strip() == b"*" or bare(etag) in {bare(t) for t in if_none_match.split(b",")}

