"""The newsletter mail: HTML (Jinja2, CSS inlined with css-inline) and plain text, German.

Rendering ten thousand mails one by one would inline the same CSS ten thousand times. So an
edition is rendered in pieces (`templates/mail.html`, `mail.txt`): the frame once, each
record's block once, section and group headings once; css-inline inlines each piece once
(`inline_fragment`, the frame with `inline`, which keeps the @media rules in a <style>
for phones). A subscriber's mail is those pieces joined in their order, and the links only
they may use (preferences, unsubscribe) are filled in last.

Images are the hub's own copies (hub.media) at absolute URLs; every link leads to the
record's page on the platform.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping
from zoneinfo import ZoneInfo

import css_inline
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hub.config import ChannelConfig, Settings
from hub.newsletter.digest import Digest, Entry
from hub.newsletter.mime import Fillable
from hub.newsletter.options import NewsletterOptions
from hub.web import formatting

TEMPLATES = Path(__file__).parent / "templates"
LOCALE = "de_DE"
SUMMARY_CHARS = 280
BODY, MANAGE, UNSUBSCRIBE = "@@BODY@@", "@@MANAGE@@", "@@UNSUBSCRIBE@@"
_SPACES = re.compile(r"\s+")


@dataclass
class Mail:
    """A subscriber's mail with their links still to fill in: `personal` for a page or a
    file, `wire` for sending (encoded once, however many subscribers get this mail)."""

    html: str
    text: str
    _wire: tuple[Fillable, Fillable] | None = field(default=None, repr=False)

    def wire(self, manage_url: str, unsubscribe_url: str) -> tuple[bytes, bytes]:
        """(text, html) in quoted-printable with the subscriber's own links."""
        if self._wire is None:
            self._wire = (Fillable(self.text, (MANAGE, UNSUBSCRIBE)), Fillable(self.html, (MANAGE, UNSUBSCRIBE)))
        links = {MANAGE: manage_url, UNSUBSCRIBE: unsubscribe_url}
        return self._wire[0].fill(links), self._wire[1].fill(links)

    def personal(self, manage_url: str, unsubscribe_url: str) -> tuple[str, str]:
        """(html, text) with the subscriber's own links."""
        html, text = (part.replace(MANAGE, manage_url).replace(UNSUBSCRIBE, unsubscribe_url)
                      for part in (self.html, self.text))
        return html, text


@dataclass(frozen=True)
class EntryView:
    """A record as the mail shows it."""

    title: str
    link: str
    merchant: str
    label: str | None
    when: str
    summary: str
    image: str | None
    alt: str
    cancelled: bool


def mail_environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


