"""HTML cleaning shared by every connector: one nh3 pass on a narrow allow-list, relative
URLs resolved, tracking parameters stripped, plain text derived.

Merchant HTML is untrusted: it ends up on the town's pages and in newsletters. Anything
not on the allow-list (scripts, iframes, forms, styles, event handlers) is dropped.
"""

from __future__ import annotations

import html
import re
import threading
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
_URL_ATTRS = {"href", "src"}
# Tracking pixels: images of at most 2x2 pixels say nothing to a reader.
_PIXEL = re.compile(r'<img\b(?=[^>]*\bwidth="[0-2]")(?=[^>]*\bheight="[0-2]")[^>]*>', re.IGNORECASE)
_BLOCK_END = re.compile(r"<br\s*/?>|</(?:p|div|li|h[1-6]|blockquote|tr|figure|pre)\s*>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_NEWLINES = re.compile(r"\s*\n\s*")


def clean_html(raw: str, base_url: str | None = None) -> str:
    """Sanitize `raw` for display; resolve its relative links against `base_url`.

    `file:` URLs survive only when the document itself came from a file (the bundled demo
    town); from the network they are dropped like any other unknown scheme."""
    if not raw:
        return ""
    return _PIXEL.sub("", _cleaner(_is_file(base_url)).clean_with_base(raw, base_url))


def plain_text(fragment: str) -> str:
    """Readable plain text of an HTML fragment: blocks become lines, entities decoded."""
    if not fragment:
        return ""
    with_breaks = _BLOCK_END.sub("\n", fragment)
    text = html.unescape(nh3.clean(with_breaks, tags=set(), clean_content_tags=set(CONTENT_DROPPED)))
    text = _SPACES.sub(" ", text)
    return _NEWLINES.sub("\n", text).strip()


def text_only(fragment: str) -> str:
    """A single line of text, for titles that feeds sometimes send as HTML."""
    return " ".join(plain_text(fragment).split())


def absolute_url(url: str | None, base_url: str | None = None) -> str | None:
    """`url` resolved against `base_url`, with tracking parameters removed; None if the
    result is not an http(s) URL (or file: URL under a file: base)."""
    if not url:
        return None
    url = url.strip()
    resolved = urljoin(base_url, url) if base_url else url
    scheme = urlsplit(resolved).scheme.lower()
    if scheme in ("http", "https") or (scheme == "file" and _is_file(base_url)):
        return strip_tracking(resolved)
    return None


def strip_tracking(url: str) -> str:
    """Drop utm_*, fbclid and similar parameters; lower-case the host; drop the fragment
    only when it is empty."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not TRACKING_PARAMS.match(k)]
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path, urlencode(query), parts.fragment))


def _is_file(base_url: str | None) -> bool:
    return bool(base_url) and base_url.lower().startswith("file:")


class _Cleaner:
    def __init__(self, allow_file: bool) -> None:
        self.allow_file = allow_file
        schemes = {"http", "https", "mailto"} | ({"file"} if allow_file else set())
        self._base: str | None = None
        self._nh3 = nh3.Cleaner(
            tags=set(TAGS), attributes={k: set(v) for k, v in ATTRIBUTES.items()},
            clean_content_tags=set(CONTENT_DROPPED), url_schemes=schemes,
            link_rel="noopener noreferrer nofollow", attribute_filter=self._rewrite)

    def clean_with_base(self, raw: str, base_url: str | None) -> str:
        # nh3 calls `_rewrite` synchronously inside `clean`, so a per-call base is safe as
        # long as one cleaner is not shared across threads; `_cleaner` is per thread.
        self._base = base_url
        return self._nh3.clean(raw)

    def _rewrite(self, tag: str, attr: str, value: str) -> str | None:
        if attr not in _URL_ATTRS:
            return value
        if value.lower().startswith("mailto:") and tag == "a":
            return value
        return absolute_url(value, self._base)


_local = threading.local()


def _cleaner(allow_file: bool) -> _Cleaner:
    """One cleaner per thread and mode: nh3 cleaners are reusable, but `_Cleaner` holds the
    base URL of the call in progress."""
    key = "file" if allow_file else "web"
    cleaner = getattr(_local, key, None)
    if cleaner is None:
        cleaner = _Cleaner(allow_file)
        setattr(_local, key, cleaner)
    return cleaner
