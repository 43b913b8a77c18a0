"""What a post says on a channel (issue 16): the channel's own Jinja2 template (inline or from
a file), its mistakes found by `hub check` or named when a record does not fit it; texts cut at
a word to the limit with the link kept; Mastodon's URL counting and its four images; the JSON
Lines archive's lines for a record's whole life; pace options checked."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from hub import config
from hub.errors import ConfigError
from renderers.text import cut, fit, hashtags, mastodon_length
from tests.channelfakes import (Entry, FakeMastodon, FakeTelegram, channel_config, channel_town, ingest, jpeg,
                                ledger_rows, refetch, rss)
from tests.clock import ManualClock
from tests.feedserver import FeedServer

BROT = Entry("brot", "Neues Dinkelbrot", "Ab heute gibt es unser Dinkelbrot.")
STOLLEN = Entry("stollen", "Christstollen", "Unser Butterstollen ist da.", age=timedelta(days=2))


@pytest.fixture
def feeds():
    with FeedServer() as srv:
        srv.files["laden.xml"] = rss([BROT, STOLLEN], srv.url("").rstrip("/"))
        yield srv


def test_cut_at_a_word_and_fit_keeps_the_link():
    assert cut("Hallo schöne Welt", 12) == "Hallo…"
    assert cut("Donaudampfschifffahrtsgesellschaft", 10) == "Donaudamp…"
    assert cut("kurz", 10) == "kurz"
    text = " ".join(["Wort"] * 200)
    out = fit("{{ title }}\n{{ text }}\n{{ link }}", {"title": "Titel", "text": text, "link": "https://a.example/x"},
              100, len)
    assert len(out) <= 100 and out.endswith("…\nhttps://a.example/x") and out.startswith("Titel\nWort")
    assert mastodon_length("Mehr: https://musterstadt.example/items/123456789/ein-sehr-langer-pfad") == 6 + 23
    assert hashtags(("#Advent", "Weihnachts Markt", "advent", "2026", "Café")) == "#Advent #WeihnachtsMarkt #Café"


async def test_a_channel_s_own_template_inline_and_from_a_file(feeds, tmp_path):
    (tmp_path / "telegram.j2").write_text("<b>{{ title }}</b> – {{ merchant.name }}\n{{ link }}\n")
    with FakeMastodon() as social, FakeTelegram() as bot:
        channels = "\n".join([
            f'  - {{id: mastodon, renderer: mastodon, base_url: "{social.url()}", access_token: mastodon-token, '
            'template: "{{ title }} ({{ kind_label }}) bei {{ merchant.name }}: {{ link }}"}',
            f'  - {{id: telegram, renderer: telegram, bot_token: "{bot.token}", chat_id: "@stadt", '
            f'api_url: "{bot.url()}", template_file: telegram.j2}}'])
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), channels)
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            reports = await t.publisher.publish()
            assert [r.sent for r in reports] == [2, 2]
    contents = sorted(s["content"] for s in social.statuses.values())
    assert contents[1].startswith("Neues Dinkelbrot (Beitrag) bei Laden am Markt: https://musterstadt.example/items/")
    texts = sorted(m["text"] for m in bot.messages("@stadt"))
    assert texts[0].startswith("<b>Christstollen</b> – Laden am Markt\nhttps://musterstadt.example/items/")


def test_a_template_that_does_not_parse_is_a_config_problem_with_its_line(tmp_path):
    path = channel_config(tmp_path / "c.yaml", "https://laden.example/feed",
                          '  - {id: mastodon, renderer: mastodon, base_url: "https://social.example",\n'
                          '     access_token: x, template: "{{ title }"}\n'
                          '  - {id: spaet, renderer: webhook, url: "https://a.example/h",\n'
                          '     secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", pace: {per_hour: 10, quiet: "22-7"},\n'
                          '     template: "{{ title }}"}')
    with pytest.raises(ConfigError) as caught:
        config.load(path, env={})
    problems = "\n".join(caught.value.problems)
    assert "the template does not parse" in problems and "c.yaml:" in problems
    assert "write it like \"22:00-07:00\"" in problems
    assert "sends the record as data, not as a text" in problems  # a webhook has no text to template


async def test_a_name_the_template_does_not_know_fails_the_delivery_and_says_why(feeds, tmp_path):
    with FakeMastodon() as social:
        channel = (f'  - {{id: mastodon, renderer: mastodon, base_url: "{social.url()}", access_token: mastodon-token, '
                   'template: "{{ titel }}"}')
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), channel)
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.failed == 2 and "'titel' is undefined" in report.error
            assert {r["status"] for r in ledger_rows(t.store, "mastodon")} == {"failed"}  # retrying cannot help
    assert social.statuses == {}


async def test_mastodon_gets_at_most_four_images_each_with_its_text(tmp_path):
    with FeedServer() as feeds, FakeMastodon() as social:
        for n in range(5):
            feeds.files[f"b{n}.jpg"] = jpeg((40 * n, 90, 90))
        feeds.files["laden.xml"] = rss([Entry("fest", "Herbstfest", "Bilder vom Fest.", image="b0.jpg",
                                              more_images=("b1.jpg", "b2.jpg", "b3.jpg", "b4.jpg"))],
                                       feeds.url("").rstrip("/"))
        channel = f'  - {{id: mastodon, renderer: mastodon, base_url: "{social.url()}", access_token: mastodon-token}}'
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), channel)
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.sent == 1, report.error
    [status] = social.statuses.values()
    assert len(status["media_ids"]) == 4 and len(social.media) == 4
    assert {m["description"] for m in social.media.values()} == {"Herbstfest"}


async def test_the_json_lines_archive_keeps_a_record_s_whole_life(feeds, tmp_path):
    out = tmp_path / "archiv.jsonl"
    path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"),
                          f"  - {{id: archiv, renderer: jsonlines, path: {out}}}")
    clock = ManualClock()
    async with channel_town(path, clock) as t:
        await ingest(t, clock)
        await t.publisher.publish()
        feeds.files["laden.xml"] = rss([Entry("brot", "Neues Dinkelbrot mit Saaten", BROT.text), STOLLEN],
                                       feeds.url("").rstrip("/"))
        refetch(t)
        await ingest(t, clock)
        await t.publisher.publish()
        feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
        refetch(t)
        await ingest(t, clock)
        await t.publisher.publish()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    brot = [line for line in lines if line["item"]["external_id"] == "brot"]
    assert [(line["event"], line["item"]["title"]) for line in brot] == [
        ("created", "Neues Dinkelbrot"), ("updated", "Neues Dinkelbrot mit Saaten"),
        ("deleted", "Neues Dinkelbrot mit Saaten")]
    assert len({line["record"] for line in brot}) == 1 and len({line["id"] for line in brot}) == 3
    assert brot[0]["version"] < brot[1]["version"] < brot[2]["version"]
    assert brot[0]["url"] == f"https://musterstadt.example/items/{brot[0]['record']}"
    assert len(lines) == 4  # the stollen once, never again
