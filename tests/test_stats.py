"""Proof of success (issue 17): views, searches, clicks, feed and API requests, deliveries,
counted on the server without cookies or personal data, buffered and written in batches;
the statistics page, its SVG charts and the monthly CSV; and a full dump of the store after
a browsing session holds no IP address, cookie value or user agent."""

from __future__ import annotations

import csv
import io
import threading
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from hub import stats
from hub.http import Fetcher
from hub.store.stats import StatsStore
from hub.web.app import create_app
from schedules.clock import SystemClock
from schedules.publishing import ChannelPublisher, prepare_channels
from tests.admintown import csrf_of, files, ingest, login, open_town, record_id, write_config
from tests.feedserver import FeedServer

VISITOR = ("203.0.113.77", 40123)  # TEST-NET-3: an address found nowhere else
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Musterbrowser/7.7 Datenschutzprobe"


@pytest.fixture(scope="module")
def server():
    with FeedServer() as s:
        s.files.update(files(s.url("").rstrip("/")))
        yield s


@pytest.fixture
async def town(tmp_path, server):
    path = write_config(tmp_path, server.url("").rstrip("/"),
                        channels=f"  - {{id: archiv, renderer: jsonlines, path: {tmp_path}/archiv.jsonl}}\n")
    settings, store = open_town(path)
    prepare_channels(settings, store)
    await ingest(settings, store)
    yield settings, store
    store.close()


def visitor(town) -> TestClient:
    return TestClient(create_app(*town), base_url="http://127.0.0.1", client=VISITOR, follow_redirects=False,
                      headers={"User-Agent": BROWSER})


def today(settings) -> date:
    return datetime.now(ZoneInfo(settings.platform.timezone)).date()


def counted(store, day: date) -> dict[tuple[str, str, str, str], int]:
    return {(c.event, c.merchant_id, c.channel, c.subject): c.n for c in StatsStore(store).counts(day, day)}


async def test_what_residents_do_is_counted_per_merchant_and_channel(town):
    settings, store = town
    brot = record_id(store, "Neues Dinkelbrot")
    with visitor(town) as client:
        for path in ("/", "/", "/m/baeckerei", f"/items/{brot}", f"/items/{brot}", "/search?q=  Dinkel  BROT ",
                     "/feed.atom?merchant=baeckerei", "/events.ics", "/api/v1/items", "/api/v1/search?q=stollen"):
            assert client.get(path).status_code == 200, path
        assert client.get("/m/gibt-es-nicht").status_code == 404  # not counted: not a page
        assert client.get("/items/999999").status_code == 404
        assert client.get("/", headers={"User-Agent": "Googlebot/2.1"}).status_code == 200  # a robot: not counted
        go = client.get(f"/go/{brot}")
        assert go.status_code == 302 and go.headers["location"] == "https://baeckerei.example/brot"
        assert stats.pending(store) > 0
        assert counted(store, today(settings)) == {}  # nothing written yet: buffered
    # the app shut down: what was counted is written
    assert stats.pending(store) == 0
    assert counted(store, today(settings)) == {
        ("page_view", "", "web", "/"): 2,
        ("merchant_view", "baeckerei", "web", ""): 1,
        ("record_view", "baeckerei", "web", str(brot)): 2,
        ("search", "", "web", "dinkel brot"): 1,
        ("feed_request", "baeckerei", "feed", "atom"): 1,
        ("feed_request", "", "feed", "ics"): 1,
        ("api_request", "", "api", "items"): 1,
        ("api_request", "", "api", "search"): 1,
        ("search", "", "api", "stollen"): 1,
        ("click", "baeckerei", "web", str(brot)): 1,
    }


async def test_go_only_leads_to_a_published_records_own_link(town):
    settings, store = town
    held = record_id(store, "Vereinsfest am Sportplatz")
    with visitor(town) as client:
        assert client.get(f"/go/{held}").status_code == 404  # waits for review: no click-through yet
        assert client.get("/go/999999").status_code == 404
        assert client.get("/go/abc").status_code in (400, 404, 422)


