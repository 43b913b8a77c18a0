"""Declarative CSS selectors for pages without structured data.

    items: "article.termin"          # one element per item
    fields:                          # inside each item: CSS for text, "selector@attr" for an attribute
      title: "h2"
      link: "a@href"
      date: ".datum"
      image: "img@src"

A field's selector is applied inside its item element; `@attr` alone reads the item
element's own attribute. Without `@`, `link` takes the element's `href` (or its first
link's), `image` its `src` (or `data-src`, or the first `srcset` candidate), `date` and
`end` a `<time>`'s `datetime`; everything else is the element's text. Fields left out
take sensible defaults (the first heading, link, `<time>`, image and paragraph).

Selectors run as XPath on the lxml tree the page was parsed into (`connectors.website_css`
translates the usual ones), or else with soupsieve on BeautifulSoup; scripts, styles and
the like are taken out first, so text never picks up a script's source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import lxml.html
import soupsieve
from bs4 import BeautifulSoup, Tag

from connectors.website_css import to_xpath
from connectors.website_dates import When, read_end, read_when
from connectors.website_page import MAX_IMAGES, Found, Page, as_html, currency, one_line, plain, price_text
from hub.models import Kind, Media

FIELDS = ("title", "link", "date", "end", "location", "image", "summary", "price")
MAX_ITEMS = 500  # items read from one page; more are a listing nobody reads to the end
DEFAULTS = {"title": "h1, h2, h3, h4, h5, h6", "link": "a[href]", "date": "time", "image": "img",
            "summary": "p"}
_ATTR_NAME = re.compile(r"[A-Za-z_:][-\w:.]*")
_DROPPED = ("script", "style", "noscript", "template", "svg", "iframe")


@dataclass(frozen=True)
class FieldRule:
    """One field's rule: a selector inside the item (None: the item element itself) and
    the attribute to read (None: the text, or the field's natural attribute)."""

    selector: str | None
    attr: str | None
    raw: str

    @property
    def label(self) -> str:
        return f"selector {self.raw}"


def parse_rule(raw: str) -> FieldRule:
    """`"h2"`, `"a@href"`, `"@data-date"`, `'a[href*="@"]@href'`.

    Raises:
        ValueError: the selector is not valid CSS, or the attribute name is not one.
    """
    raw = raw.strip()
    if not raw:
        raise ValueError("a field's selector is empty")
    selector, attr = _split_attr(raw)
    if attr is not None and not _ATTR_NAME.fullmatch(attr):
        raise ValueError(f"'{attr}' after '@' is not an attribute name (write it like \"a@href\")")
    if selector:
        check_selector(selector)
    return FieldRule(selector or None, attr, raw)


def check_selector(selector: str) -> str:
    try:
        soupsieve.compile(selector)
    except soupsieve.SelectorSyntaxError as exc:
        first_line = str(exc).splitlines()[0]
        raise ValueError(f"'{selector}' is not a valid CSS selector ({first_line})") from None
    return selector


def _split_attr(raw: str) -> tuple[str, str | None]:
    """Split at the last '@' outside brackets and quotes."""
    depth, quote, at = 0, "", -1
    for i, ch in enumerate(raw):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "@" and depth == 0:
            at = i
    if at < 0:
        return raw, None
    return raw[:at].strip(), raw[at + 1:].strip()


@dataclass(frozen=True)
class Rules:
    items: str
    fields: dict[str, FieldRule]  # the configured ones; defaults fill in the rest

    @classmethod
    def of(cls, items: str, fields: dict[str, str | None]) -> Rules:
        return cls(check_selector(items), {k: parse_rule(v) for k, v in fields.items() if v})


def select(page: Page, rules: Rules, kind: Kind | None, warnings: list[str]) -> list[Found]:
    """The items the rules find on `page`, in page order."""
    doc = _document(page, rules)
    elements = doc.select(rules.items, MAX_ITEMS + 1)
    if len(elements) > MAX_ITEMS:
        warnings.append(f"{page.url}: mehr als {MAX_ITEMS} Elemente passen zu items '{rules.items}'; "
                        f"gelesen wurden die ersten {MAX_ITEMS}")
    found, empty = [], 0
    for element in elements[:MAX_ITEMS]:
        item = _item(_Reader(doc, element, page, rules, Found(page.url, kind)), kind)
        if item.title:
            found.append(item)
        else:
            empty += 1
    if empty:
        warnings.append(f"{page.url}: {empty} Element(e) zu items '{rules.items}' ohne Titel übersprungen "
                        "(Feld title prüfen: `hub try-source`)")
    return found


def _document(page: Page, rules: Rules) -> _Lxml | _Soup:
    """The page without scripts, styles and the like, as XPath can read it when every rule's
    selector translates (`connectors.website_css`), else as BeautifulSoup. This takes them
    out of `page.tree` itself, so it runs after the page's structured data and OpenGraph were
    read (the connector reads selectors last)."""
    for el in [el for el in page.tree.iter(*_DROPPED) if el.getparent() is not None]:
        el.drop_tree()
    selectors = [rules.items] + [r.selector for r in rules.fields.values() if r.selector] + \
        [d for name, d in DEFAULTS.items() if name not in rules.fields]
    if all(to_xpath(s, relative=True) is not None for s in selectors):
        return _Lxml(page.tree)
    body = page.tree.find("body")
    return _Soup(BeautifulSoup(lxml.html.tostring(body if body is not None else page.tree, encoding="unicode"),
                               "lxml"))


class _Lxml:
    """Selectors as XPath on the lxml tree."""

    def __init__(self, root: Any) -> None:
        self.root = root

    def select(self, selector: str, limit: int) -> list:
        return self.root.xpath(to_xpath(selector, relative=False))[:limit]

    def one(self, element: Any, selector: str) -> Any:
        found = element.xpath(f"({to_xpath(selector, relative=True)})[1]")
        return found[0] if found else None

    @staticmethod
    def attr(element: Any, name: str) -> str:
        return (element.get(name) or "").strip() if element is not None else ""

    @staticmethod
    def text(element: Any) -> str:
        return " ".join(element.text_content().split())

    @staticmethod
    def tag(element: Any) -> str:
        return element.tag if isinstance(element.tag, str) else ""


class _Soup:
    """Selectors with soupsieve on BeautifulSoup, for what XPath is not given."""

    def __init__(self, soup: BeautifulSoup) -> None:
        self.soup = soup

    def select(self, selector: str, limit: int) -> list:
        return self.soup.select(selector, limit=limit)

    @staticmethod
    def one(element: Tag, selector: str) -> Tag | None:
        return element.select_one(selector)

    @staticmethod
    def attr(element: Tag | None, name: str) -> str:
        return _attr(element, name)

    @staticmethod
    def text(element: Tag) -> str:
        return " ".join(element.get_text().split())

    @staticmethod
    def tag(element: Tag) -> str:
        return element.name or ""


def _item(read: _Reader, kind: Kind | None) -> Found:
    found, page = read.found, read.page
    found.title = one_line(read.text("title"))
    found.url = read.link()
    found.images = read.images()
    found.summary = plain(read.text("summary"))
    found.body_html = as_html(found.summary, page.base)
    found.location = one_line(read.text("location")) or None
    price = read.text("price")
    found.price, found.currency = price_text(price), currency(price)
    when = read.when()
    if when is not None:
        end = read.end(when)
        if kind is Kind.OFFER:
            found.valid_from, found.valid_until = when.start, end
        elif kind is Kind.EVENT:
            found.when = When(when.start, end if end and end > when.start else when.end, when.all_day)
        else:
            found.published = when.start
    return found


class _Reader:
    """Reads one item element's fields, noting which rule found each."""

    def __init__(self, doc: _Lxml | _Soup, element: Any, page: Page, rules: Rules, found: Found) -> None:
        self.doc = doc
        self.element = element
        self.page = page
        self.rules = rules
        self.found = found

    def _rule(self, name: str) -> FieldRule | None:
        if name in self.rules.fields:
            return self.rules.fields[name]
        default = DEFAULTS.get(name)
        return FieldRule(default, None, f"{default} (default)") if default else None

    def _target(self, name: str) -> tuple[Any, FieldRule | None]:
        rule = self._rule(name)
        if rule is None:
            return None, None
        target = self.doc.one(self.element, rule.selector) if rule.selector else self.element
        return target, rule

    def _raw(self, name: str, natural: tuple[str, ...] = ()) -> tuple[str, FieldRule | None]:
        target, rule = self._target(name)
        if target is None or rule is None:
            return "", rule
        if rule.attr:
            return self.doc.attr(target, rule.attr), rule
        for attr in natural:
            if value := self.doc.attr(target, attr):
                return value, rule
        return self.doc.text(target), rule

    def text(self, name: str) -> str:
        value, rule = self._raw(name)
        if rule is not None:
            self.found.note(name, rule.label, value)
        return value

    def link(self) -> str | None:
        target, rule = self._target("link")
        if target is None or rule is None:
            return None
        if rule.attr:
            value = self.doc.attr(target, rule.attr)
        else:  # the element's own link, else the first link inside it (a heading's)
            anchor = target if self.doc.attr(target, "href") else self.doc.one(target, "a[href]")
            value = self.doc.attr(anchor, "href")
        url = self.page.link(value) if value else None
        self.found.note("link", rule.label, url)
        return url

    def images(self) -> list[Media]:
        target, rule = self._target("image")
        if target is None or rule is None:
            return []
        attr = self.doc.attr
        values = [attr(target, rule.attr)] if rule.attr else [attr(target, "src") or attr(target, "data-src")
                                                              or _srcset(attr(target, "srcset"))]
        urls = [u for u in (self.page.link(v) for v in values if v) if u][:MAX_IMAGES]
        alt = attr(target, "alt") or None
        media = [Media(u, "image", alt=alt) for u in urls]
        self.found.note("image", rule.label, media)
        return media

    def when(self) -> When | None:
        value, rule = self._raw("date", ("datetime", "content"))
        when = read_when(value, self.page.zone, self.page.fetched) if value else None
        if rule is not None:
            self.found.note("date", rule.label, when)
        return when

    def end(self, start: When) -> Any:
        value, rule = self._raw("end", ("datetime", "content"))
        end = read_end(value, start, self.page.zone, self.page.fetched) if value else None
        if rule is not None:
            self.found.note("end", rule.label, end)
        return end


def _attr(tag: Tag | None, name: str) -> str:
    if tag is None:
        return ""
    value = tag.get(name)
    if isinstance(value, list):  # class, rel: several values
        value = " ".join(value)
    return (value or "").strip()


def _srcset(value: str) -> str:
    return value.split(",")[0].strip().split(" ")[0] if value else ""
