"""The polling policy as properties: bounds, drift to the maximum, backoff, server hints."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from schedules.policy import HISTORY, Bounds, Facts, describe, plan

# Not about the date (a pure function of the facts and the `now` it is given): left out of make test's second run (--clock-ahead).
pytestmark = pytest.mark.timeless

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
B = Bounds()
rand = st.floats(min_value=0, max_value=1, exclude_max=True)
posts = st.integers(min_value=0, max_value=50_000)
failures = st.integers(min_value=0, max_value=200)
seconds = st.integers(min_value=1, max_value=30 * 86400)


def optional_seconds():
    return st.none() | seconds.map(lambda s: timedelta(seconds=s))


@given(posts, rand, optional_seconds(), st.booleans())
def test_without_errors_the_interval_stays_within_the_bounds(recent, r, ttl, push):
    p = plan(Facts(recent_posts=recent, ttl=ttl, push_live=push), NOW, B, r)
    assert B.min_interval <= p.interval <= B.max_interval
    assert p.at == NOW + p.interval and p.reason


@given(posts, failures, rand, optional_seconds(), st.none() | seconds, st.booleans())
def test_whatever_happens_the_interval_stays_between_min_and_max_backoff(recent, fails, r, ttl, hint, push):
    not_before = NOW + timedelta(seconds=hint) if hint else None
    p = plan(Facts(recent_posts=recent, failures=fails, ttl=ttl, not_before=not_before, push_live=push), NOW, B, r)
    assert B.min_interval <= p.interval <= B.max_backoff


@given(st.integers(min_value=0, max_value=5000), rand)
def test_fewer_posts_never_mean_more_frequent_polling(recent, r):
    busier = plan(Facts(recent_posts=recent + 1), NOW, B, r)
    quieter = plan(Facts(recent_posts=recent), NOW, B, r)
    assert quieter.interval >= busier.interval


@given(rand)
def test_a_silent_source_drifts_to_the_maximum(r):
    """Posts age out of the counting window one by one, so the interval only grows, and
    once nothing is left in the window it is the maximum (give or take the jitter)."""
    post_times = [NOW - timedelta(hours=6 * n) for n in range(40)]  # busy once, silent since NOW
    previous = timedelta(0)
    for day in range(0, 30):
        now = NOW + timedelta(days=day)
        recent = sum(1 for t in post_times if now - HISTORY <= t <= now)
        interval = plan(Facts(recent_posts=recent, span=now - min(post_times)), now, B, r).interval
        assert interval >= previous
        previous = interval
    assert recent == 0
    assert B.max_interval * (1 - B.jitter) <= previous <= B.max_interval
    assert "no posts" in plan(Facts(recent_posts=0), now, B, r).reason


@given(posts, rand, st.integers(min_value=1, max_value=100))
def test_backoff_is_monotone_and_capped(recent, r, fails):
    first = plan(Facts(recent_posts=recent, failures=fails), NOW, B, r)
    then = plan(Facts(recent_posts=recent, failures=fails + 1), NOW, B, r)
    assert first.interval <= then.interval <= B.max_backoff
    assert "backoff" in then.reason


def test_backoff_doubles_and_reaches_seven_days():
    intervals = [plan(Facts(recent_posts=50_000, failures=n), NOW, B, 0.5).interval for n in range(1, 14)]
    assert intervals[:3] == [timedelta(minutes=5), timedelta(minutes=10), timedelta(minutes=20)]
    assert intervals[-1] == timedelta(days=7)


@given(st.integers(min_value=1, max_value=7 * 86400), failures, posts, rand)
def test_a_retry_after_is_never_cut_short(wait, fails, recent, r):
    p = plan(Facts(recent_posts=recent, failures=max(1, fails), not_before=NOW + timedelta(seconds=wait)),
             NOW, B, r)
    assert p.at >= NOW + timedelta(seconds=wait)


def test_a_retry_after_longer_than_the_interval_decides():
    p = plan(Facts(recent_posts=50_000, failures=1, not_before=NOW + timedelta(seconds=600)), NOW, B, 0.5)
    assert p.at == NOW + timedelta(seconds=600) and "Retry-After" in p.reason


def test_ttl_and_cache_control_raise_the_interval_up_to_the_maximum():
    busy = Facts(recent_posts=50_000)
    assert plan(busy, NOW, B, 0.5).interval == B.min_interval
    assert plan(Facts(recent_posts=50_000, ttl=timedelta(hours=2)), NOW, B, 0.5).interval == timedelta(hours=2)
    assert plan(Facts(recent_posts=50_000, ttl=timedelta(days=3)), NOW, B, 0.5).interval == B.max_interval
    cached = plan(Facts(recent_posts=50_000, not_before=NOW + timedelta(hours=1)), NOW, B, 0.5)
    assert cached.interval == timedelta(hours=1) and "Cache-Control" in cached.reason


@given(st.integers(min_value=1, max_value=500), st.integers(min_value=0, max_value=60 * 86400), rand)
def test_a_short_history_is_not_mistaken_for_a_quiet_source(recent, span_s, r):
    """Posts counted over what the feed reaches back to (a week at least, four at most)."""
    span = timedelta(seconds=span_s)
    short = plan(Facts(recent_posts=recent, span=span), NOW, B, r).interval
    assert short <= plan(Facts(recent_posts=recent, span=span + timedelta(days=1)), NOW, B, r).interval
    assert short <= plan(Facts(recent_posts=recent), NOW, B, r).interval


def test_posting_frequency_sets_the_interval():
    p = plan(Facts(recent_posts=8), NOW, B, 0.5)  # 2 a week
    assert p.interval == B.max_interval and "2.0/week, clamped to 1d" in p.reason  # 3.5 days, clamped
    p = plan(Facts(recent_posts=4 * 7 * 24), NOW, B, 0.5)  # one an hour
    assert p.interval == timedelta(hours=1) and "168.0/week" in p.reason
    p = plan(Facts(recent_posts=60, span=timedelta(days=5)), NOW, B, 0.5)  # 60 in the five days it shows
    assert p.interval == timedelta(hours=2.8) and "60.0/week" in p.reason


@given(seconds, rand, failures)
def test_every_overrides_the_estimate_and_the_bounds(every_s, r, fails):
    every = timedelta(seconds=every_s)
    p = plan(Facts(recent_posts=3, every=every), NOW, B, r)
    assert every * (1 - B.jitter) <= p.interval <= every * (1 + B.jitter)
    assert "every" in p.reason


def test_push_slows_polling_down():
    p = plan(Facts(recent_posts=4 * 7 * 24, push_live=True), NOW, B, 0.5)
    assert p.interval == timedelta(hours=12) and "WebSub" in p.reason


def test_durations_read_as_in_the_config():
    assert [describe(timedelta(seconds=s)) for s in (90, 300, 3614, 86400 + 6 * 3600, 86400 + 59, 0)] == \
        ["1m 30s", "5m", "1h", "1d 6h", "1d", "0s"]
