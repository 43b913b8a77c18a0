"""When to fetch a source next: a pure function of what is known about it.

The interval follows how often the source really posts (7 days / posts per week), clamped
to [min_interval, max_interval]. Posts are counted over the last four weeks, or over as much
of them as the source's known posts reach back (at least a week): a feed that carries only
its last five days must not look four times quieter than it is. Without new posts the
count only falls and the span only grows, so a silent source drifts to the maximum. An `every:` in the
config replaces that estimate. While WebSub pushes, polling is only a fallback and slows
down by `push_slowdown`. Errors back off from `min_interval`, doubling per consecutive
failure up to `max_backoff`; a source is never given up. A random jitter of ±`jitter` keeps sources that
were fetched together from staying in step. Last, what the server asked for raises the
result: the feed's <ttl> and Cache-Control/Expires up to `max_interval`, Retry-After up to
`max_backoff` (a server that says "not before" is never asked earlier).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WEEK = timedelta(days=7)
HISTORY = timedelta(days=28)  # how far back posting frequency is counted


@dataclass(frozen=True)
class Bounds:
    """The policy's knobs (`schedule:` in the config)."""

    min_interval: timedelta = timedelta(minutes=5)
    max_interval: timedelta = timedelta(hours=24)
    max_backoff: timedelta = timedelta(days=7)
    jitter: float = 0.1
    push_slowdown: float = 12


@dataclass(frozen=True)
class Facts:
    """What is known about a source right after a fetch."""

    recent_posts: int = 0  # items published within HISTORY before now
    span: timedelta = HISTORY  # how far back the source's known posts reach (capped to HISTORY)
    every: timedelta | None = None  # the config's `every:`
    failures: int = 0  # consecutive failed fetches, this one included
    ttl: timedelta | None = None  # the feed's own <ttl>
    not_before: datetime | None = None  # Retry-After, Cache-Control max-age or Expires
    push_live: bool = False  # a WebSub hub delivers this source's updates


@dataclass(frozen=True)
class Plan:
    at: datetime
    interval: timedelta
    reason: str


def plan(facts: Facts, now: datetime, bounds: Bounds, rand: float) -> Plan:
    """When to fetch next and why.

    Args:
        facts: the source's situation after this fetch.
        now: the time of this decision (aware).
        bounds: the configured limits.
        rand: a uniform draw from [0, 1) for the jitter; 0.5 means none.
    Returns:
        the next fetch time, the interval to it and a short reason for `hub sources`.
    """
    interval, reasons = _usual(facts, bounds)
    low, high = _limits(facts, bounds)
    if facts.push_live:
        interval *= bounds.push_slowdown
        reasons.append(f"WebSub push live, polled {bounds.push_slowdown:g}x less")
    if facts.failures:  # from the shortest interval: a new source's first error is retried soon
        interval = low * 2 ** min(facts.failures - 1, 20)  # 2**20 x 1 s is past any cap already
        reasons = [f"backoff after {facts.failures} failed fetch{'es' if facts.failures > 1 else ''}"]
    interval = _clamp(interval * (1 + bounds.jitter * (2 * rand - 1)), low, high)
    if facts.ttl and facts.ttl > interval:
        interval = min(facts.ttl, high)
        reasons.append(f"feed ttl {describe(facts.ttl)}")
    at = now + interval
    if facts.not_before and facts.not_before > at:
        at = min(facts.not_before, now + bounds.max_backoff)
        reasons.append("server's Retry-After" if facts.failures else "server's Cache-Control/Expires")
    return Plan(at, at - now, "; ".join(reasons))


def posts_per_week(recent_posts: int, span: timedelta = HISTORY) -> float:
    """Posts per week, over `span` (at least a week, at most HISTORY)."""
    return recent_posts / (max(WEEK, min(HISTORY, span)) / WEEK)


def describe(delta: timedelta) -> str:
    """A duration as people write it in the config, to its two largest units: 5m, 1m 30s, 1d 6h."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    first = next((i for i, (n, _) in enumerate(units) if n), len(units))
    return " ".join(f"{n}{unit}" for n, unit in units[first:first + 2] if n) or "0s"


def _usual(facts: Facts, bounds: Bounds) -> tuple[timedelta, list[str]]:
    """The interval without errors, hints or jitter: `every`, else posting frequency."""
    if facts.every:
        return facts.every, [f"every {describe(facts.every)} (config)"]
    rate = posts_per_week(facts.recent_posts, facts.span)
    if rate == 0:
        return bounds.max_interval, [f"no posts in {HISTORY.days} days"]
    estimate = WEEK / rate
    interval = _clamp(estimate, bounds.min_interval, bounds.max_interval)
    note = "" if interval == estimate else f", clamped to {describe(interval)}"
    return interval, [f"posts {rate:.1f}/week{note}"]


def _limits(facts: Facts, bounds: Bounds) -> tuple[timedelta, timedelta]:
    """The range the jittered interval is kept in. `every` widens it to include itself;
    errors raise the ceiling to `max_backoff`."""
    low, high = bounds.min_interval, bounds.max_interval
    if facts.every:
        low, high = min(low, facts.every), max(high, facts.every)
    if facts.failures:
        high = max(high, bounds.max_backoff)
    return low, high


def _clamp(value: timedelta, low: timedelta, high: timedelta) -> timedelta:
    return max(low, min(high, value))
