"""What the Facebook page and Instagram connectors share: their options, the incremental sync
over the Graph API, re-reading single entries, and turning a post's plain text into the
hub's HTML, title, summary and tags.

The sync, per source (`GraphSource.retrieve`):

- The first sync reads the edge newest first, page by page, until `paging.next` is absent
  (at most `max_pages` pages). Short pages mid-list are normal (Meta filters for privacy).
- Later syncs read newest first until a known post and back over the re-read window
  (`reread`, 14 days by default) to catch edits, then stop: one call when nothing changed.
  What was read is a contiguous window from the newest post to the first one older than
  both, so the store knows that a post missing from inside it was deleted (a tombstone),
  while older posts merely were not read again.
- The state kept between syncs is the newest post's time and how many posts the window held
  (for the next page size), never a paging cursor (cursors die with their post) and never a
  `next` URL (it carries the token).
- Usage above 75% slows the source down (`fresh_until`); at 100% the sync stops after the
  page it has and keeps what it read, without moving its state on.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Iterable
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, PrivateAttr, SecretStr

from connectors.base import ConnectorOptions
from connectors.graph import (GraphApp, GraphClient, GraphNotFound, GraphThrottled, GraphTokenInvalid, Usage,
                              app_from, slowdown, token_check, version_warning)
from hub.config import (GRAPH_API_VERSION, GRAPH_URL, ConfigNote, Duration, GraphUrl, GraphVersion, Settings)
from hub.errors import NotModified, ParseError
from hub.models import FetchState, Item, Media, Parsed, Retrieved, SourceRef, TokenCheck, stable_media_url
from hub.sanitize import strip_tracking

if TYPE_CHECKING:
    from hub.http import Fetcher

PAGE_SIZE = 100  # the most Meta gives per page
SUMMARY_CHARS = 300
TITLE_CHARS = 90


class GraphOptions(ConnectorOptions):
    """Options every Graph API source has; the object's id is the connector's own."""

    access_token: SecretStr
    api_version: GraphVersion | None = None  # default: facebook.api_version, else the hub's pinned one
    graph_url: GraphUrl | None = None  # default: facebook.graph_url, else https://graph.facebook.com
    reread: Duration = timedelta(days=14)  # how far back every sync reads again, for edits and deletions
    max_pages: int = Field(default=20, ge=1, le=1000)  # a first sync reads at most this many pages of 100
    # Send appsecret_proof (needed when the app requires it): default whenever facebook.app_secret is set.
    appsecret_proof: bool | None = None
    _app: GraphApp | None = PrivateAttr(None)  # completed by `settle` from the `facebook:` block

    @property
    def object_id(self) -> str:
        raise NotImplementedError

    @property
    def app(self) -> GraphApp:
        """Where and how to call; without a `facebook:` block (or before `settle`), the
        source's own overrides and the hub's defaults."""
        if self._app is not None:
            return self._app
        return GraphApp(self.graph_url or GRAPH_URL, self.api_version or GRAPH_API_VERSION)

    @property
    def token(self) -> str:
        return self.access_token.get_secret_value()


@dataclass(frozen=True)
class SyncState:
    """What a sync leaves for the next one (FetchState.cursor, as JSON)."""

    newest: datetime | None = None  # the newest post's creation time
    window: int = 0  # how many posts the re-read window held
    digest: str | None = None  # of what was read, image signatures left out: unchanged means nothing new

    @classmethod
    def load(cls, text: str | None) -> SyncState:
        try:
            data = json.loads(text) if text else {}
            return cls(parse_time(data.get("newest")), int(data.get("window") or 0), data.get("digest"))
        except (ValueError, TypeError, AttributeError):
            return cls()  # a state from elsewhere: start over with a first sync

    def dump(self) -> str:
        return json.dumps({"newest": self.newest.isoformat() if self.newest else None, "window": self.window,
                           "digest": self.digest})


class GraphSource:
    """Base of the Facebook and Instagram connectors: `retrieve`, `retrieve_entries`,
    `parse` and `settle` over an edge of Graph objects, mapped by `to_item`."""

    kind: ClassVar[str]
    Options: ClassVar[type[GraphOptions]]
    edge: ClassVar[str]  # "published_posts", "media"
    fields: ClassVar[str]  # the fields asked for each entry
    permission: ClassVar[str]  # the one to name when Meta does not say which is missing
    noun: ClassVar[str]  # "Seite", "Instagram-Konto": for messages
    scopes: ClassVar[tuple[str, ...]]  # the permissions reading needs (`check_token` names those missing)
    push_scopes: ClassVar[tuple[str, ...]] = ()  # ... and those the webhook needs, once it is set up

    # --- the config --------------------------------------------------------------------

    @classmethod
    def settle(cls, opts: GraphOptions, settings: Settings, today: date) -> tuple[GraphOptions, list[ConfigNote]]:
        """Complete `opts` from the `facebook:` block; say what is missing for what the
        source asks, and warn when its API version nears its end of life."""
        fb = settings.facebook
        app = app_from(settings, graph_url=opts.graph_url, api_version=opts.api_version,
                       appsecret_proof=opts.appsecret_proof is not False)
        notes = []
        if opts.appsecret_proof and not app.app_secret:
            notes.append(ConfigNote("'appsecret_proof: true' needs the Facebook app's secret (hint: add a block "
                                    "`facebook: {app_id: \"...\", app_secret: ${FB_APP_SECRET}}` at the top level)",
                                    key="appsecret_proof"))
        if fb and fb.verify_token and not fb.app_secret:
            notes.append(ConfigNote("push needs facebook.app_secret: the webhook (/hooks/facebook) checks Meta's "
                                    "signatures with it, and answers 503 until it is set (hint: app_secret: "
                                    "${FB_APP_SECRET})", top=("facebook", "verify_token"), warning=True))
        elif fb and not (fb.app_id and fb.app_secret):
            notes.append(ConfigNote("without facebook.app_id and app_secret the hub can neither check page tokens "
                                    "(expiry, permissions: `hub facebook check`, `hub sources`) nor make them "
                                    "(`hub facebook pages`)", top=("facebook",), warning=True))
        if warning := version_warning(app.api_version, today):
            own = opts.api_version is not None
            notes.append(ConfigNote(warning, key="api_version" if own else None,
                                    top=("facebook", "api_version") if fb and not own else None, warning=True))
        settled = opts.model_copy()
        settled._app = app
        return settled, notes

    # --- reading ------------------------------------------------------------------------

    async def retrieve(self, opts: GraphOptions, state: FetchState, fetcher: Fetcher) -> Retrieved:
        """Read the edge incrementally (see the module's docstring).

        Raises:
            GraphTokenInvalid: the token is invalid (or was, and has not changed since:
                `state.hold`; then Meta is not asked).
            GraphThrottled, GraphError, FetchError: see `connectors.graph`.
        """
        if state.hold:
            raise GraphTokenInvalid(state.hold)
        now = datetime.now(UTC)
        known = SyncState.load(state.cursor)
        cutoff = min(known.newest, now - opts.reread) if known.newest else None
        size = PAGE_SIZE if cutoff is None else min(PAGE_SIZE, max(25, 2 * known.window + 5))
        client = GraphClient(fetcher, opts.app)
        read, usage, stopped = await self._read(client, opts, size, cutoff)
        kept = _through_cutoff(read, cutoff)
        warnings = []
        if stopped:
            warnings.append(f"{stopped}; gelesen: {len(kept)} Einträge, der Rest folgt bei der nächsten Abfrage")
        if usage.percent >= 75:
            warnings.append(f"Graph-API-Nutzung bei {usage.percent:.0f} %: der Hub fragt diese Quelle seltener ab")
        newest = max([t for t in map(_created, kept) if t] + ([known.newest] if known.newest else []), default=None)
        window = sum(1 for t in map(_created, kept) if t and t >= now - opts.reread)
        digest = _digest([e for e in kept if (_created(e) or now) >= now - opts.reread])
        if digest == known.digest and not warnings:
            # The re-read window holds what it held last time (an image signed anew is no
            # change): nothing to parse or store, like a 304.
            raise NotModified("nothing new since the last sync")
        entries = json.dumps(kept, ensure_ascii=False, separators=(",", ":"))
        after = known if stopped else SyncState(newest, window, digest)
        return Retrieved(payload=_payload(opts.object_id, kept, complete=True, warnings=warnings,
                                          entries_json=entries),
                         state=FetchState(cursor=after.dump()), url=self.origin(opts),
                         content_type="application/json", fresh_until=slowdown(usage, now))

    async def _read(self, client: GraphClient, opts: GraphOptions, size: int,
                    cutoff: datetime | None) -> tuple[list[dict], Usage, str | None]:
        """Pages newest first until `next` is absent, or (with a cutoff) until a page reaches
        past it; returns the entries, the worst usage seen and why it stopped early, if it did."""
        read: list[dict] = []
        usage = Usage()
        pages = client.pages(f"{opts.object_id}/{self.edge}", {"fields": self.fields, "limit": str(size)},
                             opts.token, scope=opts.object_id, what=self.what(opts), permission=self.permission,
                             max_pages=opts.max_pages)
        try:
            async with aclosing(pages) as paging:
                async for page in paging:
                    read += page.items
                    usage = usage.worst(page.usage)
                    if cutoff is not None and any((_created(e) or cutoff) < cutoff for e in page.items):
                        break
                    if page.usage.percent >= 100:
                        return read, usage, "ein Nutzungslimit von Facebook ist erreicht"
        except GraphThrottled as exc:
            if not read:
                raise
            return read, usage, exc.message
        return read, usage, None

    async def retrieve_entries(self, opts: GraphOptions, external_ids: Iterable[str], fetcher: Fetcher) -> Retrieved:
        """Read single entries again by their ids (a push that names a post, an image URL
        that expired). An entry Meta no longer has is reported gone (`Parsed.gone`); the
        payload is partial, so it never judges other entries' deletions.

        Raises:
            as `retrieve`, except that an entry not found is no error.
        """
        client = GraphClient(fetcher, opts.app)
        entries, gone = [], []
        for external_id in dict.fromkeys(external_ids):
            try:
                page = await client.get(external_id, {"fields": self.fields}, opts.token, scope=opts.object_id,
                                        what=f"Eintrag {external_id}", permission=self.permission)
            except GraphNotFound:
                gone.append(external_id)
                continue
            entries.append(page.data)
        return Retrieved(payload=_payload(opts.object_id, entries, complete=False, gone=gone),
                         state=FetchState(), url=self.origin(opts), content_type="application/json")

    def parse(self, opts: GraphOptions, source: SourceRef, got: Retrieved) -> Parsed:
        """The payload's entries as items; hidden or unpublished ones are left out (inside a
        complete window that deletes them; in a partial payload they are named gone)."""
        try:
            doc = json.loads(got.payload)
            entries = doc["entries"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ParseError(f"the Graph API payload cannot be read: {exc!r}") from exc
        complete = bool(doc.get("complete"))
        items: dict[str, Item] = {}
        gone = [str(g) for g in doc.get("gone") or ()]
        for raw in entries:
            if not isinstance(raw, dict) or not raw.get("id"):
                continue
            item = self.to_item(raw, source, got.url)
            if item is None:
                if not complete:
                    gone.append(str(raw["id"]))
            else:
                items.setdefault(item.external_id, item)
        return Parsed(items=tuple(items.values()), warnings=tuple(doc.get("warnings") or ()), complete=complete,
                      gone=tuple(dict.fromkeys(gone)), revive=True)

    # --- the token ----------------------------------------------------------------------

    def needed_scopes(self, opts: GraphOptions) -> tuple[str, ...]:
        return self.scopes + (self.push_scopes if opts.app.push else ())

    async def check_token(self, opts: GraphOptions, fetcher: Fetcher) -> TokenCheck | None:
        """How the source's token stands (`debug_token`, asked with the app token): valid,
        expiry, data access expiry, missing scopes. None when it cannot be asked: that needs
        the app's id and secret (`facebook:` block).

        Raises:
            GraphError, FetchError: the check itself failed (a wrong app secret, the network).
        """
        if not (opts.app.app_id and opts.app.app_secret):
            return None
        info = await GraphClient(fetcher, opts.app).debug_token(opts.token)
        return token_check(info, self.needed_scopes(opts), datetime.now(UTC), page_id=self.token_owner(opts))

    def token_owner(self, opts: GraphOptions) -> str | None:
        """The page a token must belong to, if the source says (Facebook: its page)."""
        return None

    # --- for the subclasses --------------------------------------------------------------

    def to_item(self, raw: dict[str, Any], source: SourceRef, origin: str) -> Item | None:
        """One entry as an Item, or None if residents must not see it."""
        raise NotImplementedError

    def what(self, opts: GraphOptions) -> str:
        return f"{self.noun} {opts.object_id}"

    def origin(self, opts: GraphOptions) -> str:
        """Where the source is read from, without any secret: the edge's address."""
        app = opts.app
        return f"{app.graph_url}/{app.api_version}/{opts.object_id}/{self.edge}"


