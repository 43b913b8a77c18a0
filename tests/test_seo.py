"""Found by search engines (issue 14): /robots.txt and /sitemap.xml through the real app and
store (SQLite and PostgreSQL). The sitemap is read with an XML parser and checked against
the structure of the sitemaps protocol's schema (sitemap.xsd, siteindex.xsd): the pages,
every merchant and every live record once, absolute URLs, W3C dates; beyond the per-file
limit a sitemap index whose files together list the same URLs; robots.txt read by protego,
the parser the website connector uses, as a crawler reads it.

Dates are relative to now (the suite also runs a year ahead), never to a fixed day."""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import urlsplit
from xml.etree import ElementTree

import pytest
from protego import Protego

from hub.store.public import PublicReader
from hub.web import seo
from tests.publictown import BASE, Town, filled, item

NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
W3C = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?")
PAGES = {f"{BASE}/", f"{BASE}/events", f"{BASE}/offers"} | {f"{BASE}/m/{m}" for m in
                                                             ("baeckerei", "tsv", "modehaus", "rathaus")}


@pytest.fixture
def town(store, tmp_path) -> Town:
    return filled(Town(store, tmp_path))


def parse(town: Town, path: str) -> ElementTree.Element:
    answer = town.get(path)
    assert answer.status_code == 200, path
    assert answer.headers["content-type"].startswith("application/xml")
    assert answer.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ElementTree.fromstring(answer.content)


def urlset(root: ElementTree.Element, limit: int = 50_000) -> dict[str, datetime | None]:
    """loc -> lastmod of a <urlset>, checked against sitemap.xsd's structure."""
    assert root.tag == f"{NS}urlset"
    entries = list(root)
    assert 1 <= len(entries) <= limit
    found = {}
    for url in entries:
        assert url.tag == f"{NS}url"
        children = [c.tag.removeprefix(NS) for c in url]
        assert children[0] == "loc" and set(children) <= {"loc", "lastmod", "changefreq", "priority"}
        assert len(children) == len(set(children))
        assert children == sorted(children, key=["loc", "lastmod", "changefreq", "priority"].index)  # xsd:sequence
        loc = url.find(f"{NS}loc").text
        assert loc.startswith(f"{BASE}/") and len(loc) < 2048 and loc not in found
        found[loc] = _lastmod(url)
    return found


def sitemapindex(root: ElementTree.Element) -> dict[str, datetime | None]:
    assert root.tag == f"{NS}sitemapindex"
    found = {}
    for sitemap in root:
        assert sitemap.tag == f"{NS}sitemap"
        assert [c.tag.removeprefix(NS) for c in sitemap][0] == "loc"
        found[sitemap.find(f"{NS}loc").text] = _lastmod(sitemap)
    assert found
    return found


def _lastmod(element: ElementTree.Element) -> datetime | None:
    lastmod = element.find(f"{NS}lastmod")
    if lastmod is None:
        return None
    assert W3C.fullmatch(lastmod.text), lastmod.text
    return datetime.fromisoformat(lastmod.text)


def record_urls(town: Town) -> set[str]:
    return {i["url"] for i in town.get("/api/v1/items?limit=100").json()["items"]}


# --- sitemap ---------------------------------------------------------------------------------------

def test_the_sitemap_lists_the_pages_the_merchants_and_every_live_record(town):
    found = urlset(parse(town, "/sitemap.xml"))
    records = {u for u in found if u.startswith(f"{BASE}/items/")}
    assert set(found) - records == PAGES
    assert record_urls(town) <= records
    assert len(records) == 10  # the 8 shown now, plus an expired offer and a past event: their pages answer
    for url in records:
        assert town.get(urlsplit(url).path).status_code == 200, url


def test_lastmod_is_the_records_last_change(town, store):
    found = urlset(parse(town, "/sitemap.xml"))
    for record_id, changed in PublicReader(store.records).pages():
        assert found[f"{BASE}/items/{record_id}"] == changed.replace(microsecond=0)
    assert found[f"{BASE}/"] == max(v for u, v in found.items() if u.startswith(f"{BASE}/items/"))
    assert found[f"{BASE}/m/baeckerei"] is not None and found[f"{BASE}/events"] is not None


