"""The cockpit's pages: source health (`/admin`), the review queue and records
(`/admin/review`, `/admin/records/{id}`), merchant activity and reminders
(`/admin/merchants`), the audit log (`/admin/audit`).

Every action is a POST with a CSRF token that ends in a redirect (post/redirect/get) to the
page it came from, with a short message; every action is in the audit log; the store writes
a revision for every change of a record, so residents' pages and feeds show it at once.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse

from hub import activity, health
from hub.mail import Mail, Mailer, MailError
from hub.web.admin.core import NO_STORE, Cockpit, Forbidden, User, field
from hub.web.pages import MAX_MERCHANT_CHOICES

PAGE_SIZE = 20
SOURCES_PAGE_SIZE = 100  # the overview's rows per page, worst first: page 1 is what needs a person
MERCHANTS_PAGE_SIZE = 100  # activity rows per page, highest score first
QUIET_PAGE_SIZE = 50  # quiet merchants per page, longest quiet first, each with its reminder
MESSAGES = {
    "approved": "Beitrag {nr} ist freigegeben und erscheint jetzt auf der Plattform.",
    "hidden": "Beitrag {nr} ist verborgen; der Grund ist im Protokoll vermerkt.",
    "edited": "Beitrag {nr} ist geändert.",
    "split": "Beitrag {nr} ist getrennt; neue Beiträge: {neu}.",
    "merged": "Beitrag {mit} ist mit Beitrag {nr} zusammengeführt.",
    "reminded": "Die Erinnerung an {wer} ist verschickt.",
}


def add(router: APIRouter, cockpit: Cockpit) -> None:
    _health(router, cockpit)
    _review(router, cockpit)
    _merchants(router, cockpit)
    _audit(router, cockpit)


# --- source health -------------------------------------------------------------------------------

def _health(router: APIRouter, cockpit: Cockpit) -> None:
    @router.get("/admin")
    def health_page(request: Request, zustand: str = "", teilnehmer: str = "", state: str = "", merchant: str = "",
                    seite: int = 1):
        user = cockpit.page_user(request)
        zustand, teilnehmer = zustand or state, teilnehmer or merchant  # the English names work too
        found = health.report(cockpit.settings, cockpit.store)
        matching = [h for h in found if (not zustand or h.state == zustand) and (not teilnehmer or h.merchant_id == teilnehmer)]
        shown, page, pages = page_of(matching, seite, SOURCES_PAGE_SIZE)
        merchants = cockpit.settings.merchants
        return cockpit.render(request, "health.html", user, found=found, matching=len(matching),
                              shown=shown, page=page, pages=pages, counts=health.counts(found),
                              states=health.STATES, state=zustand, merchant=teilnehmer,
                              merchant_name=m.name if (m := cockpit.merchants.get(teilnehmer)) else teilnehmer,
                              merchants=merchants if len(merchants) <= MAX_MERCHANT_CHOICES else None,
                              now=datetime.now(timezone.utc))

    @router.get("/admin/health.json")
    def health_json(request: Request):
        cockpit.page_user(request)
        return JSONResponse(health_body(cockpit), headers=NO_STORE)


def page_of(rows: list, page: int, size: int) -> tuple[list, int, int]:
    """(the rows of page `page`, that page, the number of pages): a page past the last is the last."""
    pages = max(1, -(-len(rows) // size))
    page = min(max(1, page), pages)
    return rows[(page - 1) * size:page * size], page, pages


def health_body(cockpit: Cockpit) -> dict[str, Any]:
    found = health.report(cockpit.settings, cockpit.store)
    return {"checked_at": datetime.now(timezone.utc).isoformat(), "states": health.counts(found),
            "sources": [h.as_json() for h in found]}


# --- the review queue and records -------------------------------------------------------------------

def _review(router: APIRouter, cockpit: Cockpit) -> None:
    @router.get("/admin/review")
    def review_page(request: Request, seite: int = 1, suche: str = "", meldung: str = "", nr: str = "",
                    neu: str = "", mit: str = ""):
        user = cockpit.page_user(request)
        page = max(1, seite)
        ids, total = cockpit.admin.review_ids(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        records = [r for r in (cockpit.store.records.get(i) for i in ids) if r is not None]
        found = []
        if suche.strip():
            found = cockpit.store.records.list(q=suche, status=None, expired=True, limit=PAGE_SIZE)
        return cockpit.render(request, "review.html", user, records=_cards(cockpit, records), total=total, page=page,
                              pages=max(1, -(-total // PAGE_SIZE)), search=suche, found=_cards(cockpit, found),
                              message=_message(meldung, nr=nr, neu=neu, mit=mit),
                              recent=cockpit.admin.audit(limit=8, actions=("approve", "hide", "edit", "split", "merge")))

    @router.get("/admin/records/{record_id}")
    def record_page(request: Request, record_id: int, meldung: str = "", neu: str = "", mit: str = ""):
        user = cockpit.page_user(request)
        record = cockpit.store.records.get(record_id)
        if record is None:
            raise Forbidden(f"Einen Beitrag {record_id} gibt es nicht.", status=404)
        return cockpit.render(request, "record.html", user, card=_cards(cockpit, [record])[0],
                              revisions=cockpit.store.records.revisions(record_id),
                              audit=cockpit.admin.audit(limit=50, target=str(record_id),
                                                        actions=("approve", "hide", "edit", "split", "merge")),
                              message=_message(meldung, nr=str(record_id), neu=neu, mit=mit))

    @router.post("/admin/records/{record_id}/{action}")
    async def record_action(request: Request, record_id: int, action: str):
        user = cockpit.page_user(request)
        fields = await cockpit.form(request, user)
        back = field(fields, "zurueck") or "/admin/review"
        back = back if back.startswith("/admin/") and not back.startswith("//") else "/admin/review"
        extra = await asyncio.to_thread(_act, cockpit, user, record_id, action, fields)
        query = urlencode({"meldung": extra.pop("meldung"), "nr": record_id, **extra})
        return RedirectResponse(f"{back.split('?')[0]}?{query}", status_code=303, headers=NO_STORE)


def _act(cockpit: Cockpit, user: User, record_id: int, action: str, fields: dict) -> dict[str, Any]:
    """Do `action` on a record; returns the message to show (Forbidden when it cannot be done)."""
    admin = cockpit.admin
    if action == "approve":
        done = admin.approve(record_id, user.name)
        result = {"meldung": "approved"}
    elif action == "hide":
        reason = field(fields, "grund")
        if not reason:
            raise Forbidden("Bitte einen Grund angeben, warum der Beitrag verborgen wird.", status=400)
        done = admin.hide(record_id, reason[:500], user.name)
        result = {"meldung": "hidden"}
    elif action == "edit":
        done = admin.edit(record_id, user.name, title=field(fields, "titel")[:300], image=_image(cockpit, record_id,
                                                                                               field(fields, "bild")))
        result = {"meldung": "edited"}
    elif action == "split":
        chosen = fields.get("herkunft") or []
        chosen = [int(i) for i in (chosen if isinstance(chosen, list) else [chosen]) if str(i).isdigit()]
        new = admin.split(record_id, chosen or None, user.name)
        done, result = bool(new), {"meldung": "split", "neu": ", ".join(map(str, new))}
        if not new:
            raise Forbidden("Nichts zu trennen: der Beitrag hat nur eine Quelle, oder die gewählten gehören nicht "
                            "zu ihm.", status=400)
    elif action == "merge":
        other = field(fields, "mit").lstrip("#")
        if not other.isdigit():
            raise Forbidden("Bitte die Nummer des Beitrags angeben, der hierher übernommen werden soll.", status=400)
        done = admin.merge(record_id, int(other), user.name)
        result = {"meldung": "merged", "mit": other}
        if not done:
            raise Forbidden(f"Beitrag {other} lässt sich nicht mit Beitrag {record_id} zusammenführen (gibt es "
                            "ihn? ist er entfernt? ist es derselbe?).", status=400)
    else:
        raise Forbidden("Unbekannte Aktion.", status=404)
    if not done:
        raise Forbidden(f"Einen Beitrag {record_id} gibt es nicht.", status=404)
    return result


def _image(cockpit: Cockpit, record_id: int, url: str) -> str | None:
    """The chosen image, if it is one of the record's (anything else is ignored)."""
    if not url:
        return None
    record = cockpit.store.records.get(record_id)
    images = {m.url for o in record.origins for m in o.item.media if m.type == "image"} if record else set()
    return url if url in images else None


