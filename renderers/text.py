"""The text of a post on a channel: a Jinja2 template per channel (German defaults in
renderers/templates/, or the channel's own `template:`), filled with a record's fields, and
cut to the channel's length limit at a word, keeping the link back to the platform.

Templates run in Jinja2's sandbox (a template comes from the config) with `StrictUndefined`
(a misspelled name is an error, not an empty gap). What a template sees:

    title, text (plain, cut to fit), summary, html (the sanitized body, for WordPress),
    link (the record's page on the platform), source_url (the original post), platform
    (its name), kind (post|event|offer) and kind_label (Beitrag|Veranstaltung|Angebot),
    merchant (.id .name .category .district .website), label ("Anzeige"), tags, hashtags
    ("#Adventsmarkt #Musterstadt"), event (.when .start .end .all_day .location
    .cancelled) and offer (.price .until), or None.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from html import unescape
from pathlib import Path
from typing import Any, Callable, Mapping

import nh3
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from hub.web import formatting
from renderers.base import ChannelError, ChannelRef, Outgoing

TEMPLATES = Path(__file__).parent / "templates"
KIND_LABELS = {"post": "Beitrag", "event": "Veranstaltung", "offer": "Angebot"}
ELLIPSIS = "…"
_URL = re.compile(r"https?://[^\s<>\"]+")
_TAG = re.compile(r"<[^>]*>")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_SPACES = re.compile(r"[ \t\r\f\v]+")


@lru_cache(maxsize=2)
def _environment(html: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(autoescape=html, trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)
    env.filters["datum"] = lambda dt, zone="Europe/Berlin": formatting.datum(dt, zone)
    return env


@lru_cache(maxsize=64)
def _compiled(source: str, html: bool):
    return _environment(html).from_string(source)


def check_template(source: str | None, html: bool = False) -> str | None:
    """A channel's `template:` as the config's validator sees it: a syntax error is a config problem."""
    if source is not None:
        try:
            _compiled(source, html)
        except TemplateError as exc:
            raise ValueError(f"the template does not parse: {exc}") from None
    return source


def default_template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class EventView:
    when: str
    start: datetime
    end: datetime | None
    all_day: bool
    location: str | None
    cancelled: bool


@dataclass(frozen=True)
class OfferView:
    price: str
    until: str


def context(out: Outgoing, channel: ChannelRef) -> dict[str, Any]:
    """The names a template sees (module docstring), for one delivery."""
    item, zone = out.item, channel.timezone
    event = None
    if item.event is not None:
        e = item.event
        event = EventView(when(e.start, e.end, e.all_day, zone), e.start, e.end, e.all_day, e.location, e.cancelled)
    offer = None
    if item.offer is not None:
        offer = OfferView(formatting.price(item.offer), formatting.datum(item.offer.valid_until, zone, with_time=False)
                          if item.offer.valid_until else "")
    return {"title": item.title, "text": plain(item.content_text or item.summary), "summary": item.summary,
            "html": Markup(item.content_html), "link": out.link, "source_url": item.url,
            "platform": channel.platform_name, "kind": item.kind.value,
            "kind_label": KIND_LABELS.get(item.kind.value, "Beitrag"), "merchant": out.merchant, "label": out.label,
            "tags": list(item.tags), "hashtags": hashtags(item.tags), "event": event, "offer": offer}


def when(start: datetime, end: datetime | None, all_day: bool, zone: str) -> str:
    """`Sa., 21. November 2026, 19:00 Uhr bis 22:00 Uhr`; all-day: `Sa., 21. November 2026`."""
    first = formatting.datum(start, zone, with_time=not all_day)
    if end is None or end <= start:
        return first
    if all_day:
        last = formatting.datum(end, zone, with_time=False)
        return first if last == first else f"{first} bis {last}"
    same_day = formatting.datum(start, zone, with_time=False) == formatting.datum(end, zone, with_time=False)
    return f"{first} bis {formatting.time_of_day(end, zone=zone) if same_day else formatting.datum(end, zone)}"


def hashtags(tags: tuple[str, ...] | list[str]) -> str:
    """`#Adventsmarkt #Musterstadt`: each tag as one word of letters, digits and _, once."""
    found = []
    for tag in tags:
        word = "".join(ch for ch in unicodedata.normalize("NFC", tag.strip().lstrip("#")) if ch.isalnum() or ch == "_")
        if word and not word.isdigit() and word.casefold() not in (w.casefold() for w in found):
            found.append(word)
    return " ".join(f"#{w}" for w in found)


def plain(text: str) -> str:
    """Text with its paragraphs, without runs of spaces or blank lines."""
    lines = [_SPACES.sub(" ", line).strip() for line in (text or "").replace("\r\n", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def render(source: str, values: Mapping[str, Any], *, html: bool = False) -> str:
    """The template filled in; blank-line runs folded. Raises ChannelError (permanent: the
    same record would fail again) when the template does not fit the record."""
    try:
        text = _compiled(source, html).render(**values)
    except TemplateError as exc:
        raise ChannelError(f"the channel's template failed: {exc}", permanent=True,
                           hint="fix `template:` of the channel (renderers/text.py lists the names)") from exc
    return _BLANK_LINES.sub("\n\n", text).strip()


def cut(text: str, length: int) -> str:
    """`text` cut to at most `length` characters at a word, with "…"."""
    if len(text) <= length:
        return text
    if length <= 1:
        return ELLIPSIS[:length]
    head = text[:length - 1]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space >= length // 3:  # at a word, unless that would lose most of it (one very long word)
        head = head[:space]
    return head.rstrip(" \n,;:.-–") + ELLIPSIS


def fit(source: str, values: Mapping[str, Any], limit: int, measure: Callable[[str], int], *,
        html: bool = False) -> str:
    """The template filled in so that `measure` of it is at most `limit`: the text is cut at
    a word (then the title), never the rest (the link back stays). As a last resort the
    whole is cut, keeping the link at its end."""
    rendered = render(source, values, html=html)
    if measure(rendered) <= limit:
        return rendered
    for name in ("text", "title"):
        value = values.get(name) or ""
        if not isinstance(value, str) or not value:
            continue
        best = _longest(source, values, name, limit, measure, html)
        values = {**values, name: best}
        rendered = render(source, values, html=html)
        if measure(rendered) <= limit:
            return rendered
    return _hard_cut(rendered, limit, measure, values.get("link"))


def _longest(source: str, values: Mapping[str, Any], name: str, limit: int, measure: Callable[[str], int],
             html: bool) -> str:
    """The longest cut of `values[name]` with which the rendered whole fits ("" if none does)."""
    value, lo, hi, best = values[name], 0, len(values[name]), ""
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = cut(value, mid) if mid else ""
        if measure(render(source, {**values, name: candidate}, html=html)) <= limit:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return best


def _hard_cut(text: str, limit: int, measure: Callable[[str], int], link: str | None) -> str:
    tail = f"\n{link}" if link and link in text else ""
    body = text.replace(link, "").rstrip() if tail else text
    while body and measure(body + ELLIPSIS + tail) > limit:
        body = body[:-max(1, len(body) // 20)]
    return body + ELLIPSIS + tail


# --- measuring, per channel ------------------------------------------------------------------------

def mastodon_length(text: str, url_length: int = 23) -> int:
    """Characters as Mastodon counts them: every URL as `url_length`."""
    return len(_URL.sub("x" * url_length, text))


TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "blockquote",
                 "tg-spoiler", "span", "tg-emoji"}


def telegram_html(html: str) -> str:
    """Only the tags Telegram's HTML mode allows, `& < >` escaped everywhere else, line
    breaks as newlines (Telegram rejects <br> and <p>)."""
    html = re.sub(r"<br\s*/?>", "\n", html, flags=re.IGNORECASE)
    return nh3.clean(html, tags=TELEGRAM_TAGS, clean_content_tags=set(),
                     attributes={"a": {"href"}, "span": {"class"}, "blockquote": {"expandable"},
                                 "tg-emoji": {"emoji-id"}},
                     link_rel=None, url_schemes={"http", "https", "tg", "mailto"}, strip_comments=True)


def telegram_length(html: str) -> int:
    """Characters after entity parsing, as Telegram counts them (UTF-16 code units)."""
    visible = unescape(_TAG.sub("", html))
    return len(visible.encode("utf-16-le")) // 2


def visible_text(html: str) -> str:
    return unescape(_TAG.sub("", html))
