"""From fetched pages to identified items: the pure half of the website connector, shared
by `retrieve` (which needs the links to follow and the ids it read, for next time) and
`parse` (which makes the items). Both run the same code on the same bytes, so they agree.

A *group* is a page and the item pages followed from it (`follow: true`); a sitemap page
is a group of its own. A page is read in the order of trust: structured data (schema.org
in JSON-LD, microdata, RDFa; microformats2), then the configured CSS selectors, then, for
a page without selectors, its OpenGraph tags as one item (the page itself).

Identity: an item's own URL, if it has one that no other item of the group shares and
that is not merely the page it was listed on; else a key from its title and its day
("web:" + a hash), never its text, so an edited description or a changed price or time
on the same day is an update of the same item. Two items with the same title on the same
day (two screenings of a film) are told apart by their start time.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from connectors.website_extract import structured
from connectors.website_opengraph import main_text, opengraph
from connectors.website_page import Business, Found, Page, as_html, same_site
from connectors.website_selectors import Rules, select
from hub.errors import ParseError
from hub.models import Event, Item, Kind, Offer, SourceRef
from hub.sanitize import plain_text

if TYPE_CHECKING:
    from connectors.website import WebsiteOptions

SUMMARY_CHARS = 300
ITEM_PAGE = "(Artikelseite)"  # said of a field an item's own page gave


@dataclass(frozen=True)
class PageData:
    """One fetched page as the payload carries it."""

    url: str  # as asked for (the key of its group and of the links that name it)
    final_url: str  # after redirects: the base for its relative links
    content_type: str  # the whole header, charset included
    body: bytes


@dataclass
class PageRead:
    """A group's page, read."""

    page: Page
    found: list[Found]
    business: Business | None
    how: str  # "structured" | "selectors" | "opengraph" | "": how the items were found
    warnings: list[str] = field(default_factory=list)


@dataclass
class Identified:
    key: str
    found: Found


def read_page(opts: WebsiteOptions, data: PageData, zone: ZoneInfo, fetched: datetime) -> PageRead:
    """The items on a group's page, by the first way that finds any.

    Raises:
        ParseError: the page is empty or not HTML.
    """
    page = Page.load(data.body, data.final_url, data.content_type, zone, fetched)
    data_found = structured(page)
    warnings = list(data_found.warnings)
    og = opengraph(page)  # before the selectors, which take scripts and styles out of the tree
    rules: Rules | None = opts.rules
    kind = Kind(opts.kind) if opts.kind else None
    if data_found.items:
        found, how = data_found.items, "structured"
    elif rules is not None:
        found, how = select(page, rules, kind, warnings), "selectors"
    elif og is not None:
        og.body_html = main_text(page) or og.body_html
        og.note("content", "Seitentext", og.body_html)
        og.kind = og.kind or kind
        found, how = [og], "opengraph"
    else:
        found, how = [], ""
    return PageRead(page, found, data_found.business, how, warnings)


def links_to_follow(read: PageRead) -> list[str]:
    """The items' own pages on the merchant's site, in page order, each once."""
    here = _without_fragment(read.page.url)
    links: dict[str, None] = {}
    for found in read.found:
        if found.url and same_site(found.url, read.page.url) and _without_fragment(found.url) != here:
            links.setdefault(_without_fragment(found.url))
    return list(links)


def read_item_page(data: PageData, zone: ZoneInfo, fetched: datetime) -> Found | None:
    """What an item's own page adds: its main structured item (else its OpenGraph) and
    its full text."""
    try:
        page = Page.load(data.body, data.final_url, data.content_type, zone, fetched)
    except ParseError:
        return None
    data_found = structured(page)
    best = data_found.items[0] if data_found.items else opengraph(page, own_page=True) or Found(page.url)
    text = main_text(page)
    if len(text) > len(best.body_html):
        best.body_html = text
        best.rules["content"] = "Seitentext"
    return best


def finish_group(read: PageRead, followed: dict[str, Found | None], business: Business | None,
                 item_page: bool) -> tuple[list[Identified], list[str]]:
    """The group's items, completed from their own pages (`followed`, by URL), the merchant's
    address as the location of events that name none, duplicates merged and identified."""
    warnings = list(read.warnings)
    for found in read.found:
        other = followed.get(_without_fragment(found.url)) if found.url else None
        if other is not None:
            found.fill_from(other, ITEM_PAGE)
    business = read.business or business
    if business is not None and business.location:
        for found in read.found:
            if found.location is None and (found.kind is Kind.EVENT or found.when is not None):
                found.location = business.location
                found.latitude, found.longitude = business.latitude, business.longitude
                found.rules.setdefault("location", f"{business.rule} (Adresse des Anbieters)")
    merged = _merge_duplicates(read.found)
    return identify(merged, read.page.url, item_page, read.page.zone), warnings