def _payload(object_id: str, entries: list[dict], *, complete: bool, gone: list[str] = (),
             warnings: list[str] = (), entries_json: str | None = None) -> bytes:
    """What `retrieve` hands to `parse`: the entries alone, never paging links (they carry
    the token). `entries_json`: the entries already serialized."""
    head = json.dumps({"object": object_id, "complete": complete, "gone": list(gone), "warnings": list(warnings)},
                      ensure_ascii=False, separators=(",", ":"))
    entries_json = entries_json or json.dumps(entries, ensure_ascii=False, separators=(",", ":"))
    return f'{head[:-1]},"entries":{entries_json}}}'.encode()


# The parts of a signed CDN URL that change whenever Meta signs it anew (signature, expiry,
# cache hints): left out of a sync's digest.
_VOLATILE = re.compile(r"\b(?:oh|oe|_nc_[a-z]+|ccb)=[^&\"\\\s]*")


def _digest(entries: list[dict]) -> str:
    """Of the entries as Meta sent them, but for what changes whenever it signs an image URL."""
    text = json.dumps(entries, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(_VOLATILE.sub("", text).encode(), digest_size=16).hexdigest()


def _through_cutoff(entries: list[dict], cutoff: datetime | None) -> list[dict]:
    """Newest first, up to and including the first entry older than `cutoff`: a window that
    reaches back past the cutoff, and nothing older (not needed, and not worth parsing)."""
    if cutoff is None:
        return entries
    for n, entry in enumerate(entries):
        created = _created(entry)
        if created is not None and created < cutoff:
            return entries[:n + 1]
    return entries


def _created(entry: dict) -> datetime | None:
    return parse_time(entry.get("created_time") or entry.get("timestamp"))


# --- text ------------------------------------------------------------------------------------------

def parse_time(value: Any) -> datetime | None:
    """Graph times ("2025-06-06T07:15:42+0000"), ISO 8601 or Unix seconds, as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    try:  # Python 3.11 reads "+0000" and "Z" itself
        moment = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\"…"
_HASHTAG = re.compile(r"(?<![\w&#/])#(\w(?:[\w-]*\w)?)")
_SHIMS = ("l.facebook.com", "lm.facebook.com", "l.instagram.com")


def unshim(url: str) -> str:
    """The real target of Facebook's link shim (l.facebook.com/l.php?u=...), else `url`."""
    if "l.php" not in url and "l.instagram.com" not in url:
        return url  # most links: no shim, and splitting them would cost more than the rest
    parts = urlsplit(url)
    if (parts.hostname or "").lower() in _SHIMS and parts.path in ("/l.php", "/"):
        target = dict(parse_qsl(parts.query)).get("u")
        if target and target.lower().startswith(("http://", "https://")):
            return target
    return url


def link_target(url: str | None) -> str | None:
    """A link as residents should get it: unshimmed, without tracking parameters."""
    if not url or not url.lower().startswith(("http://", "https://")):
        return None
    return strip_tracking(unshim(url))


def text_html(text: str) -> str:
    """Plain text as the hub's HTML: paragraphs at blank lines, line breaks kept, links made
    clickable (unshimmed, tracking removed), everything else escaped. No other markup can
    come out of it, so it needs no sanitizer pass."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]
    return "".join(f"<p>{'<br>'.join(_linked(line) for line in p.splitlines())}</p>" for p in paragraphs)


def clean_text(text: str) -> str:
    """The text with its links as `text_html` links them (unshimmed, tracking removed)."""
    if "://" not in text:
        return text
    return "".join(part for part, _ in _pieces(text, escaped=False))


def _linked(line: str) -> str:
    if "://" not in line:
        return html.escape(line, quote=False)
    return "".join(link(part, part) if is_link else part for part, is_link in _pieces(line, escaped=True))


def _pieces(line: str, *, escaped: bool) -> list[tuple[str, bool]]:
    """The line cut into text and link targets; text HTML-escaped if `escaped`."""
    out, last = [], 0
    for match in _URL.finditer(line):
        raw = match.group(0)
        cut = raw.rstrip(_TRAILING)
        while cut.count("(") > cut.count(")") and raw[len(cut):].startswith(")"):
            cut += ")"  # a link to a Wikipedia-style page_(Begriff) keeps its parenthesis
        target = link_target(cut)
        before = line[last:match.start()]
        out.append((html.escape(before, quote=False) if escaped else before, False))
        out.append((target, True) if target else (html.escape(cut, quote=False) if escaped else cut, False))
        last = match.start() + len(cut)
    rest = line[last:]
    out.append((html.escape(rest, quote=False) if escaped else rest, False))
    return out


def link(url: str, label: str) -> str:
    return f'<a href="{html.escape(url, quote=True)}">{html.escape(label, quote=False)}</a>'


def paragraph(*parts: str) -> str:
    """A paragraph of already escaped HTML parts."""
    return "<p>" + "".join(parts) + "</p>"


def hashtags(text: str) -> list[str]:
    """#Erdbeeren #Wochenmarkt -> ["Erdbeeren", "Wochenmarkt"]: once each (first spelling
    wins), numbers alone (#1) are no tags."""
    found: dict[str, str] = {}
    for tag in _HASHTAG.findall(text) if "#" in text else ():
        if not tag.isdigit():
            found.setdefault(tag.casefold(), tag)
    return list(found.values())


# Abbreviations after which a period ends no sentence (German and English, lower case).
_ABBREVIATIONS = frozenset("""z.b zb bzw ca str nr tel usw etc inkl evtl ggf u.a ua dr prof st mo di mi do fr sa so
    jan feb mär apr jun jul aug sep sept okt nov dez vs mr mrs ms geb abs hr bspw d.h dh u.v.m uvm""".split())
_SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)")
_WORD = re.compile(r"\w")
_TRAILING_TAGS = re.compile(r"(?:\s*#\w[\w-]*)+\s*$")


