"""Full-text search as residents type it: German words by their stems, pure functions.

SQLite's FTS5 has no German stemmer, so the hub stems the text itself (Snowball's German
stemmer, PyStemmer) and indexes the stems (`stem_text`); a resident's query goes through
the same function (`match_query`), so "Konzerte" finds "Konzert" and "Weihnachtsmärkte"
finds "Weihnachtsmarkt". PostgreSQL stems with its own `german` configuration
(hub.store.searchindex); both read the query the same way (`parse`).

Folding, before stemming: case (and "ß" as "ss"), accents and umlauts ("Café" is "cafe",
"Müller" and "Mueller" are one word: Snowball's German stemmer drops umlauts anyway). A
hyphenated compound counts as its parts and as the whole word: "Sommer-Fest" is found by
"Sommerfest", by "Fest" and by "Sommer-Fest". Stop words ("der", "und", "am") are neither
indexed nor searched: "Konzert am Samstag" finds a "Konzert" on "Samstag".

The query language is a resident's, the one search engines taught them: every word must
appear; `"Tag der offenen Tür"` is a phrase; `Konzert OR Lesung` either (OR joins the words
beside it: `Kino OR Theater heute`); `-Kirche` excludes. Nothing a resident types is FTS
syntax: quotes, `*`, `NEAR(`, `:`, `^`, parentheses are read as the words around them, so no
query can fail or reach further than its words.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Mapping

import Stemmer
from markupsafe import Markup, escape

MAX_QUERY_CHARS = 1000  # of a query, the rest is ignored: no resident types more
MAX_TERMS = 16  # words, phrases or OR groups of a query that count; the rest is ignored
ELLIPSIS = "…"

# A word: letters and digits; a compound: words joined by hyphens ("Sommer-Fest", "E-Bike").
_WORD = re.compile(r"[^\W_]+")
_COMPOUND = re.compile(r"[^\W_]+(?:[-‐‑][^\W_]+)*")
# Marks that never belong to a word or compound, taken off a text's words (`stem_text`).
_EDGES = '!"#$%&\'()*+,./:;<=>?@[\\]^_`{|}~«»„“”‚‘’–—…·•'  # noqa: RUF001 - German quotes and dashes
_STEMS: dict[str, str] = {}  # word as written -> its stem, "" for a stop word (`_stems_of`)
MAX_STEMS = 100_000  # words remembered (a few MB)
# The query's marks: a phrase in quotes (the closing quote may be missing), a compound,
# a "-" that excludes (at the start of a word, after a space), an OR between terms.
_QUERY = re.compile(r'(?P<neg>(?:(?<=\s)|^)-)?(?:"(?P<phrase>[^"]*)"?|(?P<word>[^\W_]+(?:[-‐‑][^\W_]+)*))')

# Snowball's German stop words, folded like the text; less "weg" (away), which is also a path.
STOP_WORDS = frozenset("""
aber alle allem allen aller alles als also am an ander andere anderem anderen anderer anderes anderm andern
anderr anders auch auf aus bei bin bis bist da damit dann das dass dasselbe dazu dein deine deinem deinen
deiner deines dem demselben den denn denselben der derer derselbe derselben des desselben dessen dich die
dies diese dieselbe dieselben diesem diesen dieser dieses dir doch dort du durch ein eine einem einen einer
eines einig einige einigem einigen einiger einiges einmal er es etwas euch euer eure eurem euren eurer
eures fur hab habe haben hat hatte hatten hier hin hinter ich ihm ihn ihnen ihr ihre ihrem ihren ihrer
ihres im in indem ins ist jede jedem jeden jeder jedes jene jenem jenen jener jenes jetzt kann kein keine
keinem keinen keiner keines konnen konnte machen man manche manchem manchen mancher manches mein meine
meinem meinen meiner meines mich mir mit muss musste nach nicht nichts noch nun nur ob oder ohne sehr sein
seine seinem seinen seiner seines selbst sich sie sind so solche solchem solchen solcher solches soll
sollte sondern sonst uber um und uns unsere unserem unseren unser unseres unter viel vom von vor wahrend
war waren warst was weil weiter welche welchem welchen welcher welches wenn werde werden wie wieder
will wir wird wirst wo wollen wollte wurde wurden zu zum zur zwar zwischen
""".split())


# --- words and stems -------------------------------------------------------------------------

_local = threading.local()  # a PyStemmer stemmer is not safe to share between threads


def _stemmer() -> Stemmer.Stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("german")
    return stemmer


@lru_cache(maxsize=65536)  # a town's texts repeat their words: folding costs more than the look-up
def fold(word: str) -> str:
    """A word as compared: case folded ("ß" is "ss"), without accents or umlauts."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def stem(word: str) -> str:
    """The stem of one word (letters and digits), folded: "Weihnachtsmärkte" -> "weihnachtsmarkt"."""
    return _stemmer().stemWord(fold(word))


def _kept(word: str) -> str | None:
    """The stem of a word the index keeps, None for a stop word."""
    return None if fold(word) in STOP_WORDS else stem(word)


