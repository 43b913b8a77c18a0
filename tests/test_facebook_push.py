"""Facebook's side for the project manager, end to end against the fake Graph API on loopback:
the page webhook (`/hooks/facebook`: handshake, signatures, thin notifications read through
the pipeline), the token checks (`debug_token`) and their warnings in `hub sources` and
`/healthz`, and the `hub facebook` commands."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from connectors.graph import PAUSES
from hub import config
from hub.cli import app as cli
from hub.demo.graphapi import FakeGraph
from hub.http import Fetcher
from hub.pipeline import source_specs
from hub.signatures import signature_ok
from hub.store import Store
from hub.tokens import check_tokens
from hub.web.app import create_app
from hub.web.facebook import PushQueue, changes
from tests.test_facebook import IG_A, PAGE_A, PAGE_B, TOKEN_A, TOKEN_B, fb, sync, visible, write_config

APP_ID, SECRET, VERIFY = "1234567890", "test_app_secret", "verify-me-0815"
APP = f", app_id: '{APP_ID}', app_secret: {SECRET}, verify_token: {VERIFY}"
# connector-facts 1.10: Meta's test vector, byte for byte
VECTOR_BODY = (b'{"object":"page","entry":[{"id":"104523984512345","time":1749194145,"changes":[{"field":"feed",'
               b'"value":{"item":"status","verb":"add","post_id":"104523984512345_812345678901234","published":1,'
               b'"created_time":1749194142}}]}]}')
VECTOR_SIGNATURE = "sha256=2705340f651d6522435efcc6af73c1755cee985d49d5c5ae0479aae39a5b151f"


@pytest.fixture
def graph():
    with FakeGraph(app_id=APP_ID, app_secret=SECRET) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_pauses():
    PAUSES._until.clear()
    PAUSES._strikes.clear()


def notification(page_id: str, *changes: dict, time_: int | None = None) -> bytes:
    entry = {"id": page_id, "time": time_ or int(time.time()),
             "changes": [{"field": "feed", "value": value} for value in changes]}
    return json.dumps({"object": "page", "entry": [entry]}, ensure_ascii=False).encode()


def change(post: dict | str, verb: str = "add", item: str = "status", **extra) -> dict:
    post_id = post if isinstance(post, str) else post["id"]
    return {"item": item, "verb": verb, "post_id": post_id, "published": 1, "created_time": int(time.time()),
            "from": {"id": post_id.split("_")[0], "name": "Bäckerei Schmitz"}, **extra}


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def web(path: Path):
    settings = config.load(path, env={})
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    return settings, store, TestClient(create_app(settings, store))


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- the webhook ------------------------------------------------------------------------------------

def test_the_reference_test_vector_verifies_and_a_changed_byte_does_not():
    assert signature_ok(SECRET, VECTOR_SIGNATURE, VECTOR_BODY)
    assert not signature_ok(SECRET, VECTOR_SIGNATURE, VECTOR_BODY.replace(b"812345678901234", b"812345678901235"))
    assert not signature_ok("another_secret", VECTOR_SIGNATURE, VECTOR_BODY)
    # Meta signs the body as sent: parsed and written again, it no longer verifies
    again = json.dumps(json.loads(VECTOR_BODY)).encode()
    assert not signature_ok(SECRET, VECTOR_SIGNATURE, again)


def test_the_handshake_echoes_the_challenge_only_for_our_verify_token(graph, tmp_path):
    graph.add_page(PAGE_A, TOKEN_A, "Bäckerei Schmitz")
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]}, facebook=APP)
    _, _, client = web(path)
    with client:
        ok = client.get("/hooks/facebook", params={"hub.mode": "subscribe", "hub.challenge": "1158201444",
                                                   "hub.verify_token": VERIFY})
        assert (ok.status_code, ok.text, ok.headers["content-type"]) == (200, "1158201444", "text/plain; charset=utf-8")
        for params in ({"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "falsch"},
                       {"hub.mode": "subscribe", "hub.challenge": "1"},
                       {"hub.mode": "unsubscribe", "hub.challenge": "1", "hub.verify_token": VERIFY}, {}):
            refused = client.get("/hooks/facebook", params=params)
            assert refused.status_code == 403 and "1" not in refused.text


def test_without_app_secret_or_verify_token_the_hook_answers_503_and_says_why(graph, tmp_path, caplog):
    graph.add_page(PAGE_A, TOKEN_A)
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]}, facebook=f", verify_token: {VERIFY}")
    _, _, client = web(path)
    with client:
        params = {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": VERIFY}
        assert client.get("/hooks/facebook", params=params).status_code == 503
        assert client.post("/hooks/facebook", content=VECTOR_BODY, headers=signed(VECTOR_BODY)).status_code == 503
    assert "facebook.app_secret is not configured" in caplog.text
    checked = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert checked.exit_code == 0 and "push needs facebook.app_secret" in checked.stderr


def test_the_reference_notification_is_accepted_and_read_through_the_pipeline(graph, tmp_path):
    page = graph.add_page(PAGE_A, TOKEN_A, "Bäckerei Schmitz")
    page.post("Samstag: Wochenmarkt mit frischen Erdbeeren ab 8 Uhr!", post_id=f"{PAGE_A}_812345678901234",
              age=timedelta(seconds=3))
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]}, facebook=APP)
    _, store, client = web(path)
    with client:
        answered = client.post("/hooks/facebook", content=VECTOR_BODY,
                               headers={"X-Hub-Signature-256": VECTOR_SIGNATURE})
        assert answered.status_code == 200
        wait_for(lambda: visible(store, "schmitz-facebook"))
    assert visible(store, "schmitz-facebook") == {f"{PAGE_A}_812345678901234": "Samstag: Wochenmarkt mit frischen "
                                                                                "Erdbeeren ab 8 Uhr!"}
    assert graph.calls[f"{PAGE_A}_812345678901234"] == 1  # the post was read by its id, nothing else


def test_an_invalid_signature_gets_403_and_changes_nothing(graph, tmp_path):
    page = graph.add_page(PAGE_A, TOKEN_A, "Bäckerei Schmitz")
    post = page.post("Neu: Stollen", age=timedelta(seconds=5))
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]}, facebook=APP)
    _, store, client = web(path)
    body = notification(PAGE_A, change(post))
    sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()  # the legacy header's method
    with client:
        for headers in ({}, signed(body, "wrong secret"), {"X-Hub-Signature-256": "sha256=" + "0" * 64},
                        {"X-Hub-Signature": sha1}, {"X-Hub-Signature-256": sha1}):
            assert client.post("/hooks/facebook", content=body, headers=headers).status_code == 403
        tampered = body.replace(b"Schmitz", b"Schmitt")
        assert client.post("/hooks/facebook", content=tampered, headers=signed(body)).status_code == 403
        time.sleep(0.5)
    assert store.count_items() == 0 and graph.calls == {}


def test_adds_edits_hides_and_removals_are_applied_and_replays_cost_nothing(graph, tmp_path):
    page = graph.add_page(PAGE_A, TOKEN_A, "Bäckerei Schmitz")
    old = page.post("Tagesangebot: Bienenstich", age=timedelta(days=1))
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]}, facebook=APP)
    asyncio.run(sync(path))
    settings, store, client = web(path)
    with client:
        def push(*values: dict) -> None:
            body = notification(PAGE_A, *values)
            assert client.post("/hooks/facebook", content=body, headers=signed(body)).status_code == 200

        post = page.post("Heute frisch: Weihnachtsstollen! #stollen", age=timedelta(seconds=2))
        push(change(post, item="photo"))
        wait_for(lambda: post["id"] in visible(store, "schmitz-facebook"))
        assert graph.calls[post["id"]] == 1

        post["message"] = "Heute frisch: Weihnachtsstollen mit Marzipan! #stollen"
        push(change(post, verb="edited"))
        wait_for(lambda: "Marzipan" in visible(store, "schmitz-facebook")[post["id"]])

        # a replay of the same delivery (Meta retries), twice: not read again
        body = notification(PAGE_A, change(post, verb="edited"), time_=1)
        for _ in range(3):
            assert client.post("/hooks/facebook", content=body, headers=signed(body)).status_code == 200
        wait_for(lambda: graph.calls[post["id"]] == 3)
        time.sleep(0.5)
        assert graph.calls[post["id"]] == 3

        old["is_hidden"] = True
        push(change(old, verb="hide"))
        wait_for(lambda: old["id"] not in visible(store, "schmitz-facebook"))

        page.remove(post)
        push(change(post, verb="remove"))
        wait_for(lambda: not visible(store, "schmitz-facebook"))

        # comments, reactions, visitors' posts, other fields and pages nobody reads: ignored
        before = sum(graph.calls.values())
        visitor = change(f"{PAGE_A}_999", **{"from": {"id": "555", "name": "Gast"}})
        push(change(old, item="comment", comment_id="1_2"), change(old, item="reaction", reaction_type="like"),
             visitor)
        other = notification(PAGE_B, change(f"{PAGE_B}_1"))
        assert client.post("/hooks/facebook", content=other, headers=signed(other)).status_code == 200
        time.sleep(0.6)
        assert sum(graph.calls.values()) == before
    statuses = {s.id: s for s in store.source_statuses()}
    assert statuses["schmitz-facebook"].status == "ok"


def test_a_change_without_a_post_makes_the_page_due_for_the_scheduler(graph, tmp_path):
    from hub.store.scheduling import ScheduleStore

    graph.add_page(PAGE_A, TOKEN_A)
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]}, facebook=APP)
    _, store, client = web(path)
    plans = ScheduleStore(store)
    plans.prepare_sources(["schmitz-facebook"], datetime.now(UTC) + timedelta(hours=5), timedelta(0))
    body = notification(PAGE_A, {"item": "status", "verb": "add"})
    with client:
        assert client.post("/hooks/facebook", content=body, headers=signed(body)).status_code == 200
    assert plans.due_sources(datetime.now(UTC) + timedelta(seconds=1), 10) == ["schmitz-facebook"]


def test_changes_reads_what_a_notification_asks_for():
    pages = {PAGE_A: ["schmitz-facebook"]}
    payload = json.loads(VECTOR_BODY)
    [(source, post, digest)] = changes(payload, pages)[0]
    assert (source, post) == ("schmitz-facebook", "104523984512345_812345678901234")
    assert changes(payload, pages)[0][0][2] == digest  # a replay has the same digest
    payload["entry"][0]["changes"][0]["value"]["post_id"] = "812345678901234"  # a bare post id
    assert changes(payload, pages)[0][0][1] == "104523984512345_812345678901234"
    assert changes({"object": "instagram", "entry": payload["entry"]}, pages) == ([], set())
    assert changes({"object": "page", "entry": [{"id": PAGE_A, "changes": [{"field": "ratings"}, "x"]}]},
                   pages) == ([], set())


async def test_the_queue_groups_per_source_and_drops_replays_for_a_while():
    batches: list[dict] = []
    now = [0.0]

    async def work(batch):
        batches.append(batch)

    queue = PushQueue(work, linger=0.01, remember=600, clock=lambda: now[0])
    task = asyncio.create_task(queue.run())
    try:
        assert queue.add("a", "p1", "c1") and queue.add("a", "p2", "c2") and queue.add("b", "p3", "c3")
        assert not queue.add("a", "p1", "c1")  # a replay
        assert queue.add("a", "p1", "c4")  # another change of the same post, while it waits: read once
        await asyncio.wait_for(_until(lambda: queue.done == 1), 5)
        assert batches == [{"a": ["p1", "p2"], "b": ["p3"]}]
        now[0] = 601  # forgotten after ten minutes: harmless to read again
        assert queue.add("a", "p1", "c1")
        await asyncio.wait_for(_until(lambda: queue.done == 2), 5)
        assert batches[-1] == {"a": ["p1"]}
    finally:
        task.cancel()


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)


# --- token checks -----------------------------------------------------------------------------------

async def test_token_checks_warn_in_sources_and_healthz_without_failing_the_source(graph, tmp_path):
    page = graph.add_page(PAGE_A, TOKEN_A, "Bäckerei Schmitz")
    page.post("Frische Brötchen", age=timedelta(hours=1))
    graph.add_instagram(IG_A, TOKEN_A, "baeckerei", page)
    graph.add_page(PAGE_B, TOKEN_B, "Metzgerei Meyer")
    graph.token(TOKEN_A, expires_in=timedelta(days=9, hours=1))
    graph.token(TOKEN_B, scopes=["pages_show_list", "pages_read_engagement"], data_access_in=timedelta(days=3))
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A), f'{{connector: instagram, ig_user_id: '
                                                      f'"{IG_A}", access_token: "{TOKEN_A}"}}'],
                                          "meyer": [fb(PAGE_B, TOKEN_B)]}, facebook=APP)
    _, store = await sync(path)
    settings = config.load(path, env={})
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        reports = {r.source_id: r for r in await check_tokens(settings, store, fetcher)}
    assert {sid: r.check.missing for sid, r in reports.items()} == {
        "schmitz-facebook": (), "schmitz-instagram": (), "meyer-facebook": ("pages_manage_metadata",)}
    warned = {s.id: s.token_warnings for s in store.source_statuses()}
    assert "in 10 Tagen" in warned["schmitz-facebook"][0] and "hub facebook pages" in warned["schmitz-facebook"][0]
    assert ["Datenzugriff" in w for w in warned["meyer-facebook"]] == [True, False]
    assert "Berechtigung fehlt: pages_manage_metadata" in warned["meyer-facebook"][1]

    health = TestClient(create_app(settings, store)).get("/healthz").json()
    assert health["status"] == "ok" and health["sources"]["healthy"] == 3 and health["sources"]["with_warnings"] == 3
    assert {w["id"]: w["warnings"] for w in health["warnings"]} == warned
    sources = CliRunner().invoke(cli, ["sources", "-c", str(path)], env={"COLUMNS": "300"})
    assert "Zugangs-Token läuft am" in sources.stdout and "Berechtigung fehlt" in sources.stdout

    # tokens themselves are nowhere in the database
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("hub.db*"))
    assert TOKEN_A.encode() not in raw and TOKEN_B.encode() not in raw

    # a new token in the config: the old check no longer applies
    path.write_text(path.read_text().replace(TOKEN_B, TOKEN_B + "neu"))
    store.sync_sources(source_specs(config.load(path, env={})))
    assert {s.id: s.token_warnings for s in store.source_statuses()}["meyer-facebook"] == []


async def test_the_daily_check_asks_only_for_tokens_not_checked_lately(graph, tmp_path):
    from hub.tokens import daily_check

    graph.add_page(PAGE_A, TOKEN_A)
    graph.add_page(PAGE_B, TOKEN_B)
    graph.token(TOKEN_B, valid=False)
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)], "meyer": [fb(PAGE_B, TOKEN_B)]},
                        facebook=APP)
    settings = config.load(path, env={})
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        assert len(await daily_check(settings, store, fetcher)) == 2
        assert await daily_check(settings, store, fetcher) == []
    assert graph.calls["debug_token"] == 2
    [warning] = {s.id: s.token_warnings for s in store.source_statuses()}["meyer-facebook"][:1]
    assert warning.startswith("Facebook-Zugang ungültig")
    statuses = {s.id: s for s in store.source_statuses()}
    assert "Passwort" in statuses["meyer-facebook"].token_warnings[1]
    assert statuses["meyer-facebook"].status == "new"  # a warning is no failure


def test_token_checks_are_kept_per_fingerprint_on_sqlite_and_postgresql(store):
    from hub.models import TokenCheck
    from hub.store import SourceSpec
    from hub.store.tokens import TokenChecks

    now = datetime.now(UTC)
    store.sync_sources([SourceSpec("a", "m", "facebook", "fp1"), SourceSpec("b", "m", "facebook", "fp1")])
    soon = TokenCheck(checked_at=now, valid=True, expires_at=now + timedelta(days=2), scopes=("pages_show_list",),
                      missing=("pages_read_engagement",), kind="PAGE")
    TokenChecks(store.engine).save({"a": ("fp1", soon), "b": ("fp0", soon)})
    TokenChecks(store.engine).save({"a": ("fp1", soon)})  # again: replaced, not doubled
    warned = {s.id: s.token_warnings for s in store.source_statuses()}
    assert len(warned["a"]) == 2 and warned["b"] == []  # b's check was made with other options
    assert TokenChecks(store.engine).checked()["a"] == ("fp1", now)


# --- hub facebook pages / check ---------------------------------------------------------------------

def test_hub_facebook_pages_prints_page_tokens_as_env_lines_and_source_snippets(graph, tmp_path):
    page = graph.add_page(PAGE_A, TOKEN_A, "Bäckerei Schmitz")
    graph.add_instagram(IG_A, TOKEN_A, "baeckerei", page)
    graph.add_page(PAGE_B, TOKEN_B, "Café Zuckerstück")
    graph.users["EAAB-short-lived-user-token-0815"] = [PAGE_A, PAGE_B]
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]}, facebook=APP)
    done = CliRunner().invoke(cli, ["facebook", "pages", "--user-token", "-", "-c", str(path)],
                              input="EAAB-short-lived-user-token-0815\n")
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert f"FB_TOKEN_BAECKEREI_SCHMITZ={TOKEN_A}" in lines and f"FB_TOKEN_CAFE_ZUCKERSTUECK={TOKEN_B}" in lines
    assert all(line.startswith(("#", "FB_TOKEN_")) or not line for line in lines)  # an env file as it is
    variable = "${FB_TOKEN_BAECKEREI_SCHMITZ}"
    assert f'#   - {{connector: facebook, page_id: "{PAGE_A}", access_token: "{variable}"}}' in lines
    assert f'#   - {{connector: instagram, ig_user_id: "{IG_A}", access_token: "{variable}"}}' in lines
    assert "already configured as source schmitz-facebook" in done.stdout
    assert "the page token expires: never" in done.stdout
    assert TOKEN_A not in done.stderr and "EAAB-short-lived" not in done.stderr
    assert "valid about 60 days" in done.stderr

    expired = CliRunner().invoke(cli, ["facebook", "pages", "--user-token", "EAAB-stale-token-4711", "-c", str(path)])
    assert expired.exit_code == 1 and expired.stdout == ""
    assert "the token has expired" in expired.stderr and "log in again" in expired.stderr
    assert "EAAB-stale-token-4711" not in expired.stderr

    bare = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]})
    refused = CliRunner().invoke(cli, ["facebook", "pages", "--user-token", "x", "-c", str(bare)])
    assert refused.exit_code == 2 and "no app_id and app_secret" in refused.stderr and "hint:" in refused.stderr


def test_hub_facebook_check_prints_a_table_and_records_the_answers(graph, tmp_path):
    graph.add_page(PAGE_A, TOKEN_A, "Bäckerei Schmitz")
    graph.add_page(PAGE_B, TOKEN_B, "Metzgerei Meyer")
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)], "meyer": [fb(PAGE_B, TOKEN_B)]},
                        facebook=APP)
    env = {"COLUMNS": "250"}
    fine = CliRunner().invoke(cli, ["facebook", "check", "-c", str(path)], env=env)
    assert fine.exit_code == 0, fine.output
    assert fine.stdout.count("never") == 2 and fine.stdout.count(" ok ") == 2
    graph.token(TOKEN_B, expires_in=timedelta(days=3), scopes=["pages_show_list"])
    warned = CliRunner().invoke(cli, ["facebook", "check", "-c", str(path), "-f", "json"], env=env)
    assert warned.exit_code == 1
    rows = {r["source"]: r for r in map(json.loads, warned.stdout.splitlines())}
    assert rows["meyer-facebook"]["verdict"] == "expires soon, missing scope"
    assert rows["meyer-facebook"]["check"]["missing"] == ["pages_read_engagement", "pages_manage_metadata"]
    assert rows["schmitz-facebook"]["verdict"] == "ok"
    assert TOKEN_A not in warned.stdout and TOKEN_B not in warned.stdout
    settings = config.load(path, env={})
    statuses = {s.id: s for s in Store(settings.store.url, base_dir=settings.base_dir).source_statuses()}
    assert len(statuses["meyer-facebook"].token_warnings) == 2 and statuses["schmitz-facebook"].token_warnings == []

    bare = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]})
    refused = CliRunner().invoke(cli, ["facebook", "check", "-c", str(bare)])
    assert refused.exit_code == 2 and "app_id|app_secret" in refused.stderr


# --- under hub run --------------------------------------------------------------------------------

def test_under_hub_run_a_notified_post_is_on_the_page_within_seconds(graph, tmp_path):
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    from tests.test_schedule_processes import HubRun, wait_until

    page = graph.add_page(PAGE_A, TOKEN_A, "Bäckerei Schmitz")
    page.post("Guten Morgen aus der Backstube!", age=timedelta(hours=3))
    path = write_config(tmp_path, graph, {"schmitz": [fb(PAGE_A, TOKEN_A)]}, facebook=APP)
    run = HubRun(path)
    base = f"http://127.0.0.1:{run.port}"

    def health() -> dict:
        try:
            return json.load(urlopen(f"{base}/healthz", timeout=2))
        except OSError:
            return {}

    def post_hook(body: bytes, headers: dict[str, str]) -> int:
        try:
            return urlopen(Request(f"{base}/hooks/facebook", data=body, headers=headers), timeout=5).status
        except HTTPError as exc:
            return exc.code

    try:
        wait_until(lambda: health().get("sources", {}).get("healthy") == 1, 30)  # the first sync is done
        polls = graph.calls[PAGE_A]
        post = page.post("Heute neu: Quarkstollen mit Rosinen", age=timedelta(seconds=1))
        body = notification(PAGE_A, change(post))
        assert post_hook(body, signed(body, "not the app secret")) == 403
        time.sleep(1)
        assert "Quarkstollen" not in urlopen(base, timeout=5).read().decode()
        started = time.monotonic()
        assert post_hook(body, signed(body)) == 200
        wait_until(lambda: "Quarkstollen" in urlopen(base, timeout=5).read().decode(), 10)
        seconds = time.monotonic() - started
        assert graph.calls[PAGE_A] == polls  # the push read the post, not the page

        # `hub facebook subscribe`: Meta (here the fake) checks the callback, then delivers itself
        nobody = CliRunner().invoke(cli, ["facebook", "subscribe", "-c", str(path), "--callback",
                                          "http://127.0.0.1:9/hooks/facebook"], env={"COLUMNS": "200"})
        assert nobody.exit_code == 1 and "is the hub running" in nobody.stdout and graph.subscription is None
        done = CliRunner().invoke(cli, ["facebook", "subscribe", "-c", str(path), "--callback",
                                        f"{base}/hooks/facebook"], env={"COLUMNS": "200"})
        assert done.exit_code == 0, done.output
        assert done.stdout.count("subscribed") == 2 and page.subscribed == {"feed"}
        assert VERIFY not in done.output and TOKEN_A not in done.output
        later = page.post("Frische Krapfen mit Pflaumenmus", age=timedelta(seconds=1))
        assert graph.notify(page, later) == 200
        wait_until(lambda: "Krapfen" in urlopen(base, timeout=5).read().decode(), 10)
    finally:
        code, output = run.stop()
    assert seconds < 5, output
    assert "Facebook push for schmitz-facebook: ok, 1 new" in output
    assert "hub.verify_token=REDACTED" in output  # Meta's handshake, in the access log
    assert not re.search(r"127\.0\.0\.1:\d+ - \"GET", output)  # no client address in it either
    assert "Traceback" not in output and TOKEN_A not in output and VERIFY not in output, output
