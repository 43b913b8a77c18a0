"""Counting what residents look at (issue 17), as an ASGI middleware around the whole app.

It looks only at the path, the query's `q` and `merchant`, and the answer's status: a
record's page (`/items/{id}`), a merchant's page (`/m/{id}`), the listings, a search and
its term, a feed, an API request. Nothing about the person is read, except that a request
whose user agent calls itself a robot, or a browser's prefetch, is not counted (neither is
kept). Outermost, so answers from the page cache are counted too. `/go/{record}` counts its
clicks itself. The counts go to `hub.stats`, in memory; they are written in batches.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub import stats

_LISTINGS = frozenset({"/", "/events", "/offers", "/embed"})
_FEEDS = {"feed.atom": "atom", "feed.rss": "rss", "feed.json": "json", "events.ics": "ics"}
_ROBOT = re.compile(rb"bot|crawl|spider|slurp|preview|monitor", re.IGNORECASE)
_COUNTED = frozenset({200, 304})


class CountingMiddleware:
    def __init__(self, app: ASGIApp, settings, store) -> None:
        self.app = app
        self.tally = stats.tally_for(store, settings.platform.timezone)
        self.merchants = frozenset(m.id for m in settings.merchants)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._flushing_at_shutdown(receive), send)
            return
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        what = classify(scope["path"], scope.get("query_string", b""), self.merchants)
        if what is None:
            await self.app(scope, receive, send)
            return
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, sending)
        if status in _COUNTED and (status == 200 or what[0] in ("feed_request", "api_request")) \
                and not _robot_or_prefetch(scope["headers"]):
            for event, kwargs in ((what[0], what[1]), *what[2:]):
                self.tally.count(event, **kwargs)


    def _flushing_at_shutdown(self, receive: Receive) -> Receive:
        """The server shuts the app down: write what was counted (the store is still open)."""
        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.tally.flush)
            return message

        return receiving


def classify(path: str, query: bytes, merchants: frozenset[str] = frozenset()) -> tuple | None:
    """(event, its count's arguments[, another (event, arguments)]) for a path worth
    counting, else None. Cheap: most requests (static files, images) leave at the first test.
    A `merchant=` filter counts for its merchant if it is one of `merchants`."""
    if path.startswith(("/static/", "/media/")):
        return None
    if path in _LISTINGS:
        return "page_view", {"subject": path, "merchant": _merchant(query, merchants), "channel": "web"}
    if path.startswith("/items/"):
        rest = path[7:]
        return ("record_view", {"record": int(rest), "channel": "web"}) if rest.isdigit() else None
    if path.startswith("/m/"):
        rest = path[3:].rstrip("/")
        if "/" in rest:
            tail = rest.rsplit("/", 1)[1]
            return ("feed_request", {"subject": _FEEDS[tail], "merchant": rest.split("/", 1)[0], "channel": "feed"}) \
                if tail in _FEEDS else None
        return ("merchant_view", {"merchant": rest, "channel": "web"}) if rest else None
    if path == "/search":
        term = _term(query)
        return ("search", {"subject": term, "channel": "web"}) if term else None
    feed = _FEEDS.get(path[1:])
    if feed:
        return "feed_request", {"subject": feed, "merchant": _merchant(query, merchants), "channel": "feed"}
    if path.startswith("/api/v1/") and not path.startswith("/api/v1/admin"):
        endpoint = path[8:].split("/", 1)[0]
        counted = ("api_request", {"subject": endpoint, "channel": "api"})
        if endpoint == "search" and (term := _term(query)):
            return (*counted, ("search", {"subject": term, "channel": "api"}))
        return counted
    return None


def _term(query: bytes) -> str | None:
    values = parse_qs(query.decode("utf-8", "replace")).get("q")
    return stats.search_term(values[0]) if values else None


def _merchant(query: bytes, merchants: frozenset[str]) -> str | None:
    if b"merchant=" not in query:
        return None
    values = parse_qs(query.decode("utf-8", "replace")).get("merchant", [])
    return values[0] if len(values) == 1 and values[0] in merchants else None


def _robot_or_prefetch(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"user-agent" and _ROBOT.search(value):
            return True
        if name in (b"purpose", b"sec-purpose") and b"prefetch" in value:
            return True
    return False
