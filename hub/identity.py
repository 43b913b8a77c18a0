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
                Not where both texts are long and say two things (`apart`; two matches at
                15 and 19 Uhr), as for `same-event` between one merchant's posts.
- `time-changed` one merchant's events of one day at different times, one of them a notice
                of a new time ("Achtung, neue Uhrzeit", "verschoben") about the other: it
                names most of the other's title, and its own title nothing the other does
                not, whatever the titles (`confirm`, `_notice_of_new_time`).
- `near-duplicate-text`     the same merchant's text on two channels: SimHash distance ≤ 10,
                            and (`confirm`) a copy: half of the shorter text in runs of words
                            the other has too (SimHash sees words, not their order).
- `similar-offer`           same merchant, a price in common and similar titles, or two prices
                            in common and titles with a word in common.
- `similar-title-and-text`  same merchant, similar titles and related texts, or somewhat
                            similar titles and close texts.
- `same-details`            same merchant, a post reworded under its own title, whatever
                            the titles: SimHash distance ≤ 28, a day in common (or prices
                            that agree under titles with a word in common), and most of what
                            the shorter says beyond a template the other says too (`confirm`,
                            `_same_details`).

The text rules see words, not what the words are about: two job ads "Stellenanzeige
Filiale Nord: Wir suchen …" for different jobs, or two days' "Mittagstisch heute: …", share
most of their words. So a text rule holds only when `apart` finds no sign of two things in
the texts themselves (`sequence`): a shared opening, template or boilerplate is no evidence;
what follows it is. When the first place where the two texts go their own ways has words of
its own on both sides (a dish, a job, a street the other text never names), and outside
what they share word for word they agree on little, they are two things. So are two texts
whose days disagree (`dates_disagree`): each names days and none of the other's, or one
came before a day both name and the other after it (an invitation and its thanks); and two
that each name times of day and none of the other's (`times`).

