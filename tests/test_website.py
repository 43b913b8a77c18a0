"""The website connector: recorded pages served by a real local site, each yielding exactly
the items of its expected file, and the crawl's manners (robots.txt, crawl delay,
conditional GET, the page budget, follow, sitemaps), identity across fetches and hostile
pages."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from connectors.website_crawl import Memo, rules_fingerprint
from hub.errors import BlockedAddress, FetchError, NotModified, TooLarge
from hub.models import FetchState, Kind
from hub.robots import robots
from tests.websitecases import (CASES, DATA, PLAIN_FIELDS, SiteServer, at_fetch_time, expected_path, fetch_and_parse,
                                fetcher_config, options, run_case)


@pytest.fixture(autouse=True)
def _fresh_robots():
    robots.clear()
    yield
    robots.clear()


def fetch(opts, state=None, config=None):
    with at_fetch_time():
        return asyncio.run(fetch_and_parse(opts, state, config))


def html(body: str, head: str = "") -> bytes:
    return f"<!DOCTYPE html><html lang=de><head><meta charset=utf-8>{head}</head><body>{body}</body></html>".encode()


# --- recorded pages ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_page(name):
    assert run_case(name) == json.loads(expected_path(name).read_text())


def test_every_kind_of_page_is_covered():
    pages = {case.page for case in CASES.values()}
    for required in ("shop-graph.html", "kino-microdata.html", "verein-hevent.html", "verein-plain.html",
                     "rathaus-news.html", "broken-jsonld.html", "script-title.html", "hostile-plain.html"):
        assert required in pages and (DATA / required).exists()
    assert all(expected_path(name).exists() for name in CASES)


def test_broken_json_ld_costs_only_its_block():
    result = run_case("broken-jsonld")
    assert [w for w in result["warnings"] if "JSON-LD-Block 1" in w] and [w for w in result["warnings"] if "Block 3" in w]
    # block 2 (with a trailing comma, which the reader forgives) and the microdata are read
    assert {i["title"] for i in result["items"]} == {"Lesung mit Petra Ahlers", "Kaffeeklatsch mit Musik"}


def test_script_in_a_title_is_sanitized():
    for name in ("script-title", "hostile-plain"):
        for item in run_case(name)["items"]:
            text = json.dumps(item)
            assert "<script" not in text and "alert(" not in text and "javascript:" not in text
            assert "onerror" not in text and "onclick" not in text and "iframe" not in text
    titles = [i["title"] for i in run_case("hostile-plain")["items"]]
    assert titles == ["Glühwein am Stand", "Kinderpunsch"]


# --- robots.txt and manners -------------------------------------------------------------------

PLAIN = (DATA / "verein-plain.html").read_bytes()
PLAIN_OPTIONS = {"items": "article.termin", "fields": PLAIN_FIELDS, "kind": "event"}


def test_a_page_behind_disallow_all_is_not_fetched_and_the_source_says_why():
    with SiteServer({"/termine": PLAIN}, robots=b"User-agent: *\nDisallow: /\n") as site:
        with pytest.raises(FetchError) as failed:
            fetch(options(site.url("/termine"), **PLAIN_OPTIONS))
        assert site.paths() == ["/robots.txt"]
    message = str(failed.value)
    assert "robots.txt" in message and "/termine" in message and "verbietet" in message
    assert not failed.value.transient


def test_robots_rules_for_the_hub_itself_are_honoured_with_wildcards():
    pages = {"/liste": html('<article class="t"><h2><a href="/intern/1">Eins</a></h2></article>'
                            '<article class="t"><h2><a href="/offen/2">Zwei</a></h2></article>'),
             "/intern/1": html("<main><p>geheim geheim geheim geheim geheim geheim geheim</p></main>"),
             "/offen/2": html("<main><p>offen offen offen offen offen offen offen offen offen</p></main>")}
    rules = b"User-agent: *\nDisallow: /\n\nUser-agent: musterhub\nDisallow: /intern/*\nAllow: /\n"
    with SiteServer(pages, robots=rules) as site:
        parsed, _ = fetch(options(site.url("/liste"), items="article.t", follow=True))
        assert "/intern/1" not in site.paths() and "/offen/2" in site.paths()
    assert any("robots.txt" in w and "/intern/1" in w for w in parsed.warnings)
    assert [i.title for i in parsed.items] == ["Eins", "Zwei"]


def test_an_unreadable_robots_txt_means_no_crawling_for_now():
    with SiteServer({"/termine": PLAIN}, robots=503) as site:
        with pytest.raises(FetchError) as failed:
            fetch(options(site.url("/termine"), **PLAIN_OPTIONS))
        assert site.paths() == ["/robots.txt"]
    assert failed.value.transient and "robots.txt" in str(failed.value)


def test_no_robots_txt_allows_everything_and_is_read_once_per_host():
    with SiteServer({"/termine": PLAIN}) as site:
        fetch(options(site.url("/termine"), **PLAIN_OPTIONS))
        fetch(options(site.url("/termine"), **PLAIN_OPTIONS))
        assert site.paths().count("/robots.txt") == 1
        assert site.paths().count("/termine") == 2


def test_the_crawl_delay_spaces_the_pages_of_one_host():
    links = "".join(f'<article class="t"><h2><a href="/t/{n}">Termin {n}</a></h2></article>' for n in range(3))
    pages = {"/liste": html(links), **{f"/t/{n}": html(f"<main><p>{'Text ' * 20}{n}</p></main>") for n in range(3)}}
    with SiteServer(pages, robots=b"User-agent: *\nCrawl-delay: 0.6\n") as site:
        fetch(options(site.url("/liste"), items="article.t", follow=True))
        times = [r.at for r in site.requests if r.path != "/robots.txt"]
    assert len(times) == 4
    # The server notes when a request arrives; on a loaded machine one may arrive late,
    # which shortens the next gap (by 0.2 s in one CI run): each gap may lose that much,
    # the whole span cannot. No gap is missing: pages without the delay come within ms.
    assert all(b - a >= 0.3 for a, b in zip(times, times[1:]))
    assert times[-1] - times[0] >= 3 * 0.6 - 0.05


def test_the_page_budget_caps_what_one_fetch_reads():
    links = "".join(f'<article class="t"><h2><a href="/t/{n}">Termin {n}</a></h2></article>' for n in range(6))
    pages = {"/liste": html(links), **{f"/t/{n}": html("<main><p>Text</p></main>") for n in range(6)}}
    with SiteServer(pages) as site:
        parsed, _ = fetch(options(site.url("/liste"), items="article.t", follow=True, max_pages=3))
        assert [p for p in site.paths() if p != "/robots.txt"] == ["/liste", "/t/0", "/t/1"]
    assert len(parsed.items) == 6  # every item of the list, two of them with their own page read
    assert any("max_pages: 3" in w for w in parsed.warnings)


def test_every_page_is_asked_for_conditionally_and_nothing_new_is_not_modified():
    links = '<article class="t"><h2><a href="/t/1">Eins</a></h2></article>'
    pages = {"/liste": html(links), "/t/1": html('<main><p>Der erste Termin, ausführlich beschrieben.</p></main>')}
    with SiteServer(pages) as site:
        opts = options(site.url("/liste"), items="article.t", follow=True)
        _, got = fetch(opts)
        before = len(site.requests)
        with pytest.raises(NotModified):
            fetch(opts, got.state)
        again = site.requests[before:]
    assert [r.path for r in again] == ["/liste", "/t/1"]
    assert all(r.headers.get("if-none-match") for r in again)
    memo = Memo.load(got.state.cursor, rules_fingerprint(opts))
    assert set(memo.pages) == {opts.url, site.url("/t/1")}


def test_a_changed_item_page_rereads_its_list_whole():
    links = '<article class="t"><h2><a href="/t/1">Eins</a></h2></article>'
    pages = {"/liste": html(links), "/t/1": html('<main><p>Der erste Termin, ausführlich beschrieben.</p></main>')}
    with SiteServer(pages) as site:
        opts = options(site.url("/liste"), items="article.t", follow=True)
        first, got = fetch(opts)
        site.pages["/t/1"] = html('<main><p>Der erste Termin, jetzt mit neuem Text und Anfahrt.</p></main>')
        before = len(site.requests)
        second, _ = fetch(opts, got.state)
        again = [(r.path, bool(r.headers.get("if-none-match"))) for r in site.requests[before:]]
    assert again == [("/liste", True), ("/t/1", True), ("/liste", False)]
    assert first.items[0].external_id == second.items[0].external_id
    assert "neuem Text" in second.items[0].content_html and "neuem Text" not in first.items[0].content_html


def test_the_fetcher_size_limit_cuts_a_huge_page_with_a_clear_error():
    huge = html("<p>" + "x" * (10 * 1024 * 1024) + "</p>")
    with SiteServer({"/riesig": huge}) as site:
        with pytest.raises(TooLarge) as failed:
            fetch(options(site.url("/riesig")))
    assert "larger than 5 MiB" in str(failed.value)


def test_a_start_page_that_is_no_html_page_says_what_to_use():
    with SiteServer({"/feed.xml": b"<?xml version='1.0'?><rss version='2.0'><channel/></rss>"}) as site:
        with pytest.raises(FetchError) as failed:
            fetch(options(site.url("/feed.xml")))
    assert "keine HTML-Seite" in str(failed.value) and "connector: feed" in str(failed.value)


def test_private_addresses_are_refused_like_every_fetch():
    with SiteServer({"/termine": PLAIN}) as site:
        with pytest.raises(BlockedAddress):
            fetch(options(site.url("/termine"), **PLAIN_OPTIONS), config=fetcher_config().model_copy(
                update={"allow_private_networks": False}))
        assert site.requests == []


# --- identity across fetches ---------------------------------------------------------------------

def _events(**replace: str) -> bytes:
    """The club's page of three events; `replace` swaps text in it."""
    page = ('<article class="termin"><h2>Hallenturnier</h2><p class="datum">Sa., 9. Januar, 10 Uhr</p>'
            '<p class="preis">3 €</p></article>'
            '<article class="termin"><h2>Jahreshauptversammlung</h2><p class="datum">22.01.2027 19:30</p></article>'
            '<article class="termin"><h2><a href="/ball">Fastnachtsball</a></h2><p class="datum">13. Februar 2027, 20 Uhr</p>'
            '<p class="preis">12,50 €</p></article>')
    for old, new in replace.items():
        page = page.replace(old, new)
    return html(page)


