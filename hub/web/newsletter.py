"""The newsletter's pages (issue 15), in the platform's look:

    GET  /newsletter                        the form (`?channel=` picks a newsletter)
    POST /newsletter                        sign up: the confirmation mail goes out at once
    GET  /newsletter/confirm/{token}        the link of that mail: the subscription starts
    GET  /newsletter/preferences/{token}    the topics, from the link in every mail
    POST /newsletter/preferences/{token}    ... saved
    GET  /newsletter/unsubscribe/{token}    a page with a button, for people who click the link
    POST /newsletter/unsubscribe/{token}    RFC 8058 one-click: no login, no cookie, no CSRF token,
                                            any body (mail clients send List-Unsubscribe=One-Click)
    GET  /newsletter/preview/{channel}      the next edition as it would be sent now (`?format=text`)

Nothing here sets a cookie or is cached (the answers are personal: Cache-Control no-store),
and no page is for search engines. Forms arrive URL-encoded and are read by hand (no
multipart parser is needed for three fields).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, FileSystemLoader

from hub.config import ChannelConfig, Settings
from hub.newsletter.job import NewsletterJob
from hub.newsletter.options import newsletter_channel, newsletter_channels
from hub.newsletter.render import TEMPLATES, category_title
from hub.newsletter.store import Preferences
from hub.newsletter.subscribe import Answer, Choices, Desk, Limits, Link, choices, consent_text
from hub.store import Store
from hub.web import formatting, i18n
from hub.web.i18n import gettext as _
from hub.web.templating import CompiledTemplates

log = logging.getLogger("hub.newsletter")
_COMPILED = CompiledTemplates()
WEB_TEMPLATES = Path(__file__).parent / "templates"
MAX_FORM_BYTES = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}


def newsletter_router(settings: Settings, store: Store, *, limits: Limits = Limits(), media=None,
                      site_templates: Jinja2Templates | None = None,
                      guard: Callable[..., Any] | None = None) -> APIRouter:
    """`site_templates`: the resident pages' templates, whose footer links to the form when a
    newsletter is configured (`newsletter_url`); `guard`: a dependency the preview must pass
    (the cockpit's admin login, once it has one for paths outside /admin)."""
    router = APIRouter(include_in_schema=False)
    desk = Desk(settings, store, limits=limits)
    pages = _Pages(settings, desk)
    if newsletter_channels(settings):
        for env in (pages.templates.env, *([site_templates.env] if site_templates else [])):
            env.globals["newsletter_url"] = "/newsletter"
    preview_job = NewsletterJob(settings, store, owner="preview", pictures=media.pictures if media else None)

    @router.get("/newsletter")
    def form(request: Request) -> Response:
        channel = pages.channel(request.query_params.get("channel"))
        return pages.form(request, channel)

    @router.post("/newsletter")
    async def sign_up(request: Request) -> Response:
        fields = await _form(request)
        channel = newsletter_channel(settings, _one(fields, "channel")) or pages.channel(None)
        wanted = pages.choices(channel).preferences(fields.get("kinds", []), fields.get("categories", []),
                                                    fields.get("merchants", []))
        answer = await desk.sign_up(channel.id, _one(fields, "email"), wanted, honeypot=_one(fields, "website"))
        return pages.answered(request, answer, _one(fields, "email"), wanted)

    @router.api_route("/newsletter/confirm/{token}", methods=["GET", "POST"])
    def confirm(request: Request, token: str) -> Response:
        return pages.confirmed(request, desk.confirm(token))

    @router.get("/newsletter/preferences/{token}")
    def preferences(request: Request, token: str) -> Response:
        return pages.preferences(request, token, desk.managed(token), saved=False)

    @router.post("/newsletter/preferences/{token}")
    async def save_preferences(request: Request, token: str) -> Response:
        fields = await _form(request)
        return await asyncio.to_thread(_save, request, token, fields)

    def _save(request: Request, token: str, fields: dict[str, list[str]]) -> Response:
        found = desk.managed(token)
        if found.subscriber is None:
            return pages.preferences(request, token, found, saved=False)
        chosen = pages.choices(pages.channel(found.subscriber.channel_id)).preferences(
            fields.get("kinds", []), fields.get("categories", []), fields.get("merchants", []))
        return pages.preferences(request, token, desk.save(token, chosen), saved=True)

    @router.get("/newsletter/unsubscribe/{token}")
    def leaving(request: Request, token: str) -> Response:
        return pages.leaving(request, token, desk.leaving(token))

    @router.post("/newsletter/unsubscribe/{token}")
    def unsubscribe(request: Request, token: str) -> Response:
        return pages.unsubscribed(request, desk.unsubscribe(token))

    dependencies = [Depends(guard)] if guard else []

    @router.get("/newsletter/preview/{channel_id}", dependencies=dependencies)
    def preview(channel_id: str, format: str = "html") -> Response:
        channel = newsletter_channel(settings, channel_id)
        if channel is None:
            raise HTTPException(404, _("Diesen Newsletter gibt es nicht."))
        draft = preview_job.draft(channel)
        if draft.mail is None:
            since = formatting.date_time(draft.since, zone=settings.platform.timezone)
            note = (f"Zurzeit gäbe es keine Ausgabe: seit der letzten ({since}) ist nichts Neues erschienen "
                    f"({draft.upcoming} kommende Veranstaltungen stünden noch darin).")
            return PlainTextResponse(note, headers=NO_STORE)
        link = f"{settings.platform.base_url.rstrip('/')}/newsletter?channel={channel.id}"
        html, text = draft.mail.personal(link, link)
        if format == "text":
            return PlainTextResponse(text, headers=NO_STORE)
        # The mail's own look: inline styles (the site's policy forbids them) and images from the hub.
        csp = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' http: https:; base-uri 'none'"
        return HTMLResponse(html, headers={**NO_STORE, "Content-Security-Policy": csp})

    return router


class _Pages:
    """The HTML answers, in the site's look (`base.html` of hub.web)."""

    def __init__(self, settings: Settings, desk: Desk) -> None:
        self.settings = settings
        self.desk = desk
        self.base = settings.platform.base_url.rstrip("/")
        self.templates = Jinja2Templates(directory=TEMPLATES)
        self.templates.env.loader = ChoiceLoader([FileSystemLoader(TEMPLATES), FileSystemLoader(WEB_TEMPLATES)])
        self.templates.env.bytecode_cache = _COMPILED
        i18n.install(self.templates.env, settings.platform.timezone)
        self.templates.env.globals.update(platform=settings.platform, merchants={m.id: m for m in settings.merchants})
        self._choices: dict[str, Choices] = {}

    def channel(self, channel_id: str | None) -> ChannelConfig:
        channels = newsletter_channels(self.settings)
        if not channels:
            raise HTTPException(404, _("Hier gibt es keinen Newsletter."))
        return next((c for c in channels if c.id == channel_id), channels[0])

    def choices(self, channel: ChannelConfig) -> Choices:
        if channel.id not in self._choices:
            self._choices[channel.id] = choices(self.settings, channel, category_title)
        return self._choices[channel.id]

    def form(self, request: Request, channel: ChannelConfig, *, email: str = "", chosen: Preferences | None = None,
             problem: str | None = None, status: int = 200) -> Response:
        return self._page(request, "page_form.html", _("Newsletter"), status, channel=channel,
                          newsletters=newsletter_channels(self.settings), choices=self.choices(channel),
                          chosen=chosen or Preferences(), email=email, problem=problem,
                          consent=consent_text(self.settings, channel))

    def answered(self, request: Request, answer: Answer, email: str, wanted: Preferences) -> Response:
        channel = answer.channel or self.channel(None)
        if answer.result == "invalid":
            return self.form(request, channel, email=email, chosen=wanted, problem=answer.problem, status=400)
        if answer.result == "busy":
            return self.message(request, _("Gerade geht es nicht"), [_(
                "Im Moment melden sich sehr viele Menschen an. Bitte versuchen Sie es in einigen Minuten noch "
                "einmal.")], status=429, headers={"Retry-After": "600"})
        if answer.result == "failed":
            return self.message(request, _("Das hat nicht geklappt"), [_(
                "Die Bestätigungs-E-Mail konnte gerade nicht verschickt werden. Bitte versuchen Sie es in ein paar "
                "Minuten noch einmal.")], status=503, headers={"Retry-After": "300"})
        return self.message(request, _("Fast geschafft: bitte bestätigen"), [
            _("Wir haben Ihnen eine E-Mail geschickt. Bitte klicken Sie auf den Link darin, um die Anmeldung zum "
              "Newsletter „%(title)s“ zu bestätigen.", title=channel.options.name),
            _("Ohne Bestätigung bekommen Sie keine weiteren E-Mails, und Ihre Adresse wird nach 7 Tagen gelöscht. "
              "Keine E-Mail bekommen? Sehen Sie bitte auch im Spam-Ordner nach.")])

    def confirmed(self, request: Request, link: Link) -> Response:
        if link.state != "ok" or link.subscriber is None:
            return self._broken(request, link, confirm=True)
        sub = link.subscriber
        channel = self.channel(sub.channel_id)
        links = self.desk.links(sub, absolute=False)
        lines = [_("Vielen Dank! Ab der nächsten Ausgabe bekommen Sie den Newsletter „%(title)s“ an %(address)s.",
                   title=channel.options.name, address=masked(sub.email)) if link.changed else
                 _("Ihre Anmeldung zum Newsletter „%(title)s“ war schon bestätigt.", title=channel.options.name)]
        return self.message(request, _("Anmeldung bestätigt"), lines,
                            links=[(links["manage"], _("Themen ändern")), (i18n.url("/"), _("Zur Startseite"))])

    def preferences(self, request: Request, token: str, link: Link, *, saved: bool) -> Response:
        if link.state != "ok" or link.subscriber is None:
            return self._broken(request, link)
        sub = link.subscriber
        channel = self.channel(sub.channel_id)
        return self._page(request, "page_preferences.html", _("Ihre Themen"), 200, channel=channel,
                          choices=self.choices(channel), chosen=sub.preferences, address=masked(sub.email),
                          saved=saved, action=f"/newsletter/preferences/{token}",
                          unsubscribe=self.desk.links(sub, absolute=False)["unsubscribe"])

    def leaving(self, request: Request, token: str, link: Link) -> Response:
        if link.state == "gone":
            return self.unsubscribed(request, Link("ok"))
        if link.state != "ok" or link.subscriber is None:
            return self._broken(request, link)
        sub = link.subscriber
        return self._page(request, "page_unsubscribe.html", _("Newsletter abbestellen"), 200,
                          channel=self.channel(sub.channel_id), address=masked(sub.email),
                          action=f"/newsletter/unsubscribe/{token}",
                          manage=self.desk.links(sub, absolute=False)["manage"])

    def unsubscribed(self, request: Request, link: Link) -> Response:
        if link.state != "ok":
            return self._broken(request, link)
        return self.message(request, _("Abgemeldet"), [
            _("Sie bekommen diesen Newsletter nicht mehr. Ihre Adresse ist für ihn gelöscht."),
            _("Versehentlich abgemeldet? Sie können sich jederzeit neu anmelden.")],
            links=[(i18n.url("/newsletter"), _("Zum Newsletter")), (i18n.url("/"), _("Zur Startseite"))])

    def _broken(self, request: Request, link: Link, *, confirm: bool = False) -> Response:
        if link.state == "expired" or (confirm and link.state == "gone"):
            return self.message(request, _("Dieser Link gilt nicht mehr"), [_(
                "Der Bestätigungslink ist abgelaufen. Bitte melden Sie sich noch einmal an; Sie bekommen dann "
                "einen neuen.")], links=[(i18n.url("/newsletter"), _("Zum Newsletter"))], status=410)
        if link.state == "gone":
            return self.message(request, _("Kein Newsletter mehr"), [_(
                "Zu diesem Link gibt es keine Anmeldung mehr: Sie bekommen diesen Newsletter nicht.")],
                links=[(i18n.url("/newsletter"), _("Zum Newsletter"))], status=404)
        return self.message(request, _("Dieser Link stimmt nicht"), [_(
            "Der Link ist unvollständig oder verändert. Bitte kopieren Sie ihn vollständig aus der E-Mail.")],
            status=404)

    def message(self, request: Request, heading: str, lines: list[str], *, links: list[tuple[str, str]] = (),
                status: int = 200, headers: dict[str, str] | None = None) -> Response:
        response = self._page(request, "page_message.html", heading, status, heading=heading, lines=lines,
                              links=list(links))
        response.headers.update(headers or {})
        return response

    def _page(self, request: Request, template: str, title: str, status: int, **context: Any) -> Response:
        context["head"] = _head(self.settings, title)
        return self.templates.TemplateResponse(request, template, context, status_code=status, headers=NO_STORE)


def _head(settings: Settings, title: str):
    """What base.html needs in its <head>: the pages' `Head` when it is there."""
    full = f"{title} – {settings.platform.name}"
    description = _("Der Newsletter von %(town)s.", town=settings.platform.name)
    try:
        from hub.web.pages import Head
    except ImportError:  # pragma: no cover - the pages as they were before issue 14
        from types import SimpleNamespace
        return SimpleNamespace(title=full, description=description, og_title=title, noindex=True, canonical=None,
                               alternates=[], switch=None, og_locale="de_DE", og_type="website", image=None,
                               image_alt=None, prev=None, next=None, json_ld=None)
    return Head(title=full, description=description, og_title=title, noindex=True,
                og_locale=i18n.OG_LOCALES.get(i18n.current(), "de_DE"))


def masked(email: str) -> str:
    """`m…@beispiel.de`: enough to recognise one's own address on a page reached by a link."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}…@{domain}"


async def _form(request: Request) -> dict[str, list[str]]:
    """A URL-encoded form's fields (each a list: checkboxes repeat); anything else, or more
    than MAX_FORM_BYTES, reads as empty."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, _("Das Formular ist zu groß."))
    if "multipart/" in request.headers.get("content-type", ""):
        return {}
    fields: dict[str, list[str]] = {}
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(key, []).append(value)
    return fields


def _one(fields: dict[str, list[str]], name: str) -> str:
    return (fields.get(name) or [""])[0]
