"""The feed connector: RSS 0.9x/1.0/2.0, Atom 0.3/1.0 and JSON Feed 1.0/1.1.

Well-formed UTF-8 XML feeds take the fast path (fastfeedparser, a native parser); anything
it cannot take, for whatever reason, falls back to feedparser's forgiving parser and its
encoding detection, so every feed feedparser reads is still read. JSON Feed is mapped here
directly (feedparser cannot read it). Neither parser is ever allowed to fetch: both only see
the bytes the hub's fetcher already downloaded.
"""

from __future__ import annotations

import calendar
import codecs
import hashlib
import importlib.util
import json
import pyexpat
import re
import sys
from collections import Counter
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit, urlunsplit
from typing import TYPE_CHECKING, Any, ClassVar, Iterable
from zoneinfo import ZoneInfo

import feedparser
from fastfeedparser import parse as fastfeedparser_parse
from pydantic import field_validator

from connectors import feed_dates, websub
from connectors.base import ConnectorOptions
from hub.errors import ParseError
from hub.models import FetchState, Item, Media, Parsed, Retrieved, SourceRef
from hub.sanitize import absolute_url, clean_html, plain_text, strip_tracking, text_only, unescape_attribute

if TYPE_CHECKING:
    from hub.http import Fetcher

ACCEPT = ("application/feed+json, application/atom+xml, application/rss+xml, application/rdf+xml, "
          "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5")
SUMMARY_CHARS = 300
_IMAGE_EXT = re.compile(r"\.(jpe?g|png|gif|webp|avif)(\?|$)", re.IGNORECASE)
_FEED_LINK = re.compile(r"<link[^>]+type=[\"']application/(?:rss|atom|feed)\+(?:xml|json)[\"'][^>]*>", re.I)
_HREF = re.compile(r"href=[\"']([^\"']+)[\"']", re.I)

# For a date its own parsers cannot read (a non-URL guid, which `_drop_guessed_date` reads for
# every such entry), fastfeedparser tries `import dateparser`, an optional package the hub does
# not install; a failed import searches sys.path again each time: ~60 µs of file system calls
# per entry. Marked absent once, the import fails at once (None in sys.modules: Python's way).
if importlib.util.find_spec("dateparser") is None:
    sys.modules.setdefault("dateparser", None)  # type: ignore[arg-type]
feed_dates.install()  # German zone names, "+01:00", "Mo, ...", "Dez": see connectors/feed_dates.py


class FeedOptions(ConnectorOptions):
    url: str
    # Some feeds rotate tokens in their guids; keying on the link keeps items stable.
    key: str = "guid"

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not re.match(r"^(https?|file):", url, re.IGNORECASE):
            raise ValueError("a feed url starts with https://, http:// or file:")
        return url

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        if key not in ("guid", "link"):
            raise ValueError("key is 'guid' (default) or 'link'")
        return key


class FeedConnector:
    kind: ClassVar[str] = "feed"
    Options: ClassVar[type[ConnectorOptions]] = FeedOptions

    async def retrieve(self, opts: FeedOptions, state: FetchState, fetcher: Fetcher) -> Retrieved:
        resp = await fetcher.get(opts.url, state=state, accept=ACCEPT)
        return Retrieved(payload=resp.body, state=resp.state, url=resp.url,
                         content_type=resp.content_type, fresh_until=resp.fresh_until,
                         websub=websub.from_link_header(resp.headers.get("link"), resp.url))

    def parse(self, opts: FeedOptions, source: SourceRef, got: Retrieved) -> Parsed:
        view = _utf8_view(got.payload)
        doc = _parse_document(got.payload, view)
        warnings = list(doc.warnings)
        base_url = _xml_base(view, got.url)
        items: dict[str, Item] = {}
        shared = _shared_guids(doc.entries)
        if shared:
            ids = ", ".join(repr(g[:60]) for g in list(shared)[:3])
            warnings.append(f"{sum(shared.values())} entries share their id with others "
                            f"({ids}); named them by their links, else by title and date")
        for entry in doc.entries:
            key = "none" if _guid(entry) in shared else opts.key
            item = _entry_to_item(entry, source, base_url, key, doc.language)
            if item is None:
                warnings.append("skipped an entry with neither id, link, title nor date")
            elif item.external_id in items:
                warnings.append(f"entry id {item.external_id!r} appears twice; kept the first")
            else:
                items[item.external_id] = item
        # WebSub says the Link header comes first, then the document.
        hub = got.websub or websub.from_document(view, got.url)
        return Parsed(items=tuple(items.values()), warnings=tuple(warnings), complete=True,
                      ttl_seconds=doc.ttl_seconds, websub=hub)


