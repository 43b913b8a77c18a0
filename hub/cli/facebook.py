"""`hub facebook`: the project manager's side of Facebook pages and Instagram accounts.

    hub facebook pages --user-token T   a merchant's short-lived user token -> long-lived page
                                        tokens, printed as env lines plus config snippets
    hub facebook check                  how every configured token stands (debug_token)
    hub facebook subscribe              set up the webhook: the app's subscription, then each page's

Tokens go to stdout only, and only where the command exists to hand them over (`pages`);
never to the log, never to stderr, never into the database.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Optional
from urllib.parse import urlsplit

import typer
from rich.markup import escape
from rich.table import Table

from connectors.graph import GraphApp, GraphClient, GraphError, GraphTokenInvalid, app_from
from hub.cli.common import ConfigOpt, err, open_store, out, settings_from
from hub.config import Settings
from hub.errors import FetchError
from hub.http import Fetcher
from hub.models import TOKEN_WARN_BEFORE, TokenCheck
from hub.store import utcnow
from hub.tokens import TokenReport, check_tokens, checkable

facebook_app = typer.Typer(help="Facebook pages and Instagram accounts: page tokens, token checks, the webhook.",
                           no_args_is_help=True)
TokenOpt = Annotated[str, typer.Option("--user-token", help="The merchant's user token from Facebook Login "
                                       "(short-lived is fine); '-' reads it from stdin, keeping it out of the "
                                       "shell history.")]
MANAGING_TASKS = {"CREATE_CONTENT", "MANAGE", "MODERATE"}  # a page task that may grant the app access
# Why Meta refuses a user token (error 190's subcodes), in the words to pass on to the merchant.
USER_TOKEN_PROBLEMS = {
    458: "the merchant removed the app from their Facebook account",
    459: "the merchant's Facebook account is locked until they log in and pass Facebook's security check",
    460: "the merchant changed their Facebook password since the token was made",
    463: "the token has expired",
    464: "the merchant's Facebook account is not confirmed yet",
    467: "the merchant logged out of Facebook, which ended the token",
    492: "the session is invalid (for example, the merchant lost their role on the page)",
}


# --- pages ------------------------------------------------------------------------------------------

@dataclass
class _Page:
    id: str
    name: str
    token: str = field(repr=False)
    tasks: list[str]
    instagram: str | None = None  # the linked professional Instagram account's id
    expires: str = "?"  # when the page token ends, as Meta says: a date or "never"


@facebook_app.command()
def pages(user_token: TokenOpt, config: ConfigOpt = Path("config.yaml")) -> None:
    """Turn a merchant's user token into long-lived page tokens: prints, for every page the
    merchant granted, an env line with its page token and the config lines for its sources."""
    settings = settings_from(config)
    app = _app_or_exit(settings, "exchange a user token for page tokens")
    token = (sys.stdin.readline() if user_token == "-" else user_token).strip()
    if not token:
        err.print("no user token given (hint: --user-token TOKEN, or --user-token - and the token on stdin)",
                  style="red")
        raise typer.Exit(2)
    try:
        days, found = asyncio.run(_pages(settings, app, token))
    except GraphTokenInvalid as exc:
        why = USER_TOKEN_PROBLEMS.get(exc.subcode or 0, "it has expired, was revoked or is not a user token")
        err.print(f"Facebook did not accept the user token: {why}.", style="red", markup=False)
        err.print("A user token from Facebook Login is valid for one or two hours only, and an expired one "
                  "cannot be exchanged. Ask the merchant to log in again (Facebook Login for Business, choosing "
                  "the page) and send a fresh token, then run this again at once.", markup=False)
        raise typer.Exit(1) from None
    except (GraphError, FetchError) as exc:
        err.print(f"error: {exc}", style="red", markup=False)
        if "client secret" in str(exc).lower():
            err.print("hint: check facebook.app_id and facebook.app_secret (the app's settings, Basic)", markup=False)
        raise typer.Exit(1) from None
    if not found:
        err.print("The user token works, but it grants no page. In Facebook Login the merchant must choose the "
                  "page (and needs a task on it: create content, manage or moderate); then send a new token.",
                  style="yellow", markup=False)
        raise typer.Exit(1)
    err.print(f"Long-lived user token made (valid about {days} days); it grants {len(found)} page(s). Page tokens "
              "made from it do not expire unless the merchant changes the password, leaves the page or removes "
              "the app.", markup=False)
    err.print("Put the FB_TOKEN_... lines into the hub's environment (an env file, the secret store), never into "
              "the config; then copy the source lines into the merchant's sources.", markup=False)
    sys.stdout.write(_pages_text(settings, found))


async def _pages(settings: Settings, app: GraphApp, user_token: str) -> tuple[int, list[_Page]]:
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        client = GraphClient(fetcher, app)
        exchanged = await client.exchange_token(user_token)
        long_lived = str(exchanged.get("access_token") or "")
        days = round(int(exchanged.get("expires_in") or 0) / 86400)
        found = [_Page(str(p["id"]), str(p.get("name") or p["id"]), str(p["access_token"]),
                       [str(t) for t in p.get("tasks") or ()])
                 for p in await client.accounts(long_lived) if p.get("id") and p.get("access_token")]
        for page in found:
            page.instagram = await _instagram_of(client, page)
            page.expires = _expiry(await client.debug_token(page.token))
        return days, found


async def _instagram_of(client: GraphClient, page: _Page) -> str | None:
    """The professional Instagram account linked to the page, if any (and if it may be read)."""
    try:
        answer = await client.get(page.id, {"fields": "instagram_business_account"}, page.token, scope=page.id,
                                  what=f"Seite {page.id}", permission="instagram_basic")
    except GraphError:
        return None  # no instagram_basic: the page alone is still worth connecting
    account = answer.data.get("instagram_business_account")
    return str(account["id"]) if isinstance(account, dict) and account.get("id") else None


def _expiry(info: dict[str, Any]) -> str:
    seconds = int(info.get("expires_at") or 0)
    return "never" if not seconds else datetime.fromtimestamp(seconds, UTC).date().isoformat()


def _pages_text(settings: Settings, found: list[_Page]) -> str:
    """Env lines with the tokens, and everything else as # comments, so the whole output can
    go into an env file as it is."""
    configured = {str(getattr(s.options, "page_id", "")): s.id for _, s in settings.sources()}
    names = _variable_names(found)
    lines = []
    for page in found:
        variable = names[page.id]
        tasks = ", ".join(page.tasks) or "none"
        lines.append(f"# {page.name}: Facebook page {page.id}; the merchant's tasks: {tasks}; "
                     f"the page token expires: {page.expires}")
        if not MANAGING_TASKS & set(page.tasks):
            lines.append("#   warning: without a task to create content, manage or moderate the page, the token may "
                         "not read its posts")
        if page.id in configured:
            lines.append(f"#   already configured as source {configured[page.id]}: replace its token")
        lines.append(f"{variable}={page.token}")
    lines.append("")
    lines.append("# The sources, for the merchant's `sources:` in the config:")
    for page in found:
        lines.append(f'#   - {{connector: facebook, page_id: "{page.id}", access_token: "${{{names[page.id]}}}"}}')
        if page.instagram:
            lines.append(f'#   - {{connector: instagram, ig_user_id: "{page.instagram}", '
                         f'access_token: "${{{names[page.id]}}}"}}')
    return "\n".join(lines) + "\n"


def _variable_names(found: list[_Page]) -> dict[str, str]:
    """FB_TOKEN_BAECKEREI_SCHMITZ for "Bäckerei Schmitz"; the page id where names collide."""
    names: dict[str, str] = {}
    for page in found:
        slug = _slug(page.name) or page.id
        name = f"FB_TOKEN_{slug}"
        names[page.id] = f"{name}_{page.id}" if name in names.values() else name
    return names


def _slug(text: str) -> str:
    text = text.upper().translate(str.maketrans({"Ä": "AE", "Ö": "OE", "Ü": "UE", "ẞ": "SS", "ß": "SS"}))
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Z0-9]+", "_", text).strip("_")[:40].rstrip("_")


# --- check ------------------------------------------------------------------------------------------

@facebook_app.command()
def check(config: ConfigOpt = Path("config.yaml"),
          format: Annotated[str, typer.Option("--format", "-f", help="table or json (one object per line).")] = "table",
          ) -> None:
    """Ask Facebook how every configured page token stands (debug_token): valid, expiry, data
    access, permissions. Records the answers for `hub sources` and /healthz; exit 1 if a
    token needs attention."""
    settings = settings_from(config)
    sources = checkable(settings)
    if not sources:
        out.print("no facebook or instagram sources in the config: nothing to check")
        return
    _app_or_exit(settings, "check tokens (debug_token is asked with the app token, app_id|app_secret)")
    store = open_store(settings)
    reports = asyncio.run(_check(settings, store, sources))
    now = utcnow()
    if format == "json":
        for r in reports:
            record = {"source": r.source_id, "merchant": r.merchant_id, "connector": r.connector,
                      "verdict": _verdict(r, now), "error": r.error,
                      "check": r.check.as_json() if r.check else None,
                      "warnings": r.check.warnings(now) if r.check else []}
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        out.print(_check_table(reports, now))
        for r in reports:
            for note in ([r.error] if r.error else r.check.warnings(now) if r.check else []):
                out.print(f"[yellow]{escape(r.source_id)}[/]: {escape(note)}")
    if any(_verdict(r, now) != "ok" for r in reports):
        raise typer.Exit(1)


async def _check(settings: Settings, store, sources) -> list[TokenReport]:
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        return await check_tokens(settings, store, fetcher, sources=sources)


def _check_table(reports: list[TokenReport], now: datetime) -> Table:
    table = Table(title="Facebook and Instagram tokens")
    for name in ("source", "valid", "expires", "data access", "scopes", "missing", "verdict"):
        table.add_column(name, overflow="fold", no_wrap=name in ("source", "verdict"),
                         min_width={"expires": 10, "data access": 11}.get(name))
    styles = {"ok": "green", "check failed": "red", "invalid": "red"}
    for r in reports:
        c = r.check
        verdict = _verdict(r, now)
        cells = ["?"] * 5 if c is None else [
            "yes" if c.valid else "no", _date(c.expires_at), _date(c.data_access_expires_at),
            " ".join(c.scopes) or "–", " ".join(c.missing) or "–"]
        table.add_row(r.source_id, *cells,
                      f"[{styles.get(verdict, 'yellow')}]{verdict}[/]")
    return table


def _verdict(r: TokenReport, now: datetime) -> str:
    c: TokenCheck | None = r.check
    if r.error or c is None:
        return "check failed"
    if not c.valid:
        return "invalid"
    found = []
    if any(t is not None and t - now <= TOKEN_WARN_BEFORE for t in (c.expires_at, c.data_access_expires_at)):
        found.append("expires soon")
    if c.missing:
        found.append("missing scope")
    if c.problems:
        found.append("wrong token")
    return ", ".join(found) or "ok"


def _date(moment: datetime | None) -> str:
    return "never" if moment is None else moment.date().isoformat()


# --- subscribe --------------------------------------------------------------------------------------

@facebook_app.command()
def subscribe(config: ConfigOpt = Path("config.yaml"),
              callback: Annotated[Optional[str], typer.Option(help="The webhook's public address; default "
                                                              "{platform.base_url}/hooks/facebook.")] = None,
              ) -> None:
    """Set up the webhook: subscribe the app to its pages' `feed` at the hub's callback (Meta
    checks it at once, so `hub run` or `hub serve` must answer there), then every configured
    Facebook page (its token needs pages_manage_metadata). Exit 1 if any step failed."""
    settings = settings_from(config)
    app = _app_or_exit(settings, "subscribe the webhook (the app token is app_id|app_secret)")
    fb = settings.facebook
    if fb is None or fb.verify_token is None:
        err.print(f"{settings.path}: the facebook block has no verify_token: the webhook's handshake needs one",
                  style="red", markup=False)
        err.print("hint: verify_token: ${FB_VERIFY_TOKEN} in the facebook block, any long random text "
                  "(for example from `openssl rand -hex 24`)", markup=False)
        raise typer.Exit(2)
    url = callback or f"{settings.platform.base_url.rstrip('/')}/hooks/facebook"
    if not url.lower().startswith("https://") and urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"warning: Meta only calls https:// addresses with a valid certificate, not {url} (hint: set "
                  "platform.base_url to the public https address)", style="yellow", markup=False)
    pages = [(s.id, str(s.options.page_id), s.options.token) for _, s in settings.sources()
             if s.connector == "facebook"]
    steps = asyncio.run(_subscribe(settings, app, url, fb.verify_token.get_secret_value(), pages))
    table = Table(title="Facebook webhook")
    for name in ("what", "result"):
        table.add_column(name, overflow="fold")
    for what, problem in steps:
        table.add_row(what, f"[red]{escape(problem)}[/]" if problem else "[green]subscribed[/]")
    out.print(table)
    if any(problem for _, problem in steps):
        raise typer.Exit(1)


async def _subscribe(settings: Settings, app: GraphApp, url: str, verify_token: str,
                     pages: list[tuple[str, str, str]]) -> list[tuple[str, str | None]]:
    """(what, problem or None) per step: the app, then each page."""
    steps: list[tuple[str, str | None]] = []
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        client = GraphClient(fetcher, app)
        try:
            await client.subscribe_app(url, verify_token)
            steps.append((f"app {app.app_id}: feed of its pages to {url}", None))
        except (GraphError, FetchError) as exc:
            steps.append((f"app {app.app_id}: feed of its pages to {url}", f"{exc} (is the hub running, and "
                          "reachable there? Meta checks the address at once)"))
            return steps
        for source_id, page_id, token in pages:
            try:
                await client.subscribe_page(page_id, token)
                steps.append((f"page {page_id} (source {source_id})", None))
            except (GraphError, FetchError) as exc:
                steps.append((f"page {page_id} (source {source_id})", str(exc)))
    return steps


# --- shared -----------------------------------------------------------------------------------------

def _app_or_exit(settings: Settings, purpose: str) -> GraphApp:
    """The configured Facebook app, or exit 2 with a hint when its id or secret is missing."""
    app = app_from(settings)
    if not (app.app_id and app.app_secret):
        missing = " and ".join(k for k, v in (("app_id", app.app_id), ("app_secret", app.app_secret)) if not v)
        err.print(f"{settings.path}: the facebook block has no {missing}: the hub needs the Facebook app's id and "
                  f"secret to {purpose}", style="red", markup=False)
        err.print('hint: facebook: {app_id: "1234567890", app_secret: ${FB_APP_SECRET}} at the top level of the '
                  "config; both are in the app's settings (App settings > Basic) at developers.facebook.com",
                  markup=False)
        raise typer.Exit(2)
    return app