def stem_text(text: str | None) -> str:
    """What goes into the SQLite index for a text: its stems in order, separated by
    spaces, stop words left out; each hyphenated compound's parts in its place and the
    whole word at the end (FTS5 has no two words at one position: inline, the whole word
    would stand between a phrase's words).

    Every stored item's text passes here at ingest (before the write lock), so it is made
    cheap: words are split at spaces and their marks stripped (a regular expression only
    for the rare word that needs one), and each distinct word is folded and stemmed once
    per process (`_STEMS`)."""
    words, wholes = [], []
    for token in (text or "").split():
        word = token.strip(_EDGES)
        if word.isalnum():  # exactly what [^\W_]+ matches: most words, once a comma is off
            words.append(word)
        elif word:  # marks inside, a hyphen, signs of other scripts
            for compound in _COMPOUND.findall(word):
                parts = _WORD.findall(compound)
                words += parts
                if len(parts) > 1:
                    wholes.append("".join(parts))
    stems = _stems_of(words)
    if wholes:
        stems += [stem(w) for w in wholes]
    return " ".join(stems)


def _stems_of(words: list[str]) -> list[str]:
    """The stems of these words, in order, stop words left out."""
    global _STEMS
    known = _STEMS
    new = [w for w in dict.fromkeys(words) if w not in known]
    if new:
        if len(known) > MAX_STEMS:  # a long-running process meets ever new words: start over
            known = _STEMS = {}  # (a new dict: another thread may be reading the old one)
        folded = [fold(w) for w in new]
        stems = _stemmer().stemWords(folded)
        known.update((w, "" if f in STOP_WORDS else s) for w, f, s in zip(new, folded, stems))
    return [s for w in words if (s := known[w])]


def merchant_token(merchant_id: str) -> str:
    """The token a record's index row carries for each merchant it has an origin from: a
    word no text contains, so a query can ask for a merchant's records by name
    (`match_query(..., merchants=...)`) without the name being indexed (it may change)."""
    return "mx" + hashlib.blake2b(merchant_id.encode(), digest_size=6).hexdigest()


# --- reading a query ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Term:
    """One word or phrase of a query: the words as typed (for PostgreSQL's own stemmer)
    and the stems they must appear as, in this order (a phrase, or a compound's parts)."""

    words: tuple[str, ...]
    stems: tuple[str, ...]


@dataclass(frozen=True)
class Query:
    """A resident's query: every group must match (one of its terms), no excluded term may."""

    groups: tuple[tuple[Term, ...], ...]
    excluded: tuple[Term, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.groups)  # exclusions alone find nothing: they would list everything

    @property
    def stems(self) -> frozenset[str]:
        """Every stem the query looks for: what `highlight` marks."""
        return frozenset(s for group in self.groups for term in group for s in term.stems)


def parse(q: str | None) -> Query:
    """Read a resident's query (see the module docstring); never fails, whatever `q` holds."""
    groups: list[list[Term]] = []
    excluded: list[Term] = []
    joined = False  # the last group takes the next term ("OR" came between them)
    for m in _QUERY.finditer(_clean(q)):
        if m.group("word") is not None and m.group("word").casefold() == "or" and not m.group("neg"):
            joined = bool(groups)
            continue
        terms = _terms(m.group("phrase") if m.group("phrase") is not None else m.group("word"),
                       phrase=m.group("phrase") is not None)
        if not terms:  # stop words only, or an empty phrase
            continue
        if m.group("neg"):
            excluded += terms
        elif joined:
            groups[-1] += terms
        else:
            groups.append(terms)
        joined = False
        if len(groups) + len(excluded) >= MAX_TERMS:
            break
    return Query(tuple(map(tuple, groups)), tuple(excluded))


def _clean(q: str | None) -> str:
    """At most `MAX_QUERY_CHARS`, without control characters (a NUL breaks PostgreSQL)."""
    text = (q or "")[:MAX_QUERY_CHARS]
    return "".join(c if c.isprintable() else " " for c in text)


def _terms(text: str, *, phrase: bool) -> list[Term]:
    """The terms one word or phrase of the query stands for: a phrase is one term (a
    compound in it as its parts); a compound is the whole word or its parts in a row
    ("Sommer-Fest": "sommerfest", or "sommer fest")."""
    compounds = _COMPOUND.findall(text)
    if phrase:
        words = [w for c in compounds for w in _WORD.findall(c)]
        stems = tuple(s for w in words if (s := _kept(w)))
        return [Term(tuple(words), stems)] if stems else []  # PostgreSQL counts the stop words' places
    terms = []
    for compound in compounds:  # one: a word of the query is one compound
        parts = _WORD.findall(compound)
        if len(parts) > 1:
            terms.append(Term(("".join(parts),), (stem("".join(parts)),)))
            kept = [(w, s) for w in parts if (s := _kept(w))]
            if kept:
                terms.append(Term(tuple(w for w, _ in kept), tuple(s for _, s in kept)))
        elif s := _kept(parts[0]):
            terms.append(Term((parts[0],), (s,)))
    return terms


