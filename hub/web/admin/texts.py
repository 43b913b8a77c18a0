"""The cockpit's German words: dates, numbers, why a record was held, what an action was."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal

from hub.activity import CHANNEL_NAMES, PART_LABELS
from hub.stats import EVENTS

LOCALE = "de_DE"
ROLE_NAMES = {"admin": "Administration", "moderator": "Moderation"}
STATUS_NAMES = {"published": "veröffentlicht", "pending": "wartet auf Freigabe", "held": "zurückgehalten",
                "hidden": "verborgen"}
ACTIONS = {
    "login": "angemeldet", "logout": "abgemeldet", "login_failed": "Anmeldung fehlgeschlagen",
    "approve": "freigegeben", "hide": "verborgen", "edit": "bearbeitet", "split": "getrennt",
    "merge": "zusammengeführt", "remind": "Erinnerung gesendet", "remind_failed": "Erinnerung nicht gesendet",
    "config_check": "Konfiguration geprüft", "config_dry_run": "Probelauf einer Quelle",
    "config_apply": "Konfiguration übernommen", "config_refused": "Konfiguration abgelehnt",
    "stats_export": "Statistik exportiert",
}
RULE_NAMES = {  # why identity merged an origin into a record (hub.identity), for the project manager
    "first": "Grundlage", "manual": "von Hand zusammengeführt",
    "same-url": "dieselbe Adresse", "links-to": "verlinkt auf den anderen Beitrag",
    "same-event": "dieselbe Veranstaltung", "event-moved": "Veranstaltung mit neuer Uhrzeit erneut veröffentlicht",
    "time-changed": "Hinweis auf eine neue Uhrzeit",
    "near-duplicate-text": "fast gleicher Text", "similar-offer": "ähnliches Angebot mit gleichem Preis",
    "similar-title-and-text": "ähnlicher Titel und Text", "same-details": "umformuliert, gleiche Angaben",
}
_REASONS = [
    (re.compile(r"contains the blocked word '(.+)'"), "enthält das gesperrte Wort „{0}“ (block_words)"),
    (re.compile(r"contains none of the keep words"), "enthält keines der Pflichtwörter (keep_words)"),
    (re.compile(r"reviewed before they are shown"), "Beiträge dieses Teilnehmers werden vor der Veröffentlichung "
                                                    "geprüft (trust: review)"),
]


def reason(text: str | None) -> str:
    """Why a record was held or hidden, in German."""
    if not text:
        return ""
    for pattern, german in _REASONS:
        if m := pattern.search(text):
            return german.format(*m.groups())
    return text


def install(env: Any, settings) -> None:
    zone = ZoneInfo(settings.platform.timezone)

    def datum(value: datetime | date | None, with_time: bool = True) -> str:
        if value is None:
            return "–"
        if isinstance(value, datetime):
            local = value.astimezone(zone)
            pattern = "d. MMMM y, HH:mm 'Uhr'" if with_time else "d. MMMM y"
            return format_datetime(local, pattern, tzinfo=local.tzinfo, locale=LOCALE)
        return format_date(value, "d. MMMM y", locale=LOCALE)

    def monat(value: date) -> str:
        return format_date(value, "MMMM y", locale=LOCALE)

    env.filters.update(datum=datum, monat=monat, relativ=relative, zahl=number, dauer=duration,
                       prozent=percent, grund=reason, kanal=lambda c: CHANNEL_NAMES.get(c, c),
                       aktion=lambda a: ACTIONS.get(a, a), rolle=lambda r: ROLE_NAMES.get(r, r),
                       status=lambda s: STATUS_NAMES.get(s, s), ereignis=lambda e: EVENTS.get(e, e),
                       teil=lambda p: PART_LABELS.get(p, p), regel=lambda r: RULE_NAMES.get(r, r))


def relative(value: datetime | None, now: datetime | None = None) -> str:
    """"vor 5 Minuten", "vor 3 Tagen", "in 2 Stunden"."""
    if value is None:
        return "nie"
    now = now or datetime.now(timezone.utc)
    delta = now - value
    future = delta < timedelta(0)
    seconds = abs(delta.total_seconds())
    for size, one, many in ((86400, "Tag", "Tagen"), (3600, "Stunde", "Stunden"), (60, "Minute", "Minuten")):
        if seconds >= size:
            n = int(seconds // size)
            unit = one if n == 1 else many
            return f"in {n} {unit}" if future else f"vor {n} {unit}"
    return "gerade eben"


def number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return format_decimal(round(value, digits), format="#,##0" + ("." + "0" * digits if digits else ""),
                          locale=LOCALE)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{number(100 * value)} %"


def duration(value: timedelta | float | None) -> str:
    """"12 Minuten", "3,5 Stunden", "2 Tage"."""
    if value is None:
        return "–"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 90:
        return f"{number(seconds)} Sekunden"
    if seconds < 90 * 60:
        return f"{number(seconds / 60)} Minuten"
    if seconds < 36 * 3600:
        return f"{number(seconds / 3600, 1)} Stunden"
    return f"{number(seconds / 86400, 1)} Tage"
