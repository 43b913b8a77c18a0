"""The feed connector against recorded feeds and their expected items."""

from __future__ import annotations

import json

import pytest

from tests import feedcases


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
        return [(i.external_id, i.title, i.url, i.published) for i in items]

    assert identity(fast) == identity(slow)


@pytest.mark.parametrize("link", ["https://m.example/a/b?x=1", "https://M.Example/a", "https://m.example/a#f",
                                  "https://m.example/a?", "https://m.example", "https://m.example:8080//a?b?c",
                                  "https://user@m.example/a", "https://m.example/a b", "http://m.example/a\t"])
def test_normalized_link_is_what_urlsplit_gives(link):
    from urllib.parse import urlsplit, urlunsplit

    from connectors.feed import _normalized_link

    parts = urlsplit(link)
    assert _normalized_link(link) == urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))
