"""HTML cleaning shared by every connector: one nh3 pass on a narrow allow-list, relative
URLs resolved, tracking parameters and pixels removed, plain text derived.

Merchant HTML is untrusted: it ends up on the town's pages and in newsletters. Anything
not on the allow-list (scripts, iframes, forms, styles, event handlers) is dropped.
Ingest speed matters too (35,000 entries in seconds), so no Python runs per attribute
inside nh3 (a Python attribute_filter doubled the cost of cleaning): nh3 resolves relative
URLs itself, and tracking parameters are stripped from its output afterwards, only in
documents that carry any.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from urllib.parse import quote_plus, unquote_plus, urljoin, urlsplit, urlunsplit

import nh3

TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "code", "em", "figcaption", "figure", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "strong", "sub", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "u", "ul",
})
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height", "title"},
              "abbr": {"title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}
# Dropped together with their content: the text inside them is never meant for readers.
CONTENT_DROPPED = frozenset({"script", "style", "iframe", "object", "embed", "noscript", "template",
                             "form", "svg", "math", "head", "title"})
TRACKING_PARAMS = re.compile(r"^(utm_\w+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|_hsenc|_hsmi|igshid|yclid)$",
                             re.IGNORECASE)
_TRACKING_HINTS = ("utm_", "clid=", "mc_cid=", "mc_eid=", "_hsenc=", "_hsmi=", "igshid=")
# Tracking pixels: images of at most 2x2 pixels say nothing to a reader.
_PIXEL = re.compile(r'<img\b(?=[^>]*\bwidth="[0-2]")(?=[^>]*\bheight="[0-2]")[^>]*>', re.IGNORECASE)
_PIXEL_WIDTHS = ('width="0"', 'width="1"', 'width="2"')  # as nh3 writes them: lower case, double quotes
# nh3 writes tags in lower case without spaces, so block ends are found literally.
_BLOCK_END = re.compile(r"<(?:br|/p|/li|/h[2-6]|/blockquote|/tr|/figure|/pre)>")
_TAG = re.compile(r"<[^>]*>")
# Where nh3 does more to text than escape > and U+00A0: tags, entities, and characters its
# parser drops (NUL, a leading BOM) or changes (CR becomes LF).
_NOT_PLAIN = "<&\r\0\ufeff"


def clean_html(raw: str, base_url: str | None = None) -> str:
    """Sanitize `raw` for display; resolve its relative links against `base_url`.

    `file:` URLs survive only when the document itself came from a file (the bundled demo
    town); from the network they are dropped like any other unknown scheme."""
    if not raw:
        return ""
    if not any(map(raw.__contains__, _NOT_PLAIN)):
        # Plain text (a summary often is): nh3 would only escape it, so skip its parser.
        return raw.replace(">", "&gt;").replace("\xa0", "&nbsp;")
    cleaned = _cleaner(base_url).clean(raw)
    if _has_tracking(cleaned):
        cleaned = _URL_TAG.sub(_strip_tracking_tag, cleaned)
    if any(map(cleaned.__contains__, _PIXEL_WIDTHS)):
        cleaned = _PIXEL.sub("", cleaned)
    return cleaned


def plain_text(fragment: str) -> str:
    """Readable plain text of sanitized HTML: blocks become lines, entities decoded.
    Only for HTML that went through `clean_html` (script bodies are gone by then); the
    result is text, to be escaped on output."""
    if not fragment:
        return ""
    if "<" in fragment:
        fragment = _TAG.sub("", _BLOCK_END.sub("\n", fragment))
    text = html.unescape(fragment) if "&" in fragment else fragment
    lines = text.split("\n")
    if "  " not in text and all(map(str.isprintable, lines)):
        # The common case: no whitespace but single spaces and "\n" (every other whitespace
        # and line break character is unprintable), so stripping the lines is enough.
        lines = map(str.strip, lines)
    else:
        lines = map(" ".join, map(str.split, text.splitlines()))
    return "\n".join(filter(None, lines))


def text_only(fragment: str) -> str:
    """A single line of text, for titles that feeds sometimes send as HTML."""
    return " ".join(plain_text(clean_html(fragment)).split())


def absolute_url(url: str | None, base_url: str | None = None) -> str | None:
    """`url` resolved against `base_url`, with tracking parameters removed; None if the
    result is not an http(s) URL (or a file: URL under a file: base)."""
    if not url:
        return None
    url = url.strip()
    if not url.startswith(("https://", "http://")):
        url = urljoin(base_url, url) if base_url else url
        scheme = url.split(":", 1)[0].lower()
        if not (scheme in ("http", "https") or (scheme == "file" and _is_file(base_url))):
            return None
    return strip_tracking(url)


def strip_tracking(url: str) -> str:
    """Drop utm_*, fbclid and similar parameters."""
    if not _has_tracking(url):
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, _query_without_tracking(parts.query), parts.fragment))


# A parameter that decoding and re-encoding leave as it is (most are).
_PLAIN_PARAM = re.compile(r"[\w.~-]*(?:=[\w.~-]*)?", re.ASCII)


def _query_without_tracking(query: str) -> str:
    """`urlencode` of `parse_qsl(query, keep_blank_values=True)` without tracking
    parameters, which is what links always got; but plain parameters are kept as they are
    rather than decoded and encoded again, which costs most of the time here."""
    kept = []
    for param in query.split("&"):
        if not param:
            continue
        if _PLAIN_PARAM.fullmatch(param):
            name, equals, _ = param.partition("=")
            if not TRACKING_PARAMS.match(name):
                kept.append(param if equals else param + "=")
        else:
            name, _, value = param.partition("=")
            name = unquote_plus(name)
            if not TRACKING_PARAMS.match(name):
                kept.append(quote_plus(name) + "=" + quote_plus(unquote_plus(value)))
    return "&".join(kept)


def _has_tracking(text: str) -> bool:
    return "?" in text and any(map(text.__contains__, _TRACKING_HINTS))


def _is_file(base_url: str | None) -> bool:
    return bool(base_url) and base_url.lower().startswith("file:")


# nh3 writes every attribute as name="value" with &, ", <, > and U+00A0 escaped, so in its
# output a tag ends at the first ">" and attributes can be read one after another; text
# never holds a "<" (escaped), so `href="` in prose is left alone.
_URL_TAG = re.compile(r"<(?:a|img)\s[^>]*>")
_ATTRIBUTE = re.compile(r'([a-z-]+)="([^"]*)"')
_ATTR_ESCAPES = (("&", "&amp;"), ('"', "&quot;"), ("<", "&lt;"), (">", "&gt;"), ("\xa0", "&nbsp;"))


def _strip_tracking_tag(match: re.Match) -> str:
    tag = match.group()
    return _ATTRIBUTE.sub(_strip_tracking_attr, tag) if _has_tracking(tag) else tag


def _strip_tracking_attr(attr: re.Match) -> str:
    name, value = attr.groups()
    if name not in ("href", "src") or not _has_tracking(value):
        return attr.group()
    return f'{name}="{escape_attribute(strip_tracking(unescape_attribute(value)))}"'


def unescape_attribute(value: str) -> str:
    """An attribute value of nh3's output as the text it stands for."""
    if "&" not in value:  # most values
        return value
    for char, escaped in reversed(_ATTR_ESCAPES):  # &amp; last: "&amp;lt;" stands for "&lt;"
        value = value.replace(escaped, char)
    return value


def escape_attribute(value: str) -> str:
    """`value` escaped as nh3 writes attribute values."""
    for char, escaped in _ATTR_ESCAPES:
        value = value.replace(char, escaped)
    return value


@lru_cache(maxsize=512)
def _cleaner(base_url: str | None) -> nh3.Cleaner:
    """One cleaner per document base (feeds have one base, so this is built once per feed).
    nh3 cleaners are immutable and safe to share between threads."""
    schemes = {"http", "https", "mailto"} | ({"file"} if _is_file(base_url) else set())
    relative = ("rewrite_with_base", base_url) if base_url and "://" in base_url else "deny"
    return nh3.Cleaner(
        tags=set(TAGS), attributes={k: set(v) for k, v in ATTRIBUTES.items()},
        clean_content_tags=set(CONTENT_DROPPED), url_schemes=schemes, url_relative=relative,
        link_rel="noopener noreferrer nofollow")
