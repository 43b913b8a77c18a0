"""The embeddable widget (issue 14) through the real app and store: a compact list with the
pages' filters, links to the records in a new tab, colours only from valid hex values (a
hostile value never reaches CSS), readable contrast whatever the colours, framing allowed
for this page alone, no cookies, the town's language; and in headless Chromium: no request
to another host, no horizontal scrolling in a 250 px sidebar, side by side in a column.

Dates are relative to now (the suite also runs a year ahead), never to a fixed day."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from hub.web.embed import colour, contrast, stylesheet
from tests.publictown import BASE, Town, evening, filled, item

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = ("red;}body{display:none", "#fff;}body{background:url(https://evil.example/x.png)", "red",
           "#12345", "#1234567", "rgb(0,0,0)", "#ggg", "%23fff%3B%7D", "javascript:alert(1)", " ")


@pytest.fixture
def town(store, tmp_path) -> Town:
    return filled(Town(store, tmp_path))


class Widget(HTMLParser):
    """The widget's heading, entries (title, when, merchant, label, badge), links and
    stylesheets, and how many inline styles or scripts it has."""

    VOID = {"meta", "link", "br", "img", "input", "hr"}

    def __init__(self, html: str) -> None:
        super().__init__()
        self.links, self.stylesheets, self.entries = [], [], []
        self.heading: dict | None = None
        self.inline = 0
        self._open: list[tuple[str, str]] = []
        self.feed(html)
        for e in self.entries:
            e.update({k: " ".join(v.split()) for k, v in e.items()})
        if self.heading:
            self.heading["text"] = " ".join(self.heading["text"].split())

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and attrs.get("rel") == "stylesheet":
            self.stylesheets.append(attrs["href"])
        if tag in ("style", "script") or "style" in attrs:
            self.inline += 1
        if tag == "a":
            self.links.append(attrs)
        if tag == "li":
            self.entries.append({"title": "", "when": "", "merchant": "", "label": "", "badge": ""})
        if tag == "h1":
            self.heading = {"class": attrs.get("class"), "text": ""}
        if tag not in self.VOID:
            self._open.append((tag, attrs.get("class") or ""))

    def handle_endtag(self, tag):
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data):
        tags, classes = {t for t, _ in self._open}, {c for _, c in self._open}
        if "h1" in tags and self.heading is not None:
            self.heading["text"] += data
        if not (self.entries and "li" in tags):
            return
        field = ("badge" if "badge" in classes else "title" if "a" in tags else "when" if "time" in tags
                 else "merchant" if "merchant" in classes else "label" if "label" in classes else None)
        if field:
            self.entries[-1][field] += data


def widget(town: Town, query: str = "", **headers: str) -> Widget:
    answer = town.get(f"/embed?{query}", **headers)
    assert answer.status_code == 200, answer.text
    return Widget(answer.text)


def entry_links(w: Widget) -> list[dict]:
    return [a for a in w.links if a["href"].startswith(f"{BASE}/items/")]


# --- what it shows -------------------------------------------------------------------------------

def test_a_compact_list_with_title_date_merchant_and_a_link_to_the_record(town):
    w = widget(town, "category=gastronomie&category=handel")
    assert [e["title"] for e in w.entries] == ["Stollen frisch & warm", "Brot des Monats", "Winterschlussverkauf"]
    assert [e["merchant"] for e in w.entries] == ["Bäckerei Schmitz & Söhne"] * 2 + ["Modehaus Becker"]
    assert all(str(town.now.year) in e["when"] or str(town.now.year - 1) in e["when"] for e in w.entries)
    assert [e["label"] for e in w.entries] == ["", "", "Anzeige"]  # ads stay marked
    api = {i["title"]: i["url"] for i in town.get("/api/v1/items?category=gastronomie").json()["items"]}
    links = entry_links(w)
    assert links[0]["href"] == api["Stollen frisch & warm"]
    assert all(a["target"] == "_blank" and "noopener" in a["rel"].split() for a in w.links)


def test_an_event_widget_is_an_agenda_of_upcoming_events(town):
    w = widget(town, "kind=event")
    assert [e["title"] for e in w.entries] == ["Winterfest der Jugend", "Weihnachtsmarkt", "Hallenturnier",
                                               "Sommerfest am Sportplatz"]
    assert "19:30" in w.entries[0]["when"] and "19:30" not in w.entries[1]["when"]  # all day: no time
    assert [e["badge"] for e in w.entries] == ["", "", "Abgesagt", ""]
    more = next(a for a in w.links if not a["href"].startswith(f"{BASE}/items/"))
    assert urlsplit(more["href"]).path == "/events"


def test_limit_and_heading(town):
    w = widget(town, "limit=2&heading=Essen%20%26%20Trinken%20%3Cb%3E")
    assert len(w.entries) == 2 and w.heading == {"class": None, "text": "Essen & Trinken <b>"}
    assert len(widget(town, "limit=500").entries) == len(widget(town, "limit=50").entries) == 8
    untitled = widget(town, "heading=")
    assert untitled.heading["class"] == "visually-hidden"  # still a heading for screen readers
    assert widget(town, "tag=advent").heading["text"] == "Musterstadt erleben – #advent"


def test_a_wrong_setting_says_what_and_still_frames(town):
    for query in ("limit=viele", "kind=termine"):
        answer = town.get(f"/embed?{query}")
        assert answer.status_code == 400 and "frame-ancestors *" in answer.headers["content-security-policy"]
        assert query.split("=")[1] in answer.text


def test_nothing_matching_is_an_empty_list_not_an_error(town):
    answer = town.get("/embed?merchant=niemand")
    assert answer.status_code == 200 and Widget(answer.text).entries == []
    assert "nichts Neues" in answer.text


def test_it_speaks_the_towns_language_unless_the_iframe_asks_for_english(town):
    german = town.get("/embed?kind=event", **{"Accept-Language": "en-US,en;q=0.9"})
    assert 'lang="de"' in german.text and "Abgesagt" in german.text
    english = town.get("/embed?kind=event&lang=en")
    assert 'lang="en"' in english.text and "Abgesagt" not in english.text and "More on" in english.text
    w = Widget(english.text)
    assert w.entries[2]["badge"] and w.entries[2]["badge"] != "Abgesagt"
    assert all(parse_qs(urlsplit(a["href"]).query).get("lang") == ["en"] for a in w.links)


# --- colours ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, valid", [("#abc", "#aabbcc"), ("#A1B2C3", "#a1b2c3"), (" #0b6e4f ", "#0b6e4f")]
                         + [(h, None) for h in HOSTILE])
def test_only_hex_colours_are_colours(raw, valid):
    assert colour(raw) == valid


def test_valid_colours_come_as_our_own_stylesheet(town):
    w = widget(town, "farbe=%23c00&hintergrund=%23FFF8E7")
    assert w.stylesheets == ["/static/embed.css", "/embed.css?color=%23cc0000&background=%23fff8e7"]
    css = town.get(w.stylesheets[1])
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "--accent: #cc0000;" in css.text and "--bg: #fff8e7;" in css.text
    assert widget(town, "color=%23c00&background=%23fff8e7").stylesheets == w.stylesheets


@pytest.mark.dialect_free
@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_colour_is_ignored_and_never_echoed(town, hostile):
    answer = town.get(f"/embed?color={quote(hostile)}&background={quote(hostile)}")
    assert answer.status_code == 200
    assert Widget(answer.text).stylesheets == ["/static/embed.css"]
    css = town.get(f"/embed.css?color={quote(hostile)}&background={quote(hostile)}").text
    assert css == stylesheet(None, None)  # the defaults, nothing of the input
    for fragment in ("body{", "evil", "url(", "javascript", "rgb("):
        assert fragment not in css and fragment not in answer.text
    one_good = town.get(f"/embed.css?color={quote(hostile)}&background=%23000").text
    assert "--bg: #000000;" in one_good and (not hostile.strip() or hostile.strip() not in one_good)


HEX = st.text("0123456789abcdef", min_size=6, max_size=6).map(lambda s: f"#{s}")


def variables(css: str) -> dict[str, str]:
    inner = css.split("{", 1)[1].split("}", 1)[0]
    return {k.strip(): v.strip() for k, v in (d.split(":") for d in inner.split(";") if ":" in d)}


@hypothesis_settings(max_examples=300, deadline=None)
@given(accent=HEX, background=HEX)
def test_text_and_links_stay_readable_on_any_background(accent, background):
    found = variables(stylesheet(accent, background))
    assert found["--bg"] == background and found["--accent"] == accent
    for text in ("--ink", "--muted", "--link"):
        assert contrast(found[text], background) >= 4.5, (text, found)
    assert found["--link"] == (accent if contrast(accent, background) >= 4.5 else found["--ink"])


# --- HTTP -----------------------------------------------------------------------------------------

def test_other_sites_may_frame_it_and_nothing_else(town):
    answer = town.get("/embed?category=vereine")
    csp = answer.headers["content-security-policy"]
    assert "frame-ancestors *" in csp and "'unsafe-inline'" not in csp and "http" not in csp
    assert "style-src 'self'" in csp and "default-src 'none'" in csp
    assert "x-frame-options" not in answer.headers and "set-cookie" not in answer.headers
    assert Widget(answer.text).inline == 0  # no inline style or script: the policy forbids them
    for page in ("/", "/api/v1/items", "/docs"):
        assert "frame-ancestors 'none'" in town.get(page).headers["content-security-policy"], page


def test_an_unchanged_widget_is_304(town):
    first = town.get("/embed?kind=event")
    assert first.headers["cache-control"].startswith("public")
    assert town.get("/embed?kind=event", **{"If-None-Match": first.headers["etag"]}).status_code == 304
    town.fetch("tsv", item("tsv", "neu", "Neues Turnier", event=evening(town.today + timedelta(days=1))))
    again = town.get("/embed?kind=event", **{"If-None-Match": first.headers["etag"]})
    assert again.status_code == 200 and "Neues Turnier" in again.text


# --- in a browser ----------------------------------------------------------------------------------

@pytest.fixture
def served(town):
    """The town's app on a loopback port (uvicorn in a thread)."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(town.client.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.skipif(not shutil.which("chromium") and not shutil.which(CHROMIUM), reason="no chromium")
def test_in_a_sidebar_and_a_column_with_no_other_host(served, town, tmp_path):
    town.fetch("rathaus", item("rathaus", "lang", "Bekanntmachung zur Grundstücksverkehrsgenehmigungszuständigkeits"
                                                  "übertragungsverordnung", hours_ago=0.5))
    playwright = pytest.importorskip("playwright.sync_api")
    host = urlsplit(served).netloc
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            for width, columns in ((250, 1), (900, 3)):
                page = browser.new_page(viewport={"width": width, "height": 600})
                requested, errors = [], []
                page.on("request", lambda r: requested.append(r.url))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(f"{served}/embed?color=%23c00&heading=Essen%20%26%20Trinken&limit=6")
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                tops = page.evaluate("[...document.querySelectorAll('.entries li')].slice(0, 3)"
                                     ".map(li => li.getBoundingClientRect().top)")
                assert len(set(tops)) == (3 if columns == 1 else 1)  # stacked, or side by side
                page.screenshot(path=str(tmp_path / f"embed-{width}.png"), full_page=True)
                assert requested and all(urlsplit(u).netloc == host for u in requested), requested
                assert errors == [], errors  # no CSP violation, no missing file
                page.close()
        finally:
            browser.close()
