"""Cross-channel identity: do two items describe the same real thing?

Pure functions over `Features`, a small fingerprint of a normalized item. The store keeps
the fingerprints beside the items and finds candidates through blocking keys in indexed
columns and tables (see `hub.store.placement`), so placing a new item never scans the
store; this module only answers, for one pair, whether they match, by which rule and how
strongly (`Match.rule`, `Match.score`).

Rules, checked in this order (the first that holds wins):

- `same-url`    both point at the same canonical URL (tracking parameters, `www.`, scheme,
                trailing slash, fragment and query order ignored; a home page or a social
                profile is no item's URL). Same merchant, or both events.
- `links-to`    one links in its text to the other's URL (a Facebook post sharing the
                website's article). Same merchant, or both events.
- `same-event`  both events on the same day, starting within 15 minutes (or one all-day),
                with similar titles. Any merchants: a club's concert in the town's calendar.
- `event-moved` the same day at another time, near-identical titles: a repost that changed
                the time. Across sources, or within one source when the repost came at least
                an hour later (a cinema lists its two screenings together: they stay two).
- `near-duplicate-text`     the same merchant's text on two channels: SimHash distance ≤ 10.
- `similar-offer`           same merchant, a price in common, similar titles.
- `similar-title-and-text`  same merchant, similar titles and related texts.

What never merges: two items of one source by URL or text (a source gives two things two
ids); posts of different merchants (only events are shared between merchants); two events
on different days; two events whose titles share no word; events of different merchants
unless both name the place and the places agree (two clubs' "Tag der offenen Tür" at 10:00
are two events); posts more than 4 days apart (the weekly "Sonntagsbrötchen" post).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from itertools import filterfalse
from typing import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

from hub.models import Item
from hub.sanitize import TRACKING_PARAMS

SAME_START = timedelta(minutes=15)
POST_WINDOW = timedelta(days=4)  # a cross-post appears on the other channel within days
REPOST_GAP = timedelta(hours=1)
PLACES_ALIKE = 0.3  # title_similarity of two place names that name the same place
NEAR_DUPLICATE_BITS = 10  # SimHash distance (of 64) up to which two texts are near-duplicates
MIN_TEXT_WORDS = 6  # "Heute geöffnet!" vs "Heute geschlossen!": too short for SimHash to tell
RELATED_TEXT_BITS = 24  # clearly below the ~32 of unrelated texts
MAX_LINKS = 5
MAX_EVENT_WORDS = 8  # title words an event is indexed under
MAX_TOKENS = 160  # distinct words that make a text's SimHash; the start of a post says it
TEXT_CHARS = 600  # ... and so does reading only its first characters

# Social networks: their profile pages say nothing about one item, and a merchant's own site
# is the better link for residents (hub.records).
SOCIAL_HOSTS = frozenset({"facebook.com", "fb.com", "fb.me", "instagram.com", "twitter.com", "x.com",
                          "threads.net", "youtube.com", "tiktok.com"})
_STOP = frozenset("""der die das und ist mit für auf den dem des ein eine einen einem zu von im am
    bei auch nach uns unser unsere ihr sie ab bis wird sind wie oder aber heute alle über vom zum zur
    hier euch wir es the and for with on at our you your from this that will are of to in an""".split())
_TOKEN = re.compile(r"[a-z0-9]{2,}")
_TITLE_TOKEN = re.compile(r"[a-z0-9]+")  # titles keep "A" of "A-Jugend" and "1" of "Teil 1"
_PRICE = re.compile(r"\b(?=[0-9])(\d+)(?:[,.](\d{2}))?\s*(?:€|[Ee][Uu][Rr](?:[Oo])?\b)")
_LINK = re.compile(r'<a\b[^>]*\bhref="([^"]+)"')


@dataclass(frozen=True, slots=True)
class Features:
    """What identity needs to know about one normalized item. Without `full`, only the
    publication time and source; the rest is computed when first needed."""

    source_id: str
    merchant_id: str
    at: datetime  # published, else when the hub first saw it
    url_key: int | None
    event_start: datetime | None = None
    event_day: int | None = None  # local date as an ordinal
    all_day: bool = False
    title_key: str = ""  # folded title words, stop words removed
    place_key: str = ""
    simhash: int = 0  # 64-bit, unsigned
    text_words: int = 0  # distinct words the SimHash was made of
    prices: frozenset[str] = frozenset()
    link_keys: frozenset[int] = frozenset()
    event_keys: tuple[int, ...] = ()  # (day, title word) keys, see `stored_keys`
    full: bool = True


@dataclass(frozen=True, slots=True)
class Match:
    rule: str
    score: float  # 0..1, higher is surer


def features(item: Item, *, at: datetime, zone: str, full: bool = True) -> Features:
    """The fingerprint of a normalized item (see `hub.normalize`). Without `full` (a post of
    a merchant with one source: it can match nothing yet) only what costs nothing; events
    always get full features: they may match any merchant's events."""
    event = item.event
    base = Features(source_id=item.source_id, merchant_id=item.merchant_id, at=item.published or at,
                    url_key=None, event_start=event.start if event else None,
                    event_day=local_day(event.start, zone) if event else None,
                    all_day=bool(event and event.all_day), full=False)
    if not (full or event):
        return base
    text = f"{item.title} {item.content_text[:TEXT_CHARS]}"
    title_key = " ".join(words(item.title, _TITLE_TOKEN))
    tokens = list(dict.fromkeys(words(text)))[:MAX_TOKENS]
    return replace(base, full=True, url_key=url_key(item.url), title_key=title_key, simhash=simhash(tokens),
                   text_words=len(tokens),
                   place_key=" ".join(words(event.location or "")) if event else "",
                   prices=frozenset(prices(f"{text} {item.summary}")),
                   link_keys=frozenset(link_keys(item.content_html, item.url)),
                   event_keys=event_keys(base.event_day, title_key))


