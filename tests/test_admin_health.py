"""Source health for the project manager (issue 17): the demo town with one deliberately broken
source puts it first, explained in plain German; states, filters, the JSON twin; every error
the hub produces (tests/data/admin/errors.json, made by the hub's own error code paths)
maps to German advice."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub import health
from hub.store import SourceStatus
from hub.store.scheduling import SourceSchedule
from hub.web.app import create_app
from tests.admintown import ROOT, USERS, csrf_of, files, ingest, login, open_town, write_config
from tests.demo_graph import demo_graph
from tests.feedserver import FeedServer

CASES = json.loads((Path(__file__).parent / "data" / "admin" / "errors.json").read_text(encoding="utf-8"))
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['code']}:{c['error'][:30]}" for c in CASES])
def test_every_error_of_the_hub_is_explained_in_german(case):
    explained = health.explain(case["error"], case["code"])
    assert case["what"] in explained.what
    assert explained.todo  # always something to do
    status = _status(status="failing", last_error=case["error"], held="token_invalid" if case["state"] == "reconnect" else None)
    assert health.state_of(status, case["code"], [], None, NOW) == case["state"]


def test_states_of_working_sources():
    hourly = SourceSchedule(None, 3600, None, None, None)
    assert health.state_of(_status(), None, [], hourly, NOW) == "ok"
    assert health.state_of(_status(status="new", last_ok_at=None), None, [], None, NOW) == "new"
    stale = _status(last_ok_at=NOW - timedelta(days=2))
    assert health.state_of(stale, None, [], hourly, NOW) == "stale"
    assert health.state_of(_status(last_ok_at=NOW - timedelta(hours=20)), None, [], hourly, NOW) == "ok"
    live = SourceSchedule(None, 3600, None, "live", NOW + timedelta(days=5))
    assert health.state_of(_status(), None, [], live, NOW) == "pushing"
    expiring = ["Zugangs-Token läuft am 2026-11-27 ab (in 7 Tagen): ein neues Seiten-Token erzeugen"]
    assert health.state_of(_status(), None, expiring, hourly, NOW) == "token"
    nothing = _status(warnings=["Selektoren fanden nichts (selectors matched nothing) auf https://x.example/: items "
                                "'.termin' passt auf kein Element mehr"])
    assert health.state_of(nothing, None, [], hourly, NOW) == "selectors"


def test_the_feed_connector_s_warnings_about_entries_read_in_german():
    """The warnings of recorded feeds (their expected files), as the cockpit shows them."""
    feeds = Path(__file__).parent / "data" / "feeds"
    warnings = {name: json.loads((feeds / name).read_text())["warnings"]
                for name in ("rss20_shared_guid.expected.json", "keys.expected.json")}
    assert [health.german_warning(w) for w in warnings["rss20_shared_guid.expected.json"]] == [
        "Mehrere Einträge des Feeds tragen dieselbe Kennung (ein Fehler des Systems, das ihn schreibt); "
        "der Hub unterscheidet sie an ihren Links."]
    assert "Ein Eintrag kommt doppelt vor; der erste wurde genommen." in map(
        health.german_warning, warnings["keys.expected.json"])


@pytest.fixture(scope="module")
def server():
    with FeedServer() as s:
        s.files.update(files(s.url("").rstrip("/")))
        yield s


@pytest.fixture
async def town(tmp_path, server):
    settings, store = open_town(write_config(tmp_path, server.url("").rstrip("/")))
    await ingest(settings, store)
    yield settings, store
    store.close()


async def test_the_broken_source_comes_first_explained(town):
    with TestClient(create_app(*town), base_url="http://127.0.0.1", follow_redirects=False) as client:
        login(client, "ben")
        page = client.get("/admin").text
        first = page.split('<tr class="source')[1]
        assert 'id="quelle-kaputt-feed"' in first and "Kiosk Kaputt" in first and "Gestört" in first
        assert "Unter dieser Adresse gibt es nichts (mehr)" in first and "Was tun?" in first
        assert "HTTP 404" in first  # the hub's own words, for those who run it
        assert "1 braucht Aufmerksamkeit" in page
        # filters: by state, by merchant (through the filter form, which carries its token)
        token = csrf_of(page)
        answer = client.post("/admin/filter", data={"csrf": token, "ziel": "/admin", "zustand": "ok",
                                                    "teilnehmer": "baeckerei"})
        assert answer.headers["location"] == "/admin?zustand=ok&teilnehmer=baeckerei"
        shown = re.findall(r'id="quelle-([^"]+)"', client.get(answer.headers["location"]).text)
        assert shown == ["baeckerei-rss"]
        assert re.findall(r'id="quelle-([^"]+)"', client.get("/admin?zustand=failing").text) == ["kaputt-feed"]
        body = client.get("/admin/health.json").json()
        assert [s["id"] for s in body["sources"]][0] == "kaputt-feed"
        assert body["states"]["failing"] == 1 and body["states"]["ok"] == 4
        broken = body["sources"][0]
        assert broken["error_streak"] == 1 and broken["explanation"]["what"].startswith("Unter dieser Adresse")
        same = client.get("/api/v1/admin/health", auth=("ben", USERS["ben"][1])).json()
        assert [s["id"] for s in same["sources"]] == [s["id"] for s in body["sources"]]


async def test_a_town_with_many_sources_pages_them_worst_first(town, monkeypatch):
    """The overview of a big town: the worst sources on page 1, the rest a page away, the
    counts over all of them; a merchant is then given by its id (no list of thousands)."""
    from hub.web.admin import pages

    monkeypatch.setattr(pages, "SOURCES_PAGE_SIZE", 2)  # the test town has five sources
    monkeypatch.setattr(pages, "MAX_MERCHANT_CHOICES", 1)
    with TestClient(create_app(*town), base_url="http://127.0.0.1", follow_redirects=False) as client:
        login(client, "ben")
        first = client.get("/admin").text
        assert re.findall(r'id="quelle-([^"]+)"', first)[0] == "kaputt-feed"
        assert len(re.findall(r'id="quelle-', first)) == 2 and "Seite 1 von 3" in first
        assert '<a href="/admin?seite=2">Weiter</a>' in first
        assert "1 braucht Aufmerksamkeit" in first and "5 Quellen von" in first  # counted over all
        assert '<select name="teilnehmer">' not in first and '<input name="teilnehmer" value=""' in first
        seen = [re.findall(r'id="quelle-([^"]+)"', client.get(f"/admin?seite={n}").text) for n in (1, 2, 3)]
        assert sum(map(len, seen)) == 5 and len({s for page in seen for s in page}) == 5
        assert re.findall(r'id="quelle-([^"]+)"', client.get("/admin?seite=99").text) == seen[2]  # the last
        ok = client.get("/admin?zustand=ok&seite=2").text
        assert "Seite 2 von 2" in ok and '<a href="/admin?seite=1&amp;zustand=ok">Zurück</a>' in ok


async def test_the_overview_and_healthz_do_not_count_every_source_s_items(town):
    """What is asked often (the cockpit's overview, /healthz, polled by load balancers) does
    not count each source's items, which reads every item of the store; `hub sources` does."""
    from dataclasses import replace

    from sqlalchemy import event

    settings, store = town
    counted = store.source_statuses()
    assert {s.id: s.items for s in counted}["baeckerei-rss"] == 3
    assert store.source_statuses(item_counts=False) == [replace(s, items=None) for s in counted]
    statements = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with TestClient(create_app(*town), base_url="http://127.0.0.1", follow_redirects=False) as client:
        login(client, "ben")
        assert client.get("/admin").status_code == 200
        assert client.get("/healthz").json()["sources"]["total"] == 5
    assert statements and not [q for q in statements if "GROUP BY items.source_id" in q and "count(" in q]


async def test_items_per_week_against_the_usual_rate(town):
    settings, store = town
    found = {h.id: h for h in health.report(settings, store)}
    assert found["baeckerei-rss"].items_week == 3
    assert found["gaertnerei-rss"].items_week == 0 and found["gaertnerei-rss"].usual_week == pytest.approx(1 / 8)


async def test_the_demo_town_with_one_broken_source(tmp_path):
    """config.example.yaml as shipped (its feeds, the fake Graph API), plus one source whose
    file is gone: it is the first row, with a plain explanation."""
    text = (ROOT / "config.example.yaml").read_text(encoding="utf-8").replace("file:hub/demo/", f"file:{ROOT}/hub/demo/")
    broken = '      - {connector: rss, id: bibliothek-alt, url: "file:/nonexistent/bibliothek-alt.xml"}\n'
    text = re.sub(r"(  - id: stadtbibliothek\n(?:    .*\n)*?    sources:\n)", lambda m: m.group(1) + broken, text)
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with demo_graph() as graph:
        env = {**os.environ, **graph, "HUB_STORE_URL": f"sqlite:///{tmp_path}/hub.db", "HUB_DATA_DIR": str(tmp_path / "data")}
        from hub import config

        settings = config.load(path, env=env)
        settings, store = open_town_from(settings)
        reports = await ingest(settings, store)
    assert [r.source_id for r in reports if r.status == "failed"] == ["bibliothek-alt"]
    found = health.report(settings, store)
    assert found[0].id == "bibliothek-alt" and found[0].state == "failing"
    assert all(h.state == "ok" for h in found[1:])
    with TestClient(create_app(settings, store), base_url="http://127.0.0.1", follow_redirects=False) as client:
        answer = client.get("/admin/login")
        client.post("/admin/login", data={"csrf": csrf_of(answer.text), "username": "anna", "password": "musterstadt-demo"})
        first = client.get("/admin").text.split('<tr class="source')[1]
        assert "bibliothek-alt" in first and "Stadtbibliothek Musterstadt" in first
        assert "Unter dieser Adresse gibt es nichts (mehr)" in first
    store.close()


def open_town_from(settings):
    from hub.moderation import rules_from
    from hub.pipeline import source_specs
    from hub.store import Store

    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    store.records.configure(rules_from(settings))
    return settings, store


def _status(**changes) -> SourceStatus:
    values = dict(id="s", merchant_id="m", connector="rss", status="ok", last_fetch_at=NOW, last_ok_at=NOW,
                  last_error=None, error_count=0, warnings=[], next_fetch_at=None, items=3)
    values.update(changes)
    if values["status"] == "failing":
        values["error_count"] = 2
    return SourceStatus(**values)
