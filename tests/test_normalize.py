"""Normalization: German and English dates, events read from prose, language."""

from __future__ import annotations

from datetime import date, datetime, time, timezone

import pytest

from hub.models import Item, Kind
from hub.normalize import detect_language, find_dates, normalize, says_cancelled, status_cancelled

REF = date(2026, 11, 20)


@pytest.mark.parametrize("text, day, start, end", [
    ("Samstag, 5. Dezember 2026, 16 Uhr", date(2026, 12, 5), time(16), None),
    ("5.12.2026 19:30", date(2026, 12, 5), time(19, 30), None),
    ("am 5.12. um 19.30 Uhr", date(2026, 12, 5), time(19, 30), None),
    ("am 05.12.26, 19h", date(2026, 12, 5), time(19), None),
    ("von 10 bis 12 Uhr am Samstag, 5. Dezember", date(2026, 12, 5), time(10), time(12)),
    ("5. Dez. ab 18:00 Uhr", date(2026, 12, 5), time(18), None),
    ("2026-12-05", date(2026, 12, 5), None, None),
    ("Dreikönigssingen am 6. Januar", date(2027, 1, 6), None, None),  # no year, in December's view: next year
    ("5 December 2026, 19:00", date(2026, 12, 5), time(19), None),
    ("5th Dec 2026 from 7 to 9 pm", date(2026, 12, 5), time(19), time(21)),
])
def test_dates_and_times(text, day, start, end):
    [mention] = find_dates(text, REF)
    assert (mention.day, mention.start, mention.end) == (day, start, end)


def test_english_month_first_dates():
    [a, b] = find_dates("Dec 5, 2026 7pm and December 12th at 7:30 p.m.", REF, english=True)
    assert (a.day, a.start, b.day, b.start) == (date(2026, 12, 5), time(19), date(2026, 12, 12), time(19, 30))


@pytest.mark.parametrize("text", ["Zusammen nur 14,90 € statt 19,40 €.", "Samstags von 7:30 bis 11:30 Uhr",
                                  "Version 6.6.2 ist installiert", "Es stand 24:26.", "4 Brötchen für 2 €"])
def test_no_dates_in_prices_hours_versions_and_scores(text):
    assert find_dates(text, REF) == []


def post(title: str, text: str = "", summary: str = "", published: str = "2026-11-20T10:00:00+01:00",
         language: str = "de") -> Item:
    return Item("s", "e", "m", title=title, summary=summary, content_html=f"<p>{text}</p>", content_text=text,
                published=datetime.fromisoformat(published), language=language)


@pytest.mark.parametrize("item, start, all_day", [
    (post("Harmonie spielt auf dem Weihnachtsmarkt am Samstag, 5. Dezember",
          summary="Weihnachtliche Blasmusik vor dem Rathaus: Samstag, 5. Dezember 2026, 16 Uhr."),
     "2026-12-05T16:00:00+01:00", False),
    (post("Flohmarkt am 28. November"), "2026-11-28T00:00:00+01:00", True),
    (post("Movie night in English", "Join us on December 10, 2026 at 8pm.", language="en"),
     "2026-12-10T20:00:00+01:00", False),
])
def test_a_post_that_announces_an_event_becomes_one(item, start, all_day):
    normalized = normalize(item)
    assert normalized.kind == Kind.EVENT and normalized.event.detected
    assert normalized.event.start == datetime.fromisoformat(start) and normalized.event.all_day is all_day


@pytest.mark.parametrize("item", [
    post("Danke für den Martinsumzug am 11. November!"),  # in the past
    post("Neue Öffnungszeiten ab 4. November", "Samstags von 8 bis 14 Uhr."),  # a period
    post("Filiale vom 2. bis 7. Dezember geschlossen"),  # a period
    post("Weihnachtsmarkt 11.–13. Dezember auf dem Marktplatz"),  # a period, its month named once
    post("Vorlesestunde: jeden Mittwoch um 16 Uhr", "Ab 2. Dezember 2026."),  # recurring
    post("Sperrmüll", "Abholung am 1.12., 8.12. und 15.12.2026 ab 7 Uhr."),  # a list of dates
    post("Lebkuchen im Angebot am Marktplatz", "Ab Samstag, 21. November 2026."),  # no time, no event word
    post("Heimsieg!", "Am Freitag, 20. November 2026, um 8 Uhr begann das Spiel."),  # a report: before publication
])
def test_what_is_not_an_event(item):
    assert normalize(item).kind == Kind.POST