def _merge_duplicates(found: list[Found]) -> list[Found]:
    """The same thing written twice (in JSON-LD and in microdata, or listed twice) is one."""
    kept: dict[tuple, Found] = {}
    for f in found:
        signature = (_title_key(f.title), _moment(f), f.url)
        if signature in kept:
            kept[signature].fill_from(f, "")
        else:
            kept[signature] = f
    return list(kept.values())


def identify(found: list[Found], page_url: str, item_page: bool, zone: ZoneInfo) -> list[Identified]:
    """Each item with its key (see the module's docstring). The one item of an item's own
    page (a sitemap's page) is that page."""
    if item_page and len(found) == 1 and not found[0].url:
        found[0].url = page_url
    urls = Counter(f.url for f in found if f.url)
    out, by_key = [], {}
    for f in found:
        if f.url and urls[f.url] == 1 and (f.url != page_url or f.whole_page or (item_page and len(found) == 1)):
            out.append(Identified(_url_key(f.url), f))
        else:
            key = _stable_key(f, zone, with_time=False)
            by_key.setdefault(key, []).append(f)
            out.append(Identified(key, f))
    for key, same in by_key.items():
        if len(same) > 1:  # the same title on one day: their times tell them apart
            for ident in out:
                if ident.key == key:
                    ident.key = _stable_key(ident.found, zone, with_time=True)
    seen: Counter = Counter()
    for ident in out:  # still equal: the same title at the same time, in different places or prices
        seen[ident.key] += 1
        if seen[ident.key] > 1:
            ident.key = f"{ident.key}-{seen[ident.key]}"
    return out


def _stable_key(f: Found, zone: ZoneInfo, *, with_time: bool) -> str:
    moment = _moment(f)
    moment = moment.astimezone(zone) if moment else None
    day = moment.date().isoformat() if moment else ""
    when = moment.strftime("%H:%M") if moment and with_time and not (f.when and f.when.all_day) else ""
    digest = hashlib.sha1(f"{_title_key(f.title)}|{day}|{when}".encode()).hexdigest()[:20]
    return f"web:{digest}"


def _moment(f: Found) -> datetime | None:
    if f.when is not None:
        return f.when.start
    return f.published or f.valid_from


# Words a title gains or loses while it stays the same thing: "Abgesagt: Konzert" is still
# the concert, "NEU: Adventskranz" still the wreath.
_TITLE_NOISE = re.compile(r"\b(?:abgesagt|entf(?:ä|ae)llt|f(?:ä|ae)llt aus|verschoben|ausverkauft|cancell?ed|"
                          r"postponed|sold out|neu|new)\b", re.IGNORECASE)


def _title_key(title: str) -> str:
    text = _TITLE_NOISE.sub(" ", title.casefold())
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def _url_key(url: str) -> str:
    """The URL with scheme and host in lower case; the fragment stays (an anchor per item)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, parts.fragment))


def _without_fragment(url: str) -> str:
    return url.split("#", 1)[0]


# --- items -----------------------------------------------------------------------------------

def to_item(ident: Identified, source: SourceRef, default_kind: Kind | None, zone: ZoneInfo,
            warnings: list[str]) -> Item:
    f = ident.found
    kind = f.kind or default_kind or Kind.POST
    if kind is Kind.EVENT and f.when is None:
        warnings.append(f"'{f.title}' auf {f.page}: kein Datum gefunden, als Beitrag gelesen "
                        "(Feld date prüfen: `hub try-source`)")
        kind = Kind.POST
    body = f.body_html or as_html(f.summary, f.page)
    text = plain_text(body)
    return Item(
        source_id=source.id,
        external_id=ident.key,
        merchant_id=source.merchant_id,
        title=f.title,
        summary=_summary(f.summary or text),
        content_html=body,
        content_text=text,
        # Only an item's own address: a list page shared by all its items would make other
        # channels' posts that link to that page look like each of them (hub.identity).
        url=f.url if ident.key.startswith(("http:", "https:", "file:")) else None,
        kind=kind,
        media=tuple(f.images),
        tags=tuple(f.tags),
        language=source.language,
        published=_utc(f.published) if kind is not Kind.EVENT else None,
        updated=_utc(f.updated),
        event=_event(f, zone) if kind is Kind.EVENT else None,
        offer=Offer(f.price, f.currency, _utc(f.valid_from), _utc(f.valid_until))
        if kind is Kind.OFFER or f.price else None,
        origin_url=f.page,
    )


def _event(f: Found, zone: ZoneInfo) -> Event:
    assert f.when is not None
    return Event(start=f.when.start.astimezone(zone), end=f.when.end.astimezone(zone) if f.when.end else None,
                 timezone=zone.key, all_day=f.when.all_day, location=f.location, cancelled=f.cancelled,
                 latitude=f.latitude, longitude=f.longitude)


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment else None


def _summary(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= SUMMARY_CHARS:
        return text
    return text[:SUMMARY_CHARS].rsplit(" ", 1)[0] + " …"