# --- documents ---------------------------------------------------------------------------

class _Document:
    """The parts of a parsed feed the mapper needs, whichever parser produced them."""

    def __init__(self, entries: list[dict], language: str | None = None,
                 warnings: Iterable[str] = (), ttl_seconds: int | None = None) -> None:
        self.entries = entries
        self.language = language
        self.warnings = tuple(warnings)
        self.ttl_seconds = ttl_seconds


def _parse_document(payload: bytes, view: bytes | None = None) -> _Document:
    """`view` is `_utf8_view(payload)` if the caller has it at hand."""
    view = _utf8_view(payload) if view is None else view
    head = view[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"{"):
        return _parse_json_feed(view)
    if not head.startswith(b"<"):
        raise ParseError("the response is not a feed (neither XML nor JSON)",
                         hint="check that the url points at the feed itself, not a web page")
    if _looks_like_html(head):
        raise ParseError("the response is an HTML page, not a feed", hint=_feed_link_hint(view))
    if (view is payload and _is_utf8(payload, head) and not _is_rss10(head)
            and not _misread_by_fast_path(payload, head)):
        doc = _parse_fast(payload)
        if doc is not None:
            return doc
    return _parse_with_feedparser(payload, view)


def _parse_fast(payload: bytes) -> _Document | None:
    """The fast path's reading, or None if it cannot take the document, whatever the
    reason: not well-formed, an encoding the scan cannot decode (expat raises LookupError
    for an unknown name, ValueError for a multi-byte one), a root fastfeedparser does not
    know (RSS 0.90), or anything else either of them raises. feedparser then reads it."""
    try:
        if not _well_formed(payload):
            return None
        parsed = fastfeedparser_parse(payload)
        if not parsed.entries and _has_entries(payload):
            return None
        entries = [_drop_guessed_date(e) for e in parsed.entries]
        return _Document(entries, parsed.feed.get("language"), ttl_seconds=_ttl(payload))
    except Exception:  # whatever the fast path cannot take goes to feedparser
        return None


# Text constructs fastfeedparser misreads: a title or summary in Atom's inline XHTML
# (type="xhtml", Atom 0.3's "application/xhtml+xml") comes out empty, Atom 0.3's base64 mode
# undecoded, and markup left unescaped in a title ("Adventsmarkt <b>am Samstag</b>") cut at
# its first tag. Such a document goes to feedparser, which reads them all (XHTML content the
# fast path reads). The looks cost ~1.5 µs per KB, ~2 µs an entry of an ordinary feed.
_XHTML_TEXT = re.compile(rb"""<(?:[\w.-]+:)?(?:title|summary)\s[^>]*?\btype\s*=\s*["'](?:xhtml|application/xhtml\+xml)["']""")
_BASE64_MODE = re.compile(rb"""\bmode\s*=\s*["']base64["']""")
_MARKUP_IN_TITLE = re.compile(rb"<title(?:\s[^>]*)?>[^<]*<[^!/]")


def _misread_by_fast_path(payload: bytes, head: bytes) -> bool:
    """`head`: the document's start, lower-cased."""
    return ((b"xhtml" in payload and _XHTML_TEXT.search(payload) is not None)
            or (b"purl.org/atom/ns#" in head and _BASE64_MODE.search(payload) is not None)  # Atom 0.3
            or _MARKUP_IN_TITLE.search(payload) is not None)


def _is_rss10(head: bytes) -> bool:
    """RSS 1.0 goes to feedparser: fastfeedparser drops its content:encoded bodies."""
    return b"<rdf:rdf" in head


def _well_formed(payload: bytes) -> bool:
    """fastfeedparser quietly repairs broken XML; a repair must be reported, so only
    well-formed documents take the fast path and the rest go to feedparser (which says
    what was wrong). A document the scan cannot even decode is not taken either."""
    try:
        pyexpat.ParserCreate().Parse(payload, True)  # a scan only, no tree: ~3x faster than lxml
    except Exception:  # ExpatError, LookupError, ValueError, UnicodeError, ...
        return False
    return True


# --- encodings -----------------------------------------------------------------------------

_DECLARED_ENCODING = re.compile(rb"<\?xml\s[^>]*?\bencoding\s*=\s*[\"']\s*([^\"'\s]*)")