def test_rereading_the_same_page_gives_the_same_keys():
    with SiteServer({"/termine": _events()}) as site:
        opts = options(site.url("/termine"), **PLAIN_OPTIONS)
        first, _ = fetch(opts)
        second, _ = fetch(opts)  # without state: read again in full
    assert [i.external_id for i in first.items] == [i.external_id for i in second.items]
    assert [i.content_hash for i in first.items] == [i.content_hash for i in second.items]
    assert len({i.external_id for i in first.items}) == 3
    assert first.items[2].external_id == site.url("/ball")  # its own page is its identity


def test_a_changed_price_or_time_is_an_update_and_a_removed_item_is_gone():
    with SiteServer({"/termine": _events()}) as site:
        opts = options(site.url("/termine"), **PLAIN_OPTIONS)
        first, got = fetch(opts)
        site.pages["/termine"] = _events(**{"3 €": "4 €", "22.01.2027 19:30": "22.01.2027 20:00"})
        second, got = fetch(opts, got.state)
        site.pages["/termine"] = _events(**{"3 €": "4 €", "22.01.2027 19:30": "22.01.2027 20:00"}).replace(
            b'<article class="termin"><h2><a href="/ball">', b'<article class="weg"><h2><a href="/ball">')
        third, _ = fetch(opts, got.state)
    assert [i.external_id for i in second.items] == [i.external_id for i in first.items]
    changed = [a.external_id for a, b in zip(first.items, second.items) if a.content_hash != b.content_hash]
    assert changed == [first.items[0].external_id, first.items[1].external_id]
    assert second.items[0].offer.price == "4.00"
    assert second.items[1].event.start.hour == 20
    assert second.gone == ()
    assert third.gone == (site.url("/ball"),)
    assert not third.complete  # deletions are named, never guessed from what is missing


