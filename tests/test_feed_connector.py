"""The feed connector against recorded feeds and their expected items."""

from __future__ import annotations

import json

import pytest

from tests import feedcases

# Not about the date (bytes in, entries out: the dates are the feeds' own): left out of make test's second run (--clock-ahead).
pytestmark = pytest.mark.timeless


@pytest.mark.parametrize("case", feedcases.inputs(), ids=lambda p: p.name)
def test_recorded_feed(case):
    expected = json.loads(feedcases.expected_path(case).read_text())
    assert feedcases.run_case(case) == expected


def test_every_format_is_covered():
    names = {p.name for p in feedcases.inputs()}
    for required in ("rss20_full.xml", "rss10_rdf.xml", "rss091.xml", "atom10_base.xml", "atom03.xml",
                     "jsonfeed11.json", "jsonfeed10.json", "malformed.xml"):
        assert required in names


XML_CASES = [p for p in feedcases.inputs() if p.suffix == ".xml" and p.name != "malformed.xml"]


@pytest.mark.parametrize("case", XML_CASES, ids=lambda p: p.name)
def test_fast_path_and_feedparser_agree_on_identity(case):
    """If a feed turns malformed one day it is read by feedparser instead of the fast
    parser; its items must keep their keys, titles, links and dates, or they would be
    duplicated."""
    from connectors import feed

    payload = case.read_bytes()
    fast = feed._parse_document(payload)
    slow = feed._parse_with_feedparser(payload)
    base = feed._xml_base(payload, "https://feeds.example/feed")

    def identity(doc):
        items = [feed._entry_to_item(e, feedcases.SOURCE, base, "guid", None) for e in doc.entries]
        return [(i.external_id, i.title, i.url, i.published) if i else None for i in items]  # None: skipped

    assert identity(fast) == identity(slow)


@pytest.mark.parametrize("link", ["https://m.example/a/b?x=1", "https://M.Example/a", "https://m.example/a#f",
                                  "https://m.example/a?", "https://m.example", "https://m.example:8080//a?b?c",
                                  "https://user@m.example/a", "https://m.example/a b", "http://m.example/a\t",
                                  "https://m.example/a#", "https://m.example/a#xtor=RSS-3208", "https://m.example/a#c1#c2",
                                  "https://M.example/a#c12", "https://m.example/a?b=1#a=b&c"])
def test_normalized_link_is_what_urlsplit_gives(link):
    """Scheme and host lower-cased; the fragment kept unless it carries parameters."""
    from urllib.parse import urlsplit, urlunsplit

    from connectors.feed import _normalized_link

    parts = urlsplit(link)
    fragment = "" if "=" in parts.fragment else parts.fragment
    assert _normalized_link(link) == urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query,
                                                 fragment))


def test_urls_urllib_refuses_cost_no_entry():
    """urllib raises ValueError ("Invalid IPv6 URL") for a "[" that opens no IPv6 address,
    as in a guid of feedparser's corpus; such a link is kept as it is or dropped, never the
    feed (it was a connector crash)."""
    from connectors import feed
    from hub.models import FetchState, Retrieved

    payload = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>t</title><link>https://m.example/</link>
<item><guid isPermaLink="true">http://example.c[o.test/</guid><title>Eins</title>
<enclosure url="//a[b/bild.jpg" type="image/jpeg"/><description>&lt;img src="//c[d/x.png"&gt;</description></item>
<item><guid>g2</guid><title>Zwei</title><link>//m[x.example/2#top</link></item>
</channel></rss>"""
    for case in (payload, payload.replace(b"</rss>", b"")):  # the fast path, then feedparser's
        got = Retrieved(payload=case, state=FetchState(), url="https://m.example/feed")
        parsed = feed.FeedConnector().parse(feed.FeedOptions(url=got.url), feedcases.SOURCE, got)
        assert [(i.external_id, i.title, i.url, i.media) for i in parsed.items] == [
            ("http://example.c[o.test/", "Eins", "http://example.c[o.test/", ()), ("g2", "Zwei", None, ())]
    assert feed._xml_base(b'<feed xml:base="http://[x/">', "https://m.example/feed") == "https://m.example/feed"
