"""The per-host limiter on its own: concurrency per host and overall, spacing between starts."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

from hub.politeness import HostLimiter, host_of


async def test_requests_to_one_host_are_spaced_and_capped_and_the_total_is_capped():
    limiter = HostLimiter(per_host=2, spacing=0.05, total=5)
    starts: dict[str | None, list[float]] = defaultdict(list)
    active, peak = Counter(), Counter()

    async def request(url: str) -> None:
        async with limiter.slot(url):
            host = host_of(url)
            starts[host].append(time.monotonic())
            active[host] += 1
            active["all"] += 1
            peak[host] = max(peak[host], active[host])
            peak["all"] = max(peak["all"], active["all"])
            await asyncio.sleep(0.08)
            active[host] -= 1
            active["all"] -= 1

    urls = [f"https://{h}.example/feed{i}" for h in ("a", "b", "c") for i in range(5)] + ["file:feeds/x.xml"] * 3
    await asyncio.gather(*(request(u) for u in urls))
    for host in ("a.example", "b.example", "c.example"):
        gaps = [b - a for a, b in zip(starts[host], starts[host][1:])]
        assert min(gaps) >= 0.049 and peak[host] == 2
    assert peak["all"] == 5 and len(starts[None]) == 3  # file: URLs count only against the total


def test_hosts_come_from_http_urls_only():
    assert host_of("https://Baeckerei.Example:8443/feed") == "baeckerei.example"
    assert host_of("file:feeds/a.xml") is None and host_of(None) is None
