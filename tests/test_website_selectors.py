"""The CSS selectors the website connector runs as XPath (connectors/website_css.py) match
exactly what soupsieve, the reference, matches; what the translator does not know goes to
soupsieve itself."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import lxml.html
import pytest
from bs4 import BeautifulSoup

from connectors.website_css import to_xpath
from connectors.website_page import Page
from connectors.website_selectors import Rules, select
from hub.models import Kind
from tests.websitecases import DATA

PAGE = """<!DOCTYPE html><html><body>
<div id="liste" class="termine  grid">
  <article class="termin top" data-kind="konzert" lang="de-DE"><h2>Eins</h2><p class="datum">1.</p><p>x</p>
    <a href="/a/1" rel="next">mehr</a><img src="/i/1.jpg" data-src="/i/1-big.jpg"></article>
  <article class="termin"><h2 class="titel">Zwei</h2><span>y</span><p class="datum">2.</p>
    <a href="https://other.example/x.pdf">pdf</a></article>
  <section class="termin"><h3>Drei</h3><p class="datum ort">3.</p></section>
  <article class="termin-alt" data-kind="lesung"><h2>Vier</h2><p>z</p><p>w</p></article>
</div>
<ul><li>a</li><li class="x">b</li><li>c</li></ul>
<p id="schluss" title='sagt "hallo"'>Ende</p>
</body></html>"""

SELECTORS = [
    "article", "article.termin", ".termin", "div#liste > article", "#liste article h2", "article h2 + p",
    "h2 ~ p", "article > a[href]", "a[href^='/a/']", 'a[href$=".pdf"]', "a[href*=other]", "[rel~=next]",
    "[lang|=de]", "[data-kind=lesung]", "li:first-child", "li:last-child", "li:nth-child(2)", "p:first-of-type",
    "p:last-of-type", "p:nth-of-type(2)", "article, section", ".termin.top", "*.datum", "div .ort",
    "p[title]", "h1, h2, h3, h4, h5, h6", "ARTICLE.termin", "article:only-child", "span + p.datum",
]


def signature(elements) -> list[str]:
    """Each element's tag and text, whichever tree it is from."""
    return [f"{e.tag}:{' '.join(e.text_content().split())}" if isinstance(e, lxml.html.HtmlElement)
            else f"{e.name}:{' '.join(e.get_text().split())}" for e in elements]


@pytest.mark.parametrize("selector", SELECTORS)
def test_xpath_matches_what_soupsieve_matches(selector):
    xpath = to_xpath(selector, relative=False)
    assert xpath is not None, selector
    tree = lxml.html.document_fromstring(PAGE)
    soup = BeautifulSoup(PAGE, "lxml")
    assert signature(tree.xpath(xpath)) == signature(soup.select(selector))


@pytest.mark.parametrize("selector", ["h2", "p", ".datum", "a[href]", "p:nth-child(3)", "h2 + p"])
def test_relative_selection_finds_the_same_first_descendant(selector):
    tree = lxml.html.document_fromstring(PAGE)
    soup = BeautifulSoup(PAGE, "lxml")
    for mine, theirs in zip(tree.xpath(to_xpath("article", relative=False)), soup.select("article")):
        found = mine.xpath(f"({to_xpath(selector, relative=True)})[1]")
        other = theirs.select_one(selector)
        assert signature(found) == signature([other] if other is not None else [])


@pytest.mark.parametrize("selector", ["article:not(.top)", "article:has(img)", "p:nth-child(2n+1)",
                                      "a[href='x' i]", "svg|a", "> p", "li::before", "*:first-of-type"])
def test_what_the_translator_does_not_know_is_left_to_soupsieve(selector):
    assert to_xpath(selector, relative=False) is None


def test_a_selector_only_soupsieve_knows_still_reads_the_page():
    page = Page.load((DATA / "verein-plain.html").read_bytes(), "https://tsv.example/termine", "text/html",
                     ZoneInfo("Europe/Berlin"), datetime(2026, 12, 20, tzinfo=ZoneInfo("Europe/Berlin")))
    rules = Rules.of("article.termin:has(a)", {"title": "h2", "date": ".datum"})
    found = select(page, rules, Kind.EVENT, [])
    assert [f.title for f in found] == ["Hallenturnier der F-Jugend", "Jahreshauptversammlung"]
    assert found[0].when.start.isoformat() == "2027-01-09T10:00:00+01:00"