def derive_title(text: str, limit: int = TITLE_CHARS) -> str:
    """A title for a post that has none: its first sentence (of its first line with words),
    cut at a word boundary with " …" if longer than `limit`; links and the hashtags at the
    end left out."""
    for line in text.splitlines():
        line = line[:3 * limit]  # the title is cut from the start: what follows never matters
        if "://" in line:
            line = _URL.sub("", line)
        if "#" in line:
            line = _TRAILING_TAGS.sub("", line)
        line = " ".join(line.split()).rstrip(" :–-")
        if _WORD.search(line):
            return _shortened(_first_sentence(line), limit)
    return ""


def _first_sentence(line: str) -> str:
    for match in _SENTENCE_END.finditer(line):
        if line[match.start()] == ".":
            word = line[line.rfind(" ", 0, match.start()) + 1:match.start()].lower()
            rest = line[match.end():].lstrip()
            if re.fullmatch(r"[\d.:/-]+", word) or word in _ABBREVIATIONS or len(word) == 1 \
                    or (rest and (rest[0].islower() or rest[0].isdigit())):
                continue  # "5. Dezember", "Str. 3", "z.B. Kuchen"
            return line[:match.start()] if len(match.group(0)) == 1 else line[:match.end()]
        return line[:match.end()]
    return line


