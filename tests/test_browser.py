"""The resident pages as residents see them: the demo town in headless Chromium (issue 14).

Runs the real CLI (`hub fetch`, `hub serve`) on the bundled demo config once for the module,
at a pinned moment (tests/browsertown.py says why), and drives Debian's chromium through
Playwright: the feed and its filters, the agenda, offers, search, a merchant and a record
work, in German and English; screenshots at 375 and 1280 px are written in the run
(`build/screenshots/`, or `$HUB_SCREENSHOTS`); no page asks another host for anything, sets
a cookie or scrolls sideways at 320 px; axe-core finds nothing serious; the keyboard works.
Every tab is checked when a test is done with it (browsertown.tab): nothing from another
host, no console error (a CSP violation is one), no broken resource, no cookie."""

from __future__ import annotations

import json
import re
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from urllib.request import urlopen

import pytest
from babel.dates import get_day_names

from hub import config
from tests.browsertown import BERLIN, ROOT, SCREENSHOTS, axe_report, demo_town, pinned_moment, png_size, tab, today_at

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser
playwright = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)

LANGS = ["de", "en"]
# Texts the tests look for, in the reader's language.
WORDS = {
    "de": {"today": "Heute", "tomorrow": "Morgen", "weekend": "Dieses Wochenende", "cancelled": "Abgesagt",
           "show": "Anzeigen", "valid": "gültig bis", "price": r"\d+,\d\d\s€", "hits": "Treffer",
           "search": "Suche nach „{q}“", "contact": "Kontakt und Öffnungszeiten", "address": "Adresse",
           "hours": "Öffnungszeiten", "also": "Auch auf",
           "origins": "Im Original", "website": "Auf der Website", "facebook": "Auf Facebook",
           "skip": "Zum Inhalt springen"},
    "en": {"today": "Today", "tomorrow": "Tomorrow", "weekend": "This weekend", "cancelled": "Cancelled",
           "show": "Show", "valid": "valid until", "price": r"€\d+\.\d\d", "hits": "result",
           "search": "Search for “{q}”", "contact": "Contact and opening hours", "address": "Address",
           "hours": "Opening hours", "also": "Also on",
           "origins": "Original", "website": "On the website", "facebook": "On Facebook",
           "skip": "Skip to content"},
}


@pytest.fixture(scope="module")
def settings():
    return config.load(ROOT / "config.example.yaml")


@pytest.fixture(scope="module")
def moment():
    return pinned_moment()


@pytest.fixture(scope="module")
def site(tmp_path_factory, moment):
    with demo_town(tmp_path_factory.mktemp("demo"), moment) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def items(site) -> list[dict]:
    """Every record, through the JSON API (its cursor pages)."""
    found, url = [], site + "/api/v1/items?limit=100"
    while url:
        page = json.load(urlopen(url, timeout=30))
        found += page["items"]
        url = page["next_cursor"] and f"{site}/api/v1/items?limit=100&cursor={page['next_cursor']}"
    return found


@pytest.fixture(scope="module")
def merged(items) -> dict:
    """A record of the bakery's that its blog and its Facebook page both posted, merged."""
    return next(i for i in items if i["merchant"]["id"] == "baeckerei-schmitz"
                and {o["connector"] for o in i["origins"]} == {"rss", "facebook"})


@pytest.fixture(scope="module")
def pages(merged) -> dict[str, str]:
    """The pages the screenshots and checks visit, by name."""
    return {"feed": "/", "events": "/events", "offers": "/offers", "search": "/search?q=Weihnachtsmärkte",
            "merchant": "/m/baeckerei-schmitz", "item": urlsplit(merged["url"]).path}


def query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def total(page) -> int:
    """How many records a listing says it has ("91 Beiträge ...")."""
    return int(re.match(r"\d+", page.locator(".intro p").first.inner_text())[0])


def embed(lang: str) -> str:
    """The widget speaks the embedding site's language, not the visitor's: `lang=` says it."""
    return "/embed?heading=Termine&kind=event" + ("&lang=en" if lang == "en" else "")


def texts(locator) -> list[str]:
    return [" ".join(t.split()) for t in locator.all_inner_texts()]


# --- the pages work ---------------------------------------------------------------------------

