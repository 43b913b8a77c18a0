"""What every page of the cockpit shares: who is logged in, the session cookie, CSRF,
reading forms, rendering a page.

The session cookie (`hub_admin`) holds a random id; the store keeps its hash. It is set for
`/admin` only, `HttpOnly`, `SameSite=Strict`, and `Secure` unless the request is to this
machine (localhost, 127.0.0.1, ::1), where a browser would not send a secure cookie back over
plain http. Residents' pages never see it. Every POST carries a CSRF token derived from the
session id (`hub.auth.csrf_token`); the login form carries one derived from a short-lived
cookie of its own. Anonymous requests to `/admin` pages are sent to the login;
`/api/v1/admin/*` answers 401 instead and also takes HTTP Basic credentials of a configured
user (monitoring scripts have no cookie).
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from hub import auth
from hub.config import AdminUser, Settings
from hub.media import MediaStore
from hub.store.admin import AdminStore
from hub.web.templating import CompiledTemplates
import hub.web.admin.texts as texts

HERE = Path(__file__).parent
_COMPILED = CompiledTemplates()
COOKIE = "hub_admin"
LOGIN_COOKIE = "hub_admin_login"
IDLE = timedelta(hours=4)  # a session unused this long ends
LIFETIME = timedelta(hours=12)  # ... and every session after this long
MAX_FORM_BYTES = 2 * 1024 * 1024  # a pasted or uploaded config is the largest form
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
ROLES = ("moderator", "admin")  # each may do what the ones before it may


@dataclass(frozen=True)
class User:
    name: str
    role: str
    secret: str  # the session id (or, for Basic credentials, nothing a form could use)

    @property
    def csrf(self) -> str:
        return auth.csrf_token(self.secret)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class LoginRequired(Exception):
    """An anonymous request to a page: off to the login."""


class Unauthorized(Exception):
    """An anonymous request to the admin API: 401."""


class Forbidden(Exception):
    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def route_class(cockpit: Cockpit) -> type[APIRoute]:
    """A route class that turns the cockpit's exceptions into answers: a redirect to the
    login, a 401 for the API, a 403 page. (A router cannot register exception handlers.)"""

    class CockpitRoute(_CockpitRoute):
        pass

    CockpitRoute.cockpit = cockpit
    return CockpitRoute


class _CockpitRoute(APIRoute):
    cockpit: Cockpit

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        cockpit = self.cockpit

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return RedirectResponse(login_url(request), status_code=303, headers=NO_STORE)
            except Unauthorized:
                return JSONResponse({"detail": "Anmeldung erforderlich"}, status_code=401,
                                    headers={"WWW-Authenticate": 'Basic realm="hub admin", charset="UTF-8"', **NO_STORE})
            except Forbidden as exc:
                if request.url.path.startswith("/api/"):
                    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=NO_STORE)
                return cockpit.render(request, "error.html", cockpit.user(request), status_code=exc.status,
                                      message=exc.message, status=exc.status)

        return route


NO_STORE = {"Cache-Control": "no-store"}


def login_url(request: Request) -> str:
    path = request.url.path
    wanted = path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or not path.startswith("/admin") or path.startswith("/admin/login"):
        wanted = "/admin"
    return "/admin/login?weiter=" + quote(wanted, safe="/")


def safe_next(value: str | None) -> str:
    """Where to go after the login: a path in the cockpit, never another site."""
    if not value:
        return "/admin"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin") or value.startswith("//"):
        return "/admin"
    return value


class Cockpit:
    """The cockpit's state for one app: settings, the store's admin side, templates."""

    def __init__(self, settings: Settings, store, throttle: auth.Throttle, *, town: str = "default") -> None:
        self.settings = settings
        self.town = town  # its id in a deployment of many towns
        self.store = store
        self.admin = AdminStore(store)
        self.throttle = throttle
        self.media = MediaStore(settings.data_dir, settings.base_dir, store.records.media)
        self.templates = _templates(settings)
        self.merchants = {m.id: m for m in settings.merchants}

    # --- who is there -----------------------------------------------------------------------

    def configured(self, name: str) -> AdminUser | None:
        return next((u for u in self.settings.admin.users if u.name.casefold() == name.casefold()), None)

    def user(self, request: Request) -> User | None:
        """The logged-in user of a request, or None. A user removed from the config is
        logged out; a changed role applies at once."""
        sid = request.cookies.get(COOKIE)
        if not sid or len(sid) > 100:
            return None
        session = self.admin.session(auth.session_key(sid), _now(), IDLE)
        if session is None:
            return None
        configured = self.configured(session.user)
        return User(configured.name, configured.role, sid) if configured else None

    def page_user(self, request: Request, role: str = "moderator") -> User:
        """The logged-in user, who may do what `role` may; else LoginRequired or Forbidden."""
        user = self.user(request)
        if user is None:
            raise LoginRequired()
        if not user.may(role):
            raise Forbidden("Diese Seite ist Administratorinnen und Administratoren vorbehalten.")
        return user

    def api_user(self, request: Request) -> User:
        """A user by HTTP Basic credentials (throttled like the login), or Unauthorized."""
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            raise Unauthorized()
        try:
            name, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized() from None
        client = self.throttle.client(request.client.host if request.client else None)
        if self.throttle.wait(name, client) > 0:
            raise Forbidden("Zu viele Fehlversuche; bitte später noch einmal.", status=429)
        configured = self.configured(name)
        if not auth.verify_password(configured.password_hash if configured else None, password):
            self.throttle.failed(name, client)
            raise Unauthorized()
        self.throttle.succeeded(name)
        return User(configured.name, configured.role, "")

    # --- forms ------------------------------------------------------------------------------

    async def form(self, request: Request, user: User) -> dict[str, Any]:
        """The fields of a POSTed form, its CSRF token checked (Forbidden without it)."""
        fields = await read_form(request)
        if not auth.csrf_ok(user.secret, _text(fields.get("csrf"))):
            raise Forbidden("Die Sicherheitsprüfung des Formulars ist fehlgeschlagen (CSRF). Bitte die Seite neu "
                            "laden und es noch einmal versuchen.")
        return fields

    # --- answers ----------------------------------------------------------------------------

    def render(self, request: Request, template: str, user: User | None, *, status_code: int = 200,
               **context: Any) -> HTMLResponse:
        context.update(user=user, settings=self.settings, platform=self.settings.platform,
                       waiting=self._waiting() if user else 0)
        response = self.templates.TemplateResponse(request, template, context, status_code=status_code)
        response.headers.update(NO_STORE)
        return response

    def _waiting(self) -> int:
        return self.admin.review_ids(limit=0)[1]

    def secure(self, request: Request) -> bool:
        return (request.url.hostname or "").lower() not in LOCAL_HOSTS

    def set_cookie(self, response: Response, request: Request, name: str, value: str,
                   max_age: int | None = None) -> None:
        # "Strict" as RFC 6265bis writes it (Starlette takes any case and writes it as given)
        response.set_cookie(name, value, max_age=max_age, path="/admin", secure=self.secure(request),
                            httponly=True, samesite="Strict")  # type: ignore[arg-type]

    def clear_cookie(self, response: Response, request: Request, name: str) -> None:
        response.delete_cookie(name, path="/admin", secure=self.secure(request), httponly=True,
                               samesite="Strict")  # type: ignore[arg-type]


async def read_form(request: Request) -> dict[str, Any]:
    """A form's fields: url-encoded, or multipart (a file's content as text, UTF-8). Read with
    the standard library (python-multipart is not among the hub's dependencies); capped."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Forbidden("Das Formular ist zu groß (höchstens 2 MB).", status=413)
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        return _multipart(bytes(body), kind)
    fields: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
        if key in fields:
            _append(fields, key, value)
        else:
            fields[key] = value
    return fields


def _append(fields: dict[str, Any], key: str, value: str) -> None:
    current = fields[key]
    fields[key] = [*current, value] if isinstance(current, list) else [current, value]


def _multipart(body: bytes, content_type: str) -> dict[str, Any]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        fields[str(name)] = payload.decode("utf-8", errors="replace")
    return fields


def _text(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def field(fields: dict[str, Any], name: str) -> str:
    """One field's text (the first, if sent twice), stripped; "" when missing."""
    return (_text(fields.get(name)) or "").strip()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _templates(settings: Settings) -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.bytecode_cache = _COMPILED
    texts.install(templates.env, settings)
    return templates
