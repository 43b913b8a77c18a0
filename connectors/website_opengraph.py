"""A page that is one thing: its OpenGraph (and Twitter card) tags, and its main text, for
the website connector (a town hall's news page; an item's own page read with `follow`)."""

from __future__ import annotations

import re

import lxml.html

from connectors.website_dates import machine_date
from connectors.website_page import MAX_IMAGES, Found, Page, currency, one_line, plain, price_text
from hub.models import Kind, Media
from hub.sanitize import clean_html, plain_text

BODY_CHARS = 200_000  # HTML of a page's main text kept at most


_OG_PREFIXES = ("og:", "article:", "product:", "twitter:")


def opengraph(page: Page, *, own_page: bool = False) -> Found | None:
    """The page as one thing, from its OpenGraph (and Twitter card) tags, `property=` or
    `name=`; None when it has no title there. `own_page`: an item's own page, whose
    `<h1>` or `<title>` will do as its title."""
    meta: dict[str, list[str]] = {}
    for el in page.tree.xpath("//meta[@content][@property or @name]"):
        key = (el.get("property") or el.get("name") or "").strip().lower()
        if key.startswith(_OG_PREFIXES) or key == "description":
            meta.setdefault(key, []).append(el.get("content").strip())
    title = one_line(_one(meta, "og:title", "twitter:title"))
    if not title and own_page:
        title = one_line(next(iter(page.tree.xpath("string(//h1)").split("\n")), "") or page.tree.findtext(".//title"))
    if not title:
        return None
    og_type = (_one(meta, "og:type") or "").lower()
    found = Found(page.url, Kind.OFFER if og_type.startswith("product") else
                  Kind.POST if og_type == "article" else None, whole_page=True)
    found.title = title
    found.url = page.link(_one(meta, "og:url")) or page.url
    found.summary = plain(_one(meta, "og:description", "twitter:description", "description") or "")
    found.images = [Media(url, "image", alt=_one(meta, "og:image:alt") or None)
                    for url in dict.fromkeys(filter(None, (page.link(u) for u in meta.get("og:image:secure_url", [])
                                                           + meta.get("og:image", []) + meta.get("twitter:image", []))))
                    ][:MAX_IMAGES]
    published = machine_date(_one(meta, "article:published_time"), page.zone)
    modified = machine_date(_one(meta, "article:modified_time", "og:updated_time"), page.zone)
    found.published = published.start if published else None
    found.updated = modified.start if modified else None
    found.tags = [one_line(t) for t in meta.get("article:tag", []) if t.strip()]
    found.price = price_text(_one(meta, "product:price:amount", "og:price:amount"))
    found.currency = currency(_one(meta, "product:price:currency", "og:price:currency") or "")
    for name, value in (("title", title), ("link", found.url), ("summary", found.summary), ("image", found.images),
                        ("date", found.published), ("price", found.price)):
        found.note(name, "opengraph", value)
    return found


_MAIN = ('//*[@itemprop="articleBody"]', "//article", "//main", '//*[@role="main"]',
         '//*[contains(concat(" ", normalize-space(@class), " "), " entry-content ")]', '//*[@id="content"]')
_BETWEEN_BLOCKS = re.compile(r">\s*\n\s*<")
_BLOCKS = frozenset({"p", "ul", "ol", "dl", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table"})
MIN_TEXT = 40  # characters of main text, or the page has none
MIN_CLUSTER = 200  # characters in a cluster of paragraphs: less is a teaser or a caption
MIN_PARAGRAPHS = 80  # characters in the cluster's own paragraphs: a list of links is no text
_NOT_TEXT = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg",
             "iframe", "button", "h1")  # h1: the title, which the item has already


def main_text(page: Page) -> str:
    """The page's main text as sanitized HTML, for an item whose own page is read; '' when
    the page has no recognizable one.

    The text is where the page's paragraphs gather (`_cluster`: the element whose own
    paragraphs, lists and subheadings hold the most text, with its siblings that hold text
    of the same kind). Where that cluster is a marked region of the page (its article, its
    main element, ...: `_MAIN`) or that region's direct child, the region is taken whole;
    a marked region elsewhere (a `<main>` around the navigation too, an article teaser) is
    not. On trafilatura's 990 evaluation pages (most of them German) this finds 0.79 of the
    text snippets a page's main text holds, with a precision of 0.84 (F1 0.82); the first
    marked region alone found 0.74 with 0.74 (F1 0.74), and nothing on 169 of the pages."""
    region = next((found[0] for path in _MAIN if (found := page.tree.xpath(path))), None)
    cluster = _cluster(page)
    if region is not None and (cluster is None or cluster is region or cluster.getparent() is region):
        html = _text_of(region, page)
        if len(plain_text(html)) >= MIN_TEXT:
            return html
    if cluster is None:
        return ""
    html = "\n".join(filter(None, (_text_of(el, page) for el in _with_siblings(cluster))))
    return html if len(plain_text(html)) >= MIN_TEXT else ""


def _text_of(element, page: Page) -> str:
    region = lxml.html.fromstring(lxml.html.tostring(element))  # a copy: the page stays whole
    for el in region.xpath("|".join(f".//{tag}" for tag in _NOT_TEXT)):
        el.drop_tree()
    return _BETWEEN_BLOCKS.sub(">\n<", clean_html(lxml.html.tostring(region, encoding="unicode")[:BODY_CHARS],
                                                  page.base)).strip()


def _cluster(page: Page):
    """The element whose own paragraphs (and lists, subheadings, quotes, tables beside them)
    hold the most text, if that is at least `MIN_CLUSTER` characters."""
    best, most = None, MIN_CLUSTER - 1
    for parent in page.tree.xpath("//body//*[p]"):
        if parent.tag == "p" or sum(_length(c) for c in parent if c.tag == "p") < MIN_PARAGRAPHS:
            continue
        if (length := _block_length(parent)) > most:
            best, most = parent, length
    return best


def _with_siblings(cluster) -> list:
    """The cluster and its siblings that hold a quarter of its text or more, in text blocks
    rather than links (an article split by an advertisement, a second column)."""
    parent = cluster.getparent()
    if parent is None:
        return [cluster]
    enough = _block_length(cluster) / 4
    return [el for el in parent if el is cluster or (
        isinstance(el.tag, str) and el.tag not in _NOT_TEXT and _block_length(el) >= enough
        and _link_share(el) < 0.3)]


def _block_length(el) -> int:
    return _length(el) if el.tag == "p" else sum(_length(c) for c in el if c.tag in _BLOCKS)


def _length(el) -> int:
    return len(el.text_content().strip())


def _link_share(el) -> float:
    return sum(_length(a) for a in el.iter("a")) / max(1, _length(el))


def _one(meta: dict[str, list[str]], *keys: str) -> str | None:
    for key in keys:
        for value in meta.get(key, ()):
            if value:
                return value
    return None
