"""HTML cleaning shared by every connector: one nh3 pass on a narrow allow-list, relative
URLs resolved, tracking parameters and pixels removed, plain text derived.

Merchant HTML is untrusted: it ends up on the town's pages and in newsletters. Anything
not on the allow-list (scripts, iframes, forms, styles, event handlers) is dropped.
Ingest speed matters too (35,000 entries in seconds), so the common case does no Python
work per attribute: nh3 resolves relative URLs itself, and the Python attribute hook runs
only for documents that carry tracking parameters.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

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
# nh3 writes tags in lower case without spaces, so block ends are found by plain replaces.
_BLOCK_ENDS = ("<br>", "</p>", "</li>", "</h2>", "</h3>", "</h4>", "</h5>", "</h6>", "</blockquote>",
               "</tr>", "</figure>", "</pre>")
_TAG = re.compile(r"<[^>]*>")


def clean_html(raw: str, base_url: str | None = None) -> str:
    """Sanitize `raw` for display; resolve its relative links against `base_url`.

    `file:` URLs survive only when the document itself came from a file (the bundled demo
    town); from the network they are dropped like any other unknown scheme."""
    if not raw:
        return ""
    cleaned = _cleaner(base_url, _has_tracking(raw)).clean(raw)
    if 'width="' in cleaned and 'height="' in cleaned:
        cleaned = _PIXEL.sub("", cleaned)
    return cleaned


def plain_text(fragment: str) -> str:
    """Readable plain text of sanitized HTML: blocks become lines, entities decoded.
    Only for HTML that went through `clean_html` (script bodies are gone by then); the
    result is text, to be escaped on output."""
    if not fragment:
        return ""
    if "<" in fragment:
        for end in _BLOCK_ENDS:
            if end in fragment:
                fragment = fragment.replace(end, "\n")
        fragment = _TAG.sub("", fragment)
    text = html.unescape(fragment) if "&" in fragment else fragment
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


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
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not TRACKING_PARAMS.match(k)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _has_tracking(text: str) -> bool:
    return "?" in text and any(hint in text for hint in _TRACKING_HINTS)


def _is_file(base_url: str | None) -> bool:
    return bool(base_url) and base_url.lower().startswith("file:")


def _strip_tracking_attr(tag: str, attr: str, value: str) -> str:
    return strip_tracking(value) if attr in ("href", "src") else value


@lru_cache(maxsize=512)
def _cleaner(base_url: str | None, strip_tracking_params: bool) -> nh3.Cleaner:
    """One cleaner per document base (feeds have one base, so this is built once per feed).
    nh3 cleaners are immutable and safe to share between threads."""
    schemes = {"http", "https", "mailto"} | ({"file"} if _is_file(base_url) else set())
    relative = ("rewrite_with_base", base_url) if base_url and "://" in base_url else "deny"
    return nh3.Cleaner(
        tags=set(TAGS), attributes={k: set(v) for k, v in ATTRIBUTES.items()},
        clean_content_tags=set(CONTENT_DROPPED), url_schemes=schemes, url_relative=relative,
        link_rel="noopener noreferrer nofollow",
        attribute_filter=_strip_tracking_attr if strip_tracking_params else None)
