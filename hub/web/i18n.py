"""The resident pages' languages: German by default, English on request (issue 14).

Texts are gettext messages whose ids are the German texts; `locale/en/LC_MESSAGES/messages.po`
holds their English. The `.po` is read once at startup (`babel.messages.pofile.read_po`) and
compiled in memory, so a fresh clone needs no compile step and git holds no binary.

Each request's locale lives in a context variable set by `LocaleMiddleware`: `?lang=en`
(or `?lang=de`) decides and is kept in the links of that page (`chosen()`), else the
browser's `Accept-Language` (the town's language wins a tie), else the town's language.
`gettext`/`ngettext` read it, and `install(env, zone)` gives a Jinja2 environment the
`jinja2.ext.i18n` extension with these callables (newstyle: `{{ _("Seite %(n)s", n=2) }}`)
plus the locale-aware date and price filters of `hub.web.formatting`. Merchants' content is
never translated.
"""

from __future__ import annotations

import gettext as _gettext
import re
from contextvars import ContextVar
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlencode

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment

from hub.web import formatting

LOCALES = ("de", "en")  # German first: msgids are German, it needs no catalog
DEFAULT = "de"
CATALOGS = Path(__file__).parent / "locale"
DOMAIN = "messages"
# How dates and prices read (24-hour clock in both; "3,90 €" and "€3.90"), parsed once.
BABEL_LOCALES = {"de": Locale.parse("de_DE"), "en": Locale.parse("en_GB")}
OG_LOCALES = {"de": "de_DE", "en": "en_GB"}

_locale: ContextVar[str] = ContextVar("hub_locale", default=DEFAULT)
_chosen: ContextVar[str | None] = ContextVar("hub_locale_chosen", default=None)
_QUALITY = re.compile(r"^\s*q\s*=\s*([0-9.]+)\s*$")


def N_(message: str) -> str:
    """Marks a text for the catalog without translating it yet (it is translated where shown)."""
    return message


@lru_cache(maxsize=None)
def translations(locale: str) -> _gettext.NullTranslations:
    """The compiled catalog of `locale` (German: the msgids themselves)."""
    path = CATALOGS / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if locale == DEFAULT or not path.exists():
        return _gettext.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=locale)
    compiled = BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries stay out, as with msgfmt
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def current() -> str:
    """This request's locale ("de" or "en")."""
    return _locale.get()


def chosen() -> str | None:
    """The locale the request's `?lang=` chose, kept in the page's links; None when it chose none."""
    return _chosen.get()


def use(locale: str, chosen_by_query: str | None = None) -> None:
    """Make `locale` this context's locale (the middleware does it for every request)."""
    _locale.set(locale if locale in LOCALES else DEFAULT)
    _chosen.set(chosen_by_query if chosen_by_query in LOCALES else None)


def gettext(message: str, **variables: Any) -> str:
    text = translations(current()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    text = translations(current()).ngettext(singular, plural, n)
    return text % {"num": n, **variables}


_ = gettext


def negotiate(query_lang: str | None, accept_language: str | None, default: str = DEFAULT) -> tuple[str, str | None]:
    """(locale, chosen by the query): `?lang=` when it names a locale we have, else the best
    of `Accept-Language` by quality, `default` winning ties, else `default`."""
    wanted = (query_lang or "").strip().lower()
    if wanted in LOCALES:
        return wanted, wanted
    best, best_q = default, 0.0
    for lang, q in _accepted(accept_language or ""):
        locale = lang.split("-")[0]
        if locale in LOCALES and (q > best_q or (q == best_q and locale == default)):
            best, best_q = locale, q
    return best, None


def _accepted(header: str) -> Iterable[tuple[str, float]]:
    for part in header.split(","):
        lang, *params = part.strip().lower().split(";")
        q = 1.0
        for param in params:
            if param.strip().startswith("q"):  # an unreadable quality counts as "not wanted"
                match = _QUALITY.match(param)
                try:
                    q = float(match.group(1)) if match else 0.0
                except ValueError:
                    q = 0.0
        if lang and q > 0:
            yield lang.strip(), q


class LocaleMiddleware:
    """Sets the locale of each HTTP request (pure ASGI: the context variable is set in the
    task that runs the app, handlers and templates included)."""

    def __init__(self, app, default: str = DEFAULT) -> None:
        self.app = app
        self.default = default if default in LOCALES else DEFAULT

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        locale, by_query = locale_of(scope, self.default)
        use(locale, by_query)
        scope.setdefault("state", {})["locale"] = locale
        return await self.app(scope, receive, send)


def locale_of(scope: dict, default: str = DEFAULT) -> tuple[str, str | None]:
    """(locale, chosen by the query) of an ASGI HTTP scope (or a Starlette request's scope)."""
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    accept = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"accept-language"), None)
    return negotiate(query.get("lang"), accept, default)


def url(path: str, pairs: Iterable[tuple[str, Any]] = (), **params: Any) -> str:
    """A link within the site: `path` with `pairs` and `params` as its query (None values
    left out) and the `?lang=` this request chose, so a reader stays in their language."""
    lang = _chosen.get()
    if not pairs and not params:  # most links: a path, perhaps with the language
        return f"{path}?lang={lang}" if lang else path
    query = [(k, str(v)) for k, v in [*pairs, *params.items()] if v is not None and v != ""]
    if lang and not any(k == "lang" for k, _ in query):
        query.append(("lang", lang))
    return f"{path}?{urlencode(query)}" if query else path


def install(env: Environment, zone: str = "Europe/Berlin") -> Environment:
    """Give a Jinja2 environment the per-request translations (`_`, `gettext`, `ngettext`,
    newstyle), `url()`, `locale()`, `chosen_locale()` and the locale-aware filters: `datum`
    (`| datum(false)`: without the time), `datum_kurz` (24.12.), `tag` (a day heading),
    `uhrzeit`, `zeitspanne` (`start | zeitspanne(end)`: 18:30–22:00 Uhr), `relativ` (vor 2
    Stunden) and `preis` (an Offer's price). Templates of other modules (the embed widget)
    use the same."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda s: translations(current()).gettext(s),
        lambda s, p, n: translations(current()).ngettext(s, p, n), newstyle=True)
    env.globals.update(url=url, locale=current, chosen_locale=chosen)

    def fmt(name: str):
        function = getattr(formatting, name)
        return lambda value, *args, **kwargs: function(value, *args, zone=zone, locale=BABEL_LOCALES[current()],
                                                       **kwargs)

    env.filters.update(datum=fmt("date_time"), datum_kurz=fmt("short_date"), tag=fmt("day_heading"),
                       uhrzeit=fmt("time_of_day"), zeitspanne=fmt("time_range"),
                       relativ=lambda dt: formatting.relativ(dt, locale=BABEL_LOCALES[current()]) or "",
                       preis=lambda offer: formatting.price(offer, locale=BABEL_LOCALES[current()]))
    return env
