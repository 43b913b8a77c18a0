"""The website connector (`connector: website`): news, events and offers from a merchant's
own web pages, for merchants who have no feed.

    - connector: website
      url: https://tsv-musterstadt.example/termine
      items: "article.termin"            # one element per item (for pages without structured data)
      fields: {title: "h2", link: "a@href", date: ".datum", location: ".ort"}
      kind: event                        # post | event | offer (default: post, or what the data says)
      follow: false                      # true: read each item's own page too
      max_pages: 20                      # crawl budget per fetch
      sitemap: false                     # true: also read the pages sitemap.xml lists, newest first

How a page is read (structured data first, then selectors, then OpenGraph):
`connectors/website_items.py`; the structured data itself: `connectors/website_extract.py`
(OpenGraph: `connectors/website_opengraph.py`; the page and its values: `connectors/website_page.py`);
selectors: `connectors/website_selectors.py`; dates: `connectors/website_dates.py`. The crawl
(robots.txt, crawl delay, conditional GET per page, page budget, sitemaps):
`connectors/website_crawl.py`.

What a source reports, besides its items:
- "Selektoren fanden nichts" (selectors matched nothing) when a page no longer matches its
  `items` selector (a redesign): a warning in `hub sources`, and the items read from that
  page before are kept, not deleted;
- an item that is gone from a page that still matches is deleted (`Parsed.gone`);
- a page robots.txt disallows is not fetched: the source fails with the reason (start
  page) or warns (other pages).

The merchant's own LocalBusiness/Organization data (address, geo, opening hours) becomes
the location of its events that name none; `hub try-source` shows it.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator

from connectors.base import ConnectorOptions
from connectors.website_crawl import Payload, business_from, crawl
from connectors.website_items import PageRead, finish_group, read_item_page, read_page, to_item
from connectors.website_selectors import FIELDS, Rules, check_selector, parse_rule
from hub.config import ConfigNote, Settings
from hub.errors import ParseError
from hub.models import FetchState, Kind, Parsed, Retrieved, SourceRef

if TYPE_CHECKING:
    from connectors.website_page import Business
    from hub.http import Fetcher

DEFAULT_ZONE = "Europe/Berlin"


class WebsiteFields(ConnectorOptions):
    """CSS selectors inside each item element; "selector@attr" reads an attribute."""

    title: str | None = None
    link: str | None = None
    date: str | None = None
    end: str | None = None
    location: str | None = None
    image: str | None = None
    summary: str | None = None
    price: str | None = None

    @field_validator(*FIELDS)
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rule(value)
        return value


class WebsiteOptions(ConnectorOptions):
    url: str
    items: str | None = None
    fields: WebsiteFields | None = None
    kind: Literal["post", "event", "offer"] | None = None
    follow: bool = False
    max_pages: int = Field(default=20, ge=1, le=500)
    sitemap: bool = False
    _zone: str | None = PrivateAttr(None)  # platform.timezone, set by `settle`
    # The merchant's name and address from the config (`merchants[].address`), set by `settle`:
    # where its events are when neither they nor its pages say.
    _home: tuple[str, str] | None = PrivateAttr(None)

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        url = url.strip()
        if not url.lower().startswith(("https://", "http://", "file:")):
            raise ValueError("a website url starts with https://, http:// or file:")
        return url

    @field_validator("items")
    @classmethod
    def _items(cls, items: str | None) -> str | None:
        return check_selector(items.strip()) if items is not None else None

    @field_validator("fields")
    @classmethod
    def _fields_need_items(cls, fields: WebsiteFields | None, info: ValidationInfo) -> WebsiteFields | None:
        # (a field's check, not the model's: its error then points at the `fields:` line)
        if fields is not None and "items" in info.data and info.data["items"] is None:  # (absent: items was invalid)
            raise ValueError("'fields' are read inside each item: add 'items', the CSS selector of one item "
                             "(e.g. items: \"article.termin\")")
        return fields

    @property
    def rules(self) -> Rules | None:
        if self.items is None:
            return None
        return Rules.of(self.items, self.fields.model_dump() if self.fields else {})

    @property
    def zone(self) -> str:
        return self._zone or DEFAULT_ZONE

    @property
    def home(self) -> Business | None:
        if self._home is None:
            return None
        from connectors.website_page import Business

        return Business(name=self._home[0], address=self._home[1], rule="config")


class WebsiteConnector:
    kind: ClassVar[str] = "website"
    Options: ClassVar[type[ConnectorOptions]] = WebsiteOptions

    @classmethod
    def settle(cls, opts: WebsiteOptions, settings: Settings, today: date) -> tuple[WebsiteOptions, list[ConfigNote]]:
        """The town's time zone: dates without one on the merchant's pages are its wall time."""
        settled = opts.model_copy()
        settled._zone = settings.platform.timezone
        settled._home = _home(opts, settings)
        notes = []
        if opts.sitemap and opts.url.lower().startswith("file:"):
            notes.append(ConfigNote("'sitemap: true' needs an http(s) site; a file: page has no sitemap.xml",
                                    key="sitemap", warning=True))
        return settled, notes

    async def retrieve(self, opts: WebsiteOptions, state: FetchState, fetcher: Fetcher) -> Retrieved:
        """Crawl the source's pages (see connectors/website_crawl.py).

        Raises:
            NotModified: no page changed since the last fetch.
            FetchError: the start page cannot be read, is disallowed by robots.txt, too large
                or not HTML (the message says which).
        """
        return await crawl(opts, state, fetcher)

    def parse(self, opts: WebsiteOptions, source: SourceRef, got: Retrieved) -> Parsed:
        return self.parse_explained(opts, source, got).parsed

    def parse_explained(self, opts: WebsiteOptions, source: SourceRef, got: Retrieved) -> Explained:
        """`parse`, and for each item which rule found each of its fields (`hub try-source`).

        Raises:
            ParseError: the payload is not a website crawl, or the start page cannot be read.
        """
        payload = Payload.decode(got.payload)
        zone = ZoneInfo(source.timezone or opts.zone)
        explained = Explained(Parsed(items=()), [], business_from(payload.business) or opts.home)
        warnings, items, gone = list(payload.warnings), {}, list(payload.gone)
        default_kind = Kind(opts.kind) if opts.kind else None
        for group in payload.groups:
            read = self._read_group(opts, payload, group, zone, warnings)
            if read is None:
                continue
            explained.business = read.business or explained.business
            followed = {url: read_item_page(payload.pages[url], zone, payload.fetched_at)
                        for url in group["follow"] if url in payload.pages}
            idents, notes = finish_group(read, followed, explained.business, group["item_page"])
            warnings += notes
            if not idents:
                warnings.append(_nothing_found(opts, group["page"], read, group["item_page"]))
                continue  # a page that matches nothing deletes nothing: a redesign is not a deletion
            for ident in idents:
                if ident.key not in items:
                    items[ident.key] = to_item(ident, source, default_kind, zone, warnings)
                    explained.rules.append(ident.found.rules)
            present = {i.key for i in idents}
            gone += [key for key in group["previous"] if key not in present]
        explained.parsed = Parsed(items=tuple(items.values()), warnings=tuple(dict.fromkeys(warnings)),
                                  complete=False, gone=tuple(dict.fromkeys(k for k in gone if k not in items)),
                                  revive=True)
        return explained

    def _read_group(self, opts: WebsiteOptions, payload: Payload, group: dict, zone: ZoneInfo,
                    warnings: list[str]) -> PageRead | None:
        data = payload.pages.get(group["page"])
        if data is None:
            return None
        try:
            return read_page(opts, data, zone, payload.fetched_at)
        except ParseError:
            if not group["item_page"]:
                raise  # the start page: the source's own error
            warnings.append(f"{group['page']}: keine lesbare HTML-Seite; übersprungen")
            return None


def _home(opts: WebsiteOptions, settings: Settings) -> tuple[str, str] | None:
    """The configured name and address of the merchant this source belongs to, if it has one."""
    for merchant in settings.merchants:
        address = getattr(merchant, "address", None)
        for raw in merchant.sources:
            if isinstance(raw, dict) and raw.get("connector") == "website" and str(raw.get("url", "")).strip() == opts.url:
                if not address:
                    return None
                return merchant.name, ", ".join(line.strip() for line in str(address).splitlines() if line.strip())
    return None


class Explained:
    """A parse with, per item (in the order of `parsed.items`), which rule found each field,
    and the merchant's profile if its pages describe it."""

    def __init__(self, parsed: Parsed, rules: list[dict[str, str]], business: Business | None) -> None:
        self.parsed = parsed
        self.rules = rules
        self.business = business


def _nothing_found(opts: WebsiteOptions, url: str, read: PageRead, item_page: bool) -> str:
    if read.how == "selectors" or (opts.items and not read.how):
        return (f"Selektoren fanden nichts (selectors matched nothing) auf {url}: items '{opts.items}' "
                "passt auf kein Element mehr (neu gestaltete Seite?); die bisher gelesenen Einträge bleiben. "
                "Selektoren prüfen mit `hub try-source`")
    return (f"keine Einträge auf {url}: weder strukturierte Daten (schema.org, Mikroformate) noch OpenGraph"
            + ("" if item_page else "; CSS-Selektoren angeben (items, fields), ausprobieren mit `hub try-source`"))


__all__ = ["Explained", "WebsiteConnector", "WebsiteFields", "WebsiteOptions"]