def test_the_feed_and_its_filters(site, browser, settings):
    """Kind links, the category form and tag links each narrow the list, and the URL
    carries them (every filtered view has its own address, its feeds too)."""
    clubs = {m.name for m in settings.merchants if m.category == "verein"}
    with tab(browser, site) as t:
        page = t.open("/")
        assert page.title() == "Musterstadt erleben"
        everything = total(page)
        assert everything >= 80 and page.locator("article.card").count() >= 10
        assert len(set(texts(page.locator("article.card .merchant")))) >= 5
        images = page.locator("article.card img")
        assert images.count() >= 3
        for img in images.all():  # lazy images load once they scroll into view
            img.scroll_into_view_if_needed()
            img.evaluate("i => i.decode()")
            assert img.evaluate("i => i.naturalWidth") > 0

        page.locator(".filters nav a", has_text="Veranstaltungen").click()
        assert query(page) == {"kind": ["event"]}
        events = total(page)
        assert 0 < events < everything
        cards = page.locator("article.card").count()
        assert cards == page.locator("article.card .when time").count()  # each one says when

        page.select_option("select[name=category]", "verein")
        page.get_by_role("button", name="Anzeigen").click()
        assert query(page) == {"category": ["verein"], "kind": ["event"]}
        shown = texts(page.locator("article.card .merchant"))
        assert shown and set(shown) <= clubs and total(page) < events
        atom = page.locator("link[rel=alternate][type='application/atom+xml']").get_attribute("href")
        assert "category=verein" in atom and "kind=event" in atom  # the feed of this very view
        assert texts(page.locator(".filters .active li a")) == ["Vereine × (Filter entfernen)",
                                                                "Veranstaltungen × (Filter entfernen)",
                                                                "Alle Filter entfernen"]
        page.locator(".filters .active a", has_text="Veranstaltungen").click()  # drop one filter
        assert query(page) == {"category": ["verein"]}
        assert set(texts(page.locator("article.card .merchant"))) <= clubs

        tag = page.locator("article.card .tags a").first
        name = tag.inner_text().lstrip("#")
        tag.click()
        assert query(page) == {"tag": [name]}  # a tag link starts afresh with that tag
        tagged = page.locator("article.card").all()
        assert 0 < total(page) < everything and total(page) == len(tagged)
        for card in tagged:
            assert name.casefold() in [x.lstrip("#").casefold() for x in texts(card.locator(".tags a"))]

        page.locator("article.card h2 a").first.click()
        assert page.locator("article.full h1").inner_text()
        assert page.locator("article.full .content").inner_text().strip()


@pytest.mark.parametrize("lang", LANGS)
def test_the_agenda_by_day_and_a_chosen_range(site, browser, moment, lang):
    """Today, tomorrow, this weekend, then day by day (each event under its own day);
    cancelled events marked; the date fields narrow it to a range and stay filled."""
    words, today = WORDS[lang], today_at(moment)
    saturday = today + timedelta(days=2)  # the pinned day is a Thursday
    with tab(browser, site, lang) as t:
        page = t.open("/events")
        days = agenda(page)
        assert [h for h, _ in days[:3]] == [words["today"], words["tomorrow"], words["weekend"]], days
        assert all(d <= today for d in days[0][1]) and set(days[1][1]) == {today + timedelta(days=1)}
        assert set(days[2][1]) <= {saturday, saturday + timedelta(days=1)}
        later = [d for _, ds in days[3:] for d in ds]
        assert later and later == sorted(later) and later[0] > saturday + timedelta(days=1)
        weekdays = get_day_names("wide", locale=lang).values()  # later days by their date: "Montag, 14. Dezember"
        assert all(re.split(r"[ ,]", h)[0] in weekdays for h, _ in days[3:]), days
        cancelled = page.locator("article.event.cancelled")
        assert cancelled.count() >= 1 and cancelled.first.locator(".badge").inner_text().casefold() \
            == words["cancelled"].casefold()

        von, bis = today + timedelta(days=11), today + timedelta(days=18)
        page.fill("input[name=von]", von.isoformat())
        page.fill("input[name=bis]", bis.isoformat())
        page.get_by_role("button", name=words["show"]).click()
        assert query(page) == {"von": [von.isoformat()], "bis": [bis.isoformat()]}
        assert page.input_value("input[name=von]") == von.isoformat()
        ranged = agenda(page)
        assert ranged and all(re.split(r"[ ,]", h)[0] in weekdays for h, _ in ranged), ranged
        assert all(von <= d <= bis for _, ds in ranged for d in ds), ranged


def agenda(page) -> list[tuple[str, list[date]]]:
    """The agenda's headings (without the date "Heute" and "Morgen" add), each with the
    local days its events start on."""
    found = []
    for section in page.locator("section.day").all():
        heading = section.locator("h2").evaluate("h => h.firstChild.textContent.trim()")
        starts = section.locator("article.event .time time").evaluate_all("ts => ts.map(t => t.dateTime)")
        found.append((heading, [local_day(s) for s in starts]))
    return found


def local_day(stamp: str) -> date:
    if len(stamp) == 10:  # an all-day event's date
        return date.fromisoformat(stamp)
    return datetime.fromisoformat(stamp).astimezone(BERLIN).date()