Title words that many of a merchant's recent posts carry ("Angebot", "Mittagstisch": its
common keys, see below) are no evidence either: titles that share only such words are not
alike (`match`'s `common`).

What never merges: two items of one source by URL or text (a source gives two things two
ids), also not through a third item (`hub.store.placement`); posts of different merchants (only events are shared between merchants); two events
on different days; two events whose titles share no word; events of different merchants
unless both name the place and the places agree (two clubs' "Tag der offenen Tür" at 10:00
are two events); posts more than 4 days apart (the weekly "Sonntagsbrötchen" post).

Candidates come from keys, never from a merchant's whole window (`index_keys`): a post of
a merchant with several sources is indexed under its title as a whole, its longest title
words, the first words of its text, a price and the days it names (`post_terms`), each scoped to its merchant
and an 8-day bucket, so a new post looks up its own keys in two buckets. The store caps every key's list and skips a key that too many items share
(`hub.store.placement`): the work per item is bounded whatever a merchant's volume, and the
keys that are left to find a match by are the rare ones.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from difflib import SequenceMatcher
from functools import cache, lru_cache
from itertools import chain, filterfalse, islice
from typing import Collection, Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

from hub.models import Item
from hub.normalize import RANGE_START
from hub.sanitize import TRACKING_PARAMS

SAME_START = timedelta(minutes=15)
POST_WINDOW = timedelta(days=4)  # a cross-post appears on the other channel within days
REPOST_GAP = timedelta(hours=1)
PLACES_ALIKE = 0.3  # title_similarity of two place names that name the same place
NEAR_DUPLICATE_BITS = 10  # SimHash distance (of 64) up to which two texts are near-duplicates
MIN_TEXT_WORDS = 6  # "Heute geöffnet!" vs "Heute geschlossen!": too short for SimHash to tell
RELATED_TEXT_BITS = 24  # clearly below the ~32 of unrelated texts
REWORDED_TEXT_BITS = 28  # a post reworded under its own title: below unrelated texts; its words decide (`same-details`)
CLOSE_TEXT_BITS = 18  # closer texts need less alike titles ("Neue Öffnungszeiten ab Januar"/"... am Marktplatz")
OTHER_TITLES = 0.3  # two prices in common (a menu, a price list) need titles that merely share a word
MAX_LINKS = 5
MAX_EVENT_WORDS = 8  # title words an event is indexed under
MAX_TOKENS = 160  # distinct words that make a text's SimHash; the start of a post says it
TEXT_CHARS = 600  # ... and so does reading only its first characters
RULES = ("same-url", "links-to", "same-event", "event-moved", "time-changed", "near-duplicate-text", "similar-offer",
         "similar-title-and-text", "same-details")  # every rule an origin may have joined its record by
TEXT_RULES = frozenset({"near-duplicate-text", "similar-offer", "similar-title-and-text", "same-details"})  # `apart`
EVENT_RULES = frozenset({"same-event", "event-moved"})
# Words of a notice that an event's time changed ("Achtung, neue Uhrzeit!", "auf 16 Uhr vorverlegt")
TIME_CHANGE_WORDS = frozenset("""uhrzeit beginnzeit anfangszeit zeitaenderung terminaenderung verschoben verschieben
    verlegt vorverlegt angekuendigt""".split())
LONG_TEXT_WORDS = 20  # content words: a notice of a new time says little else (6-11); longer texts apart are two events
DETAILS_AGREE = 0.4  # reworded posts of one thing: 0.45-0.87 of the words; one template, two things: up to 0.33
SEQUENCE_CHARS = 1500  # `apart` reads further: a job ad's shared introduction can fill 600
MAX_SEQUENCE = 80  # content words of it
SHARED_RUN = 3  # words in a row that two texts share: copied text or template, not agreement
COPIED = 0.5  # of the shorter text in such runs: a near-duplicate is a copy (`copied`)
POST_BUCKET = 2 * POST_WINDOW  # a post's ±4 days lie in its own bucket and one neighbour
OPENING_WORDS = 3  # the first content words of a text, which a copy of it shares (`post_terms`)
MAX_TITLE_TERMS = 3
MAX_PRICE_TERMS = 1
MAX_DATE_TERMS = 2

# Social networks: their profile pages say nothing about one item, and a merchant's own site
# is the better link for residents (hub.records).
SOCIAL_HOSTS = frozenset({"facebook.com", "fb.com", "fb.me", "instagram.com", "twitter.com", "x.com",
                          "threads.net", "youtube.com", "tiktok.com"})
_STOP = frozenset("""der die das und ist mit für auf den dem des ein eine einen einem zu von im am
    bei auch nach uns unser unsere ihr sie ab bis wird sind wie oder aber heute alle über vom zum zur
    hier euch wir es the and for with on at our you your from this that will are of to in an""".split())
# Words that say nothing about what a post is about: function words beyond _STOP, time words
# ("KW 48" vs "diese Woche"), greetings and units. `apart` and the index skip them (with _STOP,
# whose "für" and "über" never match folded text: they are here folded).
_FILLER = frozenset("""fuer ueber nur statt noch schon sehr gern gerne mehr kein keine keinen nicht man was wer
    wo wann dann da so als wenn ob um aus an in ins durch gegen ohne unter vor seit wegen jetzt sofort bald
    immer wieder einfach diese dieser diesen diesem dieses dies jede jeden jeder jedes alles viel viele etwas
    ganz gleich er sich sonst ihre ihren ihrem ihrer eure euren euer unserem unseren unserer woche wochen kw
    morgen gestern tag tage abend mittag uhr liebe lieber hallo hi danke dank vielen bitte guten gute neu neue
    neuen neuer kg stueck euro eur ca inkl gibt gibts hat haben habt war will wollen
    kann koennt koennen muss muessen soll sollen darf duerfen also sein seid bist bin
    website webseite homepage link bio weiterlesen""".split())  # "mehr auf unserer Website", "Link in Bio"
_TOKEN = re.compile(r"[a-z0-9]{2,}")
_TAG = re.compile(r"[#@][^\s#@]+")  # hashtags and mentions: labels, not what a post says
_TITLE_TOKEN = re.compile(r"[a-z0-9]+")  # titles keep "A" of "A-Jugend" and "1" of "Teil 1"
_PRICE = re.compile(r"([0-9]+)(?:[,.]([0-9]{2}))?\s*(?:€|[Ee][Uu][Rr](?:[Oo])?\b)")
_EUR = re.compile("eur", re.I)
_PRICE_REVERSED = re.compile(r"€\s*(?:([0-9]{2})[,.])?([0-9]+)")  # _PRICE read backwards, € only
_LINK = re.compile(r'<a\b[^>]*\bhref="([^"]+)"')
_UNUSUAL = re.compile(r"[?#@:\[\]\\\s]")  # what only urlsplit reads right: a query, fragment, user, port, …
# A query of fields name=value (or name) of the letters, digits and "_.-~" that quote_plus keeps as
# they are (no %, + nor #), at most one "=" a field: parse_qsl and urlencode change nothing in it.
_PLAIN_QUERY = re.compile(r"(?:[A-Za-z0-9_.~-]*(?:=[A-Za-z0-9_.~-]*)?)(?:&[A-Za-z0-9_.~-]*(?:=[A-Za-z0-9_.~-]*)?)*")


@dataclass(slots=True)
class Features:
    """What identity needs to know about one normalized item. Without `full`, only the
    publication time and source; the rest is computed when first needed. Never changed once
    made (not frozen only because a frozen dataclass's __init__ costs 2.5x: one is made for
    every post of a merchant with several sources)."""

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
    event_keys: tuple[int, ...] = ()  # (day, title word) keys, see `index_keys`
    terms: tuple[int, ...] = ()  # hashes of the words it is indexed under among its merchant's posts
    full: bool = True


@dataclass(frozen=True, slots=True)
class Match:
    rule: str
    score: float  # 0..1, higher is surer


def features(item: Item, *, at: datetime, zone: str, full: bool = True) -> Features:
    """The fingerprint of a normalized item (see `hub.normalize`). Without `full` (a post of
    a merchant with one source: it can match nothing yet) only what costs nothing; events
    always get full features: they may match any merchant's events. With `full`, it is also
    indexed among its merchant's posts (`terms`)."""
    event = item.event
    event_start = event.start if event else None
    event_day = local_day(event_start, zone) if event_start else None
    published = item.published or at
    if not (full or event):
        return Features(source_id=item.source_id, merchant_id=item.merchant_id, at=published, url_key=None,
                        full=False)
    title, text = item.title, item.content_text
    start = text[:TEXT_CHARS]
    # Each text lower-cased once, for its words and for a look for a price ("eur" is looked
    # for before umlauts are folded: "Säure" names no price).
    title_lower, start_lower = title.lower(), start.lower()
    title_runs, start_runs = _runs(title_lower), _runs(start_lower)
    title_words = list(filterfalse(_STOP.__contains__, title_runs))
    title_key = " ".join(title_words)
    tokens = _distinct_words(title_runs, start_runs)
    summary = item.summary
    extra = summary if summary and not text.startswith(summary.removesuffix(" …")[:80]) else ""
    # (else a feed without a description: the summary is the start of the text)
    euro_sign = "€" in title or "€" in start or "€" in extra
    eur = ("eur" in title_lower or "eur" in start_lower or (extra and "eur" in extra.lower())) and _eur_after_digit(
        f"{title_lower} {start_lower} {extra.lower()}")  # not "neuer", "teuer", "Feuerwehr"
    found_prices = (frozenset(prices(f"{title} {start} {extra}", eur=eur)) if euro_sign or eur
                    else frozenset())
    own_url = url_key(item.url)
    # The text's first words, as many as `post_terms` reads of them.
    opening = list(islice(filterfalse(_STOP_OR_SHORT.__contains__, start_runs), 4 * OPENING_WORDS)) if full else []
    return Features(source_id=item.source_id, merchant_id=item.merchant_id, at=published, url_key=own_url,
                    event_start=event_start, event_day=event_day, all_day=bool(event and event.all_day),
                    title_key=title_key, place_key=" ".join(words(event.location or "")) if event else "",
                    simhash=_simhash_distinct(tokens), text_words=len(tokens), prices=found_prices,
                    link_keys=frozenset(link_keys(item.content_html, own_url)),
                    event_keys=event_keys(event_day, title_key),
                    terms=post_terms(title, title_words, opening, found_prices, dates(f"{title} {start}"))
                    if full else ())


def _distinct_words(title_runs: list[str], start_runs: list[str]) -> Collection[str]:
    """The words a SimHash is made of: the title's and the text's, once each, without stop
    and short words, the first `MAX_TOKENS` of them. A SimHash adds its words up, in any
    order: a set will do, and is made in half the time of a dict, unless there are more
    (a 600-character text rarely holds 160 distinct words)."""
    distinct = set(title_runs).union(start_runs)
    distinct -= _STOP_OR_SHORT
    if len(distinct) <= MAX_TOKENS:
        return distinct
    ordered = dict.fromkeys(chain(title_runs, start_runs))  # the first ones, in order
    for word in _STOP_OR_SHORT.intersection(ordered):
        del ordered[word]
    return list(ordered)[:MAX_TOKENS]


def index_keys(f: Features) -> tuple[list[int], list[int]]:
    """(stored, probes) of an item's features, each key once.

    Stored: the blocking keys an origin is found by, besides its URL (an indexed column):
    every URL it links to; for an event each (day, title word): two events can only match
    when they share a day and a word of their titles (see `_as_events`); and its post keys
    in its own bucket.

    Probes: the keys under which a new item looks for stored origins: its own URL (someone
    links to it), its event keys, and its post keys in the two buckets that hold every
    moment within `POST_WINDOW` of it (its own bucket's, which both lists hold, made once)."""
    terms, own_keys, near_keys = f.terms, [], []
    if terms:  # each once: its terms are, and XOR with one scope keeps them apart
        own, near = near_buckets(f.at)
        scope = _scope(f.merchant_id, own)
        own_keys = [term ^ scope for term in terms]
        scope = _scope(f.merchant_id, near)
        near_keys = [term ^ scope for term in terms]
    stored = list(dict.fromkeys([*f.link_keys, *f.event_keys, *own_keys])) if f.link_keys or f.event_keys else own_keys
    probes = list(dict.fromkeys([*([f.url_key] if f.url_key is not None else []), *f.event_keys, *own_keys,
                                 *near_keys]))
    return stored, probes


def post_terms(title: str, title_words: Sequence[str], text_words: Sequence[str],
               found_prices: Iterable[str], found_dates: Iterable[tuple[int, int]] = ()) -> tuple[int, ...]:
    """Hashes of what a post is indexed under, evidence of the same post where it is rare:
    its title as a whole, its longest title words, the first words of its text (a copy
    opens alike; what a post is about comes first), a price and the days it names (a post
    reworded under a title of its own shares nothing else: `same-details`). Filler words
    and numbers never count: they say nothing about a post."""
    named = [w for w in title_words if len(w) > 2 and w not in _FILLER and not w.isdigit()]
    # A title as a whole is one of a kind: hashed, not cached (the word cache is for words).
    terms = [key_of(f"title {' '.join(named)}")] if len(named) > 1 and not title.endswith(("…", "...")) else []
    # The longest words first, alphabetically among equals (a stable sort of a sorted list).
    words_ = sorted(sorted(set(named)), key=len, reverse=True)[:MAX_TITLE_TERMS] if named else []
    enough = len(words_) + OPENING_WORDS
    for w in text_words[:4 * OPENING_WORDS]:  # then the first OPENING_WORDS of these that count
        if len(w) > 2 and w not in _FILLER and not w.isdigit():
            words_.append(w)
            if len(words_) == enough:
                break
    cached = _HASHES.get
    terms += [cached(w) or term_hash(w) for w in words_]  # most are cached (by `simhash`)
    if found_prices:
        terms += (term_hash(f"€{p}") for p in sorted(found_prices)[:MAX_PRICE_TERMS])
    if found_dates:
        terms += (term_hash(f"day {month}.{day}") for month, day in sorted(found_dates)[:MAX_DATE_TERMS])
    return tuple(dict.fromkeys(terms))


def word_keys(f: Features, word: str) -> list[int]:
    """The post keys a word of `f` (a title word, an opening word) has in the buckets `f`
    looks up: to ask whether the word is common among its merchant's posts around it."""
    return [term_hash(word) ^ _scope(f.merchant_id, b) for b in near_buckets(f.at)]


def bucket(at: datetime) -> int:
    return int(at.timestamp()) // int(POST_BUCKET.total_seconds())


def near_buckets(at: datetime) -> list[int]:
    """The buckets that hold every moment within `POST_WINDOW` of `at`: its own and the
    neighbour on the side it is nearer to."""
    seconds, width = int(at.timestamp()), int(POST_BUCKET.total_seconds())
    own = seconds // width
    return [own, own - 1 if seconds - own * width < width // 2 else own + 1]


@lru_cache(maxsize=4096)
def _scope(merchant_id: str, bucket_: int) -> int:
    return key_of(f"post {merchant_id} {bucket_}")


def term_hash(word: str) -> int:
    """`key_of(word)`, cached (the words of texts are, by `simhash`)."""
    h = _HASHES.get(word)
    if h is None:
        h = _HASHES[word] = key_of(word)
    return h


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
    url = url.strip()
    rest = url[url.index("//") + 2:]
    before_query, question, query = rest.partition("?")
    host, slash, path = before_query.partition("/")
    if host and host.isascii() and not _UNUSUAL.search(before_query) and (
            not question or ("%" not in host and _PLAIN_QUERY.fullmatch(query))):
        # The common case, without urlsplit's cost: no user, port or fragment, and a query
        # (if any) that parse_qsl and urlencode would give back as it is, in order
        host = host.lower().removeprefix("www.").removeprefix("m.")
        path = f"/{path}".rstrip("/") if slash else ""
        query = _plain_query(query) if query else ""
    else:
        parts = urlsplit(url)
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


def _plain_query(query: str) -> str:
    """`canonical_url`'s query of a `_PLAIN_QUERY`: what urlencode(sorted(parse_qsl(...)))
    makes of it, tracking parameters left out. Nothing in it is escaped or unescaped: no %
    or +, no character quote_plus escapes, and an "=" only as the first of a field's."""
    params = []
    for field in query.split("&"):
        if field:  # parse_qsl skips empty fields
            name, _, value = field.partition("=")
            if not TRACKING_PARAMS.match(name):
                params.append((name, value))
    params.sort()
    return "&".join([f"{name}={value}" for name, value in params])


def is_social(host: str) -> bool:
    return host in SOCIAL_HOSTS or host.split(".", 1)[-1] in SOCIAL_HOSTS


def url_key(url: str | None) -> int | None:
    canonical = canonical_url(url)
    return key_of(canonical) if canonical else None


def key_of(text: str) -> int:
    """A 63-bit key: fits a signed BIGINT on every database."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def link_keys(html: str, own: int | None) -> list[int]:
    """The URL keys of the links in `html` but `own` (the item's own URL key)."""
    if "href" not in html:
        return []
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
    words removed: the runs of `pattern` ([a-z0-9], of 2+ or, with _TITLE_TOKEN, 1+)."""
    if pattern is _TOKEN:
        return list(filterfalse(_STOP_OR_SHORT.__contains__, _runs(text.lower())))
    if pattern is _TITLE_TOKEN:
        return list(filterfalse(_STOP.__contains__, _runs(text.lower())))
    return list(filterfalse(_STOP.__contains__, pattern.findall(_folded(text.lower()).decode())))


def _runs(lowered: str) -> list[str]:
    """The runs of [a-z0-9] of a lower-cased text, umlauts folded and accents dropped, all
    words kept (`words` drops stop words)."""
    # The runs of [a-z0-9] are what is left when everything else becomes a space: a bytes
    # translation and a split find them in half the time of the regular expression.
    return _folded(lowered).translate(_ALNUM).decode().split()


def _folded(lowered: str) -> bytes:
    """A lower-cased text as ASCII: umlauts folded, accents dropped, other characters
    (€, dashes, quotes, emoji) left out."""
    # Chained replaces: ~20x faster than str.translate with a dict.
    folded = lowered.replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")
    if folded.isascii():
        return folded.encode()
    if _NON_ASCII_LETTER.search(folded):  # é, ñ, ø: kept as their letters
        return unicodedata.normalize("NFKD", folded).encode("ascii", "ignore")
    return folded.encode("ascii", "ignore")  # only €, dashes, quotes, emoji: nothing of a word is lost


_ALNUM = bytes(c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(256))
_SHORT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_STOP_OR_SHORT = _STOP | _SHORT  # _TOKEN's words have 2+ letters
# Not ASCII, and not a character NFKD would drop anyway (currency, dashes, quotes, emoji):
# only then is the slow NFKD needed to keep a word whole ("café" -> "cafe").
_NON_ASCII_LETTER = re.compile(r"[^\x00-\x7f€–—„“”‚‘’•·«»\u200b-\u200d\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]")


def prices(text: str, *, eur: bool | None = None) -> list[str]:
    """Amounts followed by € or EUR, as "6.90" (found from each digit run: an expression
    that starts with a word boundary would be tried at every character). `eur`: whether
    "eur" follows a digit in the text, in any case (`_eur_after_digit`), if the caller knows."""
    if eur is None:
        eur = bool(_EUR.search(text)) and _eur_after_digit(text.lower())
    if not eur:
        return _prices_before_signs(text) if "€" in text else []
    found = []
    for m in _PRICE.finditer(text):
        start = m.start()
        if start and (text[start - 1].isalnum() or text[start - 1] == "_"):
            continue  # a number inside a word
        euros, cents = m.groups()
        found.append(f"{int(euros)}.{cents or '00'}")
    return found


def _eur_after_digit(lowered: str) -> bool:
    """Whether an "eur" of a lower-cased text follows a digit, white space between: only
    then can `_PRICE` find an amount in EUR. Most texts with an "eur" have it inside a word
    ("neuer", "teuer", "Feuerwehr"), and `_PRICE` costs ~10 µs on a post's start."""
    at = lowered.find("eur")
    while at != -1:
        i = at - 1
        while i >= 0 and lowered[i].isspace():  # what \s matches
            i -= 1
        if i >= 0 and "0" <= lowered[i] <= "9":
            return True
        at = lowered.find("eur", at + 1)
    return False


def _prices_before_signs(text: str) -> list[str]:
    """`prices` of a text with € but no "eur" in any case, read backwards from each €: the
    expression tries every character it is given, ~10x slower than the search for a € that
    starts the reversed one. The same amounts: before a €, `_PRICE` matches from the
    leftmost digit that can start one; reversed, that is where the greedy digits end."""
    reversed_ = text[::-1]
    found = []
    for m in _PRICE_REVERSED.finditer(reversed_):
        start = len(text) - m.end()
        if start and (text[start - 1].isalnum() or text[start - 1] == "_"):
            continue  # a number inside a word
        cents, euros = m.groups()
        found.append(f"{int(euros[::-1])}.{cents[::-1] if cents else '00'}")
    found.reverse()
    return found


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
_HASHES: dict[str, int] = {}  # word -> key_of(word), filled with _spread_cache
_CONTENT_HASHES: dict[str, int] = {}  # the same, for words that are no filler nor a number (`post_terms`)
_CACHE_LIMIT = 50_000


def simhash(tokens: Iterable[str]) -> int:
    """64-bit SimHash of the distinct tokens (Charikar): similar texts, few differing bits.

    Counting bits per position is done with big-integer lanes instead of 64 Python
    additions per token, frequent words are cached, and the majority vote per bit is one
    bytes.translate; about 15 µs for a post."""
    return _simhash_distinct(list(dict.fromkeys(tokens))[:MAX_TOKENS])


def _simhash_distinct(distinct: list[str]) -> int:
    """`simhash` of tokens that are distinct already, at most `MAX_TOKENS` (`features`)."""
    if not distinct:
        return 0
    if len(_spread_cache) + len(distinct) > _CACHE_LIMIT:  # never in the middle of a text
        _spread_cache.clear()
        _HASHES.clear()
        _CONTENT_HASHES.clear()
    try:
        total = sum(map(_spread_cache.__getitem__, distinct))
    except KeyError:  # a word not seen yet (most posts have none: no look at each word first)
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
    _spread_cache[token] = sum(_SPREAD[j][b] for j, b in enumerate(digest))
    h = _HASHES[token] = int.from_bytes(digest, "big") >> 1  # = key_of(token)
    if token not in _FILLER and not token.isdigit():
        _CONTENT_HASHES[token] = h


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def title_similarity(a: str, b: str) -> float:
    """0..1 for two title keys: the mean of word containment (one title inside the other:
    "Adventskonzert" in "Adventskonzert des Musikvereins") and trigram Dice (spelling:
    "Advents-Konzert" vs "Adventskonzert"). 0 when both carry a distinguishing letter or
    small number and those differ: "A-Jugend" vs "B-Jugend", "Teil 1" vs "Teil 2"."""
    wa, marks_a, tri_a = _title_parts(a)
    wb, marks_b, tri_b = _title_parts(b)
    if not wa or not wb:
        return 0.0
    if marks_a and marks_b and marks_a != marks_b:
        return 0.0
    containment = len(wa & wb) / min(len(wa), len(wb))
    return (containment + _dice(tri_a, tri_b)) / 2


@lru_cache(maxsize=8192)  # a batch compares the same candidates' titles many times
def _title_parts(title_key: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    words_ = frozenset(title_key.split())
    return words_, frozenset(_marks(words_)), frozenset(_trigrams(title_key))


def _marks(words: set[str]) -> set[str]:
    return {w.lstrip("0") or "0" for w in words if len(w) == 1 or (w.isdigit() and int(w) < 10)}


def _trigrams(text: str) -> set[str]:
    joined = text.replace(" ", "")
    # zip and join: ~30% faster than slicing at each position
    return set(map("".join, zip(joined, joined[1:], joined[2:]))) or {joined}


def _dice(a: set[str], b: set[str]) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0


# --- what two alike texts say of their own -------------------------------------------------

def sequence(title: str, text: str) -> Words:
    """The content words of an item (its title and plain text) in order, as `apart`
    compares them: the title (unless it was cut from the text, which says it again) and the
    start of the text, without hashtags, mentions, stop and filler words and numbers."""
    raw = _TAG.sub(" ", _sequence_text(title, text))
    found = Words([w for w in words(raw) if w not in _FILLER and not w.isdigit()][:MAX_SEQUENCE])
    found.dates, found.times = dates(raw), times(raw)
    return found


def text_dates(title: str, text: str) -> frozenset[tuple[int, int]]:
    """`sequence(title, text).dates` without the words, ~10x faster: whether a text rule
    can hold at all, before the words are compared (`hub.store.placement`)."""
    return dates(_TAG.sub(" ", _sequence_text(title, text)))


def _sequence_text(title: str, text: str) -> str:
    return f"{'' if title.endswith(('…', '...')) else title} {text[:SEQUENCE_CHARS]}"


# --- dates a text names ------------------------------------------------------------------

_MONTHS = {"januar": 1, "jan": 1, "februar": 2, "feb": 2, "märz": 3, "maerz": 3, "mär": 3, "mrz": 3,
           "april": 4, "apr": 4, "mai": 5, "juni": 6, "jun": 6, "juli": 7, "jul": 7, "august": 8, "aug": 8,
           "september": 9, "sept": 9, "sep": 9, "oktober": 10, "okt": 10, "november": 11, "nov": 11,
           "dezember": 12, "dez": 12}
_DATE_AFTER_DAY = re.compile(r"\.\s*(?:(\d{1,2})\.|([a-zä]{3,9}))")  # from the dot of "28.": "11." or "november"
_DIGITS = "0123456789"


def dates(text: str) -> frozenset[tuple[int, int]]:
    """The calendar days a German text names, as (month, day): "28. November", "28.11.",
    "28.11.2026", both ends of "7. bis 11. Dezember" and "7.–11.12."; not a weekday, not
    "heute", not a time ("17.30 Uhr"). Read from each dot after a day's one or two digits: a
    regular expression tried at every character costs ~100x more."""
    found: set[tuple[int, int] | None] = set()
    lowered = None
    at = text.find(".")
    while at != -1:
        if at and text[at - 1] in _DIGITS:
            start = at - 2 if at > 1 and text[at - 2] in _DIGITS else at - 1
            if not (start and text[start - 1] in "0123456789.,"):  # not "1.200", not "2.11.5"
                lowered = lowered or text.lower()
                m = _DATE_AFTER_DAY.match(lowered, at)
                month = m and (int(m[1]) if m[1] else _MONTHS.get(m[2]))
                if month:
                    found.add(_day(int(text[start:at]), month))
                    before = lowered[max(0, start - 16):start]
                    if "bis" in before or "-" in before or "–" in before:
                        first = RANGE_START.search(before)  # the 7 of "7. bis 11. Dez."
                        if first:
                            found.add(_day(int(first[1]), month))
        at = text.find(".", at + 1)
    found.discard(None)
    return frozenset(found)  # type: ignore[arg-type]


_BEFORE_UHR = re.compile(r"(?:(\d{1,2})(?:[:.](\d{2}))?\s*(?:-|–|bis)\s*)?(?<![\d.,:])(\d{1,2})(?:[:.](\d{2}))?\s*$")
_CLOCK = re.compile(r"(?<![\d.,:])(\d{1,2}):(\d{2})(?![\d:])")


def times(text: str) -> frozenset[int]:
    """The times of day a German text names, in minutes after midnight: "17:30", "17.30 Uhr",
    "18 Uhr", both ends of "10 bis 13 Uhr" and "14–17 Uhr"; not a bare "17.30" (a date?)."""
    found = set()
    if ":" in text:
        found.update(int(h) * 60 + int(m) for h, m in _CLOCK.findall(text) if int(h) < 24 and int(m) < 60)
    lowered = text.lower()
    at = lowered.find("uhr")
    while at != -1:
        m = _BEFORE_UHR.search(lowered, max(0, at - 24), at)
        if m:
            for hour, minute in ((m[1], m[2]), (m[3], m[4])):
                if hour and int(hour) < 24 and int(minute or 0) < 60:
                    found.add(int(hour) * 60 + int(minute or 0))
        at = lowered.find("uhr", at + 3)
    return frozenset(found)


def _day(day: int, month: int) -> tuple[int, int] | None:
    return (month, day) if 1 <= month <= 12 and 1 <= day <= _MONTH_DAYS[month - 1] else None


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DAY_WORDS = frozenset(_MONTHS) | frozenset("montag dienstag mittwoch donnerstag freitag samstag sonnabend sonntag".split())


def _nearest(month: int, day: int, around: datetime) -> date | None:
    """The day (month, day) of the year nearest to `around`: a post names the coming
    days, or the ones just past, without a year."""
    near = around.date()
    options = []
    for year in (near.year - 1, near.year, near.year + 1):
        try:
            options.append(date(year, month, day))
        except ValueError:  # 29 February
            continue
    return min(options, key=lambda d: abs(d - near), default=None)


def dates_disagree(a: Features, b: Features, dates_a: frozenset, dates_b: frozenset) -> bool:
    """Whether two posts' dates say they are about two things: each names dates and none of
    the other's (a practice's holidays "vom 7. bis 11. Dezember" and "24. Dezember bis
    1. Januar"), or one was posted before a day they both name and the other after it (the
    invitation to a bazaar and the thanks for it)."""
    if not (dates_a and dates_b):
        return False
    shared = dates_a & dates_b
    if not shared:
        return True
    for month, day in shared:
        on_a, on_b = _nearest(month, day, a.at), _nearest(month, day, b.at)
        if on_a is None or on_a != on_b:
            continue
        if (a.at.date() < on_a < b.at.date()) or (b.at.date() < on_a < a.at.date()):
            return True
    return False


def apart(a: Words, b: Words) -> bool:
    """Whether two texts that a text rule finds alike (`sequence` of each) say different
    things: after the opening they share, the first place where they go their own ways has
    words of its own on both sides (words the other text does not have at all, also not
    as an inflection or a compound of them), and beyond what they share word for word (the
    opening, the closing, runs of `SHARED_RUN` words: a template or boilerplate; a single
    word, which may stand anywhere in another role; and a shorter run that stands in the
    same place in both, between what each says alone: "Apotheke" of "Stadt-Apotheke am
    Marktplatz" and "Löwen-Apotheke in der Bahnhofstraße", `_in_place`) they
    have little in common: fewer than 2 words, or fewer than a third of what each says alone.

    Where the texts go their own ways is found between the runs of two or more words they
    share in order: a single word in common may stand elsewhere in another role ("am
    Samstag … bis Sonntag" and "am Sonntag … bis Montag").

    "Mittagstisch heute: Schnitzel …" and "Mittagstisch heute: Linsensuppe …" are apart.
    A cross-post that only adds words ("knusprige", hashtags, "Buon appetito!") is not,
    nor is a reworded post, which agrees on most of what it says outside shared phrases."""
    head, tail = _shared_ends(a, b)
    rest_a, rest_b = a[head:len(a) - tail], b[head:len(b) - tail]
    if not rest_a or not rest_b:
        return False  # one says no more than the other
    own_a = b.lacks(rest_a)  # per word: one of its own, the other has no relative of it
    if not any(own_a):
        return False  # nowhere can both go their own ways
    own_b = a.lacks(rest_b)
    if not any(own_b):
        return False
    blocks = SequenceMatcher(None, rest_a, rest_b, autojunk=False).get_matching_blocks()
    i = j = 0  # the gaps between runs of 2+ shared words, in order (the last block is empty)
    for block in [block for block in blocks if block.size != 1]:
        mine, theirs = any(own_a[i:block.a]), any(own_b[j:block.b])
        if mine and theirs:
            break  # both go their own way: the first sign of two things
        if mine or theirs:
            return False  # one adds something where the other goes on: an addition
        i, j = block.a + block.size, block.b + block.size
    else:
        return False
    # Two things, unless they agree outside what they share word for word or in place.
    frame = {*a[:head], *a[len(a) - tail:]}
    alone_a, alone_b = [True] * len(rest_a), [True] * len(rest_b)
    for block in blocks:
        if block.size >= SHARED_RUN or block.size == 1 or _in_place(block, own_a, own_b):
            alone_a[block.a:block.a + block.size] = [False] * block.size
            alone_b[block.b:block.b + block.size] = [False] * block.size
    left_a = {w: own for w, own, alone in zip(rest_a, own_a, alone_a) if alone and w not in frame}
    left_b = {w: own for w, own, alone in zip(rest_b, own_b, alone_b) if alone and w not in frame}
    if not left_a or not left_b:
        return True
    kin_left_a, kin_left_b = Words(left_a), Words(left_b)
    agree = min(sum(map(kin_left_b.has, left_a)), sum(map(kin_left_a.has, left_b)))
    own = min(sum(left_a.values()), sum(left_b.values()))
    return agree < max(2, own / 3)


def _in_place(block, own_a: list[bool], own_b: list[bool]) -> bool:
    """Whether a run of shared words stands in the same place in both texts, between words
    each says alone on either side: the template's "abgegeben, gefunden" between "ein
    Schlüsselbund … am Spielplatz" and "eine Lesebrille … im Stadtpark"."""
    end_a, end_b = block.a + block.size, block.b + block.size
    return (0 < block.a and own_a[block.a - 1] and 0 < block.b and own_b[block.b - 1]
            and end_a < len(own_a) and own_a[end_a] and end_b < len(own_b) and own_b[end_b])


def _shared_ends(a: Words, b: Words) -> tuple[int, int]:
    """How many words two texts share at their start, and then at their end."""
    n = min(len(a), len(b))
    head = 0
    while head < n and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < n - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    return head, tail


def copied(a: Words, b: Words) -> float:
    """How much of the shorter of two texts (`sequence` of each) the other has word for
    word: the share of its words in their common opening and closing and in runs of
    `SHARED_RUN` or more words they share. A copy with hashtags added: nearly 1. Two texts
    of the same words in another order, which SimHash finds alike: little."""
    n = min(len(a), len(b))
    if not n:
        return 0.0
    head, tail = _shared_ends(a, b)
    rest_a, rest_b = a[head:len(a) - tail], b[head:len(b) - tail]
    runs = SequenceMatcher(None, rest_a, rest_b, autojunk=False).get_matching_blocks() if rest_a and rest_b else []
    return (head + tail + sum(block.size for block in runs if block.size >= SHARED_RUN)) / n


def _runs_of(words_: Sequence[str]) -> dict[tuple[str, ...], list[int]]:
    """Each run of `SHARED_RUN` words in a text -> where it starts."""
    starts: dict[tuple[str, ...], list[int]] = {}
    for start, run in enumerate(zip(*(words_[k:] for k in range(SHARED_RUN)))):
        starts.setdefault(run, []).append(start)
    return starts


def _in_runs(words_: Sequence[str], runs: dict[tuple[str, ...], list[int]], shared: set) -> list[bool]:
    """Per word: whether it stands in one of the `shared` runs."""
    in_runs = [False] * len(words_)
    for run in shared:
        for start in runs[run]:
            in_runs[start:start + SHARED_RUN] = [True] * SHARED_RUN
    return in_runs


def _is_copy(a: Words, b: Words) -> bool:
    """`copied(a, b) >= COPIED`, without the SequenceMatcher where the words of `a` that
    could be in runs shared with `b` are too few: two texts SimHash finds alike by chance
    share few runs of words, and comparing them in order costs ~100x more than this count."""
    n = min(len(a), len(b))
    if not n:
        return False  # copied: 0.0
    head, tail = _shared_ends(a, b)
    rest_a, rest_b = a[head:len(a) - tail], b[head:len(b) - tail]
    # A word of a shared run of SHARED_RUN or more words lies in a window of SHARED_RUN words
    # of `rest_a` that `rest_b` has too: those windows' words bound what `copied` counts.
    runs_a = _runs_of(rest_a)
    in_runs = _in_runs(rest_a, runs_a, runs_a.keys() & _runs_of(rest_b).keys())
    if (head + tail + sum(in_runs)) / n < COPIED:
        return False
    return copied(a, b) >= COPIED


def reads_texts(m: Match, new: Features, old: Features) -> bool:
    """Whether `confirm` reads the texts for this match: for a text rule and `time-changed`,
    and for an event rule between one merchant's events."""
    return m.rule in TEXT_RULES or m.rule == "time-changed" or (
        m.rule in EVENT_RULES and new.merchant_id == old.merchant_id)


def confirm(m: Match, new: Features, old: Features, new_words: Words, old_words: Words,
            common: frozenset[str] = frozenset()) -> Match | None:
    """`m` (from `match`) as the texts themselves confirm it: a near-duplicate must be a
    copy (`copied` at least `COPIED`; else the other text rules may still hold), and no
    text rule holds where the texts say two things: their dates disagree (`dates_disagree`)
    or their words do (`apart`). `same-details` holds only where the texts name a day or a
    price in common and agree on most of what the shorter one says (`_same_details`).
    One merchant's events of one day at different times that no other rule confirms are
    one where one text is a notice of the new time (`time-changed`)."""
    found = _confirmed(m, new, old, new_words, old_words, common)
    if found is None and _may_have_moved(new, old) and (_notice_of_new_time(new, new_words, old, old_words)
                                                         or _notice_of_new_time(old, old_words, new, new_words)):
        return Match("time-changed", 0.5)
    return found


def _confirmed(m: Match, new: Features, old: Features, new_words: Words, old_words: Words,
               common: frozenset[str]) -> Match | None:
    if m.rule == "near-duplicate-text" and not _is_copy(new_words, old_words):
        m = _as_posts(new, old, near_duplicates=False, common=common)
    if m is None or m.rule == "time-changed":
        return None  # (`confirm` asks for a notice of the new time)
    if m.rule in EVENT_RULES:
        long_texts = new.merchant_id == old.merchant_id and min(len(new_words), len(old_words)) >= LONG_TEXT_WORDS
        return None if long_texts and apart(new_words, old_words) else m
    if m.rule not in TEXT_RULES:
        return m
    if _moved(new, old) and not (new_words.times or old_words.times):
        return None  # a post that moves an event says when it now starts
    if m.rule == "same-details" and not (
            has_details(new, old, new_words.dates, old_words.dates) and _same_details(new_words, old_words)):
        return None
    if dates_disagree(new, old, new_words.dates, old_words.dates) or (
            new_words.times and old_words.times and not new_words.times & old_words.times):
        return None  # each names times of day, none of the other's: "montags 16.30 bis 18 Uhr", "mittwochs 17 bis 18.30 Uhr"
    return None if apart(new_words, old_words) else m


def says_time_changed(title: str, text: str) -> bool:
    """Whether a post is a notice that an event's time changed ("Achtung, neue Uhrzeit!"):
    its start is the newer word on the event (`hub.records`)."""
    return not TIME_CHANGE_WORDS.isdisjoint(sequence(title, text))


def _notice_of_new_time(notice: Features, notice_words: Words, event: Features, event_words: Words) -> bool:
    """Whether a text says that an event's time changed and is about that event: it names
    at least half of the longer words of the event's title, each as it is or inflected
    ("Adventsmusik … am 2. Advent" for "Adventsmusik des Posaunenchors am 2. Advent"), and
    its own title names nothing the event's title and text do not. A notice about
    "Weihnachtsfeier der Jugendfeuerwehr" or the "Kinderkonzert" moves another event of that
    day than "Weihnachtsfeier der Einsatzabteilung" or the choir's "Adventskonzert"; a
    compound's part ("Kirche" of "Kirchenchor") does not name it."""
    if TIME_CHANGE_WORDS.isdisjoint(notice_words):
        return False
    named = _long_words(event.title_key)
    if not named or 2 * sum(_inflected_in(w, notice_words) for w in named) < len(named):
        return False
    said = [*event.title_key.split(), *event_words]
    return all(_inflected_in(w, said) for w in _long_words(notice.title_key) if w not in _NOTICE_WORDS)


_NOTICE_WORDS = TIME_CHANGE_WORDS | frozenset("achtung aenderung hinweis wichtig update neue neuer neues".split())


def _long_words(title_key: str) -> list[str]:
    return [w for w in title_key.split() if len(w) >= 5 and w not in _FILLER and w not in _DAY_WORDS]


def _inflected_in(word: str, words_: Sequence[str]) -> bool:
    """Whether `words_` hold the word itself or an inflection of it ("Posaunenchor",
    "Posaunenchors"), not a compound it is part of."""
    for other in words_:
        if other == word:
            return True
        common = _shared_start(word, other)
        if common >= max(len(word), len(other)) - 3 and common >= 0.75 * min(len(word), len(other)):
            return True
    return False


def _shared_start(a: str, b: str) -> int:
    """How many letters two words share from their start."""
    common = 0
    for x, y in zip(a, b):
        if x != y:
            break
        common += 1
    return common


def has_details(new: Features, old: Features, new_dates: frozenset, old_dates: frozenset) -> bool:
    """Whether two posts name a day in common (an event's own day counts), or, under titles
    with a word in common, prices that mostly agree (two products of a café may cost the
    same, and two price lists share a price by chance): what `same-details` asks first."""
    if new_dates & old_dates or (new.event_day is not None and new.event_day == old.event_day):
        return True
    if not _share_a_word(new.title_key, old.title_key):
        return False
    shared = len(new.prices & old.prices)
    return bool(shared) and 2 * shared >= min(len(new.prices), len(old.prices))


def _same_details(a: Words, b: Words) -> bool:
    """Whether, beyond the runs of `SHARED_RUN` or more words two texts share (a template,
    or copied text), the other has (or has a relative of) at least `DETAILS_AGREE` of the
    words of the one that says less (`confirm` asks first for a day or a price in common):
    a reworded post of the same thing under its own title ("Einladung zu unserem
    Adventsbasar" / "Adventsbasar am 28. November"), not two posts of one template for the
    same day (a taster day's guitar and its drums)."""
    if min(len(set(a)), len(set(b))) < MIN_TEXT_WORDS:
        return False
    runs_a, runs_b = _runs_of(a), _runs_of(b)
    shared = runs_a.keys() & runs_b.keys()
    # The day is compared as a day: "21.11." has no word for the month of "21. November".
    left_a = Words(w for w, run in zip(a, _in_runs(a, runs_a, shared)) if not run and w not in _DAY_WORDS)
    left_b = Words(w for w, run in zip(b, _in_runs(b, runs_b, shared)) if not run and w not in _DAY_WORDS)
    short, other = (set(left_a), left_b) if len(set(left_a)) <= len(set(left_b)) else (set(left_b), left_a)
    return sum(map(other.has, short)) >= DETAILS_AGREE * len(short)


class Words(list):
    """Words in order, asked whether they hold a word or a relative of it: the same word
    inflected or compounded ("vorbestellen"/"vorbestellt", "Stollen"/"Butterstollen",
    "Dinkel"/"Dinkelbrot"), but not two compounds that only share a part ("Kürbissuppe"/
    "Tomatensuppe", "Teilzeit"/"Vollzeit")."""

    __slots__ = ("_set", "_heads", "_tails", "dates", "times")

    def __init__(self, words_: Iterable[str] = ()) -> None:
        super().__init__(words_)
        self.dates: frozenset[tuple[int, int]] = frozenset()  # see `sequence`
        self.times: frozenset[int] = frozenset()
        self._set: set[str] | None = None
        self._heads: dict[str, list[str]] = {}
        self._tails: dict[str, list[str]] = {}

    def lacks(self, words_: Sequence[str]) -> list[bool]:
        """Per word: whether these words have no relative of it (most words are simply here)."""
        if self._set is None:
            self._index()
        present = self._set
        return [w not in present and not self.has(w) for w in words_]

    def _index(self) -> None:
        self._set = set(self)
        for w in self._set:
            if len(w) >= 4:
                self._heads.setdefault(w[:4], []).append(w)
                if len(w) >= 5:
                    self._tails.setdefault(w[-5:], []).append(w)

    def has(self, word: str) -> bool:
        if self._set is None:
            self._index()
        if word in self._set:
            return True
        if len(word) < 4:
            return False
        heads = self._heads.get(word[:4])
        if heads and any(_related_heads(word, w) for w in heads):
            return True
        tails = self._tails.get(word[-5:]) if len(word) >= 5 else None
        return bool(tails) and any(w.endswith(word) or word.endswith(w) for w in tails)


def _related_heads(a: str, b: str) -> bool:
    """One word starts with the other, or both with a stem of 5+ letters that is most of
    the shorter one."""
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    if long_.startswith(short):
        return True
    common = _shared_start(a, b)
    return common >= 5 and common >= 0.75 * len(short)


# --- matching ------------------------------------------------------------------------------

def match(new: Features, old: Features, common: frozenset[str] = frozenset()) -> Match | None:
    """Whether `new` and `old` describe the same thing, by the first rule that holds.
    `common`: title words too many of the merchant's recent posts carry to tell any of them
    apart (its common keys): two posts' titles that share only such words are not alike."""
    if new.event_day is not None and old.event_day is not None:
        if new.event_day != old.event_day:
            return None  # two events on different days are two events
        return _by_url(new, old) or _as_events(new, old) or _as_event_posts(new, old, common)
    return _by_url(new, old) or _as_posts(new, old, common=common)


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


def _as_event_posts(new: Features, old: Features, common: frozenset[str]) -> Match | None:
    """Two posts of one merchant that announce an event on the same day, each on its own
    channel and under its own title, are one post where the text rules find them so (text
    alike alone is not enough for two events of different merchants). At different times
    (`_moved`), one moves the other ("Achtung, neue Uhrzeit"): `confirm` asks that a text
    names a time and, where both do, that they share one."""
    found = _as_posts(new, old, common=common)
    if found is None and _may_have_moved(new, old):
        return Match("time-changed", 0.5)  # if one is a notice of the new time (`confirm`)
    return found


def _moved(new: Features, old: Features) -> bool:
    """Two events of one day at different times."""
    return (new.event_start is not None and old.event_start is not None and not (new.all_day or old.all_day)
            and abs(new.event_start - old.event_start) > SAME_START)


def _may_have_moved(new: Features, old: Features) -> bool:
    """One merchant's events of one day at different times, the later one possibly a
    notice that the other moved (`time-changed`)."""
    return _moved(new, old) and new.merchant_id == old.merchant_id and _may_be_repost(new, old)


def _share_a_word(a: str, b: str) -> bool:
    """Cheap pre-check: without a common word two titles are never similar enough."""
    return not set(a.split()).isdisjoint(b.split())


def _places_fit(a: Features, b: Features) -> bool:
    if a.place_key and b.place_key:
        return title_similarity(a.place_key, b.place_key) >= PLACES_ALIKE
    return a.merchant_id == b.merchant_id


def _may_be_repost(new: Features, old: Features) -> bool:
    return new.source_id != old.source_id or abs(new.at - old.at) >= REPOST_GAP


def _as_posts(new: Features, old: Features, near_duplicates: bool = True,
              common: frozenset[str] = frozenset()) -> Match | None:
    if new.source_id == old.source_id or new.merchant_id != old.merchant_id or abs(new.at - old.at) > POST_WINDOW:
        return None
    distance = hamming(new.simhash, old.simhash)
    if near_duplicates and distance <= NEAR_DUPLICATE_BITS and min(new.text_words, old.text_words) >= MIN_TEXT_WORDS:
        return Match("near-duplicate-text", round(1 - distance / 64, 3))
    if new.prices and old.prices and _own_price(new.prices, old.prices) and _own_price(old.prices, new.prices):
        return None  # each names a price the other does not: two offers ("Angebot der Woche: …", "9,99 € statt 13,99 €")
    common_prices = len(new.prices & old.prices)
    if not common_prices and distance > REWORDED_TEXT_BITS:
        return None  # no rule below can hold, however alike the titles: no need to compare them
    titles = title_similarity(new.title_key, old.title_key)
    if titles and common and _only_common(new.title_key, old.title_key, common):
        titles = 0.0  # what the titles share, many of the merchant's posts share
    if (common_prices and titles >= 0.5) or (common_prices >= 2 and titles >= OTHER_TITLES):
        return Match("similar-offer", round(0.5 + titles / 4, 3))
    if (titles >= 0.7 and distance <= RELATED_TEXT_BITS) or (titles >= 0.5 and distance <= CLOSE_TEXT_BITS):
        return Match("similar-title-and-text", round(titles * (1 - distance / 64), 3))
    if distance <= REWORDED_TEXT_BITS:  # any titles: a post's own title on each channel
        return Match("same-details", round((1 + titles) * (1 - distance / 64) / 4, 3))  # if `confirm` finds them
    return None


def _own_price(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether `a` names a price that `b` does not, also not as what two of b's prices differ
    by (a saving: "39 € statt 49 €" and "nur 39 €, ihr spart 10 €")."""
    cents = sorted(_cents(p) for p in b)
    savings = {high - low for i, low in enumerate(cents) for high in cents[i + 1:]}
    return any(p not in b and _cents(p) not in savings for p in a)


def _cents(price: str) -> int:
    euros, _, cents = price.partition(".")
    return int(euros) * 100 + int(cents or 0)


def _only_common(a: str, b: str, common: frozenset[str]) -> bool:
    return set(a.split()).intersection(b.split()) <= common


def _both_events(a: Features, b: Features) -> bool:
    return a.event_start is not None and b.event_start is not None
