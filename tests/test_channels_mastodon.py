"""The Mastodon channel (issue 16) against a fake instance shaped as Mastodon's API documents:
limits from /api/v2/instance, images uploaded first with their alt text (202, polled until
processed), an Idempotency-Key per delivery, edits by PUT, removals by DELETE, 429 with
X-RateLimit-Reset, a revoked token."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from renderers.text import mastodon_length
from tests.channelfakes import (Entry, FakeMastodon, channel_config, channel_town, ingest, jpeg, ledger_rows, refetch,
                                rss)
from tests.clock import ManualClock
from tests.feedserver import FeedServer

LONG = " ".join(["Unser Sauerteigbrot reift 48 Stunden im Holzofen und wird nach altem Rezept gebacken."] * 30)
BROT = Entry("brot", "Neues Dinkelbrot", LONG, image="brot.jpg")
STOLLEN = Entry("stollen", "Christstollen", "Unser Butterstollen ist da.", age=timedelta(days=2))


def mastodon(base: str, extra: str = "") -> str:
    return (f'  - {{id: mastodon, renderer: mastodon, base_url: "{base}", access_token: mastodon-token, '
            f"visibility: unlisted{extra}}}")


@pytest.fixture
def feeds():
    with FeedServer() as srv:
        srv.files["brot.jpg"] = jpeg()
        srv.files["zopf.jpg"] = jpeg((30, 30, 200))
        srv.files["laden.xml"] = rss([BROT, STOLLEN], srv.url("").rstrip("/"))
        yield srv


async def test_a_status_with_its_image_is_posted_once_edited_and_deleted(feeds, tmp_path):
    with FakeMastodon(processing_polls=2) as social:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), mastodon(social.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert (report.status, report.sent) == ("published", 2), report.error
            posted = {s["content"].splitlines()[0]: s for s in social.statuses.values()}
            brot = posted["Neues Dinkelbrot"]
            assert mastodon_length(brot["content"]) <= 500 and len(brot["content"]) > 400  # cut to fit, not short
            assert "…" in brot["content"] and brot["content"].count("Sauerteigbrot") < 30
            link = re.search(r"Mehr: (https://musterstadt\.example/items/\d+)", brot["content"])
            assert link, brot["content"]
            assert (brot["visibility"], brot["language"]) == ("unlisted", "de")
            [media_id] = brot["media_ids"]
            assert social.media[media_id]["description"] == "Neues Dinkelbrot" and social.media[media_id]["size"] > 0
            polls = [r for r in social.requests if r["path"] == f"/api/v1/media/{media_id}"]
            assert len(polls) == 3  # 206, 206, 200: attached only once processed
            keys = [r["headers"].get("idempotency-key") for r in social.requests if r["path"] == "/api/v1/statuses"]
            assert len(set(keys)) == 2 and all(k and k.startswith("msg_") for k in keys)

            feeds.files["laden.xml"] = rss([Entry("brot", "Neues Dinkelbrot, jetzt mit Saaten", LONG, image="brot.jpg"),
                                            STOLLEN], feeds.url("").rstrip("/"))
            refetch(t)
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.sent == 1
            assert brot["edits"] == 1 and brot["content"].startswith("Neues Dinkelbrot, jetzt mit Saaten")
            assert brot["media_ids"] == [media_id]  # the same image: not uploaded again
            assert len(social.media) == 1 and len(social.statuses) == 2

            feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
            refetch(t)
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.sent == 1
    assert social.deleted == [brot["id"]] and len(social.statuses) == 1


async def test_fails_twice_then_one_status_with_one_idempotency_key(feeds, tmp_path):
    feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
    with FakeMastodon() as social:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), mastodon(social.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            social.fail(2, 502)
            for wait in (0, 7, 7 * 60):
                clock.advance(wait)
                [report] = await t.publisher.publish()
            assert report.sent == 1
    attempts = [r for r in social.requests if r["path"] == "/api/v1/statuses"]
    assert len(attempts) == 3 and len({r["headers"]["idempotency-key"] for r in attempts}) == 1
    assert len(social.statuses) == 1


async def test_a_lost_answer_is_retried_within_the_key_s_hour_and_mastodon_keeps_one_status(feeds, tmp_path):
    feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
    with FakeMastodon() as social:
        social.lose_answers, social.lose_for = 1, 2.5
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), mastodon(social.url()),
                              total_timeout=1)
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.failed == 1 and "no answer" in report.error
            clock.advance(7)
            [report] = await t.publisher.publish()
            assert report.sent == 1
            [row] = ledger_rows(t.store, "mastodon")
            assert row["status"] == "sent" and row["remote_id"] in social.statuses
    assert len(social.statuses) == 1  # the same Idempotency-Key: Mastodon answered with the first status


async def test_an_unanswered_status_after_the_key_s_hour_is_left_for_a_person(feeds, tmp_path):
    feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
    with FakeMastodon() as social:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), mastodon(social.url()),
                              total_timeout=1)
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            social.fail(4, 200, hang=1.5)  # four attempts, none answered in time
            for wait in (0, 7, 7 * 60, 40 * 60):
                clock.advance(wait)
                await t.publisher.publish()
            [row] = ledger_rows(t.store, "mastodon")
            assert row["attempts"] == 4
            # the next step of the schedule (2 h) is past the hour Mastodon keeps a key
            assert row["status"] == "unconfirmed" and "may have arrived" in row["detail"]
            clock.advance(3 * 3600)
            [report] = await t.publisher.publish()
            assert report.status == "nothing new" and social.statuses == {}


async def test_429_waits_until_the_rate_limit_resets(feeds, tmp_path):
    feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
    with FakeMastodon() as social:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), mastodon(social.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            reset = (datetime.now(timezone.utc) + timedelta(minutes=3)).isoformat()
            social.fail(1, 429, headers={"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0",
                                         "X-RateLimit-Reset": reset})
            [report] = await t.publisher.publish()
            assert report.status == "failed" and "429" in report.error
            clock.advance(60)
            [report] = await t.publisher.publish()
            assert report.status == "waiting" and social.statuses == {}
            clock.advance(150)
            [report] = await t.publisher.publish()
            assert report.sent == 1 and len(social.statuses) == 1


async def test_a_revoked_token_pauses_the_channel_until_its_options_change(feeds, tmp_path):
    feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
    with FakeMastodon(token="the-new-token") as social:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), mastodon(social.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.status == "paused" and "401" in report.error
        path.write_text(path.read_text().replace("access_token: mastodon-token", "access_token: the-new-token"))
        async with channel_town(path, clock) as t:  # a restart (or reload) with the new token
            [report] = await t.publisher.publish()
            assert report.sent == 1
    assert len(social.statuses) == 1


async def test_dry_run_shows_the_status_and_changes_nothing(feeds, tmp_path):
    with FakeMastodon() as social:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), mastodon(social.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish(dry_run=True)
            assert report.status == "dry run" and sorted(report.titles) == ["Christstollen", "Neues Dinkelbrot"]
            shown = {what: p for what, p in report.previews}
            brot = next(p for what, p in shown.items() if "Neues Dinkelbrot" in what)
            assert brot.payload["visibility"] == "unlisted" and brot.text.startswith("Neues Dinkelbrot")
            assert mastodon_length(brot.text) <= 500 and brot.payload["media"][0]["description"] == "Neues Dinkelbrot"
            assert {r["status"] for r in ledger_rows(t.store, "mastodon")} == {"pending"}
    assert social.requests == []