def test_a_redesigned_page_reports_selectors_matched_nothing_and_deletes_nothing():
    with SiteServer({"/termine": PLAIN}) as site:
        opts = options(site.url("/termine"), **PLAIN_OPTIONS)
        first, got = fetch(opts)
        site.pages["/termine"] = (DATA / "verein-plain-redesign.html").read_bytes()
        second, got = fetch(opts, got.state)
        site.pages["/termine"] = PLAIN  # fixed again: the old items are all there
        third, _ = fetch(opts, got.state)
    assert len(first.items) == 4
    assert second.items == () and second.gone == () and not second.complete
    assert any("selectors matched nothing" in w and "article.termin" in w for w in second.warnings)
    assert {i.external_id for i in third.items} == {i.external_id for i in first.items} and third.gone == ()


def test_changed_selectors_read_the_unchanged_page_again():
    with SiteServer({"/termine": PLAIN}) as site:
        _, got = fetch(options(site.url("/termine"), items="article.termin"))
        parsed, _ = fetch(options(site.url("/termine"), **PLAIN_OPTIONS), got.state)
    assert all(i.kind is Kind.EVENT for i in parsed.items)


# --- follow and sitemaps -------------------------------------------------------------------------

def test_follow_reads_each_items_own_page_for_structured_data_and_full_text():
    listing = html('<div class="news"><h3><a href="/n/1">Neue Öffnungszeiten</a></h3><p>Kurz</p></div>'
                   '<div class="news"><h3><a href="/n/2">Weinprobe</a></h3></div>')
    article = html('<article><h1>Neue Öffnungszeiten</h1><p>Ab Januar öffnen wir schon um 7 Uhr, '
                   'samstags bis 14 Uhr.</p><p>Sonntags bleibt geschlossen.</p></article>',
                   head='<meta property="og:image" content="/bild.jpg">'
                        '<meta property="article:published_time" content="2026-12-19T08:00:00+01:00">')
    event = html("<p>x</p>", head='<script type="application/ld+json">{"@context":"https://schema.org",'
                 '"@type":"Event","name":"Weinprobe","startDate":"2027-01-23T18:00",'
                 '"location":{"@type":"Place","name":"Weinkeller"},"description":"Sechs Weine aus der Pfalz."}'
                 '</script>')
    with SiteServer({"/aktuell": listing, "/n/1": article, "/n/2": event}) as site:
        opts = options(site.url("/aktuell"), items="div.news", fields={"title": "h3", "link": "a@href"}, follow=True)
        with at_fetch_time():
            got = asyncio.run(_retrieve(opts))
    from connectors.website import WebsiteConnector
    from hub.models import SourceRef

    explained = WebsiteConnector().parse_explained(opts, SourceRef("web", "m", "de"), got)
    news, wine = explained.parsed.items
    assert "Sonntags bleibt geschlossen" in news.content_html and news.media[0].url == site.url("/bild.jpg")
    assert news.published == datetime(2026, 12, 19, 7, 0, tzinfo=ZoneInfo("UTC"))
    assert wine.kind is Kind.EVENT and wine.event.location == "Weinkeller" and wine.summary == "Sechs Weine aus der Pfalz."
    rules_news, rules_wine = explained.rules
    assert rules_news["title"] == "selector h3" and rules_news["date"] == "opengraph (Artikelseite)"
    assert rules_wine["date"] == "json-ld (Artikelseite)"


