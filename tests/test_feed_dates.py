"""Feed dates as German feeds write them (connectors/feed_dates.py), read alike by both parse
paths: the fast one (fastfeedparser, which reads them through `feed_dates.parse`) and
feedparser's, which a feed takes once it turns malformed. A time without a zone is one of
the source's zone (feedcases.SOURCE: Europe/Berlin, the default)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from connectors import feed
from tests import feedcases

# Not about today's date (the dates are the feeds' own): left out of make test's second run (--clock-ahead).
pytestmark = pytest.mark.timeless

UTC = timezone.utc
CASES = [  # as written, and the moment it names (None: no date)
    ("Mon, 30 Nov 2026 10:00:00 +0100", datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),
    ("Mon, 30 Nov 2026 10:00:00 +01:00", datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),
    ("Mon, 30 Nov 2026 10:00:00 MEZ", datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),
    ("Mon, 30 Nov 2026 10:00:00 CET", datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),
    ("Thu, 30 Apr 2015 08:57:00 MET", datetime(2015, 4, 30, 7, 57, tzinfo=UTC)),
    ("Thu, 30 Apr 2015 08:57:00 MEST", datetime(2015, 4, 30, 6, 57, tzinfo=UTC)),
    ("Do, 30 Apr 2015 08:57:00 MESZ", datetime(2015, 4, 30, 6, 57, tzinfo=UTC)),
    ("Mo, 30 Nov 2026 10:00:00 +0100", datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),
    ("Di, 01 Dez 2026 18:30 +0100", datetime(2026, 12, 1, 17, 30, tzinfo=UTC)),
    ("3. Okt 2026 12:00:00 CEST", datetime(2026, 10, 3, 10, 0, tzinfo=UTC)),
    ("30 März 2026 10:00 CEST", datetime(2026, 3, 30, 8, 0, tzinfo=UTC)),
    ("Wed, 19 Feb 2012 22:40:00 GMT-01:01", datetime(2012, 2, 19, 23, 41, tzinfo=UTC)),
    ("Mon, 26 January 2004 16:31:00 ET", datetime(2004, 1, 26, 21, 31, tzinfo=UTC)),
    ("Mon, 26 Jan 2004 16:31:00 PST", datetime(2004, 1, 27, 0, 31, tzinfo=UTC)),
    ("Mon, 30 Nov 2026 10:00:00 GMT", datetime(2026, 11, 30, 10, 0, tzinfo=UTC)),
    ("2026-11-30T10:00:00+01:00", datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),
    ("2026-11", datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026", datetime(2026, 1, 1, tzinfo=UTC)),
    ("013", None),
    # no zone: a local time of the source's zone (Europe/Berlin), winter and summer
    ("2026-11-30 10:00:00", datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),
    ("2026-07-01T10:00", datetime(2026, 7, 1, 8, 0, tzinfo=UTC)),
    ("2026-11-30", datetime(2026, 11, 29, 23, 0, tzinfo=UTC)),
    ("Mon, 30 Nov 2026 10:00:00", datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),
    ("2026-11-30T10:00:00Z", datetime(2026, 11, 30, 10, 0, tzinfo=UTC)),
]


def entry_dates(payload: bytes, fast: bool) -> list:
    doc = feed._parse_document(payload) if fast else feed._parse_with_feedparser(payload)
    base = feed._xml_base(payload, "https://feeds.example/feed")
    return [feed._entry_to_item(e, feedcases.SOURCE, base, "guid", None).published for e in doc.entries]


@pytest.mark.parametrize("written, moment", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("fast", [True, False], ids=["fastfeedparser", "feedparser"])
def test_a_date_reads_as_the_moment_it_names_on_both_paths(written, moment, fast):
    rss = (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
           f"<item><title>Adventsmarkt</title><guid>https://m.example/a</guid><pubDate>{written}</pubDate></item>"
           f"</channel></rss>").encode()
    assert entry_dates(rss, fast) == [moment]


def test_the_fast_parser_reads_dates_through_the_hub():
    """fastfeedparser's date parser is replaced by `feed_dates.parse` when the connector is
    imported (a module global its native core is handed): if a release of it stopped
    reading its global, a German zone would be an hour off again."""
    import fastfeedparser.main

    from connectors import feed_dates

    assert fastfeedparser.main._parse_date is feed_dates.parse
    atom = (b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
            b"<entry><title>x</title><id>urn:x</id><updated>Mon, 30 Nov 2026 10:00:00 MEZ</updated></entry></feed>")
    assert entry_dates(atom, fast=True) == [datetime(2026, 11, 30, 9, 0, tzinfo=UTC)]
