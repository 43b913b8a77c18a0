"""Facebook pages and Instagram accounts, end to end: the real fetcher, pipeline, store and
scheduler against the fake Graph API (hub/demo/graphapi.py) on loopback."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from connectors.graph import PAUSES, end_of_life, usage_from, version_warning
from hub import config
from hub.demo.graphapi import FakeGraph
from hub.errors import ConfigError
from hub.http import Fetcher, redact
from hub.media import MediaStore, ingest_media
from hub.pipeline import Pipeline, source_specs
from hub.refresh import fetch_entries, refresh_expired_images
from hub.store import Store
from hub.store.scheduling import ScheduleStore
from hub.web.app import create_app

PAGE_A, PAGE_B, IG_A = "104523984512345", "104523984599999", "17841400000000000"
# Tokens as long and distinctive as Meta's, so that finding one anywhere is no accident.
TOKEN_A = "EAABsbCS1iHgBO7schmitzZBZCgeheimZBZCxQ9pLrT5wZAvK2mZCvYHd3nRtZBZAqL8"
TOKEN_B = "EAABsbCS1iHgBO7meyerZBZCgeheimZBZCaB7qLmN4wZAvK2mZCvYHd3nRtZBZAqX2"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def graph():
    with FakeGraph() as fake:
        yield fake


def write_config(tmp_path: Path, graph: FakeGraph, sources: dict[str, list[str]], *, facebook: str = "",
                 extra: str = "") -> Path:
    """merchant id -> its sources as YAML flow mappings."""
    lines = ["platform: {name: Teststadt}", f"store: {{url: 'sqlite:///{tmp_path}/hub.db'}}",
             "fetcher: {allow_private_networks: true, retries: 0, total_timeout: 10, host_spacing: 0}",
             f"facebook: {{graph_url: '{graph.graph_url}'{facebook}}}", "merchants:"]
    for merchant, entries in sources.items():
        lines += [f"  - id: {merchant}", f"    name: {merchant.title()}", "    sources:"]
        lines += [f"      - {entry}" for entry in entries]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines + [extra]) + "\n")
    return path


def fb(page: str, token: str, extra: str = "") -> str:
    return f'{{connector: facebook, page_id: "{page}", access_token: "{token}"{extra}}}'


async def sync(path: Path, only: list[str] | None = None) -> tuple[dict, Store]:
    settings = config.load(path, env={})
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    chosen = [(m, s) for m, s in settings.sources() if only is None or s.id in only]
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        reports = await Pipeline(settings, store, fetcher, parse_workers=0).run(chosen)
    return {r.source_id: r for r in reports}, store


def visible(store: Store, source_id: str) -> dict[str, str]:
    """external id -> title of the items residents may see."""
    return {s.item.external_id: s.item.title for s in store.items(limit=1000, source_id=source_id)}


def bakery(graph: FakeGraph, posts: int = 40) -> tuple:
    """Page A: a post a day, some with photos; returns the page and its posts, newest first."""
    page = graph.add_page(PAGE_A, TOKEN_A, "Bäckerei Schmitz")
    made = [page.post(f"Tagesangebot {n}: frische Brötchen und Kuchen. #angebot", age=timedelta(days=n, hours=2),
                      photos=[graph.photo()] if n % 4 == 0 else []) for n in range(posts)]
    return page, made


# --- syncing --------------------------------------------------------------------------------------

async def test_first_sync_reads_every_page_until_next_is_absent_even_after_short_pages(graph, tmp_path):
    page, posts = bakery(graph, 130)
    page.post("Versteckt", age=timedelta(hours=1), hidden=True)
    page.post("Geplant", age=timedelta(hours=1, minutes=5), published=False)
    for post in posts[100:104]:  # privacy filtering: the second page comes short, with a next
        graph.withhold(post)
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]})
    reports, store = await sync(path)
    report = reports["schmitz-facebook"]
    assert (report.status, report.new) == ("ok", 126), report.error
    assert graph.calls[PAGE_A] == 2  # 100 + (32 - 4 withheld), then no next
    assert set(visible(store, "schmitz-facebook")) == {p["id"] for p in posts} - {p["id"] for p in posts[100:104]}
    assert all(not r.startswith(("Versteckt", "Geplant")) for r in visible(store, "schmitz-facebook").values())
    graph.calls.clear()
    graph.advance(timedelta(minutes=1))  # every image URL is signed anew
    reports, store = await sync(path)  # nothing new: one call, back over the re-read window only
    assert (graph.calls[PAGE_A], reports["schmitz-facebook"].status) == (1, "not_modified")
    assert "limit=37" in graph.requests[-1]  # sized by what the window held last time (16 with the hidden two)
    posts[3]["message"] += " Jetzt auch mit Mohn."
    reports, store = await sync(path)  # an edit inside the window: read, parsed, stored
    assert (reports["schmitz-facebook"].changed, reports["schmitz-facebook"].unchanged) == (1, 14)


async def test_incremental_sync_takes_new_posts_updates_edits_in_place_and_deletes_within_the_window(graph, tmp_path):
    page, posts = bakery(graph)
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]})
    _, store = await sync(path)
    before = {s.item.external_id: s.id for s in store.items(limit=100, source_id="schmitz-facebook")}
    page.post("Neu: Weihnachtsstollen ab heute! #stollen", age=timedelta(minutes=5))
    posts[2]["message"] = "Tagesangebot 2: heute mit Pflaumenkuchen."  # an edit
    posts[2]["updated_time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    page.remove(posts[5])  # deleted within the re-read window
    page.remove(posts[30])  # deleted long ago, outside the window: not noticed, and no harm
    reports, store = await sync(path)
    r = reports["schmitz-facebook"]
    assert (r.new, r.changed, r.gone) == (1, 1, 1), r
    after = {s.item.external_id: s for s in store.items(limit=100, source_id="schmitz-facebook")}
    assert after[posts[2]["id"]].id == before[posts[2]["id"]]  # updated in place
    assert after[posts[2]["id"]].item.title == "Tagesangebot 2: heute mit Pflaumenkuchen"
    assert posts[5]["id"] not in after and posts[30]["id"] in after
    records = {rec.item.title for rec in store.records.list(limit=100)}  # what residents see
    assert "Tagesangebot 5: frische Brötchen und Kuchen" not in records
    assert "Neu: Weihnachtsstollen ab heute!" in records
    stollen = next(s.item for s in after.values() if s.item.title.startswith("Neu: Weihnachtsstollen"))
    assert stollen.tags == ("stollen",) and stollen.url.startswith("https://www.facebook.com/")


async def test_a_hidden_post_disappears_and_comes_back_when_shown_again(graph, tmp_path):
    page, posts = bakery(graph, 10)
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]})
    await sync(path)
    posts[1]["is_hidden"] = True
    reports, store = await sync(path)
    assert reports["schmitz-facebook"].gone == 1 and posts[1]["id"] not in visible(store, "schmitz-facebook")
    posts[1]["is_hidden"] = False
    reports, store = await sync(path)
    assert reports["schmitz-facebook"].changed == 1 and posts[1]["id"] in visible(store, "schmitz-facebook")
    assert store.records.count() == 10


async def test_albums_shares_events_places_and_an_instagram_carousel_end_to_end(graph, tmp_path):
    page = graph.add_page(PAGE_A, TOKEN_A, "Bäckerei Schmitz")
    page.post("Unsere neue Backstube! #backstube", age=timedelta(hours=1),
              album=[graph.photo(None, 960, 720), graph.photo(None, 720, 960), graph.photo(None, 720, 540)])
    page.post("Lesetipp", age=timedelta(hours=2), share=("https://schmitz.example/blog/stollen?utm_source=fb",
                                                         "Stollen-Rezept", "Drei Wochen Ruhe"))
    page.post("Wir sind auf dem Adventsmarkt!", age=timedelta(hours=3),
              event=("https://www.facebook.com/events/123456789/", "Adventsmarkt Musterstadt"),
              place={"name": "Marktplatz", "location": {"street": "Marktplatz 1", "zip": "12345", "city": "Musterstadt"}})
    ig = graph.add_instagram(IG_A, TOKEN_A, "baeckerei", page)
    ig.medium("Adventsfenster 1-3 ✨ #advent", kind="CAROUSEL_ALBUM", age=timedelta(hours=4),
              children=[("IMAGE", graph.photo()), ("VIDEO", graph.photo()), ("IMAGE", graph.photo())])
    ig.medium("Stollen-Zeit. Mehr im Video!", kind="VIDEO", age=timedelta(hours=5))
    path = write_config(tmp_path, graph, {"schmitz": [
        fb(PAGE_A, TOKEN_A), f'{{connector: instagram, ig_user_id: {IG_A}, access_token: "{TOKEN_A}"}}']})
    reports, store = await sync(path)
    assert {sid: (r.status, r.new) for sid, r in reports.items()} == {
        "schmitz-facebook": ("ok", 3), "schmitz-instagram": ("ok", 2)}
    items = {s.item.title: s.item for s in store.items(limit=10)}
    album = items["Unsere neue Backstube!"]
    assert [(m.width, m.height) for m in album.media] == [(960, 720), (720, 960), (720, 540)]
    assert album.tags == ("backstube",)
    share = items["Lesetipp"]
    assert '<a href="https://schmitz.example/blog/stollen">Stollen-Rezept</a>' in share.content_html
    event = items["Wir sind auf dem Adventsmarkt!"]
    assert 'href="https://www.facebook.com/events/123456789/"' in event.content_html
    assert "Ort: Marktplatz, Marktplatz 1, 12345 Musterstadt" in event.content_text
    carousel = items["Adventsfenster 1-3 ✨"]
    assert len(carousel.media) == 3 and carousel.tags == ("advent",) and "instagram.com/p/" in carousel.url
    video = items["Stollen-Zeit"]
    assert len(video.media) == 1 and video.media[0].type == "image" and "/cdn/" in video.media[0].url


# --- errors ----------------------------------------------------------------------------------------

async def test_an_expired_token_holds_one_merchant_back_and_the_token_appears_nowhere(graph, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    bakery(graph, 5)
    other = graph.add_page(PAGE_B, TOKEN_B, "Metzgerei Meyer")
    other.post("Grillsaison! Heute Bratwurst im Angebot.", age=timedelta(hours=1))
    graph.fail(PAGE_A, code=190, subcode=463, message="Error validating access token: Session has expired on "
               f"Friday. Token {TOKEN_A} is no longer valid.")  # Meta does not echo tokens; were it to, still hidden
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)], "meyer": [fb(PAGE_B, TOKEN_B)]})
    done = hub("fetch", "-c", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert "meyer-facebook" in done.stdout and "schmitz-facebook" in done.stdout
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    statuses = {s.id: s for s in store.source_statuses()}
    assert statuses["meyer-facebook"].status == "ok" and statuses["meyer-facebook"].items == 1
    held = statuses["schmitz-facebook"]
    assert (held.status, held.held) == ("failing", "token_invalid")
    assert "Facebook-Zugang ungültig" in held.last_error and "Token ist abgelaufen" in held.last_error
    assert "neu verbinden" in held.last_error and "190/463" in held.last_error

    # Not retried: the scheduler never finds it due, and a fetch by hand does not ask Meta.
    plans = ScheduleStore(store)
    plans.prepare_sources(["meyer-facebook", "schmitz-facebook"], datetime.now(UTC), timedelta(0))
    far = datetime.now(UTC) + timedelta(days=30)
    assert plans.due_sources(far, 100) == ["meyer-facebook"]
    assert plans.claim_sources(["schmitz-facebook"], far, "me", far + timedelta(minutes=5)) == []
    calls = graph.calls[PAGE_A]
    again = hub("fetch", "-c", str(path), "--source", "schmitz-facebook", cwd=tmp_path)
    assert again.returncode == 1 and "Facebook-Zugang ungültig" in again.stdout
    assert graph.calls[PAGE_A] == calls

    sources = hub("sources", "-c", str(path), cwd=tmp_path)
    as_json = hub("sources", "-c", str(path), "-f", "json", cwd=tmp_path)
    assert "token_invalid" in as_json.stdout
    settings = config.load(path, env={})
    health = TestClient(create_app(settings, store)).get("/healthz").json()
    failing = {f["id"]: f for f in health["failing_sources"]}
    assert failing["schmitz-facebook"]["waiting_for_a_person"] is True
    assert "neu verbinden" in failing["schmitz-facebook"]["error"]
    assert health["sources"]["waiting_for_a_person"] == 1

    everything = [done.stdout, done.stderr, again.stdout, again.stderr, sources.stdout, sources.stderr,
                  as_json.stdout, json.dumps(health), caplog.text, "\n".join(graph.requests), _dump(tmp_path / "hub.db")]
    for token in (TOKEN_A, TOKEN_B):
        assert not [text for text in everything if token in text]

    # A new token (the merchant connected again) lets it go at once.
    new_token = TOKEN_A.replace("schmitz", "neu000")
    graph.recover(PAGE_A)
    graph.pages[PAGE_A].token = new_token
    path.write_text(path.read_text().replace(TOKEN_A, new_token))
    reports, store = await sync(path)
    assert (reports["schmitz-facebook"].status, reports["schmitz-facebook"].new) == ("ok", 5)
    assert {s.id: s.held for s in store.source_statuses()}["schmitz-facebook"] is None


def hub(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250"}  # rich folds long source ids in narrow tables
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=env)


def _dump(db: Path) -> str:
    """Every row of every table, as SQL text (TEXT columns included)."""
    with sqlite3.connect(db) as conn:
        return "\n".join(conn.iterdump())


@pytest.mark.parametrize(("code", "subcode", "expected", "transient"), [
    (102, None, "Facebook-Zugang ungültig", False),
    (190, 460, "Passwort des Facebook-Kontos wurde geändert", False),
    (190, 467, "abgemeldet", False),
    (190, 492, "Rolle auf der Seite verloren", False),
    (368, None, "vorübergehend gesperrt", False),
    (10, None, "Berechtigung pages_read_engagement fehlt", False),
    (200, None, "Berechtigung pages_read_user_content fehlt", False),
    (100, 33, "kennt Seite 104523984512345 nicht", False),
    (2, None, "lehnt die Abfrage", True),
])
async def test_errors_are_decided_from_code_and_subcode_not_the_http_status(graph, tmp_path, code, subcode, expected,
                                                                           transient):
    bakery(graph, 3)
    graph.fail(PAGE_A, code=code, subcode=subcode, status=500 if code == 2 else 400)
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]})
    reports, store = await sync(path)
    report = reports["schmitz-facebook"]
    assert report.status == "failed" and expected in report.error, report.error
    held = {s.id: s.held for s in store.source_statuses()}["schmitz-facebook"]
    assert held == ("token_invalid" if code in (102, 190) else None)
    waits = {368: timedelta(hours=24), 10: timedelta(hours=24), 200: timedelta(hours=24)}
    if code in waits:  # a person must act: asked again once a day, not every few minutes
        assert report.fresh_until - datetime.now(UTC) > waits[code] - timedelta(minutes=1)
    if transient:
        assert graph.calls[PAGE_A] == 3  # codes 1 and 2: tried again at once, twice


async def test_temporary_faults_are_tried_again_at_once(graph, tmp_path):
    bakery(graph, 3)
    graph.fail(PAGE_A, code=1, status=500, times=1)
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]})
    reports, _ = await sync(path)
    assert (reports["schmitz-facebook"].status, reports["schmitz-facebook"].new) == ("ok", 3)
    assert graph.calls[PAGE_A] == 2


async def test_throttling_backs_off_as_long_as_meta_says_and_pauses_only_its_scope(graph, tmp_path):
    bakery(graph, 3)
    graph.add_page(PAGE_B, TOKEN_B, "Metzgerei Meyer").post("Grillsaison!", age=timedelta(hours=1))
    graph.fail(PAGE_A, code=80001, regain_minutes=42, times=1)
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)], "meyer": [fb(PAGE_B, TOKEN_B)]})
    reports, _ = await sync(path)
    throttled = reports["schmitz-facebook"]
    assert throttled.status == "failed" and "Facebook bremst diese Seite" in throttled.error
    assert timedelta(minutes=41) < throttled.fresh_until - datetime.now(UTC) <= timedelta(minutes=42)
    assert reports["meyer-facebook"].status == "ok"  # another page is not held up
    calls = graph.calls[PAGE_A]
    reports, _ = await sync(path)  # still paused: Meta is not asked
    assert reports["schmitz-facebook"].status == "failed" and "pausieren noch" in reports["schmitz-facebook"].error
    assert graph.calls[PAGE_A] == calls and reports["meyer-facebook"].status == "not_modified"


async def test_usage_above_75_percent_slows_a_source_and_100_percent_stops_after_the_page_it_has(graph, tmp_path):
    page, posts = bakery(graph, 150)
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]})
    graph.usage(PAGE_A, page=85)
    reports, _ = await sync(path)
    slow = reports["schmitz-facebook"]
    assert slow.status == "ok" and slow.new == 150
    assert timedelta(minutes=23) < slow.fresh_until - datetime.now(UTC) <= timedelta(minutes=24)  # 85%: 0.4 h
    assert any("Nutzung bei 85 %" in w for w in slow.warnings)

    with FakeGraph() as other:  # a first sync that hits the limit on its first page
        p, _ = bakery(other, 150)
        other.usage(PAGE_A, buc=100, regain_minutes=30)
        (tmp_path / "b").mkdir()
        path = write_config(tmp_path / "b", other, {"schmitz": [fb(PAGE_A, TOKEN_A)]})
        reports, store = await sync(path)
        stopped = reports["schmitz-facebook"]
        assert (stopped.status, stopped.new, other.calls[PAGE_A]) == ("ok", 100, 1)
        assert stopped.fresh_until - datetime.now(UTC) > timedelta(minutes=29)
        assert any("Nutzungslimit" in w for w in stopped.warnings)
        assert json.loads(store.fetch_states(["schmitz-facebook"])["schmitz-facebook"].cursor or "{}") \
            .get("newest") is None  # not moved on: the next sync reads from the start again


def test_usage_headers_are_read_as_documented():
    usage = usage_from({"x-app-usage": '{"call_count":28,"total_time":25,"total_cputime":25}',
                        "x-page-usage": '{"call_count":85,"total_cputime":56,"total_time":60}',
                        "x-business-use-case-usage": '{"104523984512345":[{"type":"pages","call_count":62,'
                                                     '"total_cputime":10,"total_time":12,'
                                                     '"estimated_time_to_regain_access":7}]}'})
    assert (usage.app, usage.page, usage.percent, usage.regain) == (28, 85, 85, timedelta(minutes=7))
    assert usage_from({"x-app-usage": "kaputt"}).percent == 0


async def test_appsecret_proof_is_sent_when_the_app_secret_is_known(graph, tmp_path):
    graph.app_secret, graph.require_proof = "app-secret-for-tests-0123456789", True
    bakery(graph, 2)
    plain = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]})
    reports, _ = await sync(plain)
    assert "appsecret_proof" in reports["schmitz-facebook"].error
    proved = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]},
                          facebook=", app_id: '1234567890', app_secret: app-secret-for-tests-0123456789")
    reports, _ = await sync(proved)
    assert (reports["schmitz-facebook"].status, reports["schmitz-facebook"].new) == ("ok", 2)


# --- images -----------------------------------------------------------------------------------------

async def test_an_expired_image_url_is_read_again_once_for_a_fresh_one(graph, tmp_path):
    page = graph.add_page(PAGE_A, TOKEN_A, "Bäckerei Schmitz")
    post = page.post("Erdbeerkuchen!", age=timedelta(hours=2), photos=[graph.photo(None, 640, 480)])
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]})
    _, store = await sync(path)
    graph.advance(timedelta(days=4))  # the hub was down: the URL it got has expired
    settings = config.load(path, env={})
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        media = MediaStore(settings.data_dir, settings.base_dir, store.records.media, fetcher)
        images = await ingest_media(media)
        assert (images.downloaded, images.failed) == (0, 1)
        [url] = [m.url for m in store.items()[0].item.media]
        assert "expired" in (media.index.lookup([url])[url].error or "") or "403" in media.index.lookup([url])[url].error
        refreshed = await refresh_expired_images(settings, store, media, fetcher)
        assert refreshed.outcomes == {url: "stored from a fresh URL"}
        picture = media.pictures([url])[url]
        assert picture.src.startswith("/media/") and "/cdn/" not in picture.src and "%2Fcdn%2F" not in picture.src
        assert (picture.width, picture.height) == (640, 480)
        calls = graph.calls[post["id"]]
        again = await refresh_expired_images(settings, store, media, fetcher)
        assert again.outcomes == {} and graph.calls[post["id"]] == calls  # once is all
    html = TestClient(create_app(settings, store)).get("/").text
    assert "Erdbeerkuchen" in html and graph.graph_url not in html and "fbcdn" not in html


async def test_a_post_read_by_id_goes_through_the_pipeline_and_a_missing_one_is_deleted(graph, tmp_path):
    page, posts = bakery(graph, 5)
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]})
    _, store = await sync(path)
    posts[0]["message"] = "Tagesangebot 0: jetzt mit Quarkbällchen."
    page.remove(posts[1])
    settings = config.load(path, env={})
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        pipeline = Pipeline(settings, store, fetcher, parse_workers=0)
        [report] = await fetch_entries(pipeline, {"schmitz-facebook": [posts[0]["id"], posts[1]["id"]]})
    assert (report.status, report.changed, report.gone) == ("ok", 1, 1)
    assert set(visible(store, "schmitz-facebook")) == {p["id"] for p in posts} - {posts[1]["id"]}
    assert visible(store, "schmitz-facebook")[posts[0]["id"]] == "Tagesangebot 0: jetzt mit Quarkbällchen"


# --- configuration ----------------------------------------------------------------------------------

def test_config_checks_facebook_sources_and_the_app_block(tmp_path):
    path = tmp_path / "town.yaml"
    path.write_text("\n".join([
        "facebook:", "  api_version: v24", "  graph_url: graph.facebook.com",
        "merchants:", "  - id: schmitz", "    name: Schmitz", "    sources:",
        '      - {connector: facebook, page_id: "schmitz", access_token: x}',
        "      - {connector: facebook, page_id: 104523984512345, acess_token: x}",
        "      - {connector: instagram, ig_user_id: 17841400000000000, access_token: x, appsecret_proof: true}",
    ]) + "\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, env={})
    problems = caught.value.problems
    assert any(p.startswith(f"{path}:2: 'facebook.api_version': write the Graph API version like v24.0")
               for p in problems), problems
    assert any(p.startswith(f"{path}:3: 'facebook.graph_url'") for p in problems)
    assert any(p.startswith(f"{path}:8: ") and "digits only" in p for p in problems)
    assert any(p.startswith(f"{path}:9: unknown key 'acess_token'; did you mean 'access_token'?") for p in problems)
    path.write_text("\n".join([
        "merchants:", "  - id: schmitz", "    name: Schmitz", "    sources:",
        "      - {connector: facebook, page_id: 104523984512345, access_token: x}",
        "      - {connector: instagram, ig_user_id: 17841400000000000, access_token: x,",
        "         appsecret_proof: true}",
    ]) + "\n")
    with pytest.raises(ConfigError) as caught:  # without a facebook: block, reading works, the proof cannot
        config.load(path, env={})
    assert caught.value.problems == [
        f"{path}:7: 'appsecret_proof: true' needs the Facebook app's secret (hint: add a block `facebook: "
        '{app_id: "...", app_secret: ${FB_APP_SECRET}}` at the top level)']


def test_the_api_version_is_warned_about_90_days_before_its_end():
    assert end_of_life("v23.0") == date(2027, 10, 8)  # v24.0 shipped 2025-10-08, plus two years
    assert end_of_life("v24.0") is None  # the next one is not known yet
    assert version_warning("v23.0", date(2027, 7, 9)) is None
    assert "in 90 days" in version_warning("v23.0", date(2027, 7, 10))
    assert "reached its end of life on 2026-05-21" in version_warning("v19.0", date(2026, 6, 1))


def test_hub_check_prints_version_warnings_with_file_and_line_and_exits_0(tmp_path):
    path = tmp_path / "town.yaml"
    path.write_text("\n".join([
        "facebook: {api_version: v19.0}",
        "merchants:", "  - id: schmitz", "    name: Schmitz", "    sources:",
        "      - {connector: facebook, page_id: 104523984512345, access_token: x}",
        "      - {connector: instagram, ig_user_id: 17841400000000000, access_token: x, api_version: v20.0}",
    ]) + "\n")
    done = hub("check", "-c", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{path}:1: warning: Graph API v19.0 reached its end of life on 2026-05-21" in done.stderr
    assert f"{path}:7: warning: Graph API v20.0 reached its end of life on 2026-10-02" in done.stderr


# --- redaction --------------------------------------------------------------------------------------

async def test_the_fetcher_never_puts_a_secret_url_parameter_in_a_message():
    assert redact("https://g/x?access_token=EAAB1&limit=2&appsecret_proof=ab12") == \
        "https://g/x?access_token=REDACTED&limit=2&appsecret_proof=REDACTED"
    from hub.config import FetcherConfig
    async with Fetcher(FetcherConfig(allow_private_networks=True, retries=0, connect_timeout=2),
                       base_dir=Path.cwd()) as fetcher:
        for url in (f"http://127.0.0.1:9/v24.0/1/published_posts?access_token={TOKEN_A}",
                    f"http://127.0.0.1:notaport/x?client_secret={TOKEN_A}"):
            with pytest.raises(Exception) as caught:
                await fetcher.get(url)
            assert TOKEN_A not in str(caught.value) and TOKEN_A not in repr(caught.value.args)


@pytest.fixture(autouse=True)
def _fresh_pauses():
    """Pauses live in the process; each test starts without any."""
    PAUSES._until.clear()
    PAUSES._strikes.clear()
    yield


# --- for the `hub facebook` commands and the demo town --------------------------------------------

async def test_the_graph_client_exchanges_lists_and_checks_tokens_without_showing_them(graph, tmp_path):
    from connectors.graph import GraphClient, GraphTokenInvalid, app_from

    graph.app_id, graph.app_secret = "1234567890", "app-secret-for-tests-0123456789"
    graph.add_page(PAGE_A, TOKEN_A, "Bäckerei Schmitz")
    graph.users["EAAB-short-lived-user-token-123456"] = [PAGE_A]
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]},
                        facebook=", app_id: '1234567890', app_secret: app-secret-for-tests-0123456789")
    settings = config.load(path, env={})
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        client = GraphClient(fetcher, app_from(settings))
        long_lived = await client.exchange_token("EAAB-short-lived-user-token-123456")
        assert long_lived["expires_in"] == 5183944
        pages = await client.accounts(long_lived["access_token"])
        assert [(p["id"], p["access_token"]) for p in pages] == [(PAGE_A, TOKEN_A)]
        info = await client.debug_token(TOKEN_A)
        assert (info["is_valid"], info["type"], info["profile_id"]) == (True, "PAGE", PAGE_A)
        with pytest.raises(GraphTokenInvalid) as caught:
            await client.exchange_token("EAAB-unknown-user-token-0000000")
        assert "EAAB-unknown-user-token-0000000" not in str(caught.value)
        assert "app-secret-for-tests" not in str(caught.value)


def test_the_fake_graph_api_runs_standalone_from_json_fixtures(tmp_path):
    import socket
    import urllib.request

    fixtures = tmp_path / "facebook.json"
    fixtures.write_text(json.dumps({"pages": [{"id": PAGE_A, "name": "Bäckerei Schmitz", "token": "EAAB-demo-token",
                                               "posts": [{"message": "Frische Brötchen!", "age": "2h",
                                                          "photos": [[720, 540]]}],
                                               "instagram": {"id": IG_A, "media": [{"caption": "Zimtschnecken",
                                                                                    "age": "1d"}]}}]}))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "hub.demo.graphapi", "--port", str(port), "--fixtures",
                               str(fixtures)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith(f"fake Graph API at http://127.0.0.1:{port} (1 pages, 1 Instagram")
        url = f"http://127.0.0.1:{port}/v24.0/{PAGE_A}/published_posts?fields=message,full_picture" \
              "&access_token=EAAB-demo-token"
        [post] = json.load(urllib.request.urlopen(url, timeout=5))["data"]
        assert post["message"] == "Frische Brötchen!" and "&oe=" in post["full_picture"]
        with urllib.request.urlopen(post["full_picture"], timeout=5) as image:
            assert image.headers["Content-Type"] == "image/jpeg"
    finally:
        server.terminate()
        server.wait(10)
