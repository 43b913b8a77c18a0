"""The webhook channel (issue 16) against a receiver that verifies every delivery with the
official `standardwebhooks` library: a record's whole life (created once, updated, deleted),
retries with one id, a lost answer, 410, redirects, the SSRF guard, the events filter, the
signature's test vector and the public payload schema."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from hub.cli.commands import app
from renderers.webhook import secret_key, sign
from tests.channelfakes import (SECRET, Entry, WebhookReceiver, channel_config, channel_town, ingest, ledger_rows,
                                refetch, rss)
from tests.clock import ManualClock
from tests.feedserver import FeedServer

SCHEMA = json.loads((Path(__file__).parents[1] / "renderers/schemas/webhook-record-v1.schema.json").read_text())
BREZELN = Entry("a", "Frische Brezeln", "Ab sofort jeden Morgen frische Brezeln aus dem Holzofen.")
STOLLEN = Entry("b", "Christstollen", "Unser Butterstollen ist da.", age=timedelta(days=2))


def webhook(url: str, extra: str = "") -> str:
    return f'  - {{id: stadtapp, renderer: webhook, url: "{url}", secret: "{SECRET}"{extra}}}'


def schema_valid(payload: dict) -> None:
    jsonschema.validate(payload, SCHEMA, format_checker=jsonschema.FormatChecker())


@pytest.fixture
def feeds():
    with FeedServer() as srv:
        srv.files["laden.xml"] = rss([BREZELN, STOLLEN], srv.url("").rstrip("/"))
        yield srv


def test_the_signature_matches_the_standard_webhooks_test_vector():
    body = b'{"type":"post.published","timestamp":"2025-06-06T07:15:42Z","data":{"id":"itm_123"}}'
    assert sign(secret_key(SECRET), "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1674087231, body) == \
        "v1,mPvk/gFK+F6Y3Y5+SjKSnhvGeRi/pc2qLqL3+wGsiSU="


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    return f"sqlite:///{tmp_path}/hub.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")


async def test_a_record_is_created_once_then_updated_then_deleted(feeds, tmp_path, db_url):
    with WebhookReceiver() as hook:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), webhook(hook.url("/hook")),
                              store_url=db_url)
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert (report.status, report.sent) == ("published", 2)
            by_title = {r.data["title"]: r for r in hook.received}
            created = by_title["Frische Brezeln"]
            assert created.type == "record.created" and created.data["merchant"]["name"] == "Laden am Markt"
            assert created.data["url"] == f"https://musterstadt.example/items/{created.data['id']}"
            assert created.id.startswith("msg_")
            [report] = await t.publisher.publish()
            assert report.status == "nothing new" and len(hook.received) == 2

            feeds.files["laden.xml"] = rss([Entry("a", "Frische Laugenbrezeln", BREZELN.text), STOLLEN],
                                           feeds.url("").rstrip("/"))
            refetch(t)
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.sent == 1
            updated = hook.received[-1]
            assert (updated.type, updated.data["id"], updated.data["title"]) == \
                ("record.updated", created.data["id"], "Frische Laugenbrezeln")
            assert updated.data["version"] > created.data["version"] and updated.id != created.id

            feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))  # the merchant deleted it
            refetch(t)
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            deleted = hook.received[-1]
            assert (deleted.type, deleted.data["id"]) == ("record.deleted", created.data["id"])
            assert set(deleted.data) == {"schema_version", "id", "version", "url"}
            assert [r.id for r in hook.of(created.data["id"])] == [created.id, updated.id, deleted.id]
            assert hook.rejected == []
            for r in hook.received:
                schema_valid({"type": r.type, "timestamp": r.timestamp, "data": r.data})
            rows = ledger_rows(t.store, "stadtapp")
            assert [r["status"] for r in rows] == ["sent"] * 4


async def test_fails_twice_then_succeeds_one_logical_delivery_with_one_id(feeds, tmp_path):
    with WebhookReceiver() as hook:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), webhook(hook.url("/hook")))
        feeds.files["laden.xml"] = rss([BREZELN], feeds.url("").rstrip("/"))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            hook.fail(2, 500)
            [report] = await t.publisher.publish()
            assert (report.status, report.failed) == ("failed", 1) and "HTTP 500" in report.error
            [report] = await t.publisher.publish()
            assert report.status == "nothing new"  # the backoff's first step (5 s ± 20%) has not passed
            clock.advance(7)
            [report] = await t.publisher.publish()
            assert report.failed == 1
            [row] = ledger_rows(t.store, "stadtapp")
            assert row["attempts"] == 2 and row["status"] == "pending"
            clock.advance(3 * 60)
            [report] = await t.publisher.publish()
            assert report.status == "nothing new"  # the second step is 5 minutes
            clock.advance(3 * 60 + 1)
            [report] = await t.publisher.publish()
            assert report.sent == 1
    attempts = [r for r in hook.requests if r["path"] == "/hook"]
    assert len(attempts) == 3 and len({r["headers"]["webhook-id"] for r in attempts}) == 1
    assert len({r["headers"]["webhook-timestamp"] for r in attempts}) >= 2 or len(attempts) == 3
    [delivery] = hook.received
    assert delivery.id == attempts[0]["headers"]["webhook-id"]


async def test_a_lost_answer_is_tried_again_with_the_same_id_so_the_receiver_drops_it(feeds, tmp_path):
    with WebhookReceiver() as hook:
        hook.lose_answers, hook.lose_for = 1, 1.5
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"),
                              webhook(hook.url("/hook"), ", timeout: 1"))
        feeds.files["laden.xml"] = rss([BREZELN], feeds.url("").rstrip("/"))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert report.failed == 1 and "no answer" in report.error
            [row] = ledger_rows(t.store, "stadtapp")
            assert row["status"] == "pending" and row["doubt_since"] is not None  # it may have arrived
            clock.advance(7)
            [report] = await t.publisher.publish()
            assert report.sent == 1
    assert len(hook.received) == 2 and hook.received[0].id == hook.received[1].id


async def test_410_disables_the_webhook_and_hub_channels_shows_it(feeds, tmp_path):
    with WebhookReceiver() as hook:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"),
                              webhook(hook.url("/hook"), ", concurrency: 1"))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            hook.fail(1, 410, body=b"this endpoint is gone")
            [report] = await t.publisher.publish()
            assert report.status == "disabled" and "410" in report.error
            assert len([r for r in hook.requests if r["path"] == "/hook"]) == 1  # the rest was not even tried
            clock.advance(3600)
            [report] = await t.publisher.publish()
            assert report.status == "disabled" and len(hook.requests) == 1
            shown = CliRunner().invoke(app, ["channels", "-c", str(path)], env={"COLUMNS": "250"})
            assert shown.exit_code == 0, shown.output
            assert "disabled" in shown.output and "410" in shown.output
            listed = CliRunner().invoke(app, ["channels", "-c", str(path), "-f", "json"])
            [row] = [json.loads(line) for line in listed.output.splitlines()]
            assert row["state"] == "disabled" and row["backlog"] == 2
            assert CliRunner().invoke(app, ["channels", "enable", "stadtapp", "-c", str(path)]).exit_code == 0
            [report] = await t.publisher.publish()
            assert report.sent == 2
    assert sorted(r.data["title"] for r in hook.received) == ["Christstollen", "Frische Brezeln"]


async def test_a_slow_run_gives_back_what_it_did_not_start_before_its_lease_ends(tmp_path):
    with FeedServer() as feeds, WebhookReceiver() as hook:
        feeds.files["laden.xml"] = rss([Entry(f"n{i}", f"Neuigkeit {i}", "Text.", age=timedelta(minutes=i))
                                        for i in range(5)], feeds.url("").rstrip("/"))
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"),
                              webhook(hook.url("/hook"), ", concurrency: 1"))
        clock = ManualClock()
        hook.each = lambda _: clock.advance(100)  # each delivery takes 100 s of the lease's 300
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert (report.sent, report.left) == (3, 2)  # the 4th would start past 80% of the lease
            assert {r["status"]: r["attempts"] for r in ledger_rows(t.store, "stadtapp")} == {"sent": 1, "pending": 0}
            [report] = await t.publisher.publish()
            assert report.sent == 2


async def test_a_refusal_is_tried_again_on_the_schedule(feeds, tmp_path):
    with WebhookReceiver() as hook:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), webhook(hook.url("/hook")))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            hook.fail(2, 404, body=b"no such route (deploying)")
            [report] = await t.publisher.publish()
            assert report.failed == 2 and "HTTP 404" in report.error
            assert {r["status"] for r in ledger_rows(t.store, "stadtapp")} == {"pending"}
            clock.advance(7)
            [report] = await t.publisher.publish()
            assert report.sent == 2


async def test_a_redirect_is_a_failure_and_is_not_followed(feeds, tmp_path):
    with WebhookReceiver() as hook:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), webhook(hook.url("/moved")))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
    assert report.failed == 2 and "302" in report.error and "not followed" in report.error
    assert [r["path"] for r in hook.requests] == ["/moved", "/moved"] and hook.received == []


async def test_the_ssrf_guard_refuses_an_internal_address_and_pauses_the_channel(feeds, tmp_path):
    path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"),
                          webhook("http://169.254.169.254/latest/meta-data"), allow_private=False)
    clock = ManualClock()
    async with channel_town(path, clock) as t:
        await ingest(t, clock)
        [report] = await t.publisher.publish()
        assert report.status == "paused" and "refused to connect to 169.254.169.254" in report.error
        assert {r["status"] for r in ledger_rows(t.store, "stadtapp")} == {"pending"}  # nothing lost


async def test_only_the_events_the_endpoint_wants(feeds, tmp_path):
    with WebhookReceiver() as hook:
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"),
                              webhook(hook.url("/hook"), ", events: [created, deleted]"))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            await t.publisher.publish()
            feeds.files["laden.xml"] = rss([Entry("a", "Brezeln, frisch", BREZELN.text), STOLLEN],
                                           feeds.url("").rstrip("/"))
            refetch(t)
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert (report.sent, report.skipped) == (0, 1)
            feeds.files["laden.xml"] = rss([STOLLEN], feeds.url("").rstrip("/"))
            refetch(t)
            await ingest(t, clock)
            await t.publisher.publish()
    assert [r.type for r in hook.received] == ["record.created", "record.created", "record.deleted"]


async def test_a_platform_api_s_own_id_is_kept_as_the_remote_id(feeds, tmp_path):
    with WebhookReceiver() as hook:
        hook.answer_id = True
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), webhook(hook.url("/hook")))
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            await t.publisher.publish()
            copies = t.publisher.ledger.copies("stadtapp", [r.data["id"] for r in hook.received])
    assert {c.remote_id for c in copies.values()} == {f"remote-{r.data['id']}" for r in hook.received}


def test_a_secret_that_is_not_whsec_base64_is_a_config_error(tmp_path):
    from hub import config
    from hub.errors import ConfigError

    path = channel_config(tmp_path / "c.yaml", "https://laden.example/feed",
                          '  - {id: stadtapp, renderer: webhook, url: "ftp://x", secret: "geheim"}')
    with pytest.raises(ConfigError) as caught:
        config.load(path, env={})
    text = str(caught.value)
    assert "whsec_" in text and "https://" in text
