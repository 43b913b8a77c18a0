"""The feed connector on feeds in other encodings than UTF-8: every feed that feedparser
reads is read, with the items feedparser reads. feedparser, called directly, is the oracle.

The recorded cases are in tests/data/feeds/encodings/ (see its README.md); their expected
results are checked with the other recorded feeds in test_feed_connector.py.
"""

from __future__ import annotations

import calendar
import codecs
import json
import re
import warnings
from datetime import datetime, timezone

import feedparser
import pytest

from connectors import feed
from connectors.feed import FeedConnector, FeedOptions
from hub.errors import ParseError
from hub.ingest import Fetched, parse_fetched
from hub.models import FetchState, Parsed, Retrieved, SourceRef
from tests import feedcases

# Not about the date (bytes in, entries out: the dates are the feeds' own): left out of make test's second run (--clock-ahead).
pytestmark = pytest.mark.timeless

ENCODINGS = feedcases.CASES / "encodings"
CASES = sorted(ENCODINGS.glob("*.xml"))
SOURCE = SourceRef(id="src", merchant_id="merchant", language=None)
URL = "https://baeckerei.example/feed"

# The entries' titles as generate.py wrote them.
LATIN_TITLES = ["Bäckerei Größe: „Brötchen“ für 1,50 €", "Öffnungszeiten über Ostern"]
TITLES = {
    "ms-cyrl_rss.xml": ["Пекарня «Колосок»: свежий хлеб", "Часы работы на праздники"],
    "euc-kr_rss.xml": ["빵집 소식: 새 빵이 나왔습니다", "휴일 영업 시간"],
    "cp037_atom.xml": ["Bäckerei Größe: Brötchen für 1,50", "Öffnungszeiten über Ostern"],
}


def parse(payload: bytes, url: str = URL) -> Parsed:
    got = Retrieved(payload=payload, state=FetchState(), url=url)
    return FeedConnector().parse(FeedOptions(url=url), SOURCE, got)


def oracle(payload: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return feedparser.parse(payload)


def words(text: str) -> str:
    return " ".join(text.split())


def test_every_encoding_is_recorded():
    names = {p.name for p in CASES}
    for required in ("utf16le_bom_rss.xml", "utf16be_bom_atom.xml", "utf16le_nobom_rss.xml",
                     "utf16be_nobom_atom.xml", "utf32le_bom_rss.xml", "utf32be_bom_atom.xml",
                     "ms-ansi_rss.xml", "cp1252_atom.xml", "ms-cyrl_rss.xml", "bogus_utf8_rss.xml",
                     "bogus_ascii_atom.xml"):
        assert required in names
    assert {p.name for p in feedcases.inputs()} >= names  # so each has its expected result too


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_reads_the_text_as_written(case):
    parsed = parse(case.read_bytes())
    assert [i.title for i in parsed.items] == TITLES.get(case.name, LATIN_TITLES)
    for item in parsed.items:
        assert not re.search("[\x80-\x9f\ufffd]|Ã|Â", item.title + item.content_text), item  # no mojibake


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_reads_the_items_feedparser_reads(case):
    payload = case.read_bytes()
    expected = oracle(payload)
    parsed = parse(payload)
    assert len(parsed.items) == len(expected.entries) == 2
    for item, entry in zip(parsed.items, expected.entries, strict=True):
        assert item.external_id == entry.id
        assert item.title == words(entry.title)
        assert item.url == entry.link
        stamp = entry.get("published_parsed") or entry.get("updated_parsed")
        assert item.published == datetime.fromtimestamp(calendar.timegm(stamp), timezone.utc)
        body = entry.content[0].value if "content" in entry else entry.summary
        assert words(item.content_text) == words(re.sub(r"<[^>]+>", " ", body))
        assert list(item.tags) == [t.get("label") or t.term for t in entry.get("tags", ())]
    # feedparser's complaint, if any (a declared encoding it could not use), is a warning
    assert bool(parsed.warnings) == bool(expected.bozo)


def test_the_feed_level_looks_read_wide_encodings_too():
    """xml:base, <ttl> and the WebSub links are looked up in the bytes; in UTF-16 or UTF-32
    they are looked up in the document re-encoded as UTF-8."""
    for name in ("utf16be_bom_atom.xml", "utf16be_nobom_atom.xml", "utf32be_bom_atom.xml"):
        parsed = parse((ENCODINGS / name).read_bytes())
        assert parsed.websub == ("https://hub.example/websub", "https://baeckerei.example/blog/atom.xml")
        assert 'href="https://baeckerei.example/blog/angebote"' in parsed.items[0].content_html
    for name in ("utf16le_bom_rss.xml", "utf16le_nobom_rss.xml", "utf32le_bom_rss.xml", "utf32be_nobom_rss.xml"):
        assert parse((ENCODINGS / name).read_bytes()).ttl_seconds == 90 * 60


def test_json_feed_and_html_page_in_utf16():
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "Bäckerei",
           "items": [{"id": "1", "title": "Größe", "content_text": "Brötchen"}]}
    parsed = parse(codecs.BOM_UTF16_LE + json.dumps(doc, ensure_ascii=False).encode("utf-16-le"))
    assert [i.title for i in parsed.items] == ["Größe"]
    page = '<!DOCTYPE html><html><head><link rel="alternate" type="application/rss+xml" href="/feed.xml">'
    with pytest.raises(ParseError, match="HTML page") as err:
        parse(codecs.BOM_UTF16_BE + page.encode("utf-16-be"))
    assert "/feed.xml" in err.value.hint