def _shortened(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:-–")
    return cut + " …"


def summarize(text: str, limit: int = SUMMARY_CHARS) -> str:
    """The start of the text on one line, cut at a word boundary with " …"."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + " …"


def media_key(url: str) -> str:
    """What tells two image URLs apart: for Facebook's and Instagram's signed CDN URLs the
    address without its query (which only signs it, and changes), else the URL itself."""
    return stable_media_url(url)


def add_media(found: dict[str, Media], url: Any, *, width: Any = None, height: Any = None,
              alt: Any = None) -> None:
    """Add an image, once (by `media_key`), if its URL is one."""
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        return
    key = media_key(url)
    if key not in found:
        alt_text = " ".join(str(alt).split())[:300] if alt else None
        found[key] = Media(url=url, type="image", width=_int(width), height=_int(height), alt=alt_text or None)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def fallback_title(language: str | None, german: str, english: str) -> str:
    return english if (language or "").lower().startswith("en") else german


def make_item(raw: dict[str, Any], source: SourceRef, origin: str, *, text: str, html_body: str, title: str,
              url: str | None, media: Iterable[Media], tags: Iterable[str], published: datetime | None,
              updated: datetime | None = None, lead: str | None = None) -> Item:
    """`lead`: the part of `text` the summary is made of (the post's own words), if not all."""
    text = clean_text(text)
    return Item(source_id=source.id, external_id=str(raw["id"]), merchant_id=source.merchant_id, title=title,
                summary=summarize(clean_text(lead) if lead else text), content_html=html_body, content_text=text,
                url=url, media=tuple(media),
                tags=tuple(tags), language=source.language, published=published, updated=updated,
                origin_url=origin)