@pytest.mark.parametrize("lang", LANGS)
def test_offers_show_price_and_validity(site, browser, lang):
    """Every offer with its price, in the reader's number format; the dated ones say until when."""
    words = WORDS[lang]
    with tab(browser, site, lang) as t:
        page = t.open("/offers")
        offers = page.locator("article.card")
        assert offers.count() >= 2
        assert offers.count() == page.locator("article.card .offer .price").count()
        prices = texts(page.locator("article.card .price"))
        assert any(re.fullmatch(words["price"], p) for p in prices), prices
        validity = [x for x in texts(page.locator("article.card .offer span")) if x.startswith(words["valid"])]
        assert validity and all(re.search(r"\d", x) for x in validity), validity


@pytest.mark.parametrize("lang", LANGS)
def test_search_from_the_header_finds_word_forms(site, browser, lang):
    """A plural finds the singular (German stemming), and the matches are marked."""
    words = WORDS[lang]
    with tab(browser, site, lang) as t:
        page = t.open("/")
        for q, stem, title in [("Weihnachtsmärkte", "weihnachtsmarkt", None),
                               ("Konzerte", "konzert", "Adventskonzert in der Stadtkirche")]:
            page.fill("#suche-kopf", q)
            page.press("#suche-kopf", "Enter")
            page.wait_for_url("**/search?**")
            assert query(page)["q"] == [q]
            assert page.locator("h1").inner_text() == words["search"].format(q=q)
            assert words["hits"] in page.locator("[role=status]").inner_text()
            assert page.locator("article.card").count() >= 1
            marked = texts(page.locator("article.card mark"))
            assert marked and all(stem in m.casefold() for m in marked), marked
            assert q.casefold() not in [m.casefold() for m in marked]  # found by its stem, not as typed
            if title:
                assert title in texts(page.locator("article.card h2"))


@pytest.mark.parametrize("lang", LANGS)
def test_a_merchant_page(site, browser, settings, lang):
    """About, address, opening hours and channels from the config; its records only."""
    words = WORDS[lang]
    bakery = settings.merchant("baeckerei-schmitz")
    with tab(browser, site, lang) as t:
        page = t.open("/m/baeckerei-schmitz")
        assert page.locator("h1").inner_text() == bakery.name
        assert page.locator(".about").inner_text() == bakery.about
        assert page.locator("#kontakt").inner_text() == words["contact"]
        assert page.locator(".contact address").inner_text().splitlines() == bakery.address.splitlines()
        assert texts(page.locator(".contact dt")) == [words["address"], words["hours"], words["also"]]
        assert texts(page.locator(".contact .plain li")) == bakery.opening_hours
        assert set(texts(page.locator(".channels li"))) == {"Website", "Facebook", "Instagram"}
        assert page.locator(".channels a", has_text="Website").get_attribute("href") == bakery.website
        cards = page.locator("article.card")
        assert cards.count() >= 3 and set(texts(page.locator("article.card .merchant"))) == {bakery.name}
        t.open("/m/gibt-es-nicht", status=404)
        assert page.locator("h1").count() == 1 and "404" in page.locator(".status-code").inner_text()


@pytest.mark.parametrize("lang", LANGS)
def test_a_record_names_where_it_appeared(site, browser, merged, lang):
    """From the merchant's page to a post its blog and its Facebook page both carried: one
    record, with both originals linked."""
    words = WORDS[lang]
    with tab(browser, site, lang) as t:
        page = t.open("/m/baeckerei-schmitz")
        page.locator("article.card h2 a", has_text=merged["title"]).click()
        assert urlsplit(page.url).path == urlsplit(merged["url"]).path
        assert page.locator("article.full h1").inner_text() == merged["title"]
        assert len(page.locator("article.full .content").inner_text()) > 40
        assert page.locator("#original").inner_text() == words["origins"]
        origins = {a.inner_text(): a.get_attribute("href") for a in page.locator(".origins a").all()}
        assert origins.keys() == {words["website"], words["facebook"]}, origins
        assert urlsplit(origins[words["website"]]).netloc == "baeckerei-schmitz.example"
        assert urlsplit(origins[words["facebook"]]).netloc == "www.facebook.com"
        page.locator("article.full .meta a.merchant").click()
        assert urlsplit(page.url).path == "/m/baeckerei-schmitz"


def test_the_language_switch_keeps_english_on_every_link(site, browser):
    """"English" on a German page: the page, its links and the header's search stay English."""
    with tab(browser, site, "de") as t:
        page = t.open("/events")
        page.locator("a.lang").click()
        assert query(page) == {"lang": ["en"]}
        assert page.evaluate("document.documentElement.lang") == "en"
        assert page.locator(".main-nav a[aria-current=page]").inner_text() == "Events"
        page.fill("#suche-kopf", "Konzerte")
        page.press("#suche-kopf", "Enter")
        page.wait_for_url("**/search?**")
        assert query(page) == {"q": ["Konzerte"], "lang": ["en"]}
        page.locator(".main-nav a", has_text="Offers").click()
        assert page.locator("h1").inner_text() == "Offers" and query(page) == {"lang": ["en"]}


