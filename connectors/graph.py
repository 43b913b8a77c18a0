"""The Graph API client (Facebook Pages, Instagram professional accounts), through the hub's
fetcher.

Usable outside a connector (the `hub facebook` commands, the webhook): `GraphClient(fetcher,
app=GraphApp(...))` then `get`, `pages`, `post`, the token helpers `exchange_token`,
`accounts` and `debug_token`, and the webhook's `subscribe_app` and `subscribe_page`.

What it takes care of, so its callers do not have to:

- **Errors are decided from the body's `code` and `error_subcode`**, not from the HTTP status
  (Meta answers 400 for nearly everything): an invalid token (190, 102) becomes
  `GraphTokenInvalid`, which holds the source back until its token changes; throttling
  (4, 17, 32, 613, 80001-80014) `GraphThrottled` with the wait the usage headers give;
  a policy block (368) `GraphBlocked`; a missing permission (10, 200-299)
  `GraphPermissionMissing`, naming it; temporary faults (1, 2, `is_transient`) are tried
  again at once, twice. Messages are in plain German, for the project manager.
- **Usage headers** (`X-App-Usage`, `X-Page-Usage`, `X-Business-Use-Case-Usage`): every
  response's are read (`Usage`). At 100% the scope (the app, or the page) is paused in this
  process for the time Meta estimates, else 5 minutes doubling to an hour; a call into a
  paused scope fails at once, without asking Meta. Callers slow down above 75% (`slowdown`).
- **Paging** follows `paging.next` until it is absent (short pages mid-list are normal), but
  rebuilds each next request from its query: the token embedded in `next` is never sent
  anywhere but to the configured Graph host, and never logged.
- **Tokens never appear** in messages or logs: every text passes `hub.http.redact` and the
  tokens of the call are blanked out, and errors are raised without the fetcher's cause
  (whose URLs carry the token).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from hub.config import GRAPH_API_VERSION, GRAPH_URL, Settings
from hub.errors import FetchError, TokenInvalid
from hub.http import Fetcher, redact
from hub.models import TokenCheck

log = logging.getLogger("hub.graph")

# --- versions ----------------------------------------------------------------------------------

# Release dates of Graph API versions (developers.facebook.com/docs/apps/versions and Meta's
# blog). A version lives until two years after the next one shipped; after that Meta quietly
# serves the oldest live version instead, so behaviour shifts without an error.
RELEASES = {"v19.0": date(2024, 1, 23), "v20.0": date(2024, 5, 21), "v21.0": date(2024, 10, 2),
            "v22.0": date(2025, 1, 21), "v23.0": date(2025, 5, 29), "v24.0": date(2025, 10, 8)}
WARN_BEFORE = timedelta(days=90)
_VERSION = re.compile(r"^v(\d+)\.(\d+)$")


def end_of_life(version: str) -> date | None:
    """The day `version` stops being served, when the table knows the next release; None for
    the newest known version and for unknown ones."""
    known = sorted(RELEASES, key=_version_key)
    following = [v for v in known if _version_key(v) > _version_key(version)]
    if not following or not _VERSION.match(version):
        return None
    shipped = RELEASES[following[0]]
    return shipped.replace(year=shipped.year + 2, day=min(shipped.day, 28) if shipped.month == 2 else shipped.day)


def version_warning(version: str, today: date) -> str | None:
    """What to say about `version` on `today`: None while it has more than WARN_BEFORE to live."""
    newest = max(RELEASES, key=_version_key)
    ends = end_of_life(version)
    if ends is None:
        return None
    if ends <= today:
        return (f"Graph API {version} reached its end of life on {ends.isoformat()}: Meta now answers with the "
                f"oldest version it still serves, so results may differ (hint: set api_version: {newest} "
                "after reading Meta's changelog)")
    if ends - today <= WARN_BEFORE:
        return (f"Graph API {version} reaches its end of life on {ends.isoformat()}, in {(ends - today).days} days "
                f"(hint: switch to api_version: {newest} after reading Meta's changelog)")
    return None


def _version_key(version: str) -> tuple[int, int]:
    match = _VERSION.match(version)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


_LOGGED_VERSIONS: set[tuple[str, str]] = set()


def _log_version(graph_url: str, version: str) -> None:
    """Once per process and version: which version is asked, and a warning near its end."""
    if (graph_url, version) in _LOGGED_VERSIONS:
        return
    _LOGGED_VERSIONS.add((graph_url, version))
    warning = version_warning(version, datetime.now(UTC).date())
    if warning:
        log.warning("%s", warning)
    else:
        log.info("Graph API %s at %s", version, graph_url)


# --- errors -------------------------------------------------------------------------------------

class GraphError(FetchError):
    """The Graph API refused a call; `graph_code`, `subcode` and `fbtrace_id` from its body."""

    code = "graph_error"

    def __init__(self, message: str, *, hint: str | None = None, transient: bool = False,
                 status: int | None = None, retry_after: float | None = None, graph_code: int | None = None,
                 subcode: int | None = None, fbtrace_id: str | None = None) -> None:
        super().__init__(message, hint=hint, transient=transient, status=status, retry_after=retry_after)
        self.graph_code = graph_code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id


class GraphTokenInvalid(TokenInvalid, GraphError):
    """190 or 102: the merchant must connect again. Holds the source back until its token
    changes (its code is TokenInvalid's, one of hub.errors.HOLDING)."""

    def __init__(self, message: str, *, hint: str | None = None, graph_code: int | None = None,
                 subcode: int | None = None, fbtrace_id: str | None = None) -> None:
        GraphError.__init__(self, message, hint=hint, graph_code=graph_code, subcode=subcode, fbtrace_id=fbtrace_id)


class GraphThrottled(GraphError):
    code = "graph_throttled"


class GraphBlocked(GraphError):
    code = "graph_blocked"


class GraphPermissionMissing(GraphError):
    code = "graph_permission_missing"


class GraphNotFound(GraphError):
    """100 with subcode 33 (or 803): the object does not exist or cannot be seen."""

    code = "graph_not_found"


BLOCKED_WAIT = timedelta(hours=24)  # 368: a person looks; the hub asks again once a day
PERMISSION_WAIT = timedelta(hours=24)  # 10, 200-299: nothing changes until the merchant acts
PAUSE_FIRST = timedelta(minutes=5)  # a throttled scope without Meta's estimate: 5 min, doubling ...
PAUSE_MAX = timedelta(hours=1)  # ... up to an hour
SLOW_FROM = 75.0  # percent of a usage limit from which callers slow down
TRANSIENT_RETRIES = 2  # codes 1 and 2: tried again at once this often, then left to the scheduler
_APP_CODES = frozenset({4, 17})  # app and user level limits: every page of the app waits
_PAGE_CODES = frozenset({32, 613, *range(80000, 80015)})  # page (BUC) limits: this page waits

# Subcodes of 190, in the words a project manager can pass on to a merchant.
_TOKEN_SUBCODES = {
    458: "die App wurde aus dem Facebook-Konto entfernt",
    459: "das Facebook-Konto ist gesperrt, bis die Person sich anmeldet und die Sicherheitsprüfung abschließt",
    460: "das Passwort des Facebook-Kontos wurde geändert",
    463: "das Zugangs-Token ist abgelaufen",
    464: "das Facebook-Konto ist noch nicht bestätigt",
    467: "die Person hat sich abgemeldet, das Token ist ungültig geworden",
    492: "die Sitzung ist ungültig, zum Beispiel weil die Person ihre Rolle auf der Seite verloren hat",
}
_KNOWN_PERMISSIONS = re.compile(r"\b(pages_\w+|instagram_\w+|business_management|public_profile|read_insights)\b")


def error_from(status: int, body: bytes, headers: Mapping[str, str], *, what: str,
               default_permission: str) -> FetchError:
    """The error a failed call means, decided from the body's code and subcode (`what`: the
    object asked for, e.g. "Seite 1045..."; `default_permission`: the one the call needs)."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        transient = status >= 500 or status == 429
        return GraphError(f"Graph API: HTTP {status} ohne Fehlerbeschreibung für {what}",
                          hint="meist vorübergehend; der Hub versucht es später wieder" if transient
                          else "Adresse (graph_url) und IDs in der Konfiguration prüfen",
                          transient=transient, status=status)
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    trace = str(error.get("fbtrace_id") or "") or None
    said = str(error.get("error_user_msg") or error.get("message") or "").strip()
    tag = f"Code {code}" + (f"/{subcode}" if subcode else "") + (f", fbtrace_id {trace}" if trace else "")
    details = dict(status=status, graph_code=code, subcode=subcode, fbtrace_id=trace)
    if code in (190, 102):
        meaning = _TOKEN_SUBCODES.get(subcode or 0, "das Zugangs-Token ist abgelaufen, widerrufen oder ungültig")
        return GraphTokenInvalid(
            f"Facebook-Zugang ungültig ({what}): {meaning}. Der Händler muss die Seite neu verbinden ({tag})",
            hint="ein neues Seiten-Token erzeugen und access_token in der Konfiguration ersetzen; bis dahin fragt "
                 "der Hub diese Quelle nicht mehr ab", graph_code=code, subcode=subcode, fbtrace_id=trace)
    if code in _APP_CODES or code in _PAGE_CODES:
        wait = usage_from(headers).regain
        scope = "die App" if code in _APP_CODES else "diese Seite"
        return GraphThrottled(f"Facebook bremst {scope} ({what}): zu viele Abfragen ({tag})",
                              hint="der Hub wartet so lange, wie Facebook angibt, und versucht es dann wieder",
                              transient=True, retry_after=wait.total_seconds() if wait else None, **details)
    if code == 368:
        return GraphBlocked(f"Facebook hat {what} vorübergehend gesperrt (Verstoß gegen Richtlinien): {said} ({tag})",
                            hint="bitte mit dem Händler klären, was Facebook beanstandet; der Hub fragt nur einmal "
                                 "am Tag nach", retry_after=BLOCKED_WAIT.total_seconds(), **details)
    if code == 10 or (code is not None and 200 <= code <= 299):
        wanted = _KNOWN_PERMISSIONS.findall(said)
        permission = ", ".join(dict.fromkeys(wanted)) or default_permission
        return GraphPermissionMissing(
            f"Facebook verweigert {what}: die Berechtigung {permission} fehlt ({tag})",
            hint="der Händler muss die Seite mit dieser Berechtigung neu verbinden (die App braucht sie aus "
                 "Metas App Review); der Hub fragt einmal am Tag nach", retry_after=PERMISSION_WAIT.total_seconds(),
            **details)
    if code == 100 and subcode in (33, 803):
        return GraphNotFound(f"Facebook kennt {what} nicht (gelöscht, nicht sichtbar oder falsche ID) ({tag})",
                             hint="die ID in der Konfiguration prüfen", **details)
    transient = code in (1, 2) or bool(error.get("is_transient")) or status >= 500
    return GraphError(f"Graph API lehnt die Abfrage für {what} ab: {said or 'ohne Begründung'} ({tag})",
                      hint="meist vorübergehend; der Hub versucht es später wieder" if transient
                      else "IDs und api_version in der Konfiguration prüfen", transient=transient, **details)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# --- usage ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Usage:
    """What one response's usage headers say, in percent of each limit (None: not sent)."""

    app: float | None = None  # X-App-Usage: the app's (and user tokens') limit
    page: float | None = None  # X-Page-Usage and X-Business-Use-Case-Usage: this page's
    regain: timedelta | None = None  # estimated_time_to_regain_access, when Meta gives one

    @property
    def percent(self) -> float:
        return max(self.app or 0.0, self.page or 0.0)

    def worst(self, other: Usage) -> Usage:
        regains = [r for r in (self.regain, other.regain) if r]
        return Usage(_max(self.app, other.app), _max(self.page, other.page), max(regains) if regains else None)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def usage_from(headers: Mapping[str, str]) -> Usage:
    """Usage from the headers (lower-case names); a header that is not JSON is ignored."""
    app = _percent(_json_header(headers.get("x-app-usage")))
    page = _percent(_json_header(headers.get("x-page-usage")))
    regain = 0.0
    buc = _json_header(headers.get("x-business-use-case-usage"))
    for entries in (buc.values() if isinstance(buc, dict) else ()):
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, dict):
                page = _max(page, _percent(entry))
                regain = max(regain, _float(entry.get("estimated_time_to_regain_access")) or 0.0)
    return Usage(app, page, timedelta(minutes=regain) if regain else None)