def _is_utf8(payload: bytes, head: bytes) -> bool:
    """Whether the document is UTF-8 (declared so, or not declared at all), the only
    encoding the fast path takes. Any other goes to feedparser, whose encoding detection is
    the reference: the fast path would read windows-1252's quotes and euro sign in an
    "ISO-8859-1" document as control characters, where feedparser maps them. A document
    in plain ASCII reads the same in any ASCII-compatible encoding, so it stays fast.
    `head` is the document's start, lower-cased, without a UTF-8 BOM."""
    declared = _DECLARED_ENCODING.match(head)
    return declared is None or declared.group(1) in (b"utf-8", b"utf8") or payload.isascii()


# A document that starts with a byte order mark, or with "<?" in UTF-16 or UTF-32 without one,
# or with "<?xm" in EBCDIC (XML 1.0, appendix F; feedparser sniffs the same): (start, codec,
# whether the start is a BOM to drop). A UTF-32 BOM first: UTF-16's is its prefix.
_NOT_ASCII_STARTS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", True), (codecs.BOM_UTF32_BE, "utf-32-be", True),
    (codecs.BOM_UTF16_LE, "utf-16-le", True), (codecs.BOM_UTF16_BE, "utf-16-be", True),
    (b"<\0\0\0", "utf-32-le", False), (b"\0\0\0<", "utf-32-be", False),
    (b"<\0?\0", "utf-16-le", False), (b"\0<\0?", "utf-16-be", False),
    (b"\x4c\x6f\xa7\x94", "cp037", False),
)


def _utf8_view(payload: bytes) -> bytes:
    """The document in UTF-8 for the looks this module takes at its bytes (JSON or XML, an
    HTML page, xml:base, <ttl>, WebSub links): the payload itself, unless it starts in an
    encoding that is not ASCII-compatible (UTF-16, UTF-32, EBCDIC). Parsers always get the
    payload as it came, never this view (except JSON Feed, which is UTF-8 anyway)."""
    for start, codec, bom in _NOT_ASCII_STARTS:
        if payload.startswith(start):
            return payload[len(start) if bom else 0:].decode(codec, "replace").encode("utf-8")
    return payload


# Windows' own names for its code pages (Internet Explorer's, still found in the XML
# declaration of old CMS templates), which Python's codecs do not know: registered for the
# whole process, so that feedparser (and the scan) read the text right instead of guessing
# windows-1252 for Cyrillic or Greek. A name nobody knows (tcvn, viscii, a typo) stays
# unknown; feedparser then tries UTF-8 and windows-1252 and the feed gets a warning.
_CODEPAGE_ALIASES = {
    "ms_ansi": "cp1252", "ms_ee": "cp1250", "ms_cyrl": "cp1251", "ms_greek": "cp1253",
    "ms_turk": "cp1254", "ms_hebr": "cp1255", "ms_arab": "cp1256", "winbaltrim": "cp1257",
    "mac": "mac_roman", "csmacintosh": "mac_roman",
}


def _codepage_alias(name: str) -> codecs.CodecInfo | None:
    target = _CODEPAGE_ALIASES.get(name.replace("-", "_").replace(" ", "_"))
    return codecs.lookup(target) if target else None


codecs.register(_codepage_alias)


def _drop_guessed_date(entry: dict) -> dict:
    """fastfeedparser reads a date out of a non-URL guid when an entry has none (a guid
    "1" becomes the 1st of this month). An invented date would misplace the item, so such
    a guess is dropped."""
    guid = entry.get("id") or ""
    if not guid or guid.startswith(("http://", "https://")) or not entry.get("published"):
        return entry
    guess = feed_dates.parse(guid)
    if guess != entry["published"]:
        return entry
    return {k: v for k, v in entry.items() if not (k in ("published", "updated") and v == guess)}


