"""A web page as the website connector reads it (`Page`: decoded and parsed once), what is
found on it (`Found`, `Business`), and how values found there are cleaned: titles, texts,
addresses, opening hours, prices. Shared by the structured-data reader
(`connectors.website_extract`), OpenGraph (`connectors.website_opengraph`) and the CSS
selectors (`connectors.website_selectors`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import lxml.etree
import lxml.html
from w3lib.encoding import html_to_unicode
from w3lib.html import get_base_url

from connectors.website_dates import When
from hub.errors import ParseError
from hub.models import Kind, Media
from hub.sanitize import absolute_url, clean_html, plain_text, text_only

MAX_IMAGES = 8
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)


# --- what is found --------------------------------------------------------------------------

@dataclass
class Found:
    """One thing a page announces, before it becomes an Item. `rules` says, per field,
    which rule found it ("json-ld", "microdata", "selector .datum", ...)."""

    page: str  # the URL of the page it was found on
    kind: Kind | None = None  # None: the data does not say
    title: str = ""
    url: str | None = None
    when: When | None = None  # an event's start, end and all-day flag
    published: datetime | None = None
    updated: datetime | None = None
    location: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    cancelled: bool = False
    summary: str = ""  # plain text
    body_html: str = ""  # sanitized
    images: list[Media] = field(default_factory=list)
    price: str | None = None
    currency: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    tags: list[str] = field(default_factory=list)
    rules: dict[str, str] = field(default_factory=dict)
    whole_page: bool = False  # the page itself is this thing (OpenGraph, an item's own page)

    def note(self, name: str, rule: str, value: Any) -> None:
        """Remember which rule found `name`, if it found anything."""
        if value not in (None, "", [], ()) and name not in self.rules:
            self.rules[name] = rule

    def fill_from(self, other: Found, suffix: str) -> None:
        """Take what `other` (the item's own page) knows and this one does not."""
        for name in ("title", "url", "when", "published", "updated", "location", "latitude", "longitude",
                     "summary", "price", "currency", "valid_from", "valid_until"):
            if getattr(self, name) in (None, "") and getattr(other, name) not in (None, ""):
                setattr(self, name, getattr(other, name))
                if (rule := other.rules.get(_RULE_NAME.get(name, name))) is not None:
                    self.rules.setdefault(_RULE_NAME.get(name, name), f"{rule} {suffix}")
        if len(other.body_html) > len(self.body_html):  # the item's page has the full text
            self.body_html = other.body_html
            self.rules["content"] = f"{other.rules.get('content', 'page')} {suffix}"
        self.cancelled = self.cancelled or other.cancelled
        self.kind = self.kind or other.kind
        known = {m.url for m in self.images}
        self.images += [m for m in other.images if m.url not in known][:MAX_IMAGES - len(self.images)]
        self.tags += [t for t in other.tags if t not in self.tags]


_RULE_NAME = {"url": "link", "when": "date", "published": "date", "updated": "date", "latitude": "location",
              "longitude": "location", "currency": "price", "valid_from": "date", "valid_until": "end"}


@dataclass
class Business:
    """The merchant as its page describes itself (schema.org LocalBusiness/Organization,
    or an h-card): the location of its events when they name none, and its profile."""

    name: str = ""
    address: str = ""
    latitude: float | None = None
    longitude: float | None = None
    telephone: str | None = None
    url: str | None = None
    opening_hours: list[str] = field(default_factory=list)
    rule: str = ""

    @property
    def location(self) -> str | None:
        return ", ".join(p for p in (self.name, self.address) if p) or None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "latitude": self.latitude,
                "longitude": self.longitude, "telephone": self.telephone, "url": self.url,
                "opening_hours": self.opening_hours, "rule": self.rule}


# --- the page -------------------------------------------------------------------------------