class EditionRenderer:
    """Renders one edition's mails. `images`: original image URL -> the absolute URL of the
    hub's copy (hub.media), for the records of the edition."""

    def __init__(self, settings: Settings, channel: ChannelConfig, edition_date: datetime,
                 images: Mapping[str, str] | None = None, env: Environment | None = None) -> None:
        opts: NewsletterOptions = channel.options
        self.settings = settings
        self.base = settings.platform.base_url.rstrip("/")
        self.zone = settings.platform.timezone
        self.merchants = {m.id: m for m in settings.merchants}
        self.images = dict(images or {})
        env = env or mail_environment()
        self._html = env.get_template("mail.html").module
        self._text = env.get_template("mail.txt").module
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False, minify_css=True)
        self._css = (TEMPLATES / "mail.css").read_text(encoding="utf-8")
        frame = {"town": settings.platform.name, "title": opts.name, "subject": opts.subject,
                 "date": formatting.day_heading(edition_date, zone=self.zone, locale=LOCALE,
                                                today=edition_date.astimezone(ZoneInfo(self.zone)).date()),
                 "description": opts.description, "platform_url": self.base + "/",
                 "imprint_url": opts.imprint_url or settings.fetcher.contact_url, "css": self._css}
        self._frame_html = self._inliner.inline(str(self._html.frame(frame))).split(BODY)
        self._frame_text = str(self._text.frame(frame)).split(BODY)
        self._pieces: dict[tuple, tuple[str, str]] = {}

    def mail(self, digest: Digest) -> Mail:
        html, text = [self._frame_html[0]], [self._frame_text[0]]
        for section in digest.sections:
            self._add(html, text, ("section", section.title), lambda s=section: (self._html.section(s.title),
                                                                                  self._text.section(s.title)))
            for group in section.groups:
                if len(section.groups) > 1 or group.category:
                    self._add(html, text, ("group", group.title),
                              lambda g=group: (self._html.group(g.title), self._text.group(g.title)))
                for entry in group.entries:
                    self._add(html, text, ("entry", entry.id),
                              lambda e=entry: (self._html.entry(self.view(e)), self._text.entry(self.view(e))))
        html.append(self._frame_html[1])
        text.append(self._frame_text[1])
        return Mail("".join(html), "".join(text))

    def _add(self, html: list[str], text: list[str], key: tuple, make) -> None:
        piece = self._pieces.get(key)
        if piece is None:
            raw_html, raw_text = make()
            piece = self._pieces[key] = (self._inliner.inline_fragment(str(raw_html), self._css), str(raw_text))
        html.append(piece[0])
        text.append(piece[1])

    def view(self, entry: Entry) -> EntryView:
        item = entry.record.item
        merchant = self.merchants.get(item.merchant_id)
        image = next((m for m in item.media if m.type == "image" and m.url in self.images), None)
        title = item.title or "Ohne Titel"
        return EntryView(
            title=title, link=f"{self.base}/items/{entry.id}",
            merchant=merchant.name if merchant else item.merchant_id, label=entry.record.label,
            when=self._when(entry), summary=shorten(item.summary or item.content_text, SUMMARY_CHARS),
            image=self.images[image.url] if image else None,
            alt=(image.alt if image and image.alt else f"Bild zu „{title}“"),
            cancelled=bool(item.event and item.event.cancelled))

    def _when(self, entry: Entry) -> str:
        item = entry.record.item
        if item.event:
            return event_when(item.event, self.zone)
        if item.offer:
            price = formatting.price(item.offer, locale=LOCALE)
            until = item.offer.valid_until
            valid = f"gültig bis {formatting.short_date(until, zone=self.zone, locale=LOCALE)}" if until else ""
            return " · ".join(p for p in (price, valid) if p)
        return ""


def category_title(category: str) -> str:
    """A category as residents read it (the pages' names when they are there)."""
    try:
        from hub.web.pages import category_name
    except ImportError:
        return category.replace("-", " ").replace("_", " ").capitalize()
    return category_name(category)


def event_when(event, zone: str) -> str:
    """`Sa., 21. November 2026, 19:30 Uhr` plus its end and place: `… 19:30–22:00 Uhr · Stadthalle`."""
    timed = not event.all_day
    when = formatting.date_time(event.start, timed, zone=zone, locale=LOCALE)
    if event.end:
        tz = ZoneInfo(zone)
        if event.end.astimezone(tz).date() == event.start.astimezone(tz).date():
            if timed and event.end != event.start:
                when = formatting.date_time(event.start, False, zone=zone, locale=LOCALE) + ", " + \
                    formatting.time_range(event.start, event.end, zone=zone, locale=LOCALE)
        else:
            when += " bis " + formatting.date_time(event.end, timed, zone=zone, locale=LOCALE)
    return f"{when} · {event.location}" if event.location else when


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut at a word boundary to at most `limit` characters."""
    text = _SPACES.sub(" ", text or "").strip()
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:.-–")
    return cut + " …"


def image_urls(entries: Iterable[Entry], pictures, base: str) -> dict[str, str]:
    """Original URL -> absolute URL of the hub's copy, for each record's first image.
    `pictures`: hub.media.MediaStore.pictures (the 480 px variant when it is stored, else
    the signed route that stores it on first view); `base`: the platform's address."""
    wanted = [next((m.url for m in e.record.item.media if m.type == "image"), None) for e in entries]
    found = pictures([u for u in wanted if u])
    base = base.rstrip("/")
    return {url: base + (p.jpeg_srcset.split(",")[0].split(" ")[0] if p.jpeg_srcset else p.src)
            for url, p in found.items()}
