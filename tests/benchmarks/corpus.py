"""A generated corpus of realistic German merchant feeds for the ingest benchmark.

Deterministic (seeded): feed i is always the same bytes. RSS 2.0 and Atom, 20 to 50 entries
each, German HTML with images, 5 to 100 KB per feed; some feeds carry script/iframe junk,
relative URLs and tracking parameters, as real merchant feeds do.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from xml.sax.saxutils import escape

WORDS = ("Bäckerei Stollen Brötchen Wochenmarkt Angebot Öffnungszeiten Rathaus Sperrmüll Verein Training "
         "Konzert Lesung Flohmarkt Adventsmarkt Weihnachtsfeier Gutschein Rabatt Eröffnung Kino Premiere "
         "Stadtfest Gemeinderat Bürgerbüro Spielplatz Grünschnitt Feuerwehr Jubiläum Frühstück Mittagstisch "
         "Spezialität regional frisch heute morgen Samstag Sonntag Dezember Januar Musterstadt Innenstadt "
         "Marktplatz Hauptstraße gemütlich herzlich willkommen Familie Kinder Senioren Jugend Mannschaft "
         "Saison Ergebnis Sieg Auswärtsspiel Heimspiel Tickets Eintritt frei Anmeldung erbeten").split()
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def body(rng: random.Random, size: int, junk: bool, relative: bool) -> str:
    host = "" if relative else "https://cdn.merchant.example"
    parts = []
    while sum(map(len, parts)) < size:
        choice = rng.random()
        if choice < 0.6:
            parts.append(f"<p>{sentence(rng, rng.randint(8, 30))} <strong>{rng.choice(WORDS)}</strong> "
                         f"{sentence(rng, rng.randint(5, 20))}</p>")
        elif choice < 0.75:
            parts.append(f'<p><img src="{host}/bilder/{rng.randint(1, 9999)}.jpg" alt="{sentence(rng, 3)}" '
                         f'width="800" height="600"></p>')
        elif choice < 0.9:
            items = "".join(f"<li>{sentence(rng, 5)} – {rng.randint(1, 40)},{rng.randint(0, 99):02d} €</li>"
                            for _ in range(rng.randint(2, 5)))
            parts.append(f"<ul>{items}</ul>")
        else:
            parts.append(f'<p>Mehr unter <a href="https://merchant.example/seite?utm_source=feed&amp;id='
                         f'{rng.randint(1, 999)}&amp;fbclid=IwAR{rng.randint(1000, 9999)}">unserer Seite</a>.</p>')
    if junk:
        parts.insert(1, '<script>track("x")</script><iframe src="https://ads.example/"></iframe>'
                        '<p onclick="evil()" style="color:red">Werbung</p>')
    return "\n".join(parts)


def feed(i: int) -> bytes:
    """Feed number `i` of the corpus."""
    rng = random.Random(i)
    n_entries = rng.randint(20, 50)
    target = rng.randint(5_000, 75_000)
    per_entry = max(40, target // n_entries - 420)
    junk, relative = rng.random() < 0.3, rng.random() < 0.2
    entries = []
    for j in range(n_entries):
        published = T0 - timedelta(hours=j * 7 + rng.randint(0, 6), minutes=rng.randint(0, 59))
        entries.append({"id": f"https://merchant{i}.example/beitrag/{j}", "title": sentence(rng, rng.randint(3, 9)),
                        "html": body(rng, per_entry, junk and j % 3 == 0, relative), "published": published,
                        "tags": rng.sample(WORDS, 2), "image": f"https://cdn.merchant.example/{i}/{j}.jpg"})
    return (_atom if i % 3 == 0 else _rss)(i, entries).encode("utf-8")


def _rss(i: int, entries: list[dict]) -> str:
    items = "".join(
        f"<item><title>{escape(e['title'])}</title><link>{e['id']}</link><guid>{e['id']}</guid>"
        f"<pubDate>{format_datetime(e['published'])}</pubDate>"
        + "".join(f"<category>{escape(t)}</category>" for t in e["tags"])
        + f"<description><![CDATA[{e['html']}]]></description>"
        f'<enclosure url="{e["image"]}" type="image/jpeg" length="12345"/></item>'
        for e in entries)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Händler {i}</title>'
            f"<link>https://merchant{i}.example/</link><description>Neuigkeiten</description>"
            f"<language>de</language>{items}</channel></rss>")


def _atom(i: int, entries: list[dict]) -> str:
    items = "".join(
        f"<entry><title>{escape(e['title'])}</title><id>{e['id']}</id><link href=\"{e['id']}\"/>"
        f"<published>{e['published'].isoformat()}</published><updated>{e['published'].isoformat()}</updated>"
        + "".join(f'<category term="{escape(t)}"/>' for t in e["tags"])
        + f"<content type=\"html\">{escape(e['html'])}</content></entry>"
        for e in entries)
    return (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>Händler {i}</title><id>urn:merchant:{i}</id><updated>{T0.isoformat()}</updated>{items}</feed>")