def stored_keys(f: Features) -> list[int]:
    """The blocking keys an origin is found by, besides its URL (an indexed column): every
    URL it links to, and for an event each (day, title word): two events can only match
    when they share a day and a word of their titles (see `_as_events`)."""
    return [*f.link_keys, *f.event_keys]


def probe_keys(f: Features) -> list[int]:
    """The keys under which a new item looks for stored origins: its own URL (someone
    links to it) and its event keys."""
    return [*([f.url_key] if f.url_key is not None else []), *f.event_keys]


def event_keys(day: int | None, title_key: str) -> tuple[int, ...]:
    if day is None:
        return ()
    return tuple(key_of(f"event {day} {word}") for word in sorted(set(title_key.split()))[:MAX_EVENT_WORDS])


def local_day(moment: datetime, zone: str) -> int:
    return moment.astimezone(ZoneInfo(zone)).date().toordinal()


# --- URLs ----------------------------------------------------------------------------------

def canonical_url(url: str | None) -> str | None:
    """The URL as identity compares it, or None if it names no single item (a site's home
    page, a social profile). http and https, `www.`, a trailing slash, the fragment, the
    order of query parameters and tracking parameters do not matter."""
    if not url or not url[:8].lower().startswith(("http://", "https://")):
        return None
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").removeprefix("www.").removeprefix("m.")
    path = parts.path.rstrip("/")
    query = ""
    if parts.query:  # most URLs have none: the parsing below is the slow part
        query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                                 if not TRACKING_PARAMS.match(k)))
    if not host or (not path and not query):
        return None
    if not query and path.count("/") < 2 and is_social(host):
        return None  # facebook.com/baeckerei: the page, not a post
    return f"https://{host}{path}?{query}" if query else f"https://{host}{path}"


def is_social(host: str) -> bool:
    return host in SOCIAL_HOSTS or host.split(".", 1)[-1] in SOCIAL_HOSTS


def url_key(url: str | None) -> int | None:
    canonical = canonical_url(url)
    return key_of(canonical) if canonical else None


