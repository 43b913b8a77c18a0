"""A channel's pace (issue 16): `pace: {per_hour: 10}` spreads 50 new records evenly over 5 hours
of fake time on every kind of channel (never more than 10 in an hour, never two within 6
minutes), and quiet hours hold everything back, which then goes out at the pace, not in a
burst. The publish tick runs every minute of fake time, as `hub run` would."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from tests.channelfakes import (SECRET, Entry, FakeMastodon, FakeTelegram, FakeWordPress, WebhookReceiver,
                                channel_config, channel_town, ingest, rss)
from tests.clock import ManualClock
from tests.feedserver import FeedServer

PACE = "pace: {per_hour: 10}"


def fake_and_channel(kind: str):
    if kind == "webhook":
        fake = WebhookReceiver()
        return fake, lambda: (f'  - {{id: paced, renderer: webhook, url: "{fake.url("/hook")}", '
                              f'secret: "{SECRET}", {PACE}}}')
    if kind == "mastodon":
        fake = FakeMastodon()
        return fake, lambda: (f'  - {{id: paced, renderer: mastodon, base_url: "{fake.url()}", '
                              f"access_token: mastodon-token, {PACE}}}")
    if kind == "telegram":
        fake = FakeTelegram()
        return fake, lambda: (f'  - {{id: paced, renderer: telegram, bot_token: "{fake.token}", chat_id: "@stadt", '
                              f'api_url: "{fake.url()}", {PACE}}}')
    fake = FakeWordPress()
    return fake, lambda: (f'  - {{id: paced, renderer: wordpress, base_url: "{fake.url()}", username: hub, '
                          f'app_password: "abcd EFGH ijkl MNOP qrst UVWX", tags: false, {PACE}}}')


def fifty(base: str) -> bytes:
    return rss([Entry(f"n{i}", f"Neuigkeit {i}", f"Text der Neuigkeit {i}.", age=timedelta(minutes=i))
                for i in range(50)], base)


async def run_minutes(t, clock, minutes: int) -> list[datetime]:
    """Tick once a minute; the moment of every delivery."""
    sent = []
    for _ in range(minutes):
        clock.advance(60)
        for report in await t.publisher.tick():
            sent += [clock.now()] * report.sent
    return sent


@pytest.mark.parametrize("kind", ["webhook", "mastodon", "telegram", "wordpress"])
async def test_ten_an_hour_spread_fifty_records_over_five_hours(kind, tmp_path):
    fake, channel = fake_and_channel(kind)
    with FeedServer() as feeds, fake:
        feeds.files["laden.xml"] = fifty(feeds.url("").rstrip("/"))
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), channel(), publish_tick="60s")
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            start = clock.now()
            sent = await run_minutes(t, clock, 5 * 60)
    assert len(sent) == 50
    assert sent[-1] - start <= timedelta(hours=5)
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert min(gaps) >= timedelta(minutes=6)
    assert max(sum(1 for s in sent if first <= s < first + timedelta(hours=1)) for first in sent) == 10
    assert sum(1 for s in sent if s - start <= timedelta(hours=4)) < 50  # spread out, not sent at once


async def test_quiet_hours_hold_everything_back_and_the_backlog_goes_out_at_the_pace(tmp_path):
    zone = ZoneInfo("Europe/Berlin")
    evening = datetime(2026, 3, 10, 21, 30, tzinfo=zone).astimezone(timezone.utc)
    with FeedServer() as feeds, WebhookReceiver() as hook:
        feeds.files["laden.xml"] = fifty(feeds.url("").rstrip("/"))
        channel = (f'  - {{id: paced, renderer: webhook, url: "{hook.url("/hook")}", secret: "{SECRET}", '
                   'pace: {per_hour: 10, quiet: "22:00-07:00"}}')
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), channel, publish_tick="60s")
        clock = ManualClock(evening - timedelta(minutes=1))
        async with channel_town(path, clock) as t:
            await ingest(t, clock, seconds=0)
            sent = await run_minutes(t, clock, 11 * 60)  # until 08:29
    local = [s.astimezone(zone) for s in sent]
    quiet = [s for s in local if s.hour >= 22 or s.hour < 7]
    assert quiet == []
    evening_sends = [s for s in local if s.hour >= 21]
    morning = [s for s in local if s.hour < 12]
    assert len(evening_sends) == 5  # 21:30, 21:36, ... 21:54
    assert morning[0].strftime("%H:%M") == "07:00"  # the first slot after the quiet hours
    assert min(b - a for a, b in zip(morning, morning[1:])) >= timedelta(minutes=6)  # then at the pace
    assert len(morning) == 15  # 07:00 ... 08:24