def test_search_terms_are_kept_without_what_looks_personal():
    assert stats.search_term("  Weihnachts   MARKT ") == "weihnachts markt"
    assert stats.search_term("") is None and stats.search_term("   ") is None
    assert stats.search_term("max.mustermann@example.org") == stats.search_term("0171 2345678")
    assert "@" not in stats.search_term("max.mustermann@example.org")
    assert stats.search_term("Öffnungszeiten 2026") == "öffnungszeiten 2026"  # a year is not a phone number
    assert len(stats.search_term("x" * 500)) == stats.MAX_TERM


async def test_counts_from_many_threads_are_all_written_in_one_batch(town):
    settings, store = town
    tally = stats.Tally(store, settings.platform.timezone, every=3600)

    def visit() -> None:
        for _ in range(500):
            tally.count("page_view", subject="/", channel="web")

    threads = [threading.Thread(target=visit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tally.pending() == 4000
    assert tally.flush() == 1  # one counter, one row
    assert counted(store, today(settings))[("page_view", "", "web", "/")] == 4000
    tally.close()


async def test_a_failed_write_keeps_the_counts_for_the_next_try(town):
    settings, store = town
    tally = stats.Tally(store, settings.platform.timezone, every=3600)
    tally.count("search", subject="flohmarkt", channel="web", n=3)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE stat_counts RENAME TO stat_counts_away")
    assert tally.flush() == 0 and tally.pending() == 3
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE stat_counts_away RENAME TO stat_counts")
    assert tally.flush() == 1 and tally.pending() == 0
    assert counted(store, today(settings))[("search", "", "web", "flohmarkt")] == 3
    tally.close()


def test_closing_a_store_writes_its_counts_first(tmp_path):
    """What a process counted for a store goes in when the store is closed, not at the
    process's exit, when the store (a town removed, a test's database) may be gone."""
    from hub.store import Store

    url = f"sqlite:///{tmp_path / 'counts.db'}"
    store = Store(url)
    stats.count(store, "page_view", subject="/", channel="web", n=2)
    assert stats.pending(store) == 2
    store.close()
    again = Store(url)
    try:
        with again.engine.connect() as conn:  # whatever the day (the count is today's in Berlin)
            rows = conn.exec_driver_sql("SELECT event, subject, n FROM stat_counts").all()
        assert [tuple(r) for r in rows] == [("page_view", "/", 2)]
    finally:
        again.close()


async def test_deliveries_are_counted_from_the_ledger_and_by_one_call(town):
    settings, store = town
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        [report] = await ChannelPublisher(settings, store, fetcher, clock=SystemClock(), owner="test").publish()
    assert report.sent >= 5
    stats.count(store, "newsletter_delivery", channel="wochenbrief", n=42)  # what the newsletter will call
    stats.flush(store)
    rows = stats.month_rows(store, today(settings).replace(day=1), settings.platform.timezone)
    delivered = {(r.event, r.channel): 0 for r in rows}
    for r in rows:
        delivered[(r.event, r.channel)] += r.n
    assert delivered[("channel_delivery", "archiv")] == report.sent
    assert delivered[("newsletter_delivery", "wochenbrief")] == 42


async def test_stats_page_charts_and_csv(town):
    settings, store = town
    brot = record_id(store, "Neues Dinkelbrot")
    with visitor(town) as client:
        for _ in range(3):
            client.get(f"/items/{brot}")
        client.get("/search?q=Stollen")
    month = today(settings).strftime("%Y-%m")
    with TestClient(create_app(*town), base_url="http://127.0.0.1", follow_redirects=False) as admin:
        login(admin)
        page = admin.get("/admin/stats").text
        assert page.count("<svg") == 4 and '<rect class="s1"' in page
        assert " style=" not in page and "<script" not in page
        assert "Neues Dinkelbrot" in page and "stollen" in page
        token = csrf_of(page)
        answer = admin.post("/admin/filter", data={"csrf": token, "ziel": "/admin/stats", "monat": month})
        assert answer.headers["location"] == f"/admin/stats?monat={month}"
        download = admin.get(f"/admin/stats.csv?monat={month}")
    assert download.status_code == 200 and download.headers["content-type"] == "text/csv; charset=utf-8"
    assert f'filename="statistik-{month}.csv"' in download.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert list(rows[0]) == ["Datum", "Kennzahl", "Teilnehmer", "Kanal", "Detail", "Anzahl"]
    views = [r for r in rows if r["Kennzahl"] == "Aufrufe von Beiträgen"]
    assert views == [{"Datum": today(settings).isoformat(), "Kennzahl": "Aufrufe von Beiträgen",
                      "Teilnehmer": "Bäckerei Korn", "Kanal": "Website", "Detail": f"Beitrag {brot}", "Anzahl": "3"}]
    assert any(r["Kennzahl"] == "Suchen" and r["Detail"] == "stollen" for r in rows)


async def test_no_address_cookie_or_user_agent_in_the_store_after_browsing(town, tmp_path):
    """A resident reads and searches, a project manager logs in and works: then every row of
    every table, dumped, holds none of what would identify either of them."""
    settings, store = town
    brot = record_id(store, "Neues Dinkelbrot")
    secrets: set[str] = {VISITOR[0], BROWSER, "Musterbrowser"}
    with visitor(town) as client:
        for path in ("/", "/m/baeckerei", f"/items/{brot}", "/search?q=Stollen", f"/go/{brot}", "/feed.rss"):
            client.get(path)
        login(client)  # the same person, logged in
        secrets |= {v for v in client.cookies.values()}
        token = csrf_of(client.get("/admin/review").text)
        secrets.add(token)
        held = record_id(store, "Vereinsfest am Sportplatz")
        client.post(f"/admin/records/{held}/approve", data={"csrf": token})
        client.get("/admin/stats")
        client.get("/admin/login")
        secrets |= {v for v in client.cookies.values()}
    assert len([s for s in secrets if len(s) > 20]) >= 3  # session, login cookie, CSRF token
    with store.engine.connect() as conn:
        dump = "\n".join(conn.connection.driver_connection.iterdump())
    assert "Vereinsfest" in dump and "approve" in dump  # the dump is real
    for secret in secrets:
        assert secret not in dump, secret
    assert "203.0.113" not in dump


def test_the_ingest_delay_histogram_reads_the_window_s_items_not_the_store(tmp_path):
    """/metrics counts the items first seen in the last 7 days on every scrape: by the index
    on first sight, not by reading every item of the store (`ix_items_first_seen`)."""
    from datetime import timedelta, timezone

    from sqlalchemy import event

    from hub.metrics import DELAY_BUCKETS, WINDOW
    from hub.store import Store

    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    statements = []
    event.listen(store.engine, "before_cursor_execute", lambda c, cur, sql, params, *_: statements.append((sql, params)))
    StatsStore(store).ingest_delay_histogram(datetime.now(timezone.utc) - WINDOW, DELAY_BUCKETS)
    [(sql, params)] = [s for s in statements if "first_seen_at" in s[0]]
    with store.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
    store.close()
    assert "ix_items_first_seen" in plan and "SCAN items" not in plan, plan


async def test_a_merchant_s_last_post_is_looked_up_not_found_by_reading_every_item(town):
    """The cockpit's quiet list asks when each participant last posted: the newest item of
    each (deleted ones too: a post that was taken down was still posted), found through the
    index on (merchant, time), not by grouping every item of the store."""
    from sqlalchemy import event, func, select

    from hub.store import ITEMS

    _, store = town
    with store.engine.begin() as conn:  # one of them is gone from its source since
        newest = conn.execute(select(ITEMS.c.id).order_by(ITEMS.c.sort_at.desc()).limit(1)).scalar_one()
        conn.execute(ITEMS.update().where(ITEMS.c.id == newest).values(deleted_at=func.now()))
        expected = dict(conn.execute(select(ITEMS.c.merchant_id, func.max(ITEMS.c.sort_at))
                                     .group_by(ITEMS.c.merchant_id)).all())
    statements = []
    listen = lambda c, cur, sql, params, *_: statements.append((sql, params))  # noqa: E731
    event.listen(store.engine, "before_cursor_execute", listen)
    last = StatsStore(store).last_posts()
    event.remove(store.engine, "before_cursor_execute", listen)

    assert len(expected) >= 2
    assert last == expected
    [(sql, params)] = [s for s in statements if "sort_at" in s[0]]
    with store.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "ix_items_merchant_sort" in plan and "SCAN items" not in plan, plan
