"""Atom 1.0, RSS 2.0 and JSON Feed 1.1 out of the platform (issue 14). Pure: the web app
(hub.web.feeds) hands in the feed and its entries with absolute URLs, images already on
the hub's media route, HTML already sanitized (at ingest); this module only writes formats.

Every text goes through the XML writer (escaped, and characters XML 1.0 forbids dropped),
so a merchant's "<" or a stray control character cannot break a feed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Sequence
from xml.etree.ElementTree import Element, SubElement, tostring

ATOM_NS = "http://www.w3.org/2005/Atom"
DC_NS = "http://purl.org/dc/elements/1.1/"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
ATOM_TYPE = "application/atom+xml"
RSS_TYPE = "application/rss+xml"
JSON_FEED_TYPE = "application/feed+json"
IMAGE_TYPE = "image/jpeg"  # the media route serves JPEG (hub.media)
GENERATOR = "Musterhub"
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class FeedMeta:
    title: str
    description: str
    language: str
    self_url: str  # this feed with its filters
    page_url: str  # the resident page with the same filters
    updated: datetime
    author: str  # the platform
    author_url: str


@dataclass(frozen=True)
class FeedEntry:
    id: str  # the record page's URL: Atom id, JSON Feed id
    guid: str  # record-<id>@<host>: RSS guid (as the calendar's UID)
    url: str  # the record page on the platform
    title: str
    content_html: str
    summary: str
    published: datetime
    updated: datetime
    author: str  # the merchant
    author_url: str  # the merchant's page on the platform
    original_url: str | None = None  # where the merchant posted it
    tags: tuple[str, ...] = ()
    image: str | None = None
    extensions: dict[str, Any] = field(default_factory=dict)  # JSON Feed "_..." keys


def atom(meta: FeedMeta, entries: Sequence[FeedEntry]) -> bytes:
    """An Atom 1.0 feed (RFC 4287): id, title, updated and a self link; each entry with id,
    title, updated, author, an alternate link to the record page and `via` the original."""
    feed = Element("feed", {"xmlns": ATOM_NS, "xml:lang": meta.language})
    _text(feed, "id", meta.self_url)
    _text(feed, "title", meta.title)
    _text(feed, "subtitle", meta.description)
    _text(feed, "updated", _rfc3339(meta.updated))
    _link(feed, "self", meta.self_url, ATOM_TYPE)
    _link(feed, "alternate", meta.page_url, "text/html")
    _author(feed, meta.author, meta.author_url)
    _text(feed, "generator", GENERATOR)
    for e in entries:
        entry = SubElement(feed, "entry")
        _text(entry, "id", e.id)
        _text(entry, "title", e.title)
        _text(entry, "published", _rfc3339(e.published))
        _text(entry, "updated", _rfc3339(e.updated))
        _author(entry, e.author, e.author_url)
        _link(entry, "alternate", e.url, "text/html")
        if e.original_url:
            _link(entry, "via", e.original_url, "text/html")
        if e.image:
            _link(entry, "enclosure", e.image, IMAGE_TYPE)
        for tag in e.tags:
            SubElement(entry, "category", {"term": _clean(tag)})
        if e.summary:
            _text(entry, "summary", e.summary)
        _text(entry, "content", e.content_html, type="html")
    return _xml(feed)


def rss(meta: FeedMeta, entries: Sequence[FeedEntry]) -> bytes:
    """An RSS 2.0 feed: channel title, link and description, atom:link rel=self; each item
    with a stable guid (isPermaLink=false), the record page as link, the merchant as
    dc:creator (RSS's own `author` must be an e-mail address) and the image as enclosure."""
    root = Element("rss", {"version": "2.0", "xmlns:atom": ATOM_NS, "xmlns:dc": DC_NS})
    channel = SubElement(root, "channel")
    _text(channel, "title", meta.title)
    _text(channel, "link", meta.page_url)
    _text(channel, "description", meta.description)
    _text(channel, "language", meta.language)
    _text(channel, "lastBuildDate", _rfc822(meta.updated))
    _text(channel, "generator", GENERATOR)
    _text(channel, "docs", "https://www.rssboard.org/rss-specification")
    SubElement(channel, "atom:link", {"rel": "self", "type": RSS_TYPE, "href": _clean(meta.self_url)})
    for e in entries:
        item = SubElement(channel, "item")
        _text(item, "title", e.title)
        _text(item, "link", e.url)
        _text(item, "description", e.content_html)
        _text(item, "guid", e.guid, isPermaLink="false")
        _text(item, "pubDate", _rfc822(e.published))
        _text(item, "dc:creator", e.author)
        for tag in e.tags:
            _text(item, "category", tag)
        if e.image:  # length 0: unknown (RSS Advisory Board's advice)
            SubElement(item, "enclosure", {"url": _clean(e.image), "length": "0", "type": IMAGE_TYPE})
    return _xml(root)


def json_feed(meta: FeedMeta, entries: Sequence[FeedEntry]) -> bytes:
    """A JSON Feed 1.1: version, title, home_page_url, feed_url; each item with id, url,
    external_url (the original), title, content_html, dates, authors, tags and image."""
    feed = {"version": JSON_FEED_VERSION, "title": meta.title, "home_page_url": meta.page_url,
            "feed_url": meta.self_url, "description": meta.description, "language": meta.language,
            "authors": [{"name": meta.author, "url": meta.author_url}],
            "items": [_json_item(e) for e in entries]}
    return json.dumps(feed, ensure_ascii=False, separators=(",", ":")).encode()


def _json_item(e: FeedEntry) -> dict[str, Any]:
    item: dict[str, Any] = {"id": e.id, "url": e.url}
    if e.original_url:
        item["external_url"] = e.original_url
    item.update({"title": e.title, "content_html": e.content_html})
    if e.summary:
        item["summary"] = e.summary
    if e.image:
        item["image"] = e.image
    item.update({"date_published": _rfc3339(e.published), "date_modified": _rfc3339(e.updated),
                 "authors": [{"name": e.author, "url": e.author_url}]})
    if e.tags:
        item["tags"] = list(e.tags)
    item.update(e.extensions)
    return item


def _text(parent: Element, tag: str, text: str, **attrs: str) -> Element:
    element = SubElement(parent, tag, attrs)
    element.text = _clean(text)
    return element


def _link(parent: Element, rel: str, href: str, media_type: str) -> None:
    SubElement(parent, "link", {"rel": rel, "type": media_type, "href": _clean(href)})


def _author(parent: Element, name: str, uri: str) -> None:
    author = SubElement(parent, "author")
    _text(author, "name", name)
    _text(author, "uri", uri)


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _xml(root: Element) -> bytes:
    return tostring(root, encoding="utf-8", xml_declaration=True)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _rfc822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(timezone.utc), usegmt=True)