@pytest.mark.parametrize("text, language", [
    ("Die Tage werden kürzer, die Frühstücke bei uns länger: ab sofort gibt es", "de"),
    ("Join us for the Christmas market on the square this Saturday, with music and", "en"),
    ("Pizza Margherita 8,50", None),
])
def test_language(text, language):
    assert detect_language(text) == language


def test_normalize_cleans_the_link_and_keeps_a_configured_language_when_unsure():
    item = normalize(Item("s", "e", "m", title="Pizza", url="https://x.example/a?utm_source=fb&id=3&fbclid=1",
                          language="de-DE", published=datetime(2026, 11, 20, tzinfo=timezone.utc)))
    assert (item.url, item.language) == ("https://x.example/a?id=3", "de")


@pytest.mark.parametrize("text", ["Der Markt, die Bühne; und (das) Fest!", "für-alle z.B. 3x ½ ² der2 2der the_end",
                                  "DER  Und\tdie\xa0das\nthe «and» „is“ …of… are/of", ""])
def test_words_count_stop_words_as_the_word_regex_does(text):
    from hub.normalize import _ALL_STOP, _WORD, _words

    text = text.lower()
    assert sorted(filter(_ALL_STOP.__contains__, _words(text))) == sorted(filter(_ALL_STOP.__contains__, _WORD.findall(text)))


@pytest.mark.parametrize("text", ["am 5.12.2026, 19 Uhr und 6.12.", "x5.12. a.5.12. ٣5.12. 12.12.2026-2026-12-24",
                                  "Preise: 12,50 € – 3 Stück", "2026-12-05T10:00 5th Dec 6 Dezember", "keine Ziffern"])
def test_date_matches_are_those_of_the_date_pattern(text):
    from hub.normalize import _DATE, _date_matches

    assert [m.span() for m in _date_matches(text)] == [m.span() for m in _DATE.finditer(text)]


@pytest.mark.parametrize("title", [
    "Abgesagt: Lesung mit Petra Ahlers", "ABGESAGT – Weihnachtskonzert", "Konzert am Samstag abgesagt!",
    "Kinderturnen fällt heute aus", "Die Lesung fällt leider aus, Karten werden erstattet",
    "Training fällt wegen Hallensanierung aus", "Wochenmarkt entfällt", "Flohmarkt findet dieses Jahr nicht statt",
    "Concert cancelled", "Match called off",
])
def test_a_title_that_calls_an_event_off(title):
    assert says_cancelled(title)


@pytest.mark.parametrize("title", [
    "Konzert nicht abgesagt", "Nicht abgesagt: Konzert im Park", "Fällt das Konzert aus?", "Training fällt nicht aus",
    "Abgesagte Termine werden nachgeholt", "Konzert verschoben", "Flohmarkt findet statt",
    "Konzert im Park: Eintritt entfällt", "Gebühren entfallen ab Januar", "Maskenpflicht entfällt",
    "Fällt aus allen Wolken: Komödie im Theater", "Lesung: Ausfall der Bahn beachten",
])
def test_what_does_not_call_an_event_off(title):
    assert not says_cancelled(title)


def test_normalize_cancels_events_only():
    announced = post("Flohmarkt am 28. November abgesagt")  # read from prose, and called off
    assert normalize(announced).event.cancelled
    assert normalize(post("Flohmarkt am 28. November")).event.cancelled is False
    assert normalize(post("Öffnungszeiten: Mittagspause entfällt")).event is None  # a post stays a post


@pytest.mark.parametrize("status, cancelled", [
    ("https://schema.org/EventCancelled", True), ("http://schema.org/EventCancelled/", True),
    ("EventCancelled", True), ("schema:EventCancelled", True), ({"@id": "https://schema.org/EventCancelled"}, True),
    ("https://schema.org/EventScheduled", False), ("https://schema.org/EventPostponed", False), (None, False),
])
def test_schema_org_event_status(status, cancelled):
    assert status_cancelled(status) is cancelled