# --- anything the fast path cannot take goes to feedparser --------------------------------

def test_ordinary_utf8_keeps_the_fast_path(monkeypatch):
    from tests.benchmarks.corpus import feed as benchmark_feed

    def no_fallback(*args, **kwargs):
        raise AssertionError("feedparser was asked")

    monkeypatch.setattr(feed, "_parse_with_feedparser", no_fallback)
    for payload in (benchmark_feed(0), benchmark_feed(1), (feedcases.CASES / "rss20_full.xml").read_bytes(),
                    (feedcases.CASES / "atom10_base.xml").read_bytes(),
                    (feedcases.CASES / "rss091.xml").read_bytes(),  # declared ISO-8859-1, plain ASCII
                    (ENCODINGS / "bogus_ascii_atom.xml").read_bytes().replace(b"bogus-xyz", b"utf-8")):
        assert parse(payload).items


@pytest.mark.parametrize("exc", [RuntimeError("boom"), ValueError("multi-byte encodings are not supported"),
                                 LookupError("unknown encoding: x"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
                                 TypeError("odd"), RecursionError()], ids=lambda e: type(e).__name__)
def test_any_exception_of_the_fast_path_means_feedparser(monkeypatch, exc):
    payload = (feedcases.CASES / "rss20_full.xml").read_bytes()
    expected = [(i.external_id, i.title, i.url, i.published) for i in parse(payload).items]

    def raises(*args, **kwargs):
        raise exc

    monkeypatch.setattr(feed, "fastfeedparser_parse", raises)
    assert [(i.external_id, i.title, i.url, i.published) for i in parse(payload).items] == expected

    class Expat:  # the scan itself raising, not with an ExpatError
        @staticmethod
        def ParserCreate():
            class Parser:
                Parse = staticmethod(raises)
            return Parser()

    monkeypatch.setattr(feed, "pyexpat", Expat)
    assert [(i.external_id, i.title, i.url, i.published) for i in parse(payload).items] == expected


def test_feedparser_raising_is_a_parse_error(monkeypatch):
    def raises(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(feedparser, "parse", raises)
    with pytest.raises(ParseError, match="cannot be read"):
        parse((ENCODINGS / "utf16le_bom_rss.xml").read_bytes())


# --- no encoding is a crash ---------------------------------------------------------------

# feedparser's own list of codecs it must find in an XML declaration (its test_encoding.py),
# Windows' names for its code pages, names nobody knows, and the wide encodings.
SINGLE_BYTE = (
    "437 850 852 855 857 860 861 862 863 865 866 cp037 cp1125 cp1250 cp1251 cp1252 cp1253 cp1254 "
    "cp1255 cp1256 cp1257 cp1258 cp437 cp500 cp737 cp775 cp850 cp852 cp855 cp856 cp857 cp860 cp861 "
    "cp862 cp863 cp864 cp865 cp866 cp874 cp875 cp_is csibm037 csibm500 csibm855 csibm857 csibm860 "
    "csibm861 csibm863 csibm864 csibm865 csibm866 cskoi8r cspc775baltic cspc850multilingual "
    "cspc862latinhebrew cspc8codepage437 cspcp852 ebcdic-cp-be ebcdic-cp-ca ebcdic-cp-ch ebcdic-cp-nl "
    "ebcdic-cp-us ebcdic-cp-wt ebcdic_cp_be ebcdic_cp_ca ebcdic_cp_ch ebcdic_cp_nl ebcdic_cp_us "
    "ebcdic_cp_wt ibm037 ibm039 ibm1140 ibm437 ibm500 ibm775 ibm850 ibm852 ibm855 ibm857 ibm860 ibm861 "
    "ibm862 ibm863 ibm864 ibm865 ibm866 koi8-r koi8-t koi8-u mac-cyrillic maccentraleurope maccyrillic "
    "macgreek maciceland macintosh maclatin2 macroman macturkish windows-1250 windows-1251 "
    "windows-1252 windows-1253 windows-1254 windows-1255 windows-1256 windows-1257 windows-1258 "
    "windows_1250 windows_1251 windows_1252 windows_1253 windows_1254 windows_1255 windows_1256 "
    "windows_1257 windows_1258 iso-8859-1 iso-8859-2 iso-8859-5 iso-8859-15 latin1 us-ascii"
).split()
WINDOWS_NAMES = "ms-ansi ms-ee ms-cyrl ms-greek ms-turk ms-hebr ms-arab winbaltrim mac csmacintosh".split()
UNKNOWN = "tcvn tcvn-5712 tcvn5712-1 viscii dbcs bogus-xyz x-user-defined".split()
MULTI_BYTE = "big5 euc-kr gb2312 gb18030 shift_jis euc-jp iso-2022-jp utf-16 utf-32 utf-7".split()
WIDE = [("utf-16", "utf-16-le", codecs.BOM_UTF16_LE), ("utf-16", "utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-16le", "utf-16-le", b""), ("utf-16be", "utf-16-be", b""),
        ("utf-32", "utf-32-le", codecs.BOM_UTF32_LE), ("utf-32", "utf-32-be", codecs.BOM_UTF32_BE),
        ("utf-32le", "utf-32-le", b""), ("utf-32be", "utf-32-be", b"")]

RSS = """<?xml version="1.0" encoding="{encoding}"?>
<rss version="2.0"><channel><title>{text}</title><link>https://b.example/</link>
<item><guid>g1</guid><title>{text}</title><link>https://b.example/1</link><description>{text} 1</description></item>
<item><guid>g2</guid><title>Zwei {text}</title><link>https://b.example/2</link><description>2</description></item>
</channel></rss>"""
ATOM = """<?xml version="1.0" encoding="{encoding}"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>{text}</title><id>urn:x</id><updated>2026-03-01T00:00:00Z</updated>
<entry><id>urn:x:1</id><title>{text}</title><link href="https://b.example/1"/><updated>2026-03-01T00:00:00Z</updated>
<content type="html">&lt;p&gt;{text}&lt;/p&gt;</content></entry>
<entry><id>urn:x:2</id><title>Zwei {text}</title><link href="https://b.example/2"/><updated>2026-03-02T00:00:00Z</updated>
<summary>2</summary></entry></feed>"""
TEXT = "Bäckerei Größe „Brötchen“ € Хлеб"


def _documents() -> list[tuple[str, bytes]]:
    docs = []
    for template, kind in ((RSS, "rss"), (ATOM, "atom")):
        for name in SINGLE_BYTE + MULTI_BYTE + WINDOWS_NAMES + UNKNOWN:
            try:
                codec = codecs.lookup(name).name
            except LookupError:
                codec = "cp1252"  # what such feeds in the wild are mostly written in
            if codec in ("utf-16", "utf-32"):  # declared so, written in UTF-8 (a common lie)
                codec = "utf-8"
            text = TEXT.encode(codec, "xmlcharrefreplace").decode(codec)  # what it lacks as &#...;
            docs.append((f"{kind}/{name}", template.format(encoding=name, text=text).encode(codec)))
            if "<".encode(codec) == b"<":  # and the same declared so, in plain ASCII
                docs.append((f"{kind}/{name}/ascii",
                             template.format(encoding=name, text=TEXT).encode("ascii", "xmlcharrefreplace")))
        for name, codec, bom in WIDE:
            docs.append((f"{kind}/{codec}{'+bom' if bom else ''}",
                         bom + template.format(encoding=name, text=TEXT).encode(codec)))
    return docs


def _outcome(payload: bytes):
    return parse_fetched(Fetched(
        source_id="src", connector="rss", options=FeedOptions(url=URL), ref=SOURCE,
        got=Retrieved(payload=payload, state=FetchState(), url=URL),
        at=datetime(2026, 3, 1, tzinfo=timezone.utc)))


def test_no_encoding_crashes_the_connector_and_every_item_feedparser_reads_is_read():
    """Hundreds of documents in every encoding feedparser's tests name, declared rightly,
    under Windows' names, under unknown names and as multi-byte lies: none is a connector
    crash ("this is a bug"), and each gives the titles feedparser gives."""
    problems = []
    documents = _documents() + [(p.name, p.read_bytes()) for p in CASES]
    assert len(documents) > 300
    for name, payload in documents:
        outcome = _outcome(payload)
        expected = oracle(payload)
        if outcome.error_code == "connector_crashed" or "this is a bug" in (outcome.error or ""):
            problems.append(f"{name}: {outcome.error}")
        elif outcome.status != "ok":
            if expected.entries:
                problems.append(f"{name}: feedparser reads {len(expected.entries)} entries; {outcome.error}")
        elif [i.title for i in outcome.parsed.items] != [words(e.title) for e in expected.entries]:
            problems.append(f"{name}: {[i.title for i in outcome.parsed.items]} != feedparser's "
                            f"{[e.title for e in expected.entries]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("payload", [
    codecs.BOM_UTF16_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_BE + b"\xd8\x00",  # a lone surrogate
    codecs.BOM_UTF16_LE + "<rss><channel><item><title>x".encode("utf-16-le") + b"\x00",  # odd length
    b"<\x00?\x00x\x00m\x00l\x00", b"\x00\x00\x00<\x00\x00\x00?", b"\x4c\x6f\xa7\x94\xff\xff",
    b'<?xml version="1.0" encoding=""?><rss/>', b'<?xml version="1.0" encoding="\xff\xfe"?><rss/>',
    b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><item><title>\xff\xfe</title>'
    b"</item></channel></rss>",
], ids=lambda p: repr(p[:12]))
def test_broken_documents_are_parse_errors_or_read_never_crashes(payload):
    outcome = _outcome(payload)
    assert outcome.error_code != "connector_crashed", outcome.error
    assert outcome.status == "ok" or outcome.error_code == "parse_failed"