async def _retrieve(opts, state=FetchState()):
    from connectors.website import WebsiteConnector
    from hub.http import Fetcher

    async with Fetcher(fetcher_config(), base_dir=DATA) as fetcher:
        return await WebsiteConnector().retrieve(opts, state, fetcher)


def _article(title: str, day: str) -> bytes:
    return html("<p>x</p>", head=f'<script type="application/ld+json">{{"@context":"https://schema.org",'
                                 f'"@type":"NewsArticle","headline":"{title}","datePublished":"{day}"}}</script>')


def _sitemap(entries: list[tuple[str, str]], index: bool = False) -> bytes:
    tag, inner = ("sitemapindex", "sitemap") if index else ("urlset", "url")
    body = "".join(f"<{inner}><loc>{loc}</loc><lastmod>{mod}</lastmod></{inner}>" for loc, mod in entries)
    return f'<?xml version="1.0"?><{tag} xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</{tag}>'.encode()


def test_sitemap_pages_are_read_newest_first_within_the_budget_and_a_delisted_one_is_gone():
    with SiteServer() as site:
        news = {f"/blog/{n}": _article(f"Beitrag {n}", f"2026-12-{10 + n}") for n in range(1, 6)}
        listed = [(site.url(p), f"2026-12-{10 + int(p[-1])}T12:00:00+01:00") for p in news]
        site.pages.update(news)
        site.pages["/blog/"] = html("<h1>Blog</h1>")
        site.pages["/sitemap-index.xml"] = _sitemap([(site.url("/sitemap-blog.xml.gz"), "2026-12-16")], index=True)
        site.pages["/sitemap-blog.xml.gz"] = gzip.compress(_sitemap(listed + [(site.url("/impressum"), "2026-12-19")]))
        site.robots = f"User-agent: *\nAllow: /\nSitemap: {site.url('/sitemap-index.xml')}\n".encode()
        opts = options(site.url("/blog/"), sitemap=True, max_pages=6)
        first, got = fetch(opts)
        read = [p for p in site.paths() if p.startswith("/blog/")]
        site.pages["/sitemap-blog.xml.gz"] = gzip.compress(_sitemap(listed[1:]))
        second, _ = fetch(opts, got.state)
    assert read == ["/blog/", "/blog/5", "/blog/4", "/blog/3"]  # 6 pages: the blog, 2 sitemaps, the 3 newest
    assert [i.title for i in first.items] == ["Beitrag 5", "Beitrag 4", "Beitrag 3"]
    assert "/impressum" not in site.paths()  # not under /blog/
    assert second.gone == ()  # /blog/1 left the sitemap, but it was never read
    assert any("max_pages: 6" in w for w in first.warnings)