@dataclass
class Page:
    """A fetched page, decoded and parsed once."""

    url: str  # where it was read from (after redirects)
    text: str
    tree: Any  # lxml.html root element
    base: str  # for relative links: <base href>, else `url`
    zone: ZoneInfo
    fetched: datetime
    _lower: bytes | None = field(default=None, repr=False)

    def has(self, marks: tuple[str, ...]) -> bool:
        """Whether one of `marks` occurs in the page, in any case (bytes: searched several
        times faster than text; lower-cased once, on first use)."""
        if self._lower is None:
            self._lower = self.text.encode("utf-8", "replace").lower()
        return any(mark.encode() in self._lower for mark in marks)

    @classmethod
    def load(cls, body: bytes, url: str, content_type: str, zone: ZoneInfo, fetched: datetime) -> Page:
        """Decode (HTTP charset, BOM, <meta charset>, else UTF-8 or windows-1252) and parse.

        Raises:
            ParseError: the body is empty or not HTML at all.
        """
        _, text = html_to_unicode(content_type or None, body)
        text = _XML_DECLARATION.sub("", text, count=1)  # lxml refuses a declaration in a str
        if not text.strip():
            raise ParseError(f"{url}: the page is empty")
        try:
            tree = lxml.html.document_fromstring(text)
        except (lxml.etree.ParserError, ValueError) as exc:
            raise ParseError(f"{url}: not an HTML page ({exc})") from exc
        return cls(url, text, tree, get_base_url(text[:20_000], url), zone, fetched)

    def link(self, value: Any) -> str | None:
        return absolute_url(text_of(value), self.base) if text_of(value) else None


# --- values -------------------------------------------------------------------------------------

def first(node: dict, *keys: str) -> Any:
    for key in keys:
        value = node.get(key)
        if isinstance(value, list):
            value = next((v for v in value if v not in (None, "", [], {})), None)
        if value not in (None, "", [], {}):
            return value
    return None


def first_all(node: dict, *keys: str) -> list:
    out: list = []
    for key in keys:
        out += listed(node.get(key))
    return out


def listed(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def text_of(value: Any) -> str:
    """A property's text, whatever shape it came in (a string, a number, a value object,
    a node with a name, a list)."""
    if isinstance(value, list):
        value = next((v for v in value if v not in (None, "")), None)
    if isinstance(value, dict):
        value = value.get("@value", value.get("name", value.get("value", value.get("url", value.get("@id")))))
        if isinstance(value, (list, dict)):
            return text_of(value)
    if value is None or isinstance(value, bool):
        return ""
    return str(value).strip()


def one_line(raw: Any) -> str:
    """A title or a name: one line of text, HTML (and what scripts it carries) dropped."""
    text = text_of(raw)
    return text_only(text) if ("<" in text or "&" in text) else " ".join(text.split())


def plain(raw: str) -> str:
    """Plain text of a description that may be HTML (script and style bodies dropped)."""
    if not raw:
        return ""
    text = plain_text(clean_html(raw)) if ("<" in raw or "&" in raw) else raw
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


_BLOCK = re.compile(r"<(?:p|div|ul|ol|li|h[1-6]|blockquote|table|figure|pre|br)\b", re.IGNORECASE)


def as_html(text: str, base: str) -> str:
    """A body that may be plain text or HTML, as sanitized HTML (in a paragraph when it
    has no blocks of its own)."""
    if not text:
        return ""
    if "<" in text:
        cleaned = clean_html(text, base)
        return cleaned if _BLOCK.search(cleaned) or not cleaned else f"<p>{cleaned}</p>"
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join("<p>" + clean_html(p).replace("\n", "<br>") + "</p>" for p in paragraphs)


def first_words(text: str, n: int = 10) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" …" if len(words) > n else "")


def keywords(value: Any) -> list[str]:
    words: list[str] = []
    for v in listed(value):
        for part in (text_of(v).split(",") if not isinstance(v, dict) else [text_of(v)]):
            part = one_line(part)
            if part and part not in words:
                words.append(part)
    return words


def address_line(value: Any) -> str:
    if isinstance(value, str):
        return one_line(value)
    if not isinstance(value, dict):
        return ""
    town = " ".join(filter(None, (text_of(value.get("postalCode")), text_of(value.get("addressLocality")))))
    return ", ".join(filter(None, (one_line(text_of(value.get("streetAddress"))), one_line(town))))


def place_line(name: str, address: Any) -> str | None:
    parts = [one_line(name), address_line(address)]
    return ", ".join(dict.fromkeys(p for p in parts if p)) or None


