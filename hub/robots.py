"""robots.txt, as RFC 9309 says, and the pace of page fetches per host.

Connectors that crawl (the website connector reads a start page, the item pages it links
to and sitemap pages) ask `Robots.allows` before every page and `Robots.pace` between
pages of one host. robots.txt is fetched through the hub's own fetcher (its User-Agent,
SSRF guard, size cap and timeouts) and parsed with protego, which matches paths the way
RFC 9309 and Google do (`*` and `$` wildcards, the longest match wins, Allow wins a tie);
the standard library's parser does not.

What an answer means (RFC 9309, 2.3.1):
- 2xx: the rules in it; 3xx is followed by the fetcher;
- 4xx (no robots.txt, or access refused to it): everything is allowed;
- 5xx, a timeout, a refused connection: the site is taken as disallowing everything for
  now, so nothing of it is fetched; the source fails with a transient error and is tried
  again later. Such a failure is not cached. An error no retry fixes (an address the SSRF
  guard refuses, a host that does not exist) is raised as it is: the page would fail alike.

Rules are cached per origin (scheme, host and port) for `TTL` seconds (RFC 9309 says at
most 24 hours), in this process: `hub run` reads each robots.txt a few times a day, and
every source of one host shares it. The pace (the robots.txt `Crawl-delay`, or its
`Request-rate`, and at least the fetcher's `host_spacing`) is kept per host across the
sources of the process too, so two sources on one site do not double its load.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from protego import Protego

from hub.errors import FetchError, NotModified

if TYPE_CHECKING:
    from hub.http import Fetcher

__all__ = ["AGENT", "Robots", "RobotsRules", "origin_of", "robots"]

AGENT = "MusterHub"  # the product token of the fetcher's User-Agent (hub.http.user_agent)
TTL = 6 * 3600.0  # seconds a robots.txt is trusted before it is read again
PARSE_BYTES = 512 * 1024  # RFC 9309 asks parsers to read at least 500 KiB; the rest is ignored
FETCH_BYTES = 2 * 1024 * 1024  # a longer robots.txt is not a robots.txt
MAX_ORIGINS = 10_000  # cache entries kept; the oldest go first


@dataclass(frozen=True)
class RobotsRules:
    """One origin's robots.txt, parsed; `parser` None: everything is allowed (no file)."""

    origin: str
    parser: Protego | None
    read_at: float  # time.monotonic() when it was fetched
    status: str  # what was found, for messages: "HTTP 404 (no robots.txt)", "robots.txt"

    def allows(self, url: str, agent: str = AGENT) -> bool:
        return self.parser is None or self.parser.can_fetch(url, agent)

    def delay(self, agent: str = AGENT) -> float | None:
        """Seconds between two requests that the file asks for, if it does."""
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(agent)
        rate = self.parser.request_rate(agent)
        if rate is not None and rate.requests:
            delay = max(delay or 0.0, rate.seconds / rate.requests)
        return float(delay) if delay is not None else None

    def sitemaps(self) -> list[str]:
        return list(self.parser.sitemaps) if self.parser is not None else []


def origin_of(url: str) -> str | None:
    """`https://host:port` of an http(s) URL (robots.txt applies per scheme, host and port),
    None for other URLs (file: pages have no robots.txt)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{parts.hostname.lower()}:{port}"


@dataclass
class Robots:
    """The process's robots.txt cache and per-host pace (see the module's docstring)."""

    ttl: float = TTL
    _rules: dict[str, RobotsRules] = field(default_factory=dict)
    _next_slot: dict[str, float] = field(default_factory=dict)  # host -> monotonic time of its next free slot

    async def rules(self, fetcher: Fetcher, url: str) -> RobotsRules | None:
        """The rules for `url`'s origin, fetched if not cached; None for a non-http URL.

        Raises:
            FetchError: robots.txt could not be read (5xx, network): crawling is not allowed
                until it can be (transient).
        """
        origin = origin_of(url)
        if origin is None:
            return None
        cached = self._rules.get(origin)
        if cached is not None and time.monotonic() - cached.read_at < self.ttl:
            return cached
        rules = await _fetch(fetcher, origin)
        self._remember(rules)
        return rules

    async def pace(self, url: str, delay: float) -> None:
        """Wait until a request to `url`'s host may start, `delay` seconds after the one
        before it (from any source of this process), and book that moment. Slots are booked
        before sleeping, so concurrent callers queue up instead of starting together."""
        host = urlsplit(url).hostname
        if not host or delay <= 0:
            return
        now = time.monotonic()
        slot = max(now, self._next_slot.get(host, now))
        self._next_slot[host] = slot + delay
        if len(self._next_slot) > MAX_ORIGINS:
            self._next_slot = {h: t for h, t in self._next_slot.items() if t > now}
        if slot > now:
            await asyncio.sleep(slot - now)

    def clear(self) -> None:
        """Forget every cached file and pace (tests; a config reload)."""
        self._rules.clear()
        self._next_slot.clear()

    def _remember(self, rules: RobotsRules) -> None:
        self._rules.pop(rules.origin, None)
        self._rules[rules.origin] = rules
        while len(self._rules) > MAX_ORIGINS:
            self._rules.pop(next(iter(self._rules)))


async def _fetch(fetcher: Fetcher, origin: str) -> RobotsRules:
    url = f"{origin}/robots.txt"
    try:
        response = await fetcher.get(url, max_bytes=FETCH_BYTES, accept="text/plain, */*;q=0.5",
                                     raise_for_status=False)
    except NotModified:  # never asked conditionally; a server that says so anyway has no file for us
        return RobotsRules(origin, None, time.monotonic(), "HTTP 304")
    except FetchError as exc:
        if not exc.transient:  # a blocked address, no such host, broken TLS: the page would fail the same way
            raise
        raise FetchError(f"robots.txt of {origin} could not be read ({exc.message}); the hub reads no page "
                         "of a site whose robots.txt it cannot read (RFC 9309)",
                         hint="usually temporary; the hub tries again later", transient=True) from exc
    if response.status >= 500:
        raise FetchError(f"robots.txt of {origin} answered HTTP {response.status}; the hub reads no page "
                         "of a site whose robots.txt it cannot read (RFC 9309)",
                         hint="usually temporary; the hub tries again later", transient=True,
                         status=response.status)
    if response.status >= 400:
        return RobotsRules(origin, None, time.monotonic(), f"HTTP {response.status} (no robots.txt)")
    text = response.body[:PARSE_BYTES].decode("utf-8", "replace").lstrip("\ufeff")
    return RobotsRules(origin, Protego.parse(text), time.monotonic(), "robots.txt")


robots = Robots()  # the process's one cache: every crawl of every source shares it
