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
_NOT_TEXT = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg",
             "iframe", "button", "h1")  # h1: the title, which the item has already


def main_text(page: Page) -> str:
    """The page's main text as sanitized HTML (its article, its main element, ...), for an
    item whose own page is read (`follow`); '' when the page has no recognizable one."""
    for path in _MAIN:
        found = page.tree.xpath(path)
        if not found:
            continue
        region = lxml.html.fromstring(lxml.html.tostring(found[0]))  # a copy: the page stays whole
        for el in region.xpath("|".join(f".//{tag}" for tag in _NOT_TEXT)):
            el.drop_tree()
        html = _BETWEEN_BLOCKS.sub(">\n<", clean_html(lxml.html.tostring(region, encoding="unicode")[:BODY_CHARS],
                                                       page.base)).strip()
        if len(plain_text(html)) >= 40:
            return html
    return ""


def _one(meta: dict[str, list[str]], *keys: str) -> str | None:
    for key in keys:
        for value in meta.get(key, ()):
            if value:
                return value
    return None