def _cards(cockpit: Cockpit, records: list) -> list[dict[str, Any]]:
    """What a record's panel shows: the record, its images as the hub serves them, its edit."""
    urls = [m.url for r in records for o in r.origins for m in o.item.media if m.type == "image"]
    pictures = cockpit.media.pictures(urls)
    cards = []
    for r in records:
        images = list(dict.fromkeys(m.url for o in r.origins for m in o.item.media if m.type == "image"))
        cards.append({"record": r, "images": [(u, pictures[u].src) for u in images],
                      "shown_image": r.item.media[0].url if r.item.media else None,
                      "edit": cockpit.admin.edit_of(r.id),
                      "merchant": cockpit.merchants.get(r.item.merchant_id)})
    return cards


def _message(code: str, **values: str) -> str | None:
    template = MESSAGES.get(code)
    return template.format(**values) if template else None


# --- merchants ------------------------------------------------------------------------------------

def _merchants(router: APIRouter, cockpit: Cockpit) -> None:
    @router.get("/admin/merchants")
    def merchants_page(request: Request, monat: str = "", month: str = "", meldung: str = "", wer: str = "",
                       fehler: str = "", seite: int = 1, still: int = 1):
        """A big town's merchants come a page at a time (`seite`: the activity table,
        `still`: the quiet ones with their reminders); the counts are over all."""
        user = cockpit.page_user(request)
        now = datetime.now(timezone.utc)
        asked = bool(monat or month)  # else this month, and the pages' links need not say which
        month = month_param(monat or month, cockpit)
        every = activity.month_activity(cockpit.settings, cockpit.store, month)
        rows, page, pages = page_of(every, seite, MERCHANTS_PAGE_SIZE)
        scores = activity.history(cockpit.settings, cockpit.store, month, months=6, known=every)
        months = sorted({m for s in scores.values() for m in s})
        failing = {h.id for h in health.report(cockpit.settings, cockpit.store, now) if h.severity >= 70}
        all_quiet = activity.quiet(cockpit.settings, cockpit.store, now, failing)
        quiet, quiet_page, quiet_pages = page_of(all_quiet, still, QUIET_PAGE_SIZE)
        reminders = {q.merchant.id: activity.reminder(cockpit.settings, q, user.name) for q in quiet}
        sent = cockpit.admin.last_of("remind", [q.merchant.id for q in quiet])
        return cockpit.render(request, "merchants.html", user, rows=rows, month=month, months=months, scores=scores,
                              total=len(every), page=page, pages=pages, quiet_total=len(all_quiet),
                              quiet_page=quiet_page, quiet_pages=quiet_pages, asked=asked,
                              quiet=quiet, reminders=reminders, sent=sent, cfg=cockpit.settings.admin,
                              mail=cockpit.settings.mail, parts=activity.PARTS, doc=activity.__doc__,
                              choices=month_choices(cockpit), message=_message(meldung, wer=wer),
                              error=fehler[:500] or None)

    @router.post("/admin/merchants/{merchant_id}/remind")
    async def remind(request: Request, merchant_id: str):
        user = cockpit.page_user(request, "admin")
        fields = await cockpit.form(request, user)
        merchant = cockpit.merchants.get(merchant_id)
        if merchant is None:
            raise Forbidden("Diesen Teilnehmer gibt es nicht.", status=404)
        if not merchant.contact_email:
            raise Forbidden(f"Für {merchant.name} ist keine contact_email in der Konfiguration eingetragen.", status=400)
        if cockpit.settings.mail is None:
            raise Forbidden("In der Konfiguration fehlt der Abschnitt mail: (SMTP-Server).", status=400)
        subject, body = field(fields, "betreff")[:200], str(fields.get("text") or "").strip()[:10_000]
        page = {"still": still} if (still := field(fields, "still")).isdigit() else {}  # back to the page it was sent from
        if not subject or not body:
            raise Forbidden("Betreff und Text der Erinnerung dürfen nicht leer sein.", status=400)
        try:
            message_id = await Mailer(cockpit.settings.mail).send_async(Mail(merchant.contact_email, subject, body))
        except MailError as exc:
            cockpit.admin.log(user.name, "remind_failed", merchant_id, error=str(exc))
            query = urlencode({"fehler": f"Die Erinnerung an {merchant.name} wurde nicht verschickt: {exc}", **page})
            return RedirectResponse(f"/admin/merchants?{query}#still", status_code=303, headers=NO_STORE)
        cockpit.admin.log(user.name, "remind", merchant_id, subject=subject, message_id=message_id)
        query = urlencode({"meldung": "reminded", "wer": merchant.name, **page})
        return RedirectResponse(f"/admin/merchants?{query}#still", status_code=303, headers=NO_STORE)


