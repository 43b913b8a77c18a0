"""Dates, times and prices as residents read them, per locale, with Babel (CLDR data that
ships with Babel: the server's own locale settings never decide how Musterstadt reads its
dates). `locale` is a Babel locale or its name (hub.web.i18n.BABEL_LOCALES holds them parsed
once: parsing a name costs more than formatting a date); times are shown in the town's time
zone.

The patterns are fixed per language rather than CLDR's "medium"/"long", so a date looks
the same on every page: "Sa., 21. November 2026, 10:15 Uhr" / "Sat 21 November 2026, 10:15".
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_interval, format_timedelta
from babel.numbers import format_currency, format_decimal

RELATIVE_UNTIL = timedelta(days=30)  # older than this, a date reads better than "vor 7 Wochen"
_PATTERNS = {
    "de": {"datetime": "EEE, d. MMMM y, HH:mm 'Uhr'", "date": "EEE, d. MMMM y", "time": "HH:mm 'Uhr'",
           "day": "EEEE, d. MMMM", "day_year": "EEEE, d. MMMM y", "short": "d.M.", "short_year": "d.M.y"},
    "en": {"datetime": "EEE d MMMM y, HH:mm", "date": "EEE d MMMM y", "time": "HH:mm",
           "day": "EEEE d MMMM", "day_year": "EEEE d MMMM y", "short": "d MMM", "short_year": "d MMM y"},
}


def _patterns(locale: str | Locale) -> dict[str, str]:
    language = locale.language if isinstance(locale, Locale) else locale.split("_")[0]
    return _PATTERNS.get(language, _PATTERNS["de"])


def _local(dt: datetime, zone: str) -> datetime:
    return dt.astimezone(ZoneInfo(zone))


def date_time(dt: datetime | None, with_time: bool = True, *, zone: str = "Europe/Berlin",
              locale: str | Locale = "de_DE") -> str:
    """`Sa., 21. November 2026, 10:15 Uhr` (`with_time` false: `Sa., 21. November 2026`)."""
    if dt is None:
        return ""
    local = _local(dt, zone)
    return format_datetime(local, _patterns(locale)["datetime" if with_time else "date"], tzinfo=local.tzinfo,
                           locale=locale)


def datum(dt: datetime | None, zone: str = "Europe/Berlin", with_time: bool = True) -> str:
    """German `date_time`, for texts that are always German (the feeds out)."""
    return date_time(dt, with_time, zone=zone, locale="de_DE")


def time_of_day(dt: datetime | None, *, zone: str = "Europe/Berlin", locale: str | Locale = "de_DE") -> str:
    """`19:30 Uhr` / `19:30`."""
    if dt is None:
        return ""
    local = _local(dt, zone)
    return format_datetime(local, _patterns(locale)["time"], tzinfo=local.tzinfo, locale=locale)


def time_range(start: datetime, end: datetime, *, zone: str = "Europe/Berlin", locale: str | Locale = "de_DE") -> str:
    """`18:30–22:00 Uhr` / `18:30–22:00` (both on one day)."""
    tz = ZoneInfo(zone)
    return format_interval(start.astimezone(tz), end.astimezone(tz), "Hm", tzinfo=tz, locale=locale)


def weekday(dt: datetime, *, zone: str = "Europe/Berlin", locale: str | Locale = "de_DE") -> str:
    """`Sa.` / `Sat`."""
    local = _local(dt, zone)
    return format_datetime(local, "EEE", tzinfo=local.tzinfo, locale=locale)


def day_heading(day: date | datetime, *, zone: str = "Europe/Berlin", locale: str | Locale = "de_DE",
                today: date | None = None) -> str:
    """`Mittwoch, 24. Dezember` (with the year when it is not this year's)."""
    if isinstance(day, datetime):
        day = _local(day, zone).date()
    this_year = (today or datetime.now(ZoneInfo(zone)).date()).year
    return format_date(day, _patterns(locale)["day" if day.year == this_year else "day_year"], locale=locale)


def short_date(dt: date | datetime | None, *, zone: str = "Europe/Berlin", locale: str | Locale = "de_DE",
               today: date | None = None) -> str:
    """`24.12.` / `24 Dec` (with the year when it is not this year's): "gültig bis 24.12."."""
    if dt is None:
        return ""
    day = _local(dt, zone).date() if isinstance(dt, datetime) else dt
    this_year = (today or datetime.now(ZoneInfo(zone)).date()).year
    return format_date(day, _patterns(locale)["short" if day.year == this_year else "short_year"], locale=locale)


def relativ(dt: datetime | None, now: datetime | None = None, *, locale: str | Locale = "de_DE") -> str:
    """`vor 2 Stunden` / `2 hours ago`; empty when older than RELATIVE_UNTIL or in the future
    (then a date says more)."""
    if dt is None:
        return ""
    age = (now or datetime.now(timezone.utc)) - dt
    if age < timedelta(0) or age > RELATIVE_UNTIL:
        return ""
    return format_timedelta(-max(age, timedelta(seconds=1)), add_direction=True, locale=locale)


def price(offer: Any, *, locale: str | Locale = "de_DE") -> str:
    """An offer's price: `3,90 €` / `€3.90` when it is a number, else its text as written
    ("ab 9,90 €"); empty when there is none."""
    text = (getattr(offer, "price", None) or "").strip()
    if not text:
        return ""
    currency = getattr(offer, "currency", None)
    low, dash, high = text.partition("–")  # a range as data gives it: "3.99–12.99"
    if dash and _amount(low) is not None and _amount(high) is not None:
        return f"{_money(_amount(low), currency, locale)}–{_money(_amount(high), currency, locale)}"
    amount = _amount(text)
    return text if amount is None else _money(amount, currency, locale)


def _amount(text: str) -> Decimal | None:
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _money(amount: Decimal, currency: str | None, locale: str | Locale) -> str:
    if currency:
        return format_currency(amount, currency.upper(), locale=locale)
    return format_decimal(amount, format="#,##0.00", locale=locale)