def geo(value: Any) -> tuple[float | None, float | None]:
    if not isinstance(value, dict):
        return None, None
    try:
        lat, lon = float(text_of(value.get("latitude")).replace(",", ".")), float(text_of(value.get("longitude")).replace(",", "."))
    except ValueError:
        return None, None
    return (lat, lon) if -90 <= lat <= 90 and -180 <= lon <= 180 else (None, None)


_DAYS = {"monday": "Mo", "tuesday": "Di", "wednesday": "Mi", "thursday": "Do", "friday": "Fr", "saturday": "Sa",
         "sunday": "So", "publicholidays": "Feiertage"}


def hours_line(spec: Any) -> str | None:
    """An OpeningHoursSpecification as "Mo, Di, Mi 09:00–18:00"."""
    if not isinstance(spec, dict):
        return None
    days = [_DAYS.get(text_of(d).rstrip("/").rsplit("/", 1)[-1].lower(), text_of(d)) for d in listed(spec.get("dayOfWeek"))]
    opens, closes = text_of(spec.get("opens"))[:5], text_of(spec.get("closes"))[:5]
    if not days or not opens:
        return None
    return f"{', '.join(days)} {opens}–{closes}" if closes else f"{', '.join(days)} ab {opens}"


# What may stand around a plain price without saying more than it ("Eintritt: 3 €", "Preis 12,- EUR").
_PRICE_WORDS = re.compile(r"(?i)€|\beur(?:o)?\b|\bchf\b|\busd\b|\bgbp\b|\$|£|,-|-|\b(?:eintritt|preis|kosten|"
                          r"ticket|karten?|nur|je|price|admission)\b|:")
_NUMBER = re.compile(r"(?<![\d.,])(\d{1,3}(?:[.\s\u00a0\u202f]\d{3})+|\d+)(?:[.,](\d{1,2}))?(?![\d])")
_CURRENCIES = (("€", "EUR"), ("eur", "EUR"), ("euro", "EUR"), ("chf", "CHF"), ("$", "USD"), ("usd", "USD"),
               ("£", "GBP"), ("gbp", "GBP"))


def price_text(price: Any, low: Any = None, high: Any = None) -> str | None:
    """A price as decimal text ("12.50"; "1234.00" from "1.234,-"); "9.90–19.90" for a range
    (AggregateOffer); text that says more than a number ("ab 9,90 €") stays as written;
    "0.00" for "free"/"frei"/"kostenlos". None when there is no price."""
    if price in (None, "") and low not in (None, ""):
        lo, hi = price_text(low), price_text(high) if high not in (None, "") else None
        return f"{lo}–{hi}" if lo and hi and hi != lo else lo
    if isinstance(price, (int, float)) and not isinstance(price, bool):
        return _decimal(Decimal(str(price)))
    text = text_of(price)
    if not text:
        return None
    if re.fullmatch(r"(?i)\s*(?:frei|kostenlos|gratis|free|eintritt frei)\s*", text):
        return "0.00"
    match = _NUMBER.search(text)
    if match is None:
        return None
    whole = re.sub(r"[.\s\u00a0\u202f]", "", match.group(1))
    value = _decimal(Decimal(f"{whole}.{match.group(2) or '0'}"))
    rest = _PRICE_WORDS.sub("", text[:match.start()] + text[match.end():]).strip(" .,:")
    return value if not rest else " ".join(text.split())


def _decimal(value: Decimal) -> str:
    try:
        return str(value.quantize(Decimal("0.01")))
    except InvalidOperation:
        return str(value)


def currency(text: str | None) -> str | None:
    """The ISO 4217 code a price or currency text names ("12,50 €", "EUR" -> "EUR")."""
    if not text:
        return None
    lowered = text.strip().lower()
    if re.fullmatch(r"[a-z]{3}", lowered):
        return lowered.upper()
    return next((code for mark, code in _CURRENCIES if mark in lowered), None)


def to_int(value: Any) -> int | None:
    try:
        return int(float(text_of(value))) if text_of(value) else None
    except ValueError:
        return None


def short_error(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__


def same_site(url: str, page: str) -> bool:
    """`url` is on the same host as `page` (followed links stay on the merchant's site)."""
    a, b = urlsplit(url), urlsplit(page)
    return a.scheme in ("http", "https", "file") and a.scheme == b.scheme and a.netloc.lower() == b.netloc.lower()