def month_param(value: str, cockpit: Cockpit) -> date:
    """`2026-05` -> 1 May 2026; this month (platform time) when missing or malformed."""
    try:
        year, month = value.split("-")
        return date(int(year), int(month), 1)
    except ValueError:
        return activity.month_of(today(cockpit))


def today(cockpit: Cockpit) -> date:
    return datetime.now(ZoneInfo(cockpit.settings.platform.timezone)).date()


def month_choices(cockpit: Cockpit, n: int = 13) -> list[date]:
    """This month and the `n - 1` before it, newest first."""
    month = activity.month_of(today(cockpit))
    found = [month]
    for _ in range(n - 1):
        month = activity.month_of(month - timedelta(days=1))
        found.append(month)
    return found


# --- the audit log --------------------------------------------------------------------------------

def _audit(router: APIRouter, cockpit: Cockpit) -> None:
    @router.get("/admin/audit")
    def audit_page(request: Request, seite: int = 1, wer: str = "", was: str = ""):
        user = cockpit.page_user(request)
        page = max(1, seite)
        entries = cockpit.admin.audit(limit=50, offset=(page - 1) * 50, user=wer or None,
                                      actions=[was] if was else None)
        return cockpit.render(request, "audit.html", user, entries=entries, page=page, more=len(entries) == 50,
                              who=wer, what=was, users=[u.name for u in cockpit.settings.admin.users])