def _parse_with_feedparser(payload: bytes, view: bytes | None = None) -> _Document:
    # feedparser gets bytes only: it must never fetch anything itself. It detects their
    # encoding (BOM, XML declaration, then UTF-8 and windows-1252) and says what it guessed.
    try:
        parsed = feedparser.parse(payload, sanitize_html=False, resolve_relative_uris=False)
    except Exception as exc:  # it reads nearly anything; what it cannot is the feed's
        raise ParseError(f"the feed cannot be read: {exc!r}",
                         hint="open the feed URL in a browser or a feed validator to see the error") from exc
    warnings = []
    if parsed.bozo:
        problem = parsed.get("bozo_exception")
        # Read in another encoding than the one it declares ("bogus", or a name Python does
        # not know), the feed was read all the same: had its XML been broken too, feedparser
        # would say so instead.
        recoded = isinstance(problem, feedparser.CharacterEncodingOverride)
        if not parsed.entries and not recoded:
            raise ParseError(f"the feed cannot be read: {problem}",
                             hint="open the feed URL in a browser or a feed validator to see the error")
        what = "the feed's declared encoding was not usable" if recoded else "the feed is malformed"
        warnings.append(f"{what} ({problem}); read {len(parsed.entries)} entries anyway")
    if not parsed.version and not parsed.entries:
        raise ParseError("the response is XML but not RSS or Atom",
                         hint="check that the url points at the feed itself")
    entries = [_from_feedparser(e) for e in parsed.entries]
    view = _utf8_view(payload) if view is None else view
    return _Document(entries, parsed.feed.get("language"), warnings, _ttl(view))


def _from_feedparser(entry: Any) -> dict:
    """feedparser's entry in the shape fastfeedparser uses (ISO dates, content list)."""
    out = dict(entry)
    for name in ("published", "updated"):
        raw = dict.get(entry, name)
        if isinstance(raw, str) and (feed_dates.normalized(raw) != raw or feed_dates.floating(raw)):
            out[name] = feed_dates.parse(raw)  # a form feedparser misreads, or a local time
            continue
        parsed = dict.get(entry, f"{name}_parsed")  # entry.get("updated_parsed") falls back to published
        out[name] = (datetime.fromtimestamp(calendar.timegm(parsed), timezone.utc).isoformat()
                     if parsed else None)
    if entry.get("guidislink") and not str(out.get("link", "")).startswith(("http://", "https://")):
        out.pop("link", None)  # a guid like "42" is not a link, whatever isPermaLink says
    if "summary" in entry and "description" not in out:
        out["description"] = entry["summary"]
    return out


def _parse_json_feed(payload: bytes) -> _Document:
    try:
        feed = json.loads(payload)
    except ValueError as exc:
        raise ParseError(f"the JSON feed is not valid JSON: {exc}") from exc
    if not isinstance(feed, dict) or "jsonfeed.org/version/" not in str(feed.get("version", "")):
        raise ParseError("the response is JSON but not a JSON Feed (no jsonfeed.org version)",
                         hint="the hub reads JSON Feed 1.0 and 1.1; check the url")
    raw_items = feed.get("items")
    if not isinstance(raw_items, list):
        raise ParseError("the JSON feed has no 'items' list")
    entries, warnings = [], []
    for raw in raw_items:
        if isinstance(raw, dict):
            entries.append(_from_json_item(raw, feed))
        else:
            warnings.append("skipped a JSON feed item that is not an object")
    return _Document(entries, feed.get("language"), warnings)


def _from_json_item(raw: dict, feed: dict) -> dict:
    content = [{"type": "text/html", "value": raw["content_html"]}] if raw.get("content_html") else []
    if not content and raw.get("content_text"):
        content = [{"type": "text/html", "value": "<p>" + _escape(raw["content_text"]) + "</p>"}]
    attachments = [{"url": a.get("url"), "type": a.get("mime_type")}
                   for a in raw.get("attachments") or () if isinstance(a, dict)]
    return {
        "id": None if raw.get("id") is None else str(raw["id"]),
        "title": raw.get("title") or "",
        "link": raw.get("url") or raw.get("external_url"),
        "content": content,
        "description": raw.get("summary") or "",
        "published": raw.get("date_published"),
        "updated": raw.get("date_modified"),
        "image": raw.get("image") or raw.get("banner_image"),
        "enclosures": attachments,
        "tags": [{"term": t} for t in raw.get("tags") or () if isinstance(t, str)],
        "language": raw.get("language") or feed.get("language"),
    }


# --- entries -----------------------------------------------------------------------------

def _entry_to_item(entry: dict, source: SourceRef, base_url: str, key: str,
                   feed_language: str | None) -> Item | None:
    link = _absolute_url(_link_of(entry), base_url)
    title = _title(entry.get("title") or "")
    published = _date(entry.get("published"), source.timezone) or _date(entry.get("updated"), source.timezone)
    external_id = _external_id(entry, link, title, key)
    if external_id is None:
        return None
    body_raw = _content_of(entry)
    body = clean_html(body_raw, base_url).strip()
    text = plain_text(body)
    summary_raw = entry.get("description") or entry.get("summary") or ""
    summary = _summary(plain_text(clean_html(summary_raw)) if summary_raw and summary_raw != body_raw else text)
    return Item(
        source_id=source.id,
        external_id=external_id,
        merchant_id=source.merchant_id,
        title=title or _first_words(text),
        summary=summary,
        content_html=body,
        content_text=text,
        url=link,
        media=tuple(_media_of(entry, body, base_url)),
        tags=tuple(_tags_of(entry)),
        language=entry.get("language") or source.language or feed_language,
        published=published,
        updated=_date(entry.get("updated"), source.timezone),
        origin_url=strip_tracking(base_url),
    )


