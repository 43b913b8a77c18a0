"""The website connector's network half: one fetch's crawl, and the payload it hands to
`parse`.

One fetch reads, within `max_pages` distinct pages:

1. the start page (`url`), unless `url` is itself a sitemap;
2. with `follow: true`, each item's own page on the same site, in page order;
3. with `sitemap: true` (or a sitemap as `url`), the sitemap (from robots.txt's `Sitemap:`
   lines, else `/sitemap.xml`; sitemap indexes too), then the listed pages under the start
   page's path, newest `lastmod` first, each one a page of its own items.

Every page passes robots.txt (`hub.robots`; a disallowed start page fails the source with
the reason, a disallowed other page is skipped with a warning), waits out the host's crawl
delay, and is asked for conditionally with the validators it answered last time (kept per
URL in `FetchState.cursor`, with the ids each page gave: `Memo`). A page and its followed
item pages are one group: a group in which nothing changed is not read again and its items
stay as they are; a group in which anything changed is read whole (its unchanged pages
again without validators, as their bodies are needed); when nothing changed at all the
fetch is `NotModified`.

To follow an item's link and to remember which ids a page gave, the crawl reads the pages
it fetched with the same pure code `parse` uses (`connectors.website_items`), in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import lxml.etree

from connectors.website_page import Business, Found
from connectors.website_items import PageData, finish_group, links_to_follow, read_item_page, read_page
from hub.errors import FetchError, NotModified, ParseError
from hub.models import FetchState, Retrieved
from hub.robots import AGENT, origin_of, robots

if TYPE_CHECKING:
    from connectors.website import WebsiteOptions
    from hub.http import Fetcher

ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
SITEMAP_ACCEPT = "application/xml, text/xml;q=0.9, */*;q=0.5"
PAGE_MAX_BYTES = 5 * 1024 * 1024  # a merchant's page; more is not a page to read
SITEMAP_MAX_BYTES = 50 * 1024 * 1024  # the sitemaps protocol's own limit, uncompressed
MAX_SITEMAP_FILES = 10  # sitemap files (an index and its sitemaps) read per fetch
MAX_CRAWL_WAIT = 300.0  # seconds one fetch may spend waiting out crawl delays
MAX_GROUPS = 1000  # pages whose ids the cursor remembers
PAYLOAD_TYPE = "application/x-hub-website"
_MAGIC = b"hub-website/1\n"
_HTML_TYPES = ("text/html", "application/xhtml+xml")


# --- the cursor: what one fetch leaves for the next -------------------------------------------

@dataclass
class Memo:
    """FetchState.cursor of a website source, as JSON.

    `rules` fingerprints the options: when they change (new selectors), the validators
    are forgotten, so every page is read again with the new rules; the ids stay, so what
    the old rules read and the new ones do not is deleted."""

    rules: str = ""
    pages: dict[str, list] = field(default_factory=dict)  # url -> [etag, last_modified]
    groups: dict[str, dict] = field(default_factory=dict)  # page url -> {"ids", "follow", "item_page"}
    sitemaps: dict[str, dict] = field(default_factory=dict)  # sitemap url -> {"entries", "children"}
    business: dict | None = None

    @classmethod
    def load(cls, text: str | None, rules: str) -> Memo:
        try:
            data = json.loads(text) if text else {}
            memo = cls(data.get("rules", ""), dict(data.get("pages") or {}), dict(data.get("groups") or {}),
                       dict(data.get("sitemaps") or {}), data.get("business"))
        except (ValueError, TypeError, AttributeError):
            return cls(rules)  # a cursor from elsewhere: read everything once
        if memo.rules != rules:
            memo.rules, memo.pages, memo.sitemaps = rules, {}, {}
        return memo

    def dump(self) -> str:
        groups = dict(list(self.groups.items())[-MAX_GROUPS:])
        return json.dumps({"rules": self.rules, "pages": self.pages, "groups": groups, "sitemaps": self.sitemaps,
                           "business": self.business}, ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    def state(self, url: str) -> FetchState:
        etag, modified = (self.pages.get(url) or [None, None])[:2]
        return FetchState(etag=etag, last_modified=modified)


def rules_fingerprint(opts: WebsiteOptions) -> str:
    return hashlib.sha1(opts.model_dump_json().encode()).hexdigest()[:16]


# --- the payload ------------------------------------------------------------------------------

@dataclass
class Payload:
    """What `retrieve` read, for `parse`: the pages read anew and how they group."""

    fetched_at: datetime
    pages: dict[str, PageData] = field(default_factory=dict)
    groups: list[dict] = field(default_factory=list)  # {"page", "item_page", "previous", "follow"}
    gone: list[str] = field(default_factory=list)  # ids of pages that left the sitemap
    warnings: list[str] = field(default_factory=list)
    business: dict | None = None

    def encode(self) -> bytes:
        """A JSON head line, then the pages' bodies back to back (no base64: pages are big)."""
        head = {"fetched_at": self.fetched_at.isoformat(), "groups": self.groups, "gone": self.gone,
                "warnings": self.warnings, "business": self.business,
                "pages": [[p.url, p.final_url, p.content_type, len(p.body)] for p in self.pages.values()]}
        return b"".join([_MAGIC, json.dumps(head, ensure_ascii=False).encode(), b"\n",
                         *(p.body for p in self.pages.values())])

    @classmethod
    def decode(cls, payload: bytes) -> Payload:
        """Raises ParseError for anything but a website crawl's payload."""
        if not payload.startswith(_MAGIC):
            raise ParseError("the payload is not a website crawl (did another connector fetch it?)")
        end = payload.index(b"\n", len(_MAGIC))
        head = json.loads(payload[len(_MAGIC):end])
        out = cls(datetime.fromisoformat(head["fetched_at"]), groups=head["groups"], gone=head["gone"],
                  warnings=head["warnings"], business=head.get("business"))
        pos = end + 1
        for url, final_url, content_type, size in head["pages"]:
            out.pages[url] = PageData(url, final_url, content_type, payload[pos:pos + size])
            pos += size
        return out