@pytest.mark.parametrize("through_an_index", [False, True])
def test_a_page_that_leaves_the_sitemap_is_deleted(through_an_index):
    with SiteServer() as site:
        site.pages.update({"/a/1": _article("Eins", "2026-12-18"), "/a/2": _article("Zwei", "2026-12-19")})
        listing = "/sitemap-a.xml" if through_an_index else "/sitemap.xml"
        site.pages["/sitemap.xml"] = _sitemap([(site.url(listing), "2026-12-19")], index=True)  # (unchanged)
        site.pages[listing] = _sitemap([(site.url("/a/1"), "2026-12-18"), (site.url("/a/2"), "2026-12-19")])
        opts = options(site.url("/sitemap.xml"))
        first, got = fetch(opts)
        site.pages[listing] = _sitemap([(site.url("/a/2"), "2026-12-19")])
        second, _ = fetch(opts, got.state)
    assert sorted(i.external_id for i in first.items) == [site.url("/a/1"), site.url("/a/2")]
    assert second.gone == (site.url("/a/1"),)


# --- dates, prices, rules -------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("text, start, all_day", [
    ("Sa., 14. März, 19 Uhr", "2027-03-14T19:00", False),
    ("14.03.2027 19:00", "2027-03-14T19:00", False),
    ("14. März 2027", "2027-03-14T00:00", True),
    ("March 14, 2027 7 pm", "2027-03-14T19:00", False),
    ("Samstag, 14.03., 19:30 Uhr", "2027-03-14T19:30", False),
    ("2027-03-14T19:00:00Z", "2027-03-14T20:00", False),
    ("Sun, Jan 3, 10:30 am", "2027-01-03T10:30", False),
])
def test_dates_as_people_write_them(text, start, all_day):
    from connectors.website_dates import read_when

    when = read_when(text, BERLIN, datetime(2026, 12, 20, 10, tzinfo=BERLIN))
    assert when.start.astimezone(BERLIN).replace(tzinfo=None) == datetime.fromisoformat(start)
    assert when.all_day is all_day


@pytest.mark.parametrize("text, first, last", [
    ("vom 11. bis 13. Dezember", "2026-12-11", "2026-12-13"),
    ("14.–16. März 2027", "2027-03-14", "2027-03-16"),
    ("14. bis 16. März 2027", "2027-03-14", "2027-03-16"),
    ("11.–13.12.2026", "2026-12-11", "2026-12-13"),
    ("11.12. bis 13.12.2026", "2026-12-11", "2026-12-13"),
])
def test_a_period_that_names_its_month_once_starts_on_its_first_day(text, first, last):
    """A Weihnachtsmarkt "11.–13. Dezember" begins on the 11th (it was read as the 13th)."""
    from connectors.website_dates import read_when

    when = read_when(text, BERLIN, datetime(2026, 12, 1, 10, tzinfo=BERLIN))
    assert when.all_day and when.start.date() == date.fromisoformat(first)
    assert when.end.date() == date.fromisoformat(last) + timedelta(days=1)  # exclusive, as DTEND