def _title(raw: str) -> str:
    return text_only(raw) if ("<" in raw or "&" in raw) else " ".join(raw.split())


def _guid(entry: dict) -> str:
    guid = (entry.get("id") or "").strip()
    if guid and guid == (entry.get("link") or "").strip():
        return ""  # fastfeedparser copies the link into a missing id; feedparser does not
    return guid


def _shared_guids(entries: list[dict]) -> Counter[str]:
    """The guids several entries of one feed carry, with how many carry each: some feeds give
    every entry the same one (a CMS's bug); it then names none of them."""
    carried = Counter(_guid(entry) for entry in entries)
    return Counter({guid: n for guid, n in carried.items() if guid and n > 1})


def _external_id(entry: dict, link: str | None, title: str, key: str) -> str | None:
    """guid, else the normalized link, else a hash of title and date (either may be missing).
    Never the body: an edited entry must stay the same item. `key`: "guid" (the guid first),
    "link" (the link first) or "none" (a guid other entries share: not an id at all)."""
    guid = "" if key == "none" else _guid(entry)
    if key == "guid" and guid:
        return guid
    if link:
        return _normalized_link(link)
    if guid:
        return guid
    dated = entry.get("published") or entry.get("updated") or ""
    if title or dated:  # (an untitled note of a microblog's feed: its moment names it)
        return "sha1:" + hashlib.sha1(f"{title}|{dated}".encode()).hexdigest()
    return None


# A link that urlsplit and urlunsplit give back unchanged: scheme and host in lower case,
# nothing they would strip or drop (whitespace, an empty query or fragment), and a fragment,
# if any, that names a place on the page.
_PLAIN_LINK = re.compile(r"https?://[a-z0-9.-]+(?::[0-9]+)?(?:/[^?#\s]*)?(?:\?[^#\s]+)?(?:#[^#=\s]+)?")


def _normalized_link(link: str) -> str:
    """The link as a key: scheme and host lower-cased; its fragment kept where it names a
    place on the page (TYPO3 and hand-made feeds link each entry to its anchor on one page,
    "aktuelles.html#c1234"), dropped where it carries parameters ("#xtor=RSS-3208")."""
    if _PLAIN_LINK.fullmatch(link):  # most links; urlsplit would cost more than the rest of the key
        return link
    try:
        parts = urlsplit(link)
    except ValueError:  # "http://example.c[o.test/": a "[" that opens no IPv6 address
        return link.split("#", 1)[0]
    fragment = "" if "=" in parts.fragment else parts.fragment
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, fragment))


def _absolute_url(url: str | None, base_url: str) -> str | None:
    """`absolute_url`, but None for a URL urllib refuses to split ("http://a[b/"): no
    link the hub could use, and no reason to lose the entry over it."""
    try:
        return absolute_url(url, base_url)
    except ValueError:
        return None


def _link_of(entry: dict) -> str | None:
    if entry.get("link"):
        return entry["link"]
    for link in entry.get("links") or ():
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return link["href"]
    return None


def _content_of(entry: dict) -> str:
    contents = entry.get("content") or []
    html_parts = [c.get("value", "") for c in contents if "html" in (c.get("type") or "")]
    if html_parts:
        return max(html_parts, key=len)
    if contents:
        return "<p>" + _escape(contents[0].get("value", "")) + "</p>"
    return entry.get("description") or entry.get("summary") or ""


def _summary(text: str) -> str:
    # Lines are blocks (paragraphs, list items); a list reads better with separators.
    lines = list(filter(None, map(str.strip, text.splitlines())))
    text = " ".join([line if line[-1] in ".!?:;…)»“\"" else line + " ·" for line in lines[:-1]] + lines[-1:])
    if len(text) <= SUMMARY_CHARS:
        return text
    cut = text[:SUMMARY_CHARS].rsplit(" ", 1)[0]
    return cut + " …"


def _first_words(text: str, n: int = 10) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" …" if len(words) > n else "")


