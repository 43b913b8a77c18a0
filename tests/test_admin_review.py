"""The review queue (issue 17): held records with the rule that held them; approve, hide with
a reason, edit the title, choose the image, split, merge by hand; each in the audit log and on
the platform at once. Through the real app, with a store filled by the real ingest path."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from hub.identity import RULES
from hub.store.admin import AdminStore
from hub.web.admin.texts import RULE_NAMES
from hub.web.app import create_app
from tests.admintown import csrf_of, files, ingest, login, open_town, record_id, write_config
from tests.feedserver import FeedServer


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


@pytest.fixture
def client(town):
    with TestClient(create_app(*town), base_url="http://127.0.0.1", follow_redirects=False) as c:
        login(c)
        yield c


def titles_on_home(client: TestClient) -> str:
    return client.get("/").text


def shown_ids(client: TestClient) -> set[int]:
    return {int(i) for i in re.findall(r'href="/items/(\d+)', client.get("/").text)}


def act(client: TestClient, record: int, action: str, **fields) -> object:
    token = csrf_of(client.get("/admin/review").text)
    return client.post(f"/admin/records/{record}/{action}", data={"csrf": token, **fields})


def test_the_queue_shows_held_records_with_the_rule_that_held_them(client, town):
    page = client.get("/admin/review").text
    assert "3 Beiträge warten auf eine Entscheidung" in page
    for title in ("Vereinsfest am Sportplatz", "Billige Uhren kaufen", "Großes Gewinnspiel"):
        assert title in page
    assert "werden vor der Veröffentlichung geprüft (trust: review)" in page
    assert "enthält das gesperrte Wort „Gewinnspiel“ (block_words)" in page
    assert "Neues Dinkelbrot" not in page  # published: not waiting
    assert '<span class="count">3</span>' in page  # the count in the navigation


def test_approve_puts_the_record_on_the_platform_at_once(client, town):
    settings, store = town
    held = record_id(store, "Vereinsfest am Sportplatz")
    assert "Vereinsfest am Sportplatz" not in titles_on_home(client)
    answer = act(client, held, "approve")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/admin/review?meldung=approved")
    assert "erscheint jetzt auf der Plattform" in client.get(answer.headers["location"]).text
    assert "Vereinsfest am Sportplatz" in titles_on_home(client)
    assert client.get(f"/items/{held}").status_code == 200
    entry = AdminStore(store).audit(limit=1)[0]
    assert (entry.user, entry.action, entry.target) == ("anna", "approve", str(held))
    assert entry.detail["held_because"] == "the merchant's records are reviewed before they are shown"
    assert store.records.revisions(held)[-1].change == "status"


def test_hide_asks_for_a_reason_and_keeps_it(client, town):
    settings, store = town
    shown = record_id(store, "Neues Dinkelbrot")
    assert "Neues Dinkelbrot" in titles_on_home(client)
    refused = act(client, shown, "hide", grund="  ")
    assert refused.status_code == 400 and "Grund" in refused.text
    assert store.records.get(shown).status == "published"
    assert act(client, shown, "hide", grund="Doppelt gemeldet, siehe Stollen").status_code == 303
    record = store.records.get(shown)
    assert record.status == "hidden" and record.status_reason == "Doppelt gemeldet, siehe Stollen"
    assert "Neues Dinkelbrot" not in titles_on_home(client)
    assert client.get(f"/items/{shown}").status_code == 404
    entry = AdminStore(store).audit(limit=1)[0]
    assert (entry.action, entry.detail["reason"]) == ("hide", "Doppelt gemeldet, siehe Stollen")
    assert "Doppelt gemeldet, siehe Stollen" in client.get(f"/admin/records/{shown}").text


def test_a_hidden_record_stays_hidden_after_the_next_fetch(client, town, server):
    settings, store = town
    spam = record_id(store, "Billige Uhren kaufen")
    act(client, spam, "hide", grund="Werbung für Uhren")
    import asyncio

    asyncio.run(ingest(settings, store))
    assert store.records.get(spam).status == "hidden"
    assert store.records.get(spam).status_reason == "Werbung für Uhren"


def test_edit_the_title_and_choose_the_image(client, town):
    settings, store = town
    stollen = record_id(store, "Christstollen aus eigener Backstube")
    record = store.records.get(stollen)
    images = [m.url for m in record.item.media]
    assert len(images) == 2
    other = next(u for u in images if u != record.item.media[0].url)
    answer = act(client, stollen, "edit", titel="Christstollen – jetzt vorbestellen", bild=other)
    assert answer.status_code == 303
    record = store.records.get(stollen)
    assert record.item.title == "Christstollen – jetzt vorbestellen" and record.item.media[0].url == other
    home = titles_on_home(client)
    assert "Christstollen – jetzt vorbestellen" in home and "Christstollen aus eigener Backstube" not in home
    assert "Christstollen – jetzt vorbestellen" in client.get("/feed.atom").text
    # an image that is not the record's own is ignored; an empty title gives it back to the source
    act(client, stollen, "edit", titel="", bild="https://evil.example/x.jpg")
    record = store.records.get(stollen)
    assert record.item.title == "Christstollen aus eigener Backstube" and record.item.media[0].url != "https://evil.example/x.jpg"
    assert [e.action for e in AdminStore(store).audit(limit=2)] == ["edit", "edit"]


def test_an_edited_title_survives_the_next_fetch(client, town):
    settings, store = town
    brot = record_id(store, "Neues Dinkelbrot")
    act(client, brot, "edit", titel="Dinkel-Walnuss-Brot")
    import asyncio

    asyncio.run(ingest(settings, store))
    assert store.records.get(brot).item.title == "Dinkel-Walnuss-Brot"


def test_merge_two_records_by_hand_then_split_them_again(client, town):
    settings, store = town
    keep, other = record_id(store, "Christstollen aus eigener Backstube"), record_id(store, "Wintermäntel reduziert")
    before = shown_ids(client)
    assert {keep, other} <= before
    answer = act(client, keep, "merge", mit=f"#{other}")
    assert answer.status_code == 303 and "meldung=merged" in answer.headers["location"]
    merged = store.records.get(keep)
    assert len(merged.origins) == 2 and {o.rule for o in merged.origins} == {"first", "manual"}
    assert "(von Hand zusammengeführt)" in client.get(f"/admin/records/{keep}").text
    with store.engine.connect() as conn:  # the merged-away record is removed (and has no origins left)
        assert conn.exec_driver_sql(f"SELECT removed_at FROM records WHERE id = {other}").scalar() is not None
    assert store.records.get(other) is None
    assert client.get(f"/items/{other}").status_code == 404
    assert shown_ids(client) == before - {other}
    assert act(client, keep, "merge", mit=str(keep)).status_code == 400  # not with itself
    assert act(client, keep, "merge", mit="999999").status_code == 400

    moved = next(o.item_id for o in merged.origins if o.rule == "manual")
    answer = act(client, keep, "split", herkunft=str(moved))
    assert answer.status_code == 303
    new_id = int(re.search(r"neu=(\d+)", answer.headers["location"]).group(1))
    assert len(store.records.get(keep).origins) == 1
    assert store.records.get(new_id).item.title == "Wintermäntel reduziert"
    assert [e.action for e in AdminStore(store).audit(limit=2)] == ["split", "merge"]


def test_search_finds_published_records_to_act_on(client, town):
    token = csrf_of(client.get("/admin/review").text)
    answer = client.post("/admin/filter", data={"csrf": token, "ziel": "/admin/review", "suche": "Dinkelbrot"})
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/review?suche=Dinkelbrot"
    page = client.get(answer.headers["location"]).text
    assert "Neues Dinkelbrot" in page.split("Beitrag suchen")[1]


def test_a_record_page_shows_its_history(client, town):
    settings, store = town
    held = record_id(store, "Vereinsfest am Sportplatz")
    act(client, held, "approve")
    page = client.get(f"/admin/records/{held}").text
    assert "Verlauf" in page and "freigegeben" in page
    assert client.get("/admin/records/999999").status_code == 404


def test_actions_on_a_record_that_does_not_exist(client):
    assert act(client, 999999, "approve").status_code == 404
    assert act(client, 999999, "hide", grund="x").status_code == 404
    assert act(client, 1, "zaubern").status_code == 404


def test_every_rule_identity_merges_by_has_a_german_name():
    assert set(RULES) | {"first", "manual"} == set(RULE_NAMES)
