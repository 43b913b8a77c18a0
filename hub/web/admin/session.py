"""Logging in and out, and the filter forms' redirect.

Wrong passwords are throttled per account and per client (`hub.auth.Throttle`): after too
many, the login answers 429 and does not even check the password until the wait is over.
Every login, failed login and logout is in the audit log (a failed login under the name
tried only if it is a configured user: a password typed into the name field stays out).
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from hub import auth
from hub.web.admin.core import (COOKIE, LIFETIME, LOGIN_COOKIE, NO_STORE, Cockpit, Forbidden, field, read_form,
                                safe_next)

LOGIN_PURPOSE = "login"
FILTERS = {"/admin": ("zustand", "teilnehmer"), "/admin/review": ("suche",), "/admin/stats": ("monat",),
           "/admin/merchants": ("monat",),
           "/admin/audit": ("wer", "was")}


def add(router: APIRouter, cockpit: Cockpit) -> None:
    @router.get("/admin/login")
    def login_page(request: Request, weiter: str | None = None, next: str | None = None):
        weiter = weiter or next
        if cockpit.user(request) is not None:
            return RedirectResponse(safe_next(weiter), status_code=303, headers=NO_STORE)
        return _login_form(cockpit, request, weiter)

    @router.post("/admin/login")
    async def login(request: Request):
        fields = await read_form(request)
        name = field(fields, "username") or field(fields, "name")
        password = fields.get("password") or fields.get("passwort") or ""
        weiter = field(fields, "weiter") or field(fields, "next")
        if not auth.csrf_ok(request.cookies.get(LOGIN_COOKIE), field(fields, "csrf"), LOGIN_PURPOSE):
            return _login_form(cockpit, request, weiter, name=name, status=403,
                               error="Die Anmeldeseite war zu alt. Bitte noch einmal versuchen.")
        client = cockpit.throttle.client(request.client.host if request.client else None)
        wait = cockpit.throttle.wait(name, client)
        if wait > 0:
            minutes = max(1, round(wait / 60))
            return _login_form(cockpit, request, weiter, name=name, status=429,
                               error=f"Zu viele Fehlversuche. Bitte in {minutes} Minute{'n' if minutes > 1 else ''} "
                                     "erneut versuchen.", headers={"Retry-After": str(int(wait) + 1)})
        configured = cockpit.configured(name) if name else None
        # argon2 takes a good fraction of a second on purpose: not on the event loop
        if not await asyncio.to_thread(auth.verify_password, configured.password_hash if configured else None,
                                       str(password)):
            cockpit.throttle.failed(name, client)
            cockpit.admin.log(configured.name if configured else "?", "login_failed")
            return _login_form(cockpit, request, weiter, name=name, status=401,
                               error="Benutzername oder Passwort ist falsch.")
        cockpit.throttle.succeeded(name)
        session_id = auth.new_session_id()
        cockpit.admin.open_session(auth.session_key(session_id), configured.name, configured.role,
                                   datetime.now(timezone.utc), LIFETIME)
        cockpit.admin.log(configured.name, "login", role=configured.role)
        response = RedirectResponse(safe_next(weiter), status_code=303, headers=NO_STORE)
        cockpit.set_cookie(response, request, COOKIE, session_id)
        cockpit.clear_cookie(response, request, LOGIN_COOKIE)
        return response

    @router.post("/admin/logout")
    async def logout(request: Request):
        user = cockpit.page_user(request)
        await cockpit.form(request, user)
        cockpit.admin.close_session(auth.session_key(user.secret))
        cockpit.admin.log(user.name, "logout")
        response = RedirectResponse("/admin/login", status_code=303, headers=NO_STORE)
        cockpit.clear_cookie(response, request, COOKIE)
        return response

    @router.post("/admin/filter")
    async def filter_redirect(request: Request):
        """The filter forms post here (every form carries a CSRF token) and land on the page
        they filter, with the filters in its address: bookmarkable, and no token in a URL."""
        user = cockpit.page_user(request)
        fields = await cockpit.form(request, user)
        target = field(fields, "ziel")
        if target not in FILTERS:
            raise Forbidden("Unbekanntes Filterziel.", status=400)
        query = {k: field(fields, k) for k in FILTERS[target] if field(fields, k)}
        return RedirectResponse(target + (f"?{urlencode(query)}" if query else ""), status_code=303,
                                headers=NO_STORE)


def _login_form(cockpit: Cockpit, request: Request, weiter: str | None, *, name: str = "", status: int = 200,
                error: str | None = None, headers: dict | None = None):
    pre = request.cookies.get(LOGIN_COOKIE)
    if not pre or len(pre) > 100:
        pre = secrets.token_urlsafe(24)
    response = cockpit.render(request, "login.html", None, status_code=status, name=name, error=error,
                              weiter=safe_next(weiter), csrf=auth.csrf_token(pre, LOGIN_PURPOSE),
                              insecure=request.url.scheme != "https" and cockpit.secure(request),
                              configured=bool(cockpit.settings.admin.users))
    cockpit.set_cookie(response, request, LOGIN_COOKIE, pre, max_age=3600)
    if headers:
        response.headers.update(headers)
    return response