def _media_of(entry: dict, body_html: str, base_url: str) -> list[Media]:
    found: dict[str, Media] = {}

    def add(url: str | None, mime: str | None = None, width: Any = None, height: Any = None,
            alt: str | None = None, medium: str | None = None) -> None:
        url = _absolute_url(url, base_url)
        if not url or url in found:
            return
        kind = medium or _kind_of(mime, url)
        if kind is None:
            return
        found[url] = Media(url=url, type=kind, mime_type=mime, width=_int(width),
                           height=_int(height), alt=alt or None)

    for m in entry.get("media_content") or ():
        add(m.get("url"), m.get("type"), m.get("width"), m.get("height"), medium=m.get("medium"))
    if entry.get("image"):
        image = entry["image"]
        add(image.get("href") if isinstance(image, dict) else image, medium="image")
    for enc in entry.get("enclosures") or ():
        add(enc.get("url") or enc.get("href"), enc.get("type"))
    for link in entry.get("links") or ():
        if link.get("rel") == "enclosure":
            add(link.get("href"), link.get("type"))
    for m in entry.get("media_thumbnail") or ():
        add(m.get("url"), None, m.get("width"), m.get("height"), medium="image")
    for src, alt in _images_in(body_html):
        add(src, alt=alt, medium="image")
    return list(found.values())


# Case-sensitive: nh3 writes tags in lower case, and a literal start lets the regex engine
# skip ahead (ignoring case made it try every position).
_IMG = re.compile(r"<img\b[^>]*>")
_ATTR = re.compile(r'(src|alt)="([^"]*)"')


def _images_in(body_html: str) -> list[tuple[str, str | None]]:
    """Images in already sanitized HTML (nh3 writes tags in lower case, attributes in double
    quotes)."""
    out = []
    for tag in _IMG.findall(body_html):
        attrs = dict(_ATTR.findall(tag))
        if attrs.get("src"):
            out.append((unescape_attribute(attrs["src"]), unescape_attribute(attrs.get("alt", "")) or None))
    return out


def _kind_of(mime: str | None, url: str) -> str | None:
    if mime:
        major = mime.split("/", 1)[0].lower()
        if major in ("image", "video", "audio"):
            return major
        return "file" if mime not in ("text/html",) else None
    return "image" if _IMAGE_EXT.search(url) else "file"


def _tags_of(entry: dict) -> list[str]:
    tags: list[str] = []
    for tag in entry.get("tags") or ():
        # Atom's label is the human-readable name ("Öffnungszeiten"); term may be a slug.
        term = (tag.get("label") or tag.get("term") or "").strip() if isinstance(tag, dict) else ""
        for part in (p.strip() for p in term.split(",")):
            if part and part not in tags:
                tags.append(part)
    return tags


def _date(value: Any, zone: str) -> datetime | None:
    """The moment, in UTC; a time without a zone (`feed_dates.floating`) is one in `zone`."""
    if not value:
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            try:
                dt = parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(zone))
    return dt.astimezone(timezone.utc)


_XML_BASE = re.compile(rb"<(?:\w+:)?(?:feed|rss|RDF)\b[^>]*?\sxml:base=[\"']([^\"']+)[\"']")


def _xml_base(payload: bytes, url: str) -> str:
    """Relative links resolve against the root's xml:base (Atom), else the feed's URL."""
    match = _XML_BASE.search(payload[:4096])
    if not match:
        return url
    try:
        return urljoin(url, match.group(1).decode("utf-8", "replace"))
    except ValueError:  # an xml:base urllib refuses ("http://[x/"): the feed's URL it is
        return url


def _ttl(payload: bytes) -> int | None:
    match = re.search(rb"<ttl>\s*(\d{1,6})\s*</ttl>", payload[:20000])
    return int(match.group(1)) * 60 if match else None


def _has_entries(payload: bytes) -> bool:
    return re.search(rb"<(?:\w+:)?(?:item|entry)[\s>]", payload) is not None


def _looks_like_html(head: bytes) -> bool:
    head = re.sub(rb"<\?xml[^>]*>\s*|<!--.*?-->\s*", b"", head, flags=re.S)
    return head.startswith((b"<!doctype html", b"<html"))


def _feed_link_hint(page: bytes) -> str:
    """Point the project manager at the feed the page itself advertises, if any."""
    text = page[:200_000].decode("utf-8", "replace")
    for tag in _FEED_LINK.findall(text):
        href = _HREF.search(tag)
        if href:
            return f"the page names its feed: {href.group(1)}; use that as the url"
    return "the url must point at the RSS/Atom/JSON feed, not at a web page"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
