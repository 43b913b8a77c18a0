"""The resident pages' languages (hub.web.i18n, hub.web.formatting): the English catalog
keeps up with every text of the templates and the code, the browser's languages are read
as HTTP says, and dates, times and prices read as each language writes them."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from hub.web import formatting, i18n

# Not about the date (message catalogues): left out of make test's second run (--clock-ahead).
pytestmark = pytest.mark.timeless

WEB = Path(i18n.__file__).parent
# Where resident-facing texts live: the web app's templates and modules, and the newsletter's
# pages (hub.web.newsletter renders them in the site's look). The cockpit (/admin) is German only.
SOURCES = [(WEB, [("templates/**.html", "jinja2"), ("*.py", "python")]),
           (WEB.parent / "newsletter", [("templates/**.html", "jinja2")])]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
BERLIN = ZoneInfo("Europe/Berlin")


def used_messages() -> dict[str | tuple[str, str], str]:
    """Every message the templates and the web modules ask to translate -> where."""
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found: dict[str | tuple[str, str], str] = {}
    for root, method_map in SOURCES:
        for filename, line, message, _comments, _context in extract_from_dir(root, method_map, options,
                                                                              keywords=keywords):
            found.setdefault(message, f"{root.name}/{filename}:{line}")
    return found


@pytest.fixture(scope="module")
def catalog():
    with (WEB / "locale" / "en" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po, locale="en")


def test_every_text_of_the_interface_has_its_english(catalog):
    used = used_messages()
    assert len(used) > 100  # the extraction found the pages' texts
    missing = []
    for message, where in used.items():
        entry = catalog.get(message[0] if isinstance(message, tuple) else message)
        strings = entry.string if entry is not None else None
        if entry is None or entry.fuzzy or not strings or (isinstance(strings, tuple) and not all(strings)):
            missing.append(f"{where}: {message!r}")
    assert missing == [], "add these to hub/web/locale/en/LC_MESSAGES/messages.po:\n" + "\n".join(missing)


def test_translations_keep_their_placeholders(catalog):
    for entry in catalog:
        if not entry.id:
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        wanted = set(PLACEHOLDER.findall(ids[0])) - {"num"}
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) - {"num"} == wanted, entry.id
            assert "%" not in PLACEHOLDER.sub("", text).replace("%%", ""), entry.id  # a stray % breaks formatting


def test_the_catalog_has_no_texts_nobody_uses(catalog):
    used = {m[0] if isinstance(m, tuple) else m for m in used_messages()}
    unused = [entry.id for entry in catalog if entry.id and
              (entry.id[0] if isinstance(entry.id, tuple) else entry.id) not in used]
    assert unused == []


def test_gettext_follows_the_requests_locale():
    i18n.use("en")
    assert i18n.gettext("Veranstaltungen") == "Events"
    assert i18n.gettext("Suche nach „%(q)s“", q="Brot") == "Search for “Brot”"
    assert i18n.ngettext("%(num)s Treffer", "%(num)s Treffer", 1) == "1 result"
    assert i18n.ngettext("%(num)s Treffer", "%(num)s Treffer", 3) == "3 results"
    i18n.use("de")
    assert i18n.gettext("Veranstaltungen") == "Veranstaltungen"
    assert i18n.ngettext("%(num)s Treffer", "%(num)s Treffer", 3) == "3 Treffer"
    i18n.use("fr")  # never a locale without a catalog
    assert i18n.current() == "de"


@pytest.mark.parametrize("query, accept, expected", [
    (None, None, ("de", None)),
    ("en", None, ("en", "en")),
    ("EN", "de", ("en", "en")),
    ("de", "en-US,en;q=0.9", ("de", "de")),
    ("fr", "en", ("en", None)),  # not ours: the browser decides
    (None, "en-US,en;q=0.9,de;q=0.8", ("en", None)),
    (None, "de-AT,de;q=0.9,en;q=0.8", ("de", None)),
    (None, "en, de", ("de", None)),  # equal: German
    (None, "de;q=0.5, en;q=0.5", ("de", None)),
    (None, "fr-CH, fr;q=0.9, en;q=0.8, *;q=0.5", ("en", None)),
    (None, "en;q=0, de;q=0.1", ("de", None)),  # q=0: not wanted at all
    (None, "en;q=0", ("de", None)),
    (None, "en-GB;q=abc", ("de", None)),  # an unreadable quality counts as none
    (None, "", ("de", None)),
])
def test_negotiation(query, accept, expected):
    assert i18n.negotiate(query, accept) == expected


def test_the_towns_own_language_wins_a_tie():
    assert i18n.negotiate(None, "de, en", default="en") == ("en", None)


def test_links_keep_a_chosen_language_only():
    i18n.use("en", "en")
    assert i18n.url("/events", [("tag", "advent")], seite=2) == "/events?tag=advent&seite=2&lang=en"
    assert i18n.url("/", lang="de") == "/?lang=de"
    i18n.use("en", None)  # from the browser: the links stay as they are
    assert i18n.url("/events", seite=None) == "/events"
    i18n.use("de")


# --- dates, times and prices ----------------------------------------------------------------------

MOMENT = datetime(2026, 11, 21, 9, 15, tzinfo=timezone.utc)  # Saturday, 10:15 in Berlin


@pytest.mark.parametrize("moment, with_time, expected", [
    (MOMENT, True, "Sa., 21. November 2026, 10:15 Uhr"),
    (MOMENT, False, "Sa., 21. November 2026"),
    (datetime(2027, 3, 1, 23, 30, tzinfo=timezone.utc), True, "Di., 2. März 2027, 00:30 Uhr"),
    (datetime(2027, 7, 4, 6, 5, tzinfo=timezone.utc), True, "So., 4. Juli 2027, 08:05 Uhr"),  # summer time
])
def test_german_dates_read_as_before(moment, with_time, expected):
    assert formatting.datum(moment, "Europe/Berlin", with_time) == expected  # what the feeds out write


def test_dates_times_and_prices_per_locale():
    start, end = MOMENT + timedelta(hours=9), MOMENT + timedelta(hours=11, minutes=30)
    today = date(2026, 11, 20)
    cases = {"de_DE": ("Sa., 21. November 2026, 10:15 Uhr", "19:15–21:45 Uhr", "Samstag, 21. November", "21.11.",
                       "3,90\xa0€", "Sa."),
             "en_GB": ("Sat 21 November 2026, 10:15", "19:15–21:45", "Saturday 21 November", "21 Nov",
                       "€3.90", "Sat")}
    for locale, (full, span, heading, short, price, day) in cases.items():
        assert formatting.date_time(MOMENT, locale=locale) == full
        assert formatting.time_range(start, end, locale=locale) == span
        assert formatting.day_heading(MOMENT, locale=locale, today=today) == heading
        assert formatting.short_date(MOMENT, locale=locale, today=today) == short
        assert formatting.price(SimpleNamespace(price="3.90", currency="EUR"), locale=locale) == price
        assert formatting.weekday(MOMENT, locale=locale) == day
    assert formatting.day_heading(MOMENT, today=date(2027, 1, 2)) == "Samstag, 21. November 2026"  # another year
    assert formatting.short_date(MOMENT, today=date(2027, 1, 2)) == "21.11.2026"
    assert formatting.price(SimpleNamespace(price="ab 9,90 €", currency="EUR")) == "ab 9,90 €"  # words stay
    assert formatting.price(SimpleNamespace(price=None, currency=None)) == ""
    # a range as a website's data gives it, in the reader's format; nonsense stays as written
    assert formatting.price(SimpleNamespace(price="3.99–12.99", currency="EUR")) == "3,99\xa0€–12,99\xa0€"
    assert formatting.price(SimpleNamespace(price="3.99–12.99", currency="EUR"), locale="en_GB") == "€3.99–€12.99"
    assert formatting.price(SimpleNamespace(price="NaN", currency="EUR")) == "NaN"


def test_relative_times():
    now = MOMENT
    assert formatting.relativ(now - timedelta(hours=2), now) == "vor 2 Stunden"
    assert formatting.relativ(now - timedelta(hours=2), now, locale="en_GB") == "2 hours ago"
    assert formatting.relativ(now - timedelta(days=3), now) == "vor 3 Tagen"
    assert formatting.relativ(now - timedelta(days=45), now) == ""  # a date says more
    assert formatting.relativ(now + timedelta(hours=1), now) == ""  # the future is no "ago"
