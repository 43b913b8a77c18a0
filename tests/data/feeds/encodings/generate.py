"""Writes the encoding cases in this folder (see README.md). The files are committed; run
this only to change a case, then `python -m tests.feedcases` for the expected results.

    .venv/bin/python tests/data/feeds/encodings/generate.py
"""

from __future__ import annotations

import codecs
from pathlib import Path

HERE = Path(__file__).parent

LATIN = {
    "feed": "Bäckerei Größe",
    "t1": "Bäckerei Größe: „Brötchen“ für 1,50 €",
    "d1": "Frische Brötchen, süße Teilchen – täglich ab 6 Uhr.",
    "t2": "Öffnungszeiten über Ostern",
    "d2": "Am Karfreitag geschlossen, Samstag 7–12 Uhr.",
    "tag": "Brötchen",
}
# EBCDIC (cp037) has no euro sign, typographic quotes or dashes.
LATIN_PLAIN = {
    "feed": "Bäckerei Größe",
    "t1": "Bäckerei Größe: Brötchen für 1,50",
    "d1": "Frische Brötchen und süße Teilchen, täglich ab 6 Uhr.",
    "t2": "Öffnungszeiten über Ostern",
    "d2": "Am Karfreitag geschlossen.",
    "tag": "Brötchen",
}
CYRILLIC = {
    "feed": "Пекарня «Колосок»",
    "t1": "Пекарня «Колосок»: свежий хлеб",
    "d1": "Горячие булочки каждое утро — с 6 часов.",
    "t2": "Часы работы на праздники",
    "d2": "В пятницу закрыто.",
    "tag": "Хлеб",
}
KOREAN = {
    "feed": "빵집 소식",
    "t1": "빵집 소식: 새 빵이 나왔습니다",
    "d1": "매일 아침 6시부터 갓 구운 빵.",
    "t2": "휴일 영업 시간",
    "d2": "금요일은 쉽니다.",
    "tag": "빵",
}

RSS = """<?xml version="1.0" encoding="{encoding}"?>
<rss version="2.0">
<channel>
<title>{feed}</title>
<link>https://baeckerei.example/</link>
<description>{feed}</description>
<ttl>90</ttl>
<item>
<guid isPermaLink="false">enc-1</guid>
<title>{t1}</title>
<link>https://baeckerei.example/posts/1</link>
<description>&lt;p&gt;{d1}&lt;/p&gt;</description>
<pubDate>Mon, 02 Mar 2026 09:00:00 +0100</pubDate>
<category>{tag}</category>
</item>
<item>
<guid>https://baeckerei.example/posts/2</guid>
<title>{t2}</title>
<link>https://baeckerei.example/posts/2</link>
<description>{d2}</description>
<pubDate>Tue, 03 Mar 2026 10:30:00 +0100</pubDate>
</item>
</channel>
</rss>
"""

ATOM = """<?xml version="1.0" encoding="{encoding}"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://baeckerei.example/blog/">
<title>{feed}</title>
<id>tag:baeckerei.example,2026:blog</id>
<updated>2026-03-03T10:30:00Z</updated>
<link rel="hub" href="https://hub.example/websub"/>
<link rel="self" href="https://baeckerei.example/blog/atom.xml"/>
<entry>
<id>tag:baeckerei.example,2026:1</id>
<title>{t1}</title>
<link href="posts/1"/>
<published>2026-03-02T09:00:00+01:00</published>
<updated>2026-03-02T09:00:00+01:00</updated>
<content type="html">&lt;p&gt;{d1} &lt;a href="angebote"&gt;Angebote&lt;/a&gt;&lt;/p&gt;</content>
<category term="brot" label="{tag}"/>
</entry>
<entry>
<id>tag:baeckerei.example,2026:2</id>
<title>{t2}</title>
<link href="posts/2"/>
<updated>2026-03-03T10:30:00+01:00</updated>
<summary>{d2}</summary>
</entry>
</feed>
"""

# file name: (template, declared encoding, codec of the bytes, BOM, texts)
CASES = {
    "utf16le_bom_rss.xml": (RSS, "utf-16", "utf-16-le", codecs.BOM_UTF16_LE, LATIN),
    "utf16be_bom_atom.xml": (ATOM, "UTF-16", "utf-16-be", codecs.BOM_UTF16_BE, LATIN),
    "utf16le_nobom_rss.xml": (RSS, "utf-16le", "utf-16-le", b"", LATIN),
    "utf16be_nobom_atom.xml": (ATOM, "UTF-16BE", "utf-16-be", b"", LATIN),
    "utf32le_bom_rss.xml": (RSS, "utf-32", "utf-32-le", codecs.BOM_UTF32_LE, LATIN),
    "utf32be_bom_atom.xml": (ATOM, "UTF-32", "utf-32-be", codecs.BOM_UTF32_BE, LATIN),
    "utf32be_nobom_rss.xml": (RSS, "utf-32be", "utf-32-be", b"", LATIN),
    "ms-ansi_rss.xml": (RSS, "ms-ansi", "cp1252", b"", LATIN),
    "cp1252_atom.xml": (ATOM, "cp1252", "cp1252", b"", LATIN),
    "ms-cyrl_rss.xml": (RSS, "ms-cyrl", "cp1251", b"", CYRILLIC),
    "iso-8859-1_windows-1252_bytes_rss.xml": (RSS, "ISO-8859-1", "cp1252", b"", LATIN),
    "bogus_utf8_rss.xml": (RSS, "bogus-xyz", "utf-8", b"", LATIN),
    "bogus_ascii_atom.xml": (ATOM, "bogus-xyz", "ascii", b"", LATIN),
    "viscii_ascii_rss.xml": (RSS, "viscii", "ascii", b"", LATIN),
    "euc-kr_ascii_atom.xml": (ATOM, "euc-kr", "ascii", b"", LATIN),
    "euc-kr_rss.xml": (RSS, "euc-kr", "euc-kr", b"", KOREAN),
    "cp037_atom.xml": (ATOM, "cp037", "cp037", b"", LATIN_PLAIN),
}


def main() -> None:
    for name, (template, encoding, codec, bom, texts) in CASES.items():
        text = template.format(encoding=encoding, **texts)
        # "ascii" cases write what ASCII lacks as character references (&#228;).
        data = bom + text.encode(codec, "xmlcharrefreplace" if codec == "ascii" else "strict")
        (HERE / name).write_bytes(data)
        print("wrote", name)


if __name__ == "__main__":
    main()
