"""The Telegram channel (issue 16) against a fake Bot API that checks what Telegram checks: HTML
parse mode with only its tags and `& < >` escaped ("can't parse entities"), 4,096 characters a
message and 1,024 a caption after entity parsing, 429 with retry_after."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from hub.cli.commands import app
from renderers.text import telegram_html, telegram_length
from tests.channelfakes import (Entry, FakeTelegram, channel_config, channel_town, ingest, jpeg, ledger_rows, refetch,
                                rss, telegram_check, telegram_flood)
from tests.clock import ManualClock
from tests.feedserver import FeedServer

CHAT = "@musterstadt_test"
LONG = " ".join(["Der Verein lädt alle Nachbarn zum Herbstfest mit Musik & Kuchen ein."] * 90)
KAFFEE = Entry("kaffee", "Kaffee & Kuchen für < 5 €", "Ab 15 Uhr im Café am Markt: Kuchen & Kaffee für 3 € > 2 €.")
FEST = Entry("fest", "Herbstfest", LONG, age=timedelta(days=1), image="fest.jpg")
STOLLEN = Entry("stollen", "Christstollen", "Unser Butterstollen ist da.", age=timedelta(days=2))


def telegram(api: str, extra: str = "") -> str:
    return (f'  - {{id: vereine, renderer: telegram, bot_token: "123456:ABC-telegram", chat_id: "{CHAT}", '
            f'api_url: "{api}"{extra}}}')


@pytest.fixture
def feeds():
    with FeedServer() as srv:
        srv.files["fest.jpg"] = jpeg()
        srv.files["laden.xml"] = rss([KAFFEE, FEST, STOLLEN], srv.url("").rstrip("/"))
        yield srv


def test_html_keeps_telegram_s_tags_only_and_escapes_the_rest():
    html = telegram_html('<p>Kaffee &amp; Kuchen</p><br><b>fett</b> <script>x()</script>'
                         '<a href="https://a.example/?a=1&amp;b=2" onclick="x">Link</a> <img src="x.png">')
    bad, visible = telegram_check(html)
    assert bad is None, html
    assert "<p>" not in html and "<img" not in html and "<script" not in html and "onclick" not in html
    assert "<b>fett</b>" in html and 'href="https://a.example/?a=1&amp;b=2"' in html
    assert visible.startswith("Kaffee & Kuchen\n") and telegram_length(html) == len(visible)


async def test_messages_are_sent_once_edited_and_deleted(feeds, tmp_path):
    with FakeTelegram() as bot:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), telegram(bot.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert (report.status, report.sent) == ("published", 3), report.error
            sent = {m["visible"].splitlines()[0]: m for m in bot.messages(CHAT)}
            kaffee, fest = sent["Kaffee & Kuchen für < 5 €"], sent["Herbstfest"]
            assert kaffee["type"] == "text" and "<b>Kaffee &amp; Kuchen für &lt; 5 €</b>" in kaffee["text"]
            assert "3 € &gt; 2 €" in kaffee["text"]
            assert 'href="https://musterstadt.example/items/' in kaffee["text"]
            assert fest["type"] == "photo" and fest["photo_bytes"] > 0
            caption = fest["visible"]
            assert len(caption) <= 1024 and "…" in caption and caption.rstrip().endswith("Mehr auf Musterstadt erleben")
            [report] = await t.publisher.publish()
            assert report.status == "nothing new"

            feeds.files["laden.xml"] = rss([Entry("kaffee", "Kaffee & Kuchen, heute bis 18 Uhr", KAFFEE.text),
                                            Entry("fest", "Herbstfest im Park", LONG, age=FEST.age, image="fest.jpg"),
                                            STOLLEN], feeds.url("").rstrip("/"))
            refetch(t)
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.sent == 2
            assert kaffee["edits"] == 1 and kaffee["visible"].startswith("Kaffee & Kuchen, heute bis 18 Uhr")
            assert fest["edits"] == 1 and fest["visible"].startswith("Herbstfest im Park")  # editMessageCaption
            assert len(bot.messages(CHAT)) == 3

            feeds.files["laden.xml"] = rss([FEST, STOLLEN], feeds.url("").rstrip("/"))
            refetch(t)
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.sent == 2  # the removal, and the festival's title back as it was
    assert bot.deleted == [kaffee["message_id"]]
    assert sorted(m["visible"].splitlines()[0] for m in bot.messages(CHAT)) == ["Christstollen", "Herbstfest"]


async def test_a_message_that_gets_an_image_is_sent_anew_and_the_old_one_deleted(feeds, tmp_path):
    feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
    with FakeTelegram() as bot:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), telegram(bot.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            await t.publisher.publish()
            [before] = bot.messages(CHAT)
            feeds.files["laden.xml"] = rss([Entry("stollen", STOLLEN.title, STOLLEN.text, STOLLEN.age,
                                                  image="fest.jpg")], feeds.url("").rstrip("/"))
            refetch(t)
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.sent == 1
            [after] = bot.messages(CHAT)
            [row] = [r for r in ledger_rows(t.store, "vereine") if r["version"] > 0]
    assert bot.deleted == [before["message_id"]] and after["type"] == "photo"
    assert row["remote_id"] == str(after["message_id"])


async def test_a_message_telegram_no_longer_lets_delete_is_marked_withdrawn(feeds, tmp_path):
    feeds.files["laden.xml"] = rss([KAFFEE, STOLLEN], feeds.url("").rstrip("/"))
    with FakeTelegram() as bot:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), telegram(bot.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            await t.publisher.publish()
            kaffee = next(m for m in bot.messages(CHAT) if m["visible"].startswith("Kaffee"))
            bot.not_deletable.add(kaffee["message_id"])
            feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
            refetch(t)
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.sent == 1
    assert kaffee["visible"] == "Dieser Beitrag wurde zurückgezogen."


async def test_fails_twice_then_succeeds_one_message(feeds, tmp_path):
    feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
    with FakeTelegram() as bot:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), telegram(bot.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            bot.fail(2, 502)
            for wait in (0, 7, 7 * 60):
                clock.advance(wait)
                [report] = await t.publisher.publish()
            assert report.sent == 1
    assert len([r for r in bot.requests if r["path"].endswith("/sendMessage")]) == 3
    assert len(bot.messages(CHAT)) == 1


async def test_429_retry_after_makes_the_channel_wait(feeds, tmp_path):
    with FakeTelegram() as bot:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), telegram(bot.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            status, headers, body = telegram_flood(35)
            bot.fail(1, status, headers, body)
            [report] = await t.publisher.publish()
            assert report.status == "failed" and "retry after 35" in report.error
            assert len(bot.requests) == 1  # while Telegram throttles, every call fails: none was made
            clock.advance(20)
            [report] = await t.publisher.publish()
            assert report.status == "waiting" and len(bot.requests) == 1
            clock.advance(20)
            [report] = await t.publisher.publish()
            assert report.sent == 3


async def test_at_most_20_messages_a_minute_go_to_one_chat(tmp_path):
    with FeedServer() as feeds, FakeTelegram() as bot:
        entries = [Entry(f"n{i}", f"Nachricht {i}", f"Text {i}", age=timedelta(minutes=i)) for i in range(25)]
        feeds.files["laden.xml"] = rss(entries, feeds.url("").rstrip("/"))
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), telegram(bot.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.sent == 20
            clock.advance(30)
            [report] = await t.publisher.publish()
            assert report.status == "waiting" and "rate limit" in report.error
            clock.advance(31)
            [report] = await t.publisher.publish()
            assert report.sent == 5
    assert len(bot.messages(CHAT)) == 25


async def test_a_lost_answer_is_left_for_a_person_never_sent_twice(feeds, tmp_path):
    feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
    with FakeTelegram() as bot:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), telegram(bot.url()), total_timeout=1)
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            bot.fail(1, 200, hang=1.5)
            [report] = await t.publisher.publish()
            assert report.failed == 1
            clock.advance(3600)
            [report] = await t.publisher.publish()
            assert report.status == "nothing new" and bot.messages(CHAT) == []
            runner = CliRunner()
            shown = runner.invoke(app, ["channels", "-c", str(path), "--problems"], env={"COLUMNS": "250"})
            assert "unconfirmed" in shown.output and "may have arrived" in shown.output
            [row] = [json.loads(line) for line in runner.invoke(app, ["channels", "-c", str(path), "-f", "json"]).output
                     .splitlines()]
            assert row["counts"] == {"unconfirmed": 1}
            # a person looked: it did not arrive
            assert runner.invoke(app, ["channels", "retry", "vereine", "-c", str(path)]).exit_code == 0
            [report] = await t.publisher.publish()
            assert report.sent == 1
    assert len(bot.messages(CHAT)) == 1


async def test_a_wrong_chat_pauses_the_channel(feeds, tmp_path):
    with FakeTelegram(token="999:other") as bot:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), telegram(bot.url()))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
    assert report.status == "paused" and "Unauthorized" in report.error and "bot_token" in report.error
    assert "123456:ABC-telegram" not in report.error