def test_removed_and_hidden_records_leave_the_sitemap(town):
    first = urlset(parse(town, "/sitemap.xml"))
    bericht = next(i for i in town.get("/api/v1/items?merchant=tsv&kind=post").json()["items"])
    town.fetch("tsv", gone=("bericht",))
    stollen = town.get("/api/v1/items?tag=backen").json()["items"][0]
    town.store.records.hide(stollen["id"])
    after = urlset(parse(town, "/sitemap.xml"))
    assert set(first) - set(after) == {bericht["url"], stollen["url"]}


def test_beyond_the_limit_per_file_a_sitemap_index(town, store, monkeypatch):
    everything = set(urlset(parse(town, "/sitemap.xml")))
    town.fetch("rathaus", *[item("rathaus", f"meldung-{n}", f"Amtliche Meldung Nummer {n}", hours_ago=10 + n)
                            for n in range(14)])
    everything |= record_urls(town)
    monkeypatch.setattr(seo, "URLS_PER_FILE", 5)
    small = Town(store, town.settings.path.parent)  # an app made with the smaller limit
    files = sitemapindex(parse(small, "/sitemap.xml"))
    assert list(files)[0] == f"{BASE}/sitemap-pages.xml"
    assert all(re.fullmatch(rf"{re.escape(BASE)}/sitemap-records-\d+\.xml", f) for f in list(files)[1:])
    listed: dict[str, datetime | None] = {}
    for file, lastmod in files.items():
        part = urlset(parse(small, urlsplit(file).path), limit=10 if file.endswith("pages.xml") else 5)
        assert not set(part) & set(listed)  # each URL in one file only
        listed.update(part)
        assert lastmod == max(filter(None, part.values()))
    assert set(listed) == everything
    assert small.get("/sitemap-records-999.xml").status_code == 404
    assert small.get("/sitemap-records-0.xml").status_code == 404


def test_records_are_read_a_batch_at_a_time(town, store):
    reader = PublicReader(store.records)
    all_ids = [i for i, _ in reader.pages()]
    queries = []
    from sqlalchemy import event

    def count(conn, cursor, statement, *args):
        if "FROM records" in statement:
            queries.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        assert [i for i, _ in reader.pages(batch=3)] == all_ids == sorted(all_ids)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert len(queries) == len(all_ids) // 3 + 1  # never all of them at once
    assert all("LIMIT" in q.upper() for q in queries)
    chunks = reader.chunks(4)
    assert sum(c.count for c in chunks) == len(all_ids)
    ranges = [reader.pages(first_id=(c.number - 1) * 4 + 1, last_id=c.number * 4) for c in chunks]
    assert [i for pages in ranges for i, _ in pages] == all_ids


# --- robots.txt ------------------------------------------------------------------------------------

def test_robots_txt_opens_the_pages_and_names_the_sitemap(town):
    answer = town.get("/robots.txt")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    robots = Protego.parse(answer.text)
    assert list(robots.sitemaps) == [f"{BASE}/sitemap.xml"]
    for path in ("/", "/events", "/offers", "/m/baeckerei", "/items/1", "/feed.atom", "/sitemap.xml",
                 "/static/style.css", "/media/ab/abcdef/640.jpg", "/?category=gastronomie&seite=2"):
        assert robots.can_fetch(f"{BASE}{path}", "Googlebot"), path
    for path in ("/admin", "/admin/review", "/api/v1/items", "/hooks/facebook", "/embed?category=vereine",
                 "/docs", "/openapi.json", "/search?q=konzert", "/newsletter/confirm/abc"):
        assert not robots.can_fetch(f"{BASE}{path}", "Googlebot"), path
    comments = [line for line in answer.text.splitlines() if line.startswith("#")]
    assert len(comments) >= 6  # each rule says why
