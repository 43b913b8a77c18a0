"""The WordPress channel (issue 16) against a fake REST API (`/wp-json/wp/v2/`) with application
passwords: posts created, updated and moved to the trash, the featured image uploaded with its
alt text, tags found or created, categories mapped, events with their date and place."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.channelfakes import (Entry, FakeWordPress, channel_config, channel_town, ingest, jpeg, ledger_rows, refetch,
                                rss)
from tests.clock import ManualClock
from tests.feedserver import FeedServer

BROT = Entry("brot", "Neues Dinkelbrot", "Ab heute gibt es unser Dinkelbrot.", image="brot.jpg", category="Markt")
STOLLEN = Entry("stollen", "Christstollen", "Unser Butterstollen ist da.", age=timedelta(days=2), category="Advent")


def wordpress(base: str, extra: str = "") -> str:
    return (f'  - {{id: stadtseite, renderer: wordpress, base_url: "{base}", username: hub, '
            f'app_password: "abcd EFGH ijkl MNOP qrst UVWX", categories: {{post: 3, event: 12, einzelhandel: 7}}'
            f"{extra}}}")


def calendar(start: datetime, summary: str, location: str) -> bytes:
    stamp = start.strftime("%Y%m%dT%H%M%S")
    end = (start + timedelta(hours=3)).strftime("%Y%m%dT%H%M%S")
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//DE\r\nBEGIN:VEVENT\r\nUID:fest-1@verein.example\r\n"
            f"DTSTAMP:20260101T000000Z\r\nDTSTART;TZID=Europe/Berlin:{stamp}\r\nDTEND;TZID=Europe/Berlin:{end}\r\n"
            f"SUMMARY:{summary}\r\nLOCATION:{location}\r\nDESCRIPTION:Mit Musik und Kuchen.\r\n"
            f"END:VEVENT\r\nEND:VCALENDAR\r\n").encode()


@pytest.fixture
def feeds():
    with FeedServer() as srv:
        srv.files["brot.jpg"] = jpeg()
        srv.files["laden.xml"] = rss([BROT, STOLLEN], srv.url("").rstrip("/"))
        yield srv


async def test_posts_with_featured_image_tags_and_categories_updated_and_trashed(feeds, tmp_path):
    with FakeWordPress() as wp:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), wordpress(wp.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert (report.status, report.sent) == ("published", 2), report.error
            posts = {p["title"]: p for p in wp.posts.values()}
            brot = posts["Neues Dinkelbrot"]
            assert brot["status"] == "publish" and brot["categories"] == [3, 7]
            [media] = wp.media.values()
            assert brot["featured_media"] == media["id"] and media["alt_text"] == "Neues Dinkelbrot"
            assert media["bytes"] > 0 and media["type"] == "image/jpeg"
            assert brot["tags"] == [1]  # "Markt" existed: found by its slug, not created again
            advent = next(tag for tag in wp.tags.values() if tag["name"] == "Advent")
            assert posts["Christstollen"]["tags"] == [advent["id"]]
            assert "Ab heute gibt es unser Dinkelbrot." in brot["content"]
            assert 'href="https://musterstadt.example/items/' in brot["content"] and "Laden am Markt" in brot["content"]
            assert brot["excerpt"] and brot["date_gmt"]

            feeds.files["laden.xml"] = rss([Entry("brot", "Neues Dinkelbrot mit Saaten", BROT.text, image="brot.jpg",
                                                  category="Markt"), STOLLEN], feeds.url("").rstrip("/"))
            refetch(t)
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.sent == 1
            assert brot["updates"] == 1 and brot["title"] == "Neues Dinkelbrot mit Saaten"
            assert len(wp.media) == 1 and brot["featured_media"] == media["id"]  # not uploaded again

            feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
            refetch(t)
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.sent == 1
    assert brot["status"] == "trash" and [p["title"] for p in wp.live_posts()] == ["Christstollen"]
    deletes = [r for r in wp.requests if r["method"] == "DELETE"]
    assert [r["path"] for r in deletes] == [f"/wp-json/wp/v2/posts/{brot['id']}"]
    assert all(r["headers"]["authorization"].startswith("Basic ") for r in wp.requests)


async def test_an_event_is_a_post_with_its_date_and_place(tmp_path):
    start = (datetime.now(timezone.utc) + timedelta(days=10)).replace(hour=17, minute=0, second=0, microsecond=0)
    with FeedServer() as feeds, FakeWordPress() as wp:
        feeds.files["verein.ics"] = calendar(start, "Herbstfest", "Marktplatz Musterstadt")
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/verein.ics"), wordpress(wp.url()),
                              connector="ical")
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.sent == 1, report.error
    [post] = wp.posts.values()
    assert post["title"] == "Herbstfest" and post["categories"] == [7, 12]
    assert "<strong>Wann:</strong>" in post["content"] and "17:00 Uhr bis 20:00 Uhr" in post["content"]
    assert "<strong>Wo:</strong> Marktplatz Musterstadt" in post["content"]
    assert start.strftime("%Y") in post["content"] and "Mit Musik und Kuchen." in post["content"]


async def test_fails_twice_then_one_post(feeds, tmp_path):
    feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
    with FakeWordPress() as wp:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), wordpress(wp.url(), ", tags: false"))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            wp.fail(2, 503, headers={"Retry-After": "120"})
            [report] = await t.publisher.publish()
            assert report.failed == 1
            clock.advance(60)
            [report] = await t.publisher.publish()
            assert report.status == "nothing new"  # Retry-After: 120 outweighs the backoff's 5 s
            for wait in (61, 7 * 60):
                clock.advance(wait)
                [report] = await t.publisher.publish()
            assert report.sent == 1
    assert len([r for r in wp.requests if r["path"] == "/wp-json/wp/v2/posts"]) == 3
    assert len(wp.posts) == 1


async def test_a_draft_site_and_a_lost_answer_left_for_a_person(feeds, tmp_path):
    feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
    with FakeWordPress() as wp:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"),
                              wordpress(wp.url(), ", status: draft, tags: false"), total_timeout=1)
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            wp.fail(1, 201, hang=1.5)
            await t.publisher.publish()
            [row] = ledger_rows(t.store, "stadtseite")
            assert row["status"] == "unconfirmed"
            clock.advance(3600)
            await t.publisher.publish()
            assert wp.posts == {}  # never posted twice blindly
            t.publisher.ledger.retry("stadtseite", clock.now())
            [report] = await t.publisher.publish()
            assert report.sent == 1
    [post] = wp.posts.values()
    assert post["status"] == "draft"


async def test_a_wrong_application_password_pauses_the_channel(feeds, tmp_path):
    with FakeWordPress(app_password="other password") as wp:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), wordpress(wp.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
    assert report.status == "paused" and "401" in report.error and "application password" in report.error
    assert wp.posts == {}