def test_a_date_without_a_year_is_the_next_one_after_the_fetch_not_today():
    from connectors.website_dates import read_when

    in_december = read_when("Sa., 14. März, 19 Uhr", BERLIN, datetime(2026, 12, 20, tzinfo=BERLIN))
    in_april = read_when("Sa., 14. März, 19 Uhr", BERLIN, datetime(2027, 4, 1, tzinfo=BERLIN))
    on_the_day = read_when("14. März", BERLIN, datetime(2027, 3, 14, 20, tzinfo=BERLIN))
    this_december = read_when("Freitag, 10. Dezember", BERLIN, datetime(2026, 12, 6, tzinfo=BERLIN))
    assert (in_december.start.year, in_april.start.year, on_the_day.start.year) == (2027, 2028, 2027)
    assert this_december.start.date().isoformat() == "2026-12-10"


def test_the_same_payload_parsed_later_keeps_its_dates():
    """parse is pure: the year of "14. März" comes from when the page was fetched."""
    page = html('<article class="t"><h2>Konzert</h2><p class="d">Sa., 14. März, 19 Uhr</p></article>')
    with SiteServer({"/t": page}) as site:
        opts = options(site.url("/t"), items="article.t", fields={"date": ".d"}, kind="event")
        with at_fetch_time():
            got = asyncio.run(_retrieve(opts))
    from connectors.website import WebsiteConnector
    from hub.models import SourceRef

    parsed = WebsiteConnector().parse(opts, SourceRef("web", "m", "de"), got)  # today, whatever day that is
    assert parsed.items[0].event.start == datetime(2027, 3, 14, 19, tzinfo=BERLIN)


def test_naive_times_are_the_towns_wall_time():
    page = html('<article class="t"><h2>Konzert</h2><p class="d">14.03.2027 19:00</p></article>')
    with SiteServer({"/t": page}) as site:
        opts = options(site.url("/t"), items="article.t", fields={"date": ".d"}, kind="event")
        with at_fetch_time():
            got = asyncio.run(_retrieve(opts))
    from connectors.website import WebsiteConnector
    from hub.models import SourceRef

    event = WebsiteConnector().parse(opts, SourceRef("web", "m", "de", "America/New_York"), got).items[0].event
    assert event.start == datetime(2027, 3, 14, 19, tzinfo=ZoneInfo("America/New_York"))
    assert event.timezone == "America/New_York"


@pytest.mark.parametrize("raw, price, code", [
    ("12,50 €", "12.50", "EUR"), ("€ 9.90", "9.90", "EUR"), ("1.234,- EUR", "1234.00", "EUR"),
    ("Eintritt frei", "0.00", None), ("ab 9,90 €", "ab 9,90 €", "EUR"), ("39", "39.00", None), ("", None, None),
])
def test_prices(raw, price, code):
    from connectors.website_page import currency, price_text

    assert (price_text(raw), currency(raw)) == (price, code)


@pytest.mark.parametrize("raw, selector, attr", [
    ("h2", "h2", None), ("a@href", "a", "href"), ("@data-date", None, "data-date"),
    ('a[href*="@"]@href', 'a[href*="@"]', "href"), ("time.start@datetime", "time.start", "datetime"),
])
def test_field_rules(raw, selector, attr):
    from connectors.website_selectors import parse_rule

    rule = parse_rule(raw)
    assert (rule.selector, rule.attr) == (selector, attr)


def test_bad_rules_are_config_errors_with_their_line(tmp_path):
    from hub import config

    path = tmp_path / "hub.yaml"
    path.write_text("merchants:\n  - id: tsv\n    name: TSV\n    sources:\n"
                    "      - connector: website\n        url: https://tsv.example/termine\n"
                    "        items: 'article..termin'\n        fields: {title: 'h2@', datum: '.d'}\n"
                    "      - {connector: website, url: 'https://tsv.example/b', fields: {title: h2}}\n"
                    "      - {connector: website, url: 'ftp://tsv.example/c', kind: termin}\n")
    with pytest.raises(Exception) as failed:
        config.load(path)
    problems = "\n".join(failed.value.problems)
    assert re.search(r"hub.yaml:7: .*'article..termin' is not a valid CSS selector", problems)
    assert re.search(r"hub.yaml:8: .*'h2@'", problems) and re.search(r"hub.yaml:8: .*unknown key 'datum'", problems)
    assert re.search(r"hub.yaml:9: .*add 'items'", problems)
    assert re.search(r"hub.yaml:10: .*https://", problems) and re.search(r"hub.yaml:10: .*kind", problems)