def key_of(text: str) -> int:
    """A 63-bit key: fits a signed BIGINT on every database."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def link_keys(html: str, own_url: str | None) -> list[int]:
    own = url_key(own_url)
    keys: list[int] = []
    for href in _LINK.findall(html):
        key = url_key(href.replace("&amp;", "&"))
        if key is not None and key != own and key not in keys:
            keys.append(key)
            if len(keys) == MAX_LINKS:
                break
    return keys


# --- text ----------------------------------------------------------------------------------

def words(text: str, pattern: re.Pattern = _TOKEN) -> list[str]:
    """Lower-case, umlauts folded, accents dropped, stop words and (by default) one-letter
    words removed."""
    # Chained replaces: ~20x faster than str.translate with a dict.
    folded = text.lower().replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")
    if not folded.isascii():
        folded = unicodedata.normalize("NFKD", folded).encode("ascii", "ignore").decode()
    return list(filterfalse(_STOP.__contains__, pattern.findall(folded)))


def prices(text: str) -> list[str]:
    return [f"{int(euros)}.{cents or '00'}" for euros, cents in _PRICE.findall(text)]


def _spread_table() -> list[list[int]]:
    """For byte j of a hash and its value v: v's bits spread into one 8-bit lane per bit.
    Adding spread hashes counts, per bit position, how many tokens have it set; 160 tokens
    never overflow a lane."""
    table = []
    for j in range(8):
        row = []
        for v in range(256):
            lanes = 0
            for bit in range(8):
                if v >> bit & 1:
                    lanes |= 1 << (8 * (8 * j + bit))
            row.append(lanes)
        table.append(row)
    return table


_SPREAD = _spread_table()
_spread_cache: dict[str, int] = {}
_CACHE_LIMIT = 50_000


def simhash(tokens: Iterable[str]) -> int:
    """64-bit SimHash of the distinct tokens (Charikar): similar texts, few differing bits.

    Counting bits per position is done with big-integer lanes instead of 64 Python
    additions per token, frequent words are cached, and the majority vote per bit is one
    bytes.translate; about 15 µs for a post."""
    distinct = list(dict.fromkeys(tokens))[:MAX_TOKENS]
    if not distinct:
        return 0
    for token in distinct:
        if token not in _spread_cache:
            _spread(token)
    total = sum(map(_spread_cache.__getitem__, distinct))
    votes = total.to_bytes(64, "little").translate(_majority(len(distinct) // 2))
    return int(votes[::-1], 2)


@cache
def _majority(half: int) -> bytes:
    """A bytes.translate table: a lane count above `half` becomes "1", else "0"."""
    return bytes(ord("1") if count > half else ord("0") for count in range(256))


def _spread(token: str) -> None:
    digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
    if len(_spread_cache) >= _CACHE_LIMIT:
        _spread_cache.clear()
    _spread_cache[token] = sum(_SPREAD[j][b] for j, b in enumerate(digest))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def title_similarity(a: str, b: str) -> float:
    """0..1 for two title keys: the mean of word containment (one title inside the other:
    "Adventskonzert" in "Adventskonzert des Musikvereins") and trigram Dice (spelling:
    "Advents-Konzert" vs "Adventskonzert"). 0 when both carry a distinguishing letter or
    small number and those differ: "A-Jugend" vs "B-Jugend", "Teil 1" vs "Teil 2"."""
    wa, wb = set(a.split()), set(b.split())
    if not wa or not wb:
        return 0.0
    marks_a, marks_b = _marks(wa), _marks(wb)
    if marks_a and marks_b and marks_a != marks_b:
        return 0.0
    containment = len(wa & wb) / min(len(wa), len(wb))
    return (containment + _dice(_trigrams(a), _trigrams(b))) / 2


def _marks(words: set[str]) -> set[str]:
    return {w.lstrip("0") or "0" for w in words if len(w) == 1 or (w.isdigit() and int(w) < 10)}


def _trigrams(text: str) -> set[str]:
    joined = text.replace(" ", "")
    return {joined[i:i + 3] for i in range(len(joined) - 2)} or {joined}


def _dice(a: set[str], b: set[str]) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0


# --- matching ------------------------------------------------------------------------------

def match(new: Features, old: Features) -> Match | None:
    """Whether `new` and `old` describe the same thing, by the first rule that holds."""
    if new.event_day is not None and old.event_day is not None:
        if new.event_day != old.event_day:
            return None  # two events on different days are two events
        return _by_url(new, old) or _as_events(new, old)  # text alike is not enough for two events
    return _by_url(new, old) or _as_posts(new, old)


def _by_url(new: Features, old: Features) -> Match | None:
    if new.source_id == old.source_id or not (new.merchant_id == old.merchant_id or _both_events(new, old)):
        return None
    if new.url_key is not None and new.url_key == old.url_key:
        return Match("same-url", 1.0)
    if (new.url_key is not None and new.url_key in old.link_keys) or (old.url_key is not None and old.url_key in new.link_keys):
        return Match("links-to", 0.9)
    return None


def _as_events(new: Features, old: Features) -> Match | None:
    """Same day (checked in `match`), similar titles, and a place that fits: for two
    merchants both must name it (two clubs' "Tag der offenen Tür" at 10:00 are two events),
    for one merchant it must merely not contradict."""
    if not _both_events(new, old) or not _share_a_word(new.title_key, old.title_key) or not _places_fit(new, old):
        return None
    assert new.event_start is not None and old.event_start is not None
    titles = title_similarity(new.title_key, old.title_key)
    if abs(new.event_start - old.event_start) <= SAME_START or new.all_day or old.all_day:
        return Match("same-event", round(0.5 + titles / 2, 3)) if titles >= 0.5 else None
    if titles >= 0.85 and _may_be_repost(new, old):
        return Match("event-moved", round(0.6 * titles, 3))
    return None


def _share_a_word(a: str, b: str) -> bool:
    """Cheap pre-check: without a common word two titles are never similar enough."""
    return not set(a.split()).isdisjoint(b.split())


def _places_fit(a: Features, b: Features) -> bool:
    if a.place_key and b.place_key:
        return title_similarity(a.place_key, b.place_key) >= PLACES_ALIKE
    return a.merchant_id == b.merchant_id


def _may_be_repost(new: Features, old: Features) -> bool:
    return new.source_id != old.source_id or abs(new.at - old.at) >= REPOST_GAP


def _as_posts(new: Features, old: Features) -> Match | None:
    if new.source_id == old.source_id or new.merchant_id != old.merchant_id or abs(new.at - old.at) > POST_WINDOW:
        return None
    distance = hamming(new.simhash, old.simhash)
    if distance <= NEAR_DUPLICATE_BITS and min(new.text_words, old.text_words) >= MIN_TEXT_WORDS:
        return Match("near-duplicate-text", round(1 - distance / 64, 3))
    titles = title_similarity(new.title_key, old.title_key)
    if new.prices & old.prices and titles >= 0.5:
        return Match("similar-offer", round(0.5 + titles / 4, 3))
    if titles >= 0.7 and distance <= RELATED_TEXT_BITS:
        return Match("similar-title-and-text", round(titles * (1 - distance / 64), 3))
    return None


def _both_events(a: Features, b: Features) -> bool:
    return a.event_start is not None and b.event_start is not None