def match_query(q: str | None, *, merchants: Mapping[str, str] | None = None) -> str | None:
    """The FTS5 MATCH expression for a resident's query, or None when it has no word to
    search for (nothing, stop words, marks, only exclusions: then nothing matches).

    Built from stems only, each in double quotes: a stem is letters and digits, so the
    expression is always valid FTS5 and says nothing the resident did not. `merchants`
    (id -> name): a group also matches the records of a merchant whose name (or id) has
    the group's words (hub.store.searchindex indexes `merchant_token`s)."""
    query = parse(q)
    if not query:
        return None
    expression = " AND ".join(_group(group, merchants) for group in query.groups)
    if query.excluded:
        expression = f"({expression}) NOT {_either([_phrase(t) for t in query.excluded], always=True)}"
    return expression


def tsquery_text(q: str | None, *, merchants: Mapping[str, str] | None = None) -> str | None:
    """The same query for PostgreSQL's `to_tsquery('german', ...)`, which stems the words
    itself (stop words included, so a phrase keeps their places), or None as for
    `match_query`. Each word is quoted and is letters and digits only: always valid."""
    query = parse(q)
    if not query:
        return None
    groups = [_either([_lexemes(t) for t in group] + [f"'{merchant_token(m)}'" for m in _named(group, merchants)],
                      sep=" | ") for group in query.groups]
    expression = " & ".join(groups)
    if query.excluded:
        expression += " & !" + _either([_lexemes(t) for t in query.excluded], always=True, sep=" | ")
    return expression


def _group(terms: tuple[Term, ...], merchants: Mapping[str, str] | None) -> str:
    names = [f'merchant : "{merchant_token(m)}"' for m in _named(terms, merchants)]
    return _either([_phrase(t) for t in terms] + names)


def _either(alternatives: list[str], *, always: bool = False, sep: str = " OR ") -> str:
    return alternatives[0] if len(alternatives) == 1 and not always else "(" + sep.join(alternatives) + ")"


def _phrase(term: Term) -> str:
    return '"' + " ".join(term.stems) + '"'


def _lexemes(term: Term) -> str:
    return " <-> ".join(f"'{w}'" for w in term.words)


def _named(terms: tuple[Term, ...], merchants: Mapping[str, str] | None) -> list[str]:
    """The merchants (ids, sorted) whose name or id has every stem of one of `terms`."""
    if not merchants:
        return []
    return sorted(m for m, name in merchants.items()
                  if any(set(t.stems) <= _name_stems(m, name) for t in terms))


@lru_cache(maxsize=4096)
def _name_stems(merchant_id: str, name: str | None) -> frozenset[str]:
    return frozenset(stem_text(f"{name or ''} {merchant_id.replace('_', ' ')}").split())


# --- highlighting ------------------------------------------------------------------------------

def highlight(text: str | None, q: str | None, *, limit: int | None = None) -> Markup:
    """`text`, escaped, with every word whose stem the query looks for in <mark>…</mark>
    (a compound as a whole when the whole matches, else its matching parts). `limit`: at
    most that many characters of the text, around the first match, cut at word
    boundaries and marked with "…" where cut."""
    text = text or ""
    wanted = parse(q).stems
    spans = list(_matches(text, wanted)) if wanted else []
    start, end = (0, len(text)) if limit is None or len(text) <= limit else _window(text, spans, limit)
    out, at = [Markup(ELLIPSIS) if start > 0 else Markup("")], start
    for a, b in spans:
        if a < start or b > end:
            continue
        out += [escape(text[at:a]), Markup("<mark>"), escape(text[a:b]), Markup("</mark>")]
        at = b
    out.append(escape(text[at:end]))
    if end < len(text):
        out.append(Markup(ELLIPSIS))
    return Markup("").join(out)


def _matches(text: str, wanted: frozenset[str]) -> Iterator[tuple[int, int]]:
    for m in _COMPOUND.finditer(text):
        words = list(_WORD.finditer(m.group()))
        if len(words) > 1 and stem("".join(w.group() for w in words)) in wanted:
            yield m.span()
            continue
        for w in words:
            if stem(w.group()) in wanted:
                yield m.start() + w.start(), m.start() + w.end()


def _window(text: str, spans: list[tuple[int, int]], limit: int) -> tuple[int, int]:
    """A stretch of at most `limit` characters of `text`, the first match a quarter of
    the way in, both ends at spaces where the text has some."""
    first = spans[0][0] if spans else 0
    start = max(0, min(first - limit // 4, len(text) - limit))
    if start > 0:
        space = text.find(" ", start, first if spans else start + limit // 4)
        start = space + 1 if space >= 0 else start
    end = min(len(text), start + limit)
    if end < len(text):
        space = text.rfind(" ", max(start, spans[0][1] if spans else start), end)
        end = space if space > start else end
    return start, end
