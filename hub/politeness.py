"""Politeness towards the sites the hub reads.

`HostLimiter` gates every retrieve: at most `per_host` requests in flight to one host, request
starts to one host at least `spacing` seconds apart, and at most `total` in flight overall.
Hosts are the host names of the configured source URLs; a redirect to another host counts
against the first one, which is good enough for politeness.

The limits hold per process. Several `hub run` processes on one store each keep their own,
but the leases in the store make sure they never fetch the same source at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit


def host_of(url: str | None) -> str | None:
    """The host an http(s) URL talks to; None for file: URLs and sources without a URL."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return None
    return parts.hostname


class _Host:
    def __init__(self, per_host: int) -> None:
        self.slots = asyncio.Semaphore(per_host)
        self.last_start = -math.inf  # monotonic time the last request to the host started


class HostLimiter:
    """One per process. Keeps a little state per host, so its size is bounded by the hosts
    in the config."""

    def __init__(self, per_host: int = 2, spacing: float = 0.5, total: int = 16) -> None:
        self._per_host = per_host
        self._spacing = spacing
        self._total = asyncio.Semaphore(total)
        self._hosts: dict[str, _Host] = {}

    @asynccontextmanager
    async def slot(self, url: str | None) -> AsyncIterator[None]:
        """Hold a place for one request to `url` while the block runs."""
        host = host_of(url)
        if host is None:
            async with self._total:
                yield
            return
        state = self._hosts.setdefault(host, _Host(self._per_host))
        # The host's place first: sources queued for one busy host must not sit on global
        # places that other hosts could use meanwhile.
        async with state.slots:
            await self._start(state)
            try:
                yield
            finally:
                self._total.release()

    async def _start(self, state: _Host) -> None:
        """Wait for the host's spacing and a global place. The spacing is checked again once
        the global place is held: another request to the host may have started meanwhile."""
        while True:
            wait = state.last_start + self._spacing - time.monotonic()
            if wait > 0:  # (not sleep(0) regardless: a turn of the event loop per request)
                await asyncio.sleep(wait)
            await self._total.acquire()
            if time.monotonic() >= state.last_start + self._spacing:
                state.last_start = time.monotonic()
                return
            self._total.release()