def business_from(data: dict | None) -> Business | None:
    if not data:
        return None
    return Business(**{k: v for k, v in data.items() if k in Business.__dataclass_fields__})


# --- fetching pages ---------------------------------------------------------------------------

@dataclass
class _Got:
    """How asking for one page went: `page` when it was read anew."""

    status: str  # "fresh" | "unchanged" | "skipped" (for good: a 404, robots.txt) | "failed" (try later)
    page: PageData | None = None


_UNCHANGED, _SKIPPED, _FAILED = _Got("unchanged"), _Got("skipped"), _Got("failed")


class _Crawl:
    def __init__(self, opts: WebsiteOptions, fetcher: Fetcher, memo: Memo, now: datetime) -> None:
        self.opts = opts
        self.fetcher = fetcher
        self.old = memo
        self.new = Memo(memo.rules, {}, {}, {}, memo.business)
        self.now = now
        self.zone = ZoneInfo(opts.zone)
        self.payload = Payload(now)
        self.asked: set[str] = set()
        self.waited = 0.0
        self.budget_warned = False
        config = getattr(fetcher, "_config", None)  # the fetcher's own settings, when it has them
        self.spacing = float(getattr(config, "host_spacing", 1.0))
        self.page_cap = min(PAGE_MAX_BYTES, int(getattr(config, "max_body_bytes", PAGE_MAX_BYTES)))

    @property
    def left(self) -> int:
        return self.opts.max_pages - len(self.asked)

    def warn(self, text: str) -> None:
        if text not in self.payload.warnings:
            self.payload.warnings.append(text)

    async def page(self, url: str, *, conditional: bool = True, required: bool = False) -> _Got:
        """One HTML page. `required` (the start page): what goes wrong is raised, as the
        source's error; for the others it is a warning and the crawl goes on."""
        if url in self.payload.pages:
            return _Got("fresh", self.payload.pages[url])
        got = await self._fetch(url, conditional=conditional, required=required, accept=ACCEPT, cap=self.page_cap)
        if got.page is not None and not _is_html(got.page):
            message = (f"{url} ist keine HTML-Seite (Content-Type {got.page.content_type or 'unbekannt'})")
            if required:
                raise FetchError(message, hint="für einen Feed `connector: feed`, für einen Kalender "
                                               "`connector: ical` verwenden")
            self.warn(message + "; übersprungen")
            return _SKIPPED
        if got.page is not None:
            self.payload.pages[url] = got.page
        return got

    async def _fetch(self, url: str, *, conditional: bool, required: bool, accept: str, cap: int) -> _Got:
        if url not in self.asked and self.left <= 0:
            if not self.budget_warned:
                self.warn(f"Seitenbudget erreicht (max_pages: {self.opts.max_pages}); weitere Seiten wurden "
                          "nicht gelesen (max_pages erhöhen, um mehr zu lesen)")
                self.budget_warned = True
            return _SKIPPED
        try:
            if not await self._polite(url, required):
                return _SKIPPED
            self.asked.add(url)
            state = self.old.state(url) if conditional else FetchState()
            response = await self.fetcher.get(url, state=state, max_bytes=cap, accept=accept)
        except NotModified:
            self.new.pages[url] = self.old.pages.get(url) or [state.etag, state.last_modified]
            return _UNCHANGED
        except FetchError as exc:
            if required:
                raise
            self.warn(f"{url}: {exc}")
            return _FAILED if exc.transient else _SKIPPED
        self.new.pages[url] = [response.state.etag, response.state.last_modified]
        # The whole Content-Type: its charset decides how the page is decoded.
        return _Got("fresh", PageData(url, response.url, response.headers.get("content-type", ""), response.body))

    async def _polite(self, url: str, required: bool) -> bool:
        """robots.txt and the crawl delay; False: not this page (and why is a warning)."""
        rules = await robots.rules(self.fetcher, url)  # a FetchError here: nothing of the site is read
        if rules is None:
            return True  # a file: page
        if not rules.allows(url, AGENT):
            message = f"robots.txt von {origin_of(url)} verbietet dem Hub ({AGENT}) die Seite {urlsplit(url).path or '/'}"
            if required:
                raise FetchError(message + "; sie wird nicht abgerufen",
                                 hint="den Seitenbetreiber bitten, den Hub zuzulassen (User-agent: "
                                      f"{AGENT} / Allow: /), oder die Quelle entfernen")
            self.warn(message + "; übersprungen")
            return False
        delay = max(rules.delay(AGENT) or 0.0, self.spacing)
        if self.waited + delay > MAX_CRAWL_WAIT and self.asked:
            self.warn(f"Crawl-delay von {delay:g} s: mehr Seiten liest eine Abfrage nicht "
                      f"({MAX_CRAWL_WAIT:g} s Wartezeit höchstens); weitere wurden nicht gelesen")
            return False
        started = time.monotonic()
        await robots.pace(url, delay)
        self.waited += time.monotonic() - started
        return True

    # --- groups

    async def group(self, url: str, *, follow: bool, item_page: bool, required: bool,
                    business: Business | None) -> Business | None:
        """Read one group (a page and the item pages it links to), if anything in it changed.
        Returns the merchant's profile the page gave, if any."""
        previous = self.old.groups.get(url)
        first = await self.page(url, required=required)
        if first.status == "unchanged" and follow and previous and previous.get("follow"):
            followed = [await self.page(link) for link in previous["follow"]]
            if any(g.status == "failed" for g in followed):
                return self._keep(url, previous)
            if any(g.status == "fresh" for g in followed):  # the list is needed again, whole
                first = await self.page(url, conditional=False, required=required)
        if first.page is None:
            return self._keep(url, previous)
        try:
            read = await asyncio.to_thread(read_page, self.opts, first.page, self.zone, self.now)
        except ParseError as exc:
            if required:
                raise
            self.warn(str(exc))
            return self._keep(url, previous)
        links = links_to_follow(read) if follow else []
        item_pages: dict[str, Found | None] = {}
        for link in links:
            got = await self.page(link, conditional=False)
            if got.status == "failed":  # try the whole group again next time
                self.new.pages.pop(url, None)
                return self._keep(url, previous)
            if got.page is not None:
                item_pages[link] = await asyncio.to_thread(read_item_page, got.page, self.zone, self.now)
        idents, _ = await asyncio.to_thread(finish_group, read, item_pages, business, item_page)
        ids = [i.key for i in idents] or list((previous or {}).get("ids", []))  # matched nothing: keep the old
        self.new.groups[url] = {"ids": ids, "follow": links, "item_page": item_page}
        self.payload.groups.append({"page": url, "item_page": item_page, "follow": links,
                                    "previous": list((previous or {}).get("ids", []))})
        return read.business

    def _keep(self, url: str, previous: dict | None) -> None:
        """The group stays as it was: its items are not read, its ids remembered."""
        if previous is not None:
            self.new.groups[url] = previous
        return None

    # --- sitemaps

    async def sitemap_pages(self, start: str, in_robots: list[str]) -> tuple[list[str], set[str] | None]:
        """The pages to read from the sitemaps (`start` itself, else those robots.txt names,
        else /sitemap.xml), newest first, and, when the whole listing is known, every page
        they list in scope, to tell which pages left them."""
        roots = [start] if looks_like_sitemap(start) else (
            [u for u in in_robots if origin_of(u) == origin_of(start)] or [urljoin(start, "/sitemap.xml")])
        scope = _scope(start)
        queue, entries, everything, files, complete = list(dict.fromkeys(roots)), [], set(), 0, True
        while queue:
            url = queue.pop(0)
            if files >= min(MAX_SITEMAP_FILES, max(2, self.opts.max_pages // 3)):  # pages need budget too
                complete = False
                break
            files += 1
            got = await self._fetch(url, conditional=True, required=False, accept=SITEMAP_ACCEPT,
                                    cap=SITEMAP_MAX_BYTES)
            if got.status == "unchanged" and url in self.old.sitemaps:
                saved = self.old.sitemaps[url]
                everything.update(loc for loc, _ in saved["entries"])
                complete = complete and not saved.get("cut")  # all of its pages, unless only the newest were kept
            elif got.page is not None:
                try:
                    found, children = read_sitemap(got.page.body)
                except ValueError as exc:
                    self.warn(f"Sitemap {url} nicht lesbar ({exc})")
                    complete = False
                    continue
                in_scope = [e for e in found if _in_scope(e[0], scope)]
                everything.update(loc for loc, _ in in_scope)
                newest = _newest(in_scope)
                keep = 2 * self.opts.max_pages
                saved = {"entries": newest[:keep], "children": _newest(children), "cut": len(newest) > keep}
            else:
                complete = False
                continue
            self.new.sitemaps[url] = saved
            entries += [tuple(e) for e in saved["entries"]]
            queue += [loc for loc, _ in saved["children"] if loc not in queue]
        chosen = [loc for loc, _ in _newest(entries) if loc != start]
        return list(dict.fromkeys(chosen)), (everything if complete else None)


async def crawl(opts: WebsiteOptions, state: FetchState, fetcher: Fetcher) -> Retrieved:
    """One fetch of a website source (see the module's docstring).

    Raises:
        NotModified: no page of the source changed since the last fetch.
        FetchError: the start page (or robots.txt) could not be read, is disallowed, too large
            or not HTML.
        ParseError: the start page is empty or not HTML at all.
    """
    memo = Memo.load(state.cursor, rules_fingerprint(opts))
    run = _Crawl(opts, fetcher, memo, datetime.now(UTC))
    business = business_from(memo.business) or opts.home
    sitemap_only = looks_like_sitemap(opts.url)
    if not sitemap_only:
        found = await run.group(opts.url, follow=opts.follow, item_page=False, required=True, business=business)
        business = found or business
        if found is not None:  # (only what the pages say is remembered; the config is read each time)
            run.new.business = found.as_dict()
    if opts.sitemap or sitemap_only:
        rules = await robots.rules(fetcher, opts.url)
        pages, listed = await run.sitemap_pages(opts.url, rules.sitemaps() if rules else [])
        for n, url in enumerate(pages):
            if run.left <= 0:
                run.warn(f"Seitenbudget erreicht (max_pages: {opts.max_pages}); {len(pages) - n} ältere Seiten "
                         "der Sitemap wurden nicht gelesen")
                break
            await run.group(url, follow=False, item_page=True, required=False, business=business)
        vanished = {url for url, group in memo.groups.items()
                    if group.get("item_page") and listed is not None and url not in listed}
    else:
        vanished = set()
    if not sitemap_only and run.new.groups.get(opts.url, {}).get("ids"):  # a new start page took over
        vanished |= {url for url, group in memo.groups.items() if not group.get("item_page") and url != opts.url}
    for url, group in memo.groups.items():
        if url in run.new.groups:
            continue
        if url in vanished:
            run.payload.gone += group.get("ids", [])
        else:  # not read this time (the budget): what it gave stays
            run.new.groups[url] = group
    run.payload.business = run.new.business
    after = run.new.dump()
    if not run.payload.groups and not run.payload.gone and after == memo.dump():
        raise NotModified("keine der Seiten hat sich seit der letzten Abfrage geändert")
    return Retrieved(payload=run.payload.encode(), state=FetchState(cursor=after), url=opts.url,
                     content_type=PAYLOAD_TYPE)


# --- sitemaps ----------------------------------------------------------------------------------

def looks_like_sitemap(url: str) -> bool:
    path = urlsplit(url).path.lower()
    return path.endswith((".xml", ".xml.gz")) and "sitemap" in path.rsplit("/", 1)[-1]


_PARSER = lxml.etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=True)


def read_sitemap(body: bytes) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(pages, sitemaps) a sitemap file lists, each as (loc, lastmod); gzip is unpacked
    (at most the protocol's 50 MB). Entities are not resolved, nothing is fetched.

    Raises:
        ValueError: not a sitemap.
    """
    if body[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        body = inflater.decompress(body, SITEMAP_MAX_BYTES)
        if inflater.unconsumed_tail:
            raise ValueError(f"entpackt größer als {SITEMAP_MAX_BYTES // (1024 * 1024)} MB")
    try:
        root = lxml.etree.fromstring(body, _PARSER)
    except lxml.etree.XMLSyntaxError as exc:
        raise ValueError(str(exc)) from None
    if root is None or lxml.etree.QName(root).localname not in ("urlset", "sitemapindex"):
        raise ValueError("weder <urlset> noch <sitemapindex>")
    pages, sitemaps = [], []
    for entry in root:
        if not isinstance(entry.tag, str):
            continue
        name = lxml.etree.QName(entry).localname
        values = {lxml.etree.QName(c).localname: (c.text or "").strip() for c in entry if isinstance(c.tag, str)}
        if values.get("loc"):
            (pages if name == "url" else sitemaps if name == "sitemap" else []).append(
                (values["loc"], values.get("lastmod", "")))
    return pages, sitemaps


def _newest(entries: list) -> list[list[str]]:
    """Newest `lastmod` first (W3C Datetime: compared as instants), undated last, each once."""
    def when(entry: Any) -> float:
        try:
            moment = datetime.fromisoformat(entry[1].replace("Z", "+00:00"))
        except (ValueError, AttributeError):
            return float("-inf")
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

    unique = {e[0]: e for e in entries}
    return [[loc, lastmod] for loc, lastmod in sorted(unique.values(), key=when, reverse=True)]


def _scope(start: str) -> tuple[str | None, str]:
    """Pages a sitemap may contribute: same origin, under the start page's path (its folder
    when it names a file or a sitemap)."""
    path = urlsplit(start).path or "/"
    last = path.rsplit("/", 1)[-1]
    if "." in last or looks_like_sitemap(start):
        path = path[: len(path) - len(last)]
    return origin_of(start), path


def _in_scope(url: str, scope: tuple[str | None, str]) -> bool:
    return origin_of(url) == scope[0] and (urlsplit(url).path or "/").startswith(scope[1])


def _is_html(page: PageData) -> bool:
    media_type = page.content_type.split(";")[0].strip().lower()
    if media_type in _HTML_TYPES:
        return True
    if media_type and not media_type.endswith(("octet-stream", "plain")):
        return False
    head = page.body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<!--", b"<head", b"<body"))