def _json_header(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _percent(data: Any) -> float | None:
    if not isinstance(data, dict):
        return None
    values = [_float(data.get(k)) for k in ("call_count", "total_time", "total_cputime")]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def slowdown(usage: Usage, now: datetime) -> datetime | None:
    """Not before when to ask again after a call with this usage: from SLOW_FROM percent on,
    up to PAUSE_MAX later the nearer the limit (80% -> 12 min, 95% -> 48 min); None below."""
    if usage.percent < SLOW_FROM:
        return None
    share = min(1.0, (usage.percent - SLOW_FROM) / (100 - SLOW_FROM))
    wait = max(PAUSE_MAX * share, usage.regain or timedelta(0))
    return now + wait


class _Pauses:
    """Scopes (an app, a page) paused after hitting a limit, in this process: until when, and
    how often in a row (the pause doubles)."""

    def __init__(self) -> None:
        self._until: dict[str, datetime] = {}
        self._strikes: dict[str, int] = {}

    def remaining(self, scopes: list[str], now: datetime) -> timedelta | None:
        waits = [self._until[s] - now for s in scopes if s in self._until and self._until[s] > now]
        return max(waits) if waits else None

    def pause(self, scope: str, now: datetime, estimate: timedelta | None) -> datetime:
        strikes = self._strikes.get(scope, 0) + 1
        self._strikes[scope] = strikes
        wait = estimate or min(PAUSE_MAX, PAUSE_FIRST * 2 ** min(strikes - 1, 10))
        self._until[scope] = max(self._until.get(scope, now), now + wait)
        return self._until[scope]

    def relax(self, scope: str) -> None:
        self._strikes.pop(scope, None)


PAUSES = _Pauses()
_SECRET_KEYS = frozenset({"access_token", "appsecret_proof", "client_secret", "input_token", "fb_exchange_token",
                          "verify_token"})


# --- the client ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class GraphApp:
    """Where and how to call: the Graph host, the pinned version and, for appsecret_proof and
    the token helpers, the app's id and secret (from the config's `facebook:` block)."""

    graph_url: str = GRAPH_URL
    api_version: str = GRAPH_API_VERSION
    app_id: str | None = None
    app_secret: str | None = field(default=None, repr=False)
    appsecret_proof: bool = True  # sent with every call when the secret is known
    push: bool = False  # the webhook is set up (verify_token and app_secret): pages_manage_metadata is needed


def app_from(settings: Settings, *, graph_url: str | None = None, api_version: str | None = None,
             appsecret_proof: bool = True) -> GraphApp:
    """The app of the config's `facebook:` block (defaults without one); `graph_url` and
    `api_version` override it, as a source's own options do."""
    fb = settings.facebook
    return GraphApp(graph_url=graph_url or (fb.graph_url if fb else GRAPH_URL),
                    api_version=api_version or (fb.api_version if fb else GRAPH_API_VERSION),
                    app_id=fb.app_id if fb else None,
                    app_secret=fb.app_secret.get_secret_value() if fb and fb.app_secret else None,
                    appsecret_proof=appsecret_proof,
                    push=bool(fb and fb.verify_token and fb.app_secret))


@dataclass(frozen=True)
class GraphPage:
    """One answer: its JSON body and its usage."""

    data: dict[str, Any]
    usage: Usage

    @property
    def items(self) -> list[dict[str, Any]]:
        items = self.data.get("data")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    @property
    def next(self) -> str | None:
        paging = self.data.get("paging")
        return paging.get("next") if isinstance(paging, dict) and isinstance(paging.get("next"), str) else None


class GraphClient:
    def __init__(self, fetcher: Fetcher, app: GraphApp = GraphApp(), *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.fetcher = fetcher
        self.app = app
        self.clock = clock
        self.calls = 0  # Graph calls made (benchmarks and tests count them)
        origin = urlsplit(app.graph_url)
        self._origin = (origin.scheme.lower(), origin.netloc.lower())
        self._base = app.graph_url.rstrip("/")

    # --- one call -------------------------------------------------------------------------

    async def get(self, path: str, params: Mapping[str, str], token: str, *, scope: str | None = None,
                  what: str | None = None, permission: str = "pages_read_engagement") -> GraphPage:
        """GET `/{version}/{path}` with `params`, as `token`.

        Args:
            path: below the version, e.g. "104523984512345/published_posts".
            scope: the page or account the call is about: its pauses apply, and a limit
                reached in it pauses it.
            what: the object in messages ("Seite 1045..."); default the path.
            permission: the permission to name when Meta says one is missing but not which.
        Raises:
            GraphTokenInvalid, GraphThrottled, GraphBlocked, GraphPermissionMissing,
            GraphNotFound, GraphError: Meta refused (see `error_from`).
            FetchError: the network failed; no message holds the token.
        """
        return await self._call(f"/{self.app.api_version}/{path.lstrip('/')}", params, token, scope,
                                what or path, permission)

    async def post(self, path: str, params: Mapping[str, str], token: str, *, what: str | None = None,
                   permission: str = "pages_manage_metadata") -> GraphPage:
        """POST `/{version}/{path}` with `params` as a form, as `token` (the subscriptions of
        the webhook). The token and proof travel in the body, never in the URL. Not retried:
        a POST may have worked although its answer got lost.

        Raises:
            as `get`.
        """
        return await self._call(f"/{self.app.api_version}/{path.lstrip('/')}", params, token, None, what or path,
                                permission, post=True)

    async def _call(self, path: str, params: Mapping[str, str], token: str | None, scope: str | None, what: str,
                    permission: str, *, post: bool = False) -> GraphPage:
        _log_version(self._base, self.app.api_version)
        scopes = self._scopes(scope)
        for attempt in range(TRANSIENT_RETRIES + 1):
            waiting = PAUSES.remaining(scopes, self.clock())
            if waiting:
                raise GraphThrottled(f"Facebook-Abfragen für {what} pausieren noch {_minutes(waiting)}: ein "
                                     "Nutzungslimit war erreicht", transient=True, retry_after=waiting.total_seconds(),
                                     hint="der Hub versucht es danach von selbst wieder")
            try:
                return await self._once(path, params, token, scopes, what, permission, post=post)
            except GraphError as exc:
                if post or not exc.transient or isinstance(exc, GraphThrottled) or attempt == TRANSIENT_RETRIES:
                    raise
                await asyncio.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")

    async def _once(self, path: str, params: Mapping[str, str], token: str | None, scopes: list[str], what: str,
                    permission: str, *, post: bool = False) -> GraphPage:
        """One request. Without `token` (the OAuth exchange), `params` carry the credentials.
        Every secret of the request is blanked out of whatever is raised."""
        query = dict(params)
        if token is not None:
            query["access_token"] = token
            if self.app.app_secret and self.app.appsecret_proof:
                query["appsecret_proof"] = appsecret_proof(token, self.app.app_secret)
        secrets = [v for k, v in query.items() if k in _SECRET_KEYS]
        self.calls += 1
        try:
            if post:
                response = await self.fetcher.post(f"{self._base}{path}", query)
            else:
                response = await self.fetcher.get(f"{self._base}{path}?{urlencode(query)}",
                                                  accept="application/json", raise_for_status=False)
        except FetchError as exc:  # raised anew without its cause: the cause's URLs hold the token
            raise type(exc)(self._clean(exc.message, secrets), hint=self._clean(exc.hint or "", secrets) or None,
                            transient=exc.transient, status=exc.status, retry_after=exc.retry_after) from None
        usage = usage_from(response.headers)
        self._note_usage(usage, scopes)
        if response.status >= 400:
            error = error_from(response.status, response.body, response.headers, what=what,
                               default_permission=permission)
            if isinstance(error, GraphThrottled):
                until = PAUSES.pause(scopes[0] if error.graph_code in _APP_CODES else scopes[-1], self.clock(),
                                     timedelta(seconds=error.retry_after) if error.retry_after else None)
                error.retry_after = (until - self.clock()).total_seconds()
            error.message = self._clean(error.message, secrets)
            error.args = (error.message,)
            raise error
        try:
            data = json.loads(response.body)
        except ValueError:
            raise GraphError(f"Graph API: keine gültige JSON-Antwort für {what}", transient=True,
                             hint="meist vorübergehend; der Hub versucht es später wieder") from None
        if not isinstance(data, dict):
            raise GraphError(f"Graph API: unerwartete Antwort für {what}", hint="api_version prüfen")
        return GraphPage(data, usage)

    def _scopes(self, scope: str | None) -> list[str]:
        app = f"app:{self._base}:{self.app.app_id or ''}"
        return [app] + ([f"object:{self._base}:{scope}"] if scope else [])

    def _note_usage(self, usage: Usage, scopes: list[str]) -> None:
        now = self.clock()
        for scope, percent in ((scopes[0], usage.app), (scopes[-1], usage.page)):
            if percent is not None and percent >= 100:
                until = PAUSES.pause(scope, now, usage.regain)
                log.warning("Graph API usage at %.0f%% for %s: paused until %s", percent, scope.rsplit(":", 1)[-1]
                            or "the app", until.isoformat(timespec="seconds"))
            elif percent is not None:
                PAUSES.relax(scope)

    def _clean(self, text: str, secrets: list[str]) -> str:
        text = redact(text)
        for secret in (*secrets, self.app.app_secret):
            if secret and len(secret) >= 8:
                text = text.replace(secret, "[Token]")
        return text

    # --- paging -------------------------------------------------------------------------------

    async def pages(self, path: str, params: Mapping[str, str], token: str, *, scope: str | None = None,
                    what: str | None = None, permission: str = "pages_read_engagement",
                    max_pages: int = 20) -> AsyncIterator[GraphPage]:
        """Every page of an edge, newest first as Meta sends them, until `paging.next` is
        absent or after `max_pages`; the caller may stop early (break). A next page is asked
        with the query Meta gave in `next`, our own token and proof, and only at our Graph host."""
        request_path, query = f"/{self.app.api_version}/{path.lstrip('/')}", dict(params)
        for _ in range(max_pages):
            page = await self._call(request_path, query, token, scope, what or path, permission)
            yield page
            if page.next is None:
                return
            request_path, query = self._next(page.next, what or path)

    def _next(self, url: str, what: str) -> tuple[str, dict[str, str]]:
        parts = urlsplit(url)
        if (parts.scheme.lower(), parts.netloc.lower()) != self._origin:
            raise GraphError(f"Graph API: die nächste Seite für {what} liegt auf einem anderen Host "
                             f"({parts.netloc}); der Hub folgt ihr nicht", hint="graph_url in der Konfiguration prüfen")
        secret = {"access_token", "appsecret_proof"}
        return parts.path, {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in secret}

    # --- tokens (for the `hub facebook` commands) --------------------------------------------

    async def exchange_token(self, user_token: str) -> dict[str, Any]:
        """A long-lived user token (about 60 days) for a short-lived one: `{access_token,
        token_type, expires_in}`. Needs the app's id and secret."""
        app_id, secret = self._app_credentials("einen Token-Tausch")
        query = {"grant_type": "fb_exchange_token", "client_id": app_id, "client_secret": secret,
                 "fb_exchange_token": user_token}
        page = await self._call(f"/{self.app.api_version}/oauth/access_token", query, None, None,
                                "den Token-Tausch", "pages_show_list")
        return page.data

    async def accounts(self, user_token: str) -> list[dict[str, Any]]:
        """The pages `user_token` may manage, each with its page token (`id, name,
        access_token, tasks`): GET /me/accounts, every page of it."""
        found: list[dict[str, Any]] = []
        async for page in self.pages("me/accounts", {"fields": "id,name,access_token,tasks", "limit": "100"},
                                     user_token, what="die Seiten des Kontos", permission="pages_show_list"):
            found += page.items
        return found

    async def debug_token(self, token: str) -> dict[str, Any]:
        """What Meta knows about `token` (`is_valid, expires_at, data_access_expires_at,
        scopes, type, profile_id`), asked with the app token (`app_id|app_secret`)."""
        app_id, secret = self._app_credentials("die Token-Prüfung")
        page = await self._call(f"/{self.app.api_version}/debug_token", {"input_token": token},
                                f"{app_id}|{secret}", None, "die Token-Prüfung", "pages_show_list")
        data = page.data.get("data")
        return data if isinstance(data, dict) else page.data

    async def subscribe_app(self, callback_url: str, verify_token: str, fields: str = "feed") -> dict[str, Any]:
        """Subscribe the app to pages' `fields` at `callback_url` (POST /{app-id}/subscriptions,
        with the app token). Meta checks the callback at once with the handshake, so the hub
        must already answer there with this `verify_token`."""
        app_id, secret = self._app_credentials("die Webhook-Anmeldung")
        form = {"object": "page", "callback_url": callback_url, "fields": fields, "verify_token": verify_token,
                "include_values": "true"}
        return (await self.post(f"{app_id}/subscriptions", form, f"{app_id}|{secret}",
                                what="die Webhook-Anmeldung der App")).data

    async def subscribe_page(self, page_id: str, page_token: str, fields: str = "feed") -> dict[str, Any]:
        """Let a page deliver `fields` to the app (POST /{page-id}/subscribed_apps, with the
        page token; needs pages_manage_metadata). A field comes only if both subscribed."""
        return (await self.post(f"{page_id}/subscribed_apps", {"subscribed_fields": fields}, page_token,
                                what=f"Seite {page_id}")).data

    def _app_credentials(self, what: str) -> tuple[str, str]:
        if not (self.app.app_id and self.app.app_secret):
            raise GraphError(f"für {what} braucht der Hub app_id und app_secret der Facebook-App",
                             hint="im facebook:-Block der Konfiguration app_id und app_secret eintragen")
        return self.app.app_id, self.app.app_secret


def token_check(info: Mapping[str, Any], needed: tuple[str, ...], now: datetime, *,
                page_id: str | None = None) -> TokenCheck:
    """What `debug_token` says about a token, as a `TokenCheck` (pure): valid, when it and
    its data access end (0 means never), which of the `needed` scopes it lacks, and whether
    it is a page token of `page_id` (when given)."""
    scopes = tuple(str(s) for s in info.get("scopes") or () if isinstance(s, str))
    problems = []
    error = info.get("error") if isinstance(info.get("error"), dict) else {}
    if info.get("is_valid") is not True and error:
        subcode = _int(error.get("subcode") or error.get("error_subcode"))
        problems.append("Grund: " + _TOKEN_SUBCODES.get(subcode or 0, str(error.get("message") or "nicht genannt")))
    kind = str(info["type"]) if info.get("type") else None
    if kind == "USER":
        problems.append("das Token ist ein Nutzer-Token, kein Seiten-Token: es läuft nach etwa 60 Tagen ab "
                        "(mit `hub facebook pages` das Seiten-Token erzeugen)")
    profile = str(info.get("profile_id") or "")
    if page_id and kind == "PAGE" and profile and profile != page_id:
        problems.append(f"das Token gehört zur Seite {profile}, nicht zu page_id {page_id} (Token vertauscht?)")
    return TokenCheck(checked_at=now, valid=info.get("is_valid") is True, expires_at=_unix_time(info.get("expires_at")),
                      data_access_expires_at=_unix_time(info.get("data_access_expires_at")), scopes=scopes,
                      missing=tuple(s for s in needed if s not in scopes), kind=kind, problems=tuple(problems))


def _unix_time(value: Any) -> datetime | None:
    seconds = _int(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def appsecret_proof(token: str, app_secret: str) -> str:
    """hex HMAC-SHA256 of the token, keyed with the app secret (required when the app has
    "Require App Secret" on)."""
    return hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def _minutes(delta: timedelta) -> str:
    minutes = max(1, round(delta.total_seconds() / 60))
    return f"{minutes} Minute" if minutes == 1 else f"{minutes} Minuten"
