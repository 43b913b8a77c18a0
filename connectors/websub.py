"""WebSub discovery: where a feed says its hub is (W3C WebSub, section 4).

A publisher names its hub and the topic (its own canonical URL) in an HTTP `Link` header,
in the feed as `<atom:link rel="hub">`/`<atom:link rel="self">`, or in a JSON Feed's `hubs`
and `feed_url`. Each function returns (hub, topic) with both URLs absolute, or None. The
topic falls back to the URL the feed was read from.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urljoin

_LINK_VALUE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")
_REL = re.compile(r"""rel\s*=\s*(?:"([^"]*)"|([^\s;,"]+))""", re.I)
_LINK_TAG = re.compile(rb"<(?:[\w-]+:)?link\b[^>]*>", re.I)
_ATTR = re.compile(rb"""\b(rel|href)\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_FIRST_ENTRY = re.compile(rb"<(?:[\w-]+:)?(?:item|entry)[\s>]", re.I)


def from_link_header(value: str | None, base: str) -> tuple[str, str] | None:
    """From `Link: <https://hub.example/>; rel="hub", <https://x.example/feed>; rel="self"`."""
    links: dict[str, str] = {}
    for target, params in _LINK_VALUE.findall(value or ""):
        rel = _REL.search(params)
        for name in (rel.group(1) or rel.group(2)).lower().split() if rel else ():
            links.setdefault(name, urljoin(base, target.strip()))
    return _pair(links, base)


def from_document(payload: bytes, base: str) -> tuple[str, str] | None:
    """From a feed document, XML or JSON. A JSON Feed is decoded a second time here rather
    than threading its hubs through the parsers: JSON is cheap to read and feeds are small."""
    if payload.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        try:
            feed = json.loads(payload)
        except ValueError:
            return None
        return from_json_feed(feed, base) if isinstance(feed, dict) else None
    return from_xml(payload, base)


def from_xml(payload: bytes, base: str) -> tuple[str, str] | None:
    """From the feed-level <link rel="hub"> and <link rel="self"> of RSS or Atom. Entries'
    links are not looked at: they describe the entries."""
    first = _FIRST_ENTRY.search(payload)
    head = payload[:first.start()] if first else payload
    links: dict[str, str] = {}
    for tag in _LINK_TAG.findall(head):
        attrs = {m.group(1).decode().lower(): (m.group(2) or m.group(3) or b"").decode("utf-8", "replace")
                 for m in _ATTR.finditer(tag)}
        if "href" in attrs:
            for name in attrs.get("rel", "").lower().split():
                links.setdefault(name, urljoin(base, attrs["href"].strip()))
    return _pair(links, base)


def from_json_feed(feed: dict[str, Any], base: str) -> tuple[str, str] | None:
    """From JSON Feed's `hubs: [{"type": "WebSub", "url": ...}]` and `feed_url`."""
    hubs = [h.get("url") for h in feed.get("hubs") or () if isinstance(h, dict)
            and str(h.get("type", "")).lower() == "websub" and isinstance(h.get("url"), str)]
    links = {"hub": urljoin(base, hubs[0])} if hubs else {}
    if isinstance(feed.get("feed_url"), str):
        links["self"] = urljoin(base, feed["feed_url"])
    return _pair(links, base)


def _pair(links: dict[str, str], base: str) -> tuple[str, str] | None:
    hub = links.get("hub")
    if not hub or not hub.lower().startswith(("https://", "http://")):
        return None
    return hub, links.get("self") or base