def test_settle_gives_the_source_the_towns_time_zone(tmp_path):
    from hub import config

    path = tmp_path / "hub.yaml"
    path.write_text("platform: {timezone: Europe/Vienna}\nmerchants:\n  - id: tsv\n    name: TSV\n    sources:\n"
                    "      - {connector: website, url: 'https://tsv.example/termine'}\n")
    (_, source), = config.load(path).sources()
    assert source.options.zone == "Europe/Vienna"


# --- the demo town ----------------------------------------------------------------------------------

def test_the_demo_towns_pages_give_upcoming_items_on_any_day():
    from hub import config
    from hub.http import Fetcher
    from hub.ingest import parse_payload
    from hub.models import SourceRef
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    settings = config.load(root / "config.example.yaml")
    websites = [(m, s) for m, s in settings.sources() if s.connector == "website"]
    assert len(websites) >= 3

    async def read_all():
        async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
            return [await plugin_retrieve(s, fetcher) for _, s in websites]

    async def plugin_retrieve(source, fetcher):
        from connectors.website import WebsiteConnector

        return await WebsiteConnector().retrieve(source.options, FetchState(), fetcher)

    now = datetime.now(BERLIN)
    kinds = set()
    for (merchant, source), got in zip(websites, asyncio.run(read_all())):
        parsed = parse_payload("website", source.options, SourceRef(source.id, merchant.id, "de"), got)
        assert parsed.items and not parsed.warnings, (source.id, parsed.warnings)
        kinds |= {i.kind for i in parsed.items}
        events = [i.event for i in parsed.items if i.event]
        assert all(now - timedelta(days=2) < e.start < now + timedelta(days=60) for e in events), source.id
    assert kinds == {Kind.EVENT, Kind.OFFER}


def test_the_merchants_configured_address_is_where_its_events_are_when_nothing_else_says(tmp_path):
    from connectors.website import WebsiteConnector
    from hub import config
    from hub.http import Fetcher
    from hub.models import SourceRef

    (tmp_path / "termine.html").write_bytes(html(
        '<article class="t"><h2>Skatabend</h2><p class="d">14.01.2027 19:00</p></article>'
        '<article class="t"><h2>Wandertag</h2><p class="d">17.01.2027 9:00</p><p class="o">Bahnhof</p></article>'))
    (tmp_path / "hub.yaml").write_text(
        "merchants:\n  - id: skat\n    name: Skatclub Kreuz-As\n    address: |\n      Gasthaus Linde\n"
        "      Hauptstraße 5, 12345 Musterstadt\n    sources:\n      - connector: website\n"
        "        url: 'file:termine.html'\n        items: article.t\n        kind: event\n"
        "        fields: {title: h2, date: .d, location: .o}\n")
    (merchant, source), = config.load(tmp_path / "hub.yaml").sources()

    async def read():
        async with Fetcher(fetcher_config(), base_dir=tmp_path) as fetcher:
            return await WebsiteConnector().retrieve(source.options, FetchState(), fetcher)

    with at_fetch_time():
        got = asyncio.run(read())
    explained = WebsiteConnector().parse_explained(source.options, SourceRef(source.id, merchant.id, "de"), got)
    skat, walk = explained.parsed.items
    assert skat.event.location == "Skatclub Kreuz-As, Gasthaus Linde, Hauptstraße 5, 12345 Musterstadt"
    assert explained.rules[0]["location"] == "config (Adresse des Anbieters)"
    assert walk.event.location == "Bahnhof"


def test_the_charset_of_the_content_type_header_decodes_the_page():
    page = "<html><body><article class='t'><h2>Grüße: Kaffee für 2 €</h2></article></body></html>".encode("iso-8859-15")
    with SiteServer({"/alt": (200, page, "text/html; charset=ISO-8859-15")}) as site:
        parsed, _ = fetch(options(site.url("/alt"), items="article.t"))
    assert parsed.items[0].title == "Grüße: Kaffee für 2 €"  # not "¤", as windows-1252 would read it