def test_health_answers_for_the_demo(site):
    health = json.load(urlopen(site + "/healthz", timeout=30))
    assert health["status"] == "ok" and health["items"] >= 80 and health["sources"]["failing"] == 0


# --- how the pages look, and fit --------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_screenshots_at_375_and_1280_px(site, browser, pages, lang):
    """Full-page PNGs of every page at a phone's and a desktop's width, written in this run."""
    folder = SCREENSHOTS / lang
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with tab(browser, site, lang, width=1280) as t:
        for name, path in pages.items():
            page = t.open(path)
            for width in (1280, 375):
                page.set_viewport_size({"width": width, "height": 800})
                shot = folder / f"{name}-{width}.png"
                shot.unlink(missing_ok=True)  # so what the test finds is this run's
                page.screenshot(path=str(shot), full_page=True, animations="disabled")
                written.append((shot, width))
            page.set_viewport_size({"width": 1280, "height": 800})
    for shot, width in written:
        assert png_size(shot)[0] == width and png_size(shot)[1] >= 600, shot


@pytest.mark.parametrize("lang", LANGS)
def test_no_page_scrolls_sideways_at_320_px(site, browser, pages, items, moment, lang):
    """Every page, filtered views, the widget and the 404 page fit a 320 px screen; also
    the record whose title has the longest word (a German compound once made one 356 px wide)."""
    with tab(browser, site, lang, width=320, height=640) as t:
        longest = max(items, key=lambda i: max(map(len, (i["title"] or "").split()), default=0))
        von, bis = today_at(moment) + timedelta(days=14), today_at(moment) + timedelta(days=21)
        extra = {"filtered": "/?kind=event&category=verein", "range": f"/events?von={von}&bis={bis}",
                 "longest": urlsplit(longest["url"]).path, "embed": embed(lang)}
        for name, path in {**pages, **extra, "missing": "/gibt-es-nicht"}.items():
            page = t.open(path, status=404 if name == "missing" else 200)
            assert page.evaluate("document.documentElement.lang") == lang, name
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= page.evaluate("window.innerWidth"), f"{name} ({path}) is {wide} px wide at 320 px"
            assert page.locator("h1").count() == 1, name


def test_the_api_docs_load_nothing_from_elsewhere(site, browser):
    """Swagger UI's assets are the hub's own (a CDN's were blocked by the CSP: a blank page)."""
    with tab(browser, site) as t:
        page = t.open("/docs")
        page.locator(".swagger-ui .info").wait_for()
        page.wait_for_load_state("networkidle")


# --- accessibility ----------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_axe_finds_nothing_serious(site, browser, pages, lang):
    """axe-core, run in each page, reports no serious or critical violation; the message
    lists every violation found, of any impact."""
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    found = {}
    with tab(browser, site, lang) as t:
        for name, path in {**pages, "embed": embed(lang), "missing": "/gibt-es-nicht"}.items():
            violations = axe.run(t.open(path, status=404 if name == "missing" else 200)).response["violations"]
            if violations:
                found[f"{name} ({path})"] = violations
    serious = sorted({v["id"] for vs in found.values() for v in vs if v["impact"] in ("serious", "critical")})
    report = "\n".join(f"{where}:\n{axe_report(vs)}" for where, vs in found.items())
    assert serious == [], "axe found:\n" + report


@pytest.mark.parametrize("lang", LANGS)
def test_the_keyboard_skip_link_and_visible_focus(site, browser, lang):
    """The first Tab reaches "Zum Inhalt springen", visible; Enter moves focus to main, so
    the next Tab lands in the content; every link shows where the focus is."""
    with tab(browser, site, lang) as t:
        page = t.open("/")
        page.keyboard.press("Tab")
        skip = page.evaluate("[document.activeElement.className, document.activeElement.innerText]")
        assert skip == ["skip", WORDS[lang]["skip"]]
        box = page.locator("a.skip").bounding_box()
        assert box["x"] >= 0 and box["y"] >= 0 and box["width"] > 20  # on screen once focused
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "inhalt"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('main') !== null")

        page = t.open("/events")
        seen = []
        for _ in range(14):  # the skip link, the header, the filters: links, fields and buttons
            page.keyboard.press("Tab")
            focus = page.evaluate("""() => { const e = document.activeElement, s = getComputedStyle(e);
                return [e.tagName, e.innerText || e.name || '', s.outlineStyle, s.outlineWidth]; }""")
            seen.append(focus)
        links = [f for f in seen if f[0] == "A"]
        assert len(links) >= 5, seen
        assert all(style != "none" and width != "0px" for _tag, _text, style, width in seen), seen
