"""The newsletter end to end, with a real SMTP server on loopback (aiosmtpd): the double
opt-in through the web form, an edition to exactly the matching confirmed subscribers,
the mail's parts, links and headers, one-click unsubscribe, erasure, bounces."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hub.cli.commands import app as cli
from hub.models import Kind
from hub.newsletter.job import NewsletterJob
from hub.newsletter.store import Preferences
from hub.web.app import create_app
from tests.newsletter_town import BASE, SmtpSink, Town, free_port, self_signed

NOW = datetime.now(timezone.utc).replace(microsecond=0)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta) -> datetime:
        self.at += timedelta(**delta)
        return self.at


@pytest.fixture
def sink():
    with SmtpSink(reject={"kaputt@example.org": 550, "voll@example.org": 452}) as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def town(request, tmp_path, sink):
    db = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    t = Town(tmp_path, sink.port, db=db)
    yield t
    t.close()


@pytest.fixture
def lite(tmp_path, sink):
    t = Town(tmp_path, sink.port)
    yield t
    t.close()


def fill(town: Town, at: datetime) -> None:
    """Four records of the week: a bakery post with an image, a shop's offer (labelled
    "Anzeige" by the config), a concert in three days, a town hall notice."""
    town.add("baeckerei", "Frische Christstollen", at=at - timedelta(hours=5), image=True)
    town.add("modehaus", "Winterschlussverkauf", at=at - timedelta(hours=4), kind=Kind.OFFER, price="19.90")
    town.add("musikverein", "Adventskonzert in der Stadthalle", at=at - timedelta(hours=3), kind=Kind.EVENT,
             start=at + timedelta(days=3), end=at + timedelta(days=3, hours=2))
    town.add("rathaus", "Bürgerbüro am Samstag geschlossen", at=at - timedelta(hours=2))


def send(town: Town, clock) -> list:
    return asyncio.run(NewsletterJob(town.settings, town.store, owner="test", now=clock).publish_now("wochenpost"))


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.hrefs.append(attrs["href"])
        if tag == "img":
            self.images.append(attrs["src"])
            assert attrs.get("alt")


def parts(received):
    message = received.message
    assert message.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in message.iter_parts()]
    assert kinds == ["text/plain", "text/html"]  # plain first, the preferred HTML last
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


# --- the double opt-in ------------------------------------------------------------------------

def test_double_opt_in_through_the_web_form_end_to_end(lite, sink):
    with TestClient(create_app(lite.settings, lite.store)) as client:
        form = client.get("/newsletter")
        assert form.status_code == 200 and 'name="email"' in form.text and "set-cookie" not in form.headers
        answer = client.post("/newsletter", data={"channel": "wochenpost", "email": "Anna@Example.org",
                                                  "kinds": ["event", "post"], "categories": ["verein"], "website": ""})
        assert answer.status_code == 200 and "bestätigen" in answer.text and "set-cookie" not in answer.headers
        [mail] = sink.to("Anna@Example.org")
        assert mail.message["Auto-Submitted"] == "auto-generated"
        text = mail.message.get_body(("plain",)).get_content()
        assert "Veranstaltungen, Neuigkeiten; von Vereine" in text
        [subscriber] = [s for s in _all(lite)]
        assert subscriber.status == "pending" and subscriber.confirmed_at is None

        fill(lite, NOW)  # an edition before the confirmation does not reach the address
        assert send(lite, Clock(NOW)) and sink.to("Anna@Example.org") == [mail]

        link = re.search(r"https://\S+/newsletter/confirm/\S+", text).group(0)
        confirmed = client.get(urlsplit(link).path)
        assert confirmed.status_code == 200 and "Anmeldung bestätigt" in confirmed.text
        [subscriber] = _all(lite)
        assert subscriber.status == "confirmed" and subscriber.form_version == "2026-1"
        assert subscriber.created_at <= subscriber.confirmed_at
        assert subscriber.preferences == Preferences(categories=("verein",), kinds=("event", "post"))
        again = client.get(urlsplit(link).path)  # following it twice keeps the first consent time
        assert again.status_code == 200 and "schon bestätigt" in again.text
        assert _all(lite)[0].confirmed_at == subscriber.confirmed_at
    # No trace of the request is stored with the consent: no client address, no user agent.
    dump = "\n".join(sqlite3.connect(lite.store.engine.url.database).iterdump())
    assert "testclient" not in dump and "python-httpx" not in dump


def test_the_same_address_again_changes_nothing_but_gets_its_own_links(lite, sink):
    lite.subscribe("bert@example.org", Preferences(kinds=("event",)))
    with TestClient(create_app(lite.settings, lite.store)) as client:
        answer = client.post("/newsletter", data={"channel": "wochenpost", "email": "bert@example.org"})
    assert answer.status_code == 200 and "bestätigen" in answer.text  # reads the same: the form tells nobody
    [mail] = sink.to("bert@example.org")
    assert "bereits" in mail.message.get_body(("plain",)).get_content()
    assert "/newsletter/preferences/" in mail.message.get_body(("plain",)).get_content()
    assert _all(lite)[0].preferences == Preferences(kinds=("event",))


def test_a_wrong_address_is_explained_and_nothing_is_stored(lite, sink):
    with TestClient(create_app(lite.settings, lite.store)) as client:
        answer = client.post("/newsletter", data={"channel": "wochenpost", "email": "anna(at)example"})
    assert answer.status_code == 400 and "gültige E-Mail-Adresse" in answer.text
    assert _all(lite) == [] and sink.messages == []


# --- an edition -------------------------------------------------------------------------------

def test_an_edition_reaches_exactly_the_matching_confirmed_subscribers_once(town, sink):
    fill(town, NOW)
    ids = {address: town.subscribe(address, prefs) for address, prefs in [
        ("alle@example.org", Preferences()),
        ("vereine@example.org", Preferences(categories=("verein",))),
        ("termine@example.org", Preferences(kinds=("event",))),
        ("laden@example.org", Preferences(kinds=("offer",), merchants=("modehaus", "baeckerei"))),
        ("nichts@example.org", Preferences(kinds=("offer",), merchants=("rathaus",)))]}
    town.subscribe("offen@example.org", confirmed=False)
    clock = Clock(NOW)
    [report] = send(town, clock)
    assert report.status == "sent" and report.counts == {"sent": 4, "skipped": 1}
    assert sorted(sink.recipients()) == ["alle@example.org", "laden@example.org", "termine@example.org",
                                         "vereine@example.org"]
    got = {m.recipient: parts(m) for m in sink.messages}
    assert all(t in got["alle@example.org"][0] for t in ("Christstollen", "Winterschlussverkauf", "Adventskonzert",
                                                         "Bürgerbüro"))
    for address, wanted in [("vereine@example.org", {"Adventskonzert"}), ("termine@example.org", {"Adventskonzert"}),
                            ("laden@example.org", {"Winterschlussverkauf"})]:
        text, html = got[address]
        shown = {t for t in ("Christstollen", "Winterschlussverkauf", "Adventskonzert", "Bürgerbüro") if t in text}
        assert shown == wanted and all(t in html for t in wanted)
    # Sections in the configured order, the label as on the platform.
    text, html = got["alle@example.org"]
    assert text.index("VERANSTALTUNGEN") < text.index("ANGEBOTE") < text.index("NEUIGKEITEN")
    assert "Modehaus Becker [Anzeige]" in text and ">Anzeige</span>" in html
    clock.advance(minutes=5)  # nothing new since: no edition, no mail
    assert send(town, clock) == [] and len(sink.messages) == 4
    assert town.letters.progress(report.edition_id).counts == {"sent": 4, "skipped": 1}
    assert len({m.message["Message-ID"] for m in sink.messages}) == 4


def test_each_mail_has_both_parts_working_links_and_the_list_headers(lite, sink):
    fill(lite, NOW)
    lite.subscribe("alle@example.org")
    [report] = send(lite, Clock(NOW))
    [mail] = sink.messages
    message = mail.message
    for header in ("Date", "Message-ID", "List-Id", "From", "Subject"):
        assert message[header], header
    assert message["Subject"] == "Die Woche in Musterstadt"
    assert message["List-Id"] == "Die Woche in Musterstadt <wochenpost.musterstadt.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.fullmatch(r"<(https://[^>]+)>", message["List-Unsubscribe"]).group(1)
    assert unsubscribe.startswith(f"{BASE}/newsletter/unsubscribe/")
    assert re.fullmatch(r"<wochenpost\.\d{12}\.\d+@musterstadt\.example>", message["Message-ID"])
    text, html = parts(mail)
    assert len(html.encode()) < 100_000  # Gmail clips larger mails
    assert "style=" in html and "<style>@media" in html.replace("\n", "")  # inlined, phones' rules kept
    links = Links()
    links.feed(html)
    assert unsubscribe in links.hrefs and unsubscribe in text
    assert links.images and all(src.startswith(f"{BASE}/media/") for src in links.images)
    records = {r.id for r in lite.store.records.list(limit=10)}
    shown = {int(h.rsplit("/", 1)[1]) for h in links.hrefs if "/items/" in h}
    assert shown == records
    with TestClient(create_app(lite.settings, lite.store)) as client:
        for href in {h for h in links.hrefs if h.startswith(BASE)}:
            if "/unsubscribe/" in href:
                continue  # followed below, by the one-click test
            assert client.get(urlsplit(href).path).status_code == 200, href
        image = client.get(urlsplit(links.images[0]).path)  # the hub's copy (the bakery's host is made up)
        assert image.status_code in (200, 404)


def test_one_click_unsubscribe_needs_no_login_and_nothing_more_is_sent(lite, sink):
    clock = Clock(NOW)
    fill(lite, clock())
    lite.subscribe("geht@example.org")
    lite.subscribe("bleibt@example.org")
    send(lite, clock)
    [mail] = sink.to("geht@example.org")
    url = re.fullmatch(r"<([^>]+)>", mail.message["List-Unsubscribe"]).group(1)
    with TestClient(create_app(lite.settings, lite.store)) as client:
        page = client.get(urlsplit(url).path)  # a person who clicks the link gets a page with a button
        assert page.status_code == 200 and 'method="post"' in page.text
        assert len(_all(lite)) == 2  # looking is not leaving
        # What a mail client sends (RFC 8058): no cookie, no CSRF token, no login.
        client.cookies.clear()
        gone = client.post(urlsplit(url).path, content=b"List-Unsubscribe=One-Click",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert gone.status_code == 200 and "set-cookie" not in gone.headers
        assert client.post(urlsplit(url).path, content=b"List-Unsubscribe=One-Click").status_code == 200  # again: fine
    assert [s.email for s in _all(lite)] == ["bleibt@example.org"]
    lite.add("baeckerei", "Neue Brötchen", at=clock.advance(days=7))
    send(lite, clock)
    assert len(sink.to("geht@example.org")) == 1 and len(sink.to("bleibt@example.org")) == 2


def test_the_preferences_link_changes_what_the_next_edition_brings(lite, sink):
    clock = Clock(NOW)
    fill(lite, clock())
    lite.subscribe("anna@example.org")
    send(lite, clock)
    manage = re.search(r"https://\S+/newsletter/preferences/\S+", parts(sink.messages[0])[0]).group(0)
    with TestClient(create_app(lite.settings, lite.store)) as client:
        page = client.get(urlsplit(manage).path)
        assert page.status_code == 200 and 'name="kinds"' in page.text and "a…@example.org" in page.text
        saved = client.post(urlsplit(manage).path, data={"kinds": ["event"]})
        assert saved.status_code == 200 and "Gespeichert" in saved.text
    assert _all(lite)[0].preferences == Preferences(kinds=("event",))
    lite.add("baeckerei", "Neue Brötchen", at=clock.advance(days=7))
    assert send(lite, clock)[0].counts == {"skipped": 1}  # a new post only: nothing for an events reader
    lite.add("musikverein", "Sommerfest", at=clock.advance(days=1), kind=Kind.EVENT, start=clock() + timedelta(days=9))
    send(lite, clock)
    text = parts(sink.messages[-1])[0]
    assert "Sommerfest" in text and "Brötchen" not in text and "Adventskonzert" not in text  # that one is over


def test_upcoming_events_stay_in_until_they_are_past(lite, sink):
    clock = Clock(NOW)
    lite.add("musikverein", "Adventskonzert", at=clock(), kind=Kind.EVENT, start=clock() + timedelta(days=5))
    lite.subscribe("anna@example.org")
    send(lite, clock)
    lite.add("baeckerei", "Stollen", at=clock.advance(days=2))
    send(lite, clock)
    lite.add("baeckerei", "Lebkuchen", at=clock.advance(days=7))  # the concert is over by now
    send(lite, clock)
    texts = [parts(m)[0] for m in sink.messages]
    assert ["Adventskonzert" in t for t in texts] == [True, True, False]
    assert ["Stollen" in t for t in texts] == [False, True, False]


def test_records_approved_or_committed_late_come_in_the_next_edition(lite, sink):
    clock = Clock(NOW)
    lite.subscribe("anna@example.org")
    lite.add("baeckerei", "Stollen", at=clock())
    lite.add("rathaus", "Sitzung des Rates", at=clock())
    held = next(r for r in lite.store.records.list(limit=5) if r.item.title.startswith("Sitzung"))
    lite.store.records.hide(held.id)  # held back, as for review
    send(lite, clock)
    # Fetched ten minutes before that edition was made, but stored only after it.
    lite.add("musikverein", "Probe fällt aus", at=clock() - timedelta(minutes=10))
    clock.advance(days=7)
    lite.store.records.approve(held.id)
    send(lite, clock)
    texts = [parts(m)[0] for m in sink.messages]
    assert [("Stollen" in t, "Sitzung" in t, "Probe" in t) for t in texts] == [(True, False, False),
                                                                             (False, True, True)]


def test_a_hidden_record_is_left_out_of_an_edition_sent_later(lite, sink):
    fill(lite, NOW)
    lite.subscribe("anna@example.org")
    job = NewsletterJob(lite.settings, lite.store, owner="test", now=Clock(NOW))
    edition = job.make_edition(lite.channel, NOW, NOW)
    concert = next(r for r in lite.store.records.list(limit=10) if r.item.kind == Kind.EVENT)
    lite.store.records.hide(concert.id)
    asyncio.run(job.sender.send(edition))
    text, _ = parts(sink.messages[0])
    assert "Adventskonzert" not in text and "Christstollen" in text


# --- rejections, outages, rivals --------------------------------------------------------------

def test_permanent_rejections_disable_an_address_after_three_and_temporary_ones_are_retried(lite, sink):
    clock = Clock(NOW)
    lite.subscribe("kaputt@example.org")
    lite.subscribe("voll@example.org")
    lite.subscribe("gut@example.org")
    for n in range(3):  # each week's edition, and the retries of the weeks before that are due
        lite.add("baeckerei", f"Brot der Woche {n}", at=clock.advance(days=7))
        reports = send(lite, clock)
        assert [sum(r.counts[s] for r in reports) for s in ("sent", "failed", "deferred")] == [1, 1, n + 1]
    by_address = {s.email: s for s in _all(lite)}
    assert by_address["kaputt@example.org"].status == "disabled" and by_address["kaputt@example.org"].bounces == 3
    assert by_address["gut@example.org"].status == "confirmed"
    # The 452 answers are tried again when due; once the mailbox has room, the mail arrives.
    sink.reject.pop("voll@example.org")
    clock.advance(minutes=6)
    job = NewsletterJob(lite.settings, lite.store, owner="test", now=clock)
    reports = asyncio.run(job.tick())
    assert sum(r.counts["sent"] for r in reports) == 1  # the latest edition's retry is due; the older ones later
    clock.advance(hours=3)
    asyncio.run(job.tick())
    assert len(sink.to("voll@example.org")) == 3
    lite.add("baeckerei", "Noch ein Brot", at=clock.advance(days=7))
    send(lite, clock)
    assert "kaputt@example.org" not in {m.recipient for m in sink.messages[-2:]}
    assert [r["detail"] for r in _ledger(lite) if r["status"] == "failed"][0].startswith("550")
    assert all("kaputt@" not in (r["detail"] or "") for r in _ledger(lite))  # replies are stored without the address


def test_an_unreachable_server_loses_nothing_and_the_edition_goes_out_later(tmp_path):
    port = free_port()  # nothing listens here yet
    t = Town(tmp_path, port)
    clock = Clock(NOW)
    fill(t, clock())
    t.subscribe("anna@example.org")
    t.subscribe("bert@example.org")
    [report] = send(t, clock)
    assert report.status == "failed" and f"127.0.0.1:{port}" in report.error
    assert t.letters.progress(report.edition_id).counts == {"pending": 2}
    job = NewsletterJob(t.settings, t.store, owner="test", now=clock)
    assert asyncio.run(job.tick()) == []  # it waits a minute before trying again
    try:
        with SmtpSink(port=port) as sink:  # the relay is back
            clock.advance(minutes=2)
            [report] = asyncio.run(job.tick())
        assert report.status == "sent" and sorted(sink.recipients()) == ["anna@example.org", "bert@example.org"]
    finally:
        t.close()


def test_two_senders_never_send_one_edition_twice(town, sink):
    fill(town, NOW)
    for n in range(40):
        town.subscribe(f"leser{n}@example.org")
    clock = Clock(NOW)
    first = NewsletterJob(town.settings, town.store, owner="a", now=clock)
    first.make_edition(town.channel, NOW, NOW)
    second = NewsletterJob(town.settings, town.store, owner="b", now=clock)

    async def both():
        return await asyncio.gather(first.tick(), second.tick(), first.tick())

    asyncio.run(both())
    recipients = sink.recipients()
    assert sorted(recipients) == sorted(f"leser{n}@example.org" for n in range(40))


def test_a_cron_slot_makes_one_edition_whoever_ticks(tmp_path, sink):
    t = Town(tmp_path, sink.port, schedule="0 7 * * FRI")
    try:
        start = datetime(2026, 11, 16, 12, 0, tzinfo=timezone.utc)  # a Monday
        clock = Clock(start)
        a = NewsletterJob(t.settings, t.store, owner="a", now=clock)
        b = NewsletterJob(t.settings, t.store, owner="b", now=clock)
        a.prepare()
        b.prepare()
        t.subscribe("anna@example.org", at=start)
        t.add("baeckerei", "Stollen", at=start + timedelta(days=1))
        clock.advance(days=3)  # Thursday: not yet
        assert asyncio.run(a.tick()) == [] and sink.messages == []
        clock.at = datetime(2026, 11, 20, 6, 0, 30, tzinfo=timezone.utc)  # Friday 07:00:30 in Berlin

        async def both():
            return await asyncio.gather(a.tick(), b.tick())

        asyncio.run(both())
        asyncio.run(both())
        assert len(sink.messages) == 1
        edition = t.letters.last_edition("wochenpost")
        assert edition.slot == datetime(2026, 11, 20, 6, 0, tzinfo=timezone.utc)
        clock.advance(days=7)  # the next Friday: nothing new, no edition
        asyncio.run(both())
        assert len(sink.messages) == 1 and t.letters.last_edition("wochenpost").id == edition.id
    finally:
        t.close()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_sending_over_starttls_and_implicit_tls(tmp_path, security):
    certificate = self_signed(tmp_path)
    with SmtpSink(tls=security, certificate=certificate) as sink:
        t = Town(tmp_path, sink.port, smtp=f"security: {security}, ca_bundle: {certificate[0]}")
        try:
            fill(t, NOW)
            t.subscribe("anna@example.org")
            [report] = send(t, Clock(NOW))
        finally:
            t.close()
    assert report.status == "sent" and sink.recipients() == ["anna@example.org"] and sink.encrypted == [True]


def test_an_untrusted_certificate_is_refused(tmp_path):
    with SmtpSink(tls="starttls", certificate=self_signed(tmp_path)) as sink:
        t = Town(tmp_path, sink.port, smtp="security: starttls")  # the system's CAs do not know it
        try:
            fill(t, NOW)
            t.subscribe("anna@example.org")
            [report] = send(t, Clock(NOW))
        finally:
            t.close()
    assert report.status == "failed" and "starttls" in report.error and sink.messages == []


def test_one_connection_at_a_steady_pace(tmp_path, sink):
    t = Town(tmp_path, sink.port, rate=20)
    try:
        fill(t, NOW)
        for n in range(11):
            t.subscribe(f"leser{n}@example.org")
        started = time.monotonic()
        [report] = send(t, Clock(NOW))
        took = time.monotonic() - started
    finally:
        t.close()
    assert report.counts["sent"] == 11 and len(sink.connections) == 1
    assert took >= 0.5 - 0.05  # ten gaps of 1/20 s: never faster than the rate


# --- erasure ----------------------------------------------------------------------------------

def test_erasure_leaves_no_trace_in_a_full_dump(lite, sink, tmp_path):
    clock = Clock(NOW)
    lite.subscribe("erika.mustermann@example.org")
    lite.subscribe("jemand@example.org")
    for n in range(3):  # three editions reached the address
        lite.add("baeckerei", f"Brot {n}", at=clock.advance(days=7))
        send(lite, clock)
    assert len(sink.to("erika.mustermann@example.org")) == 3
    lite.letters.sign_up("wochenpost", "Erika.Mustermann@example.org", Preferences(), "2026-1", clock())
    lite.close()
    result = CliRunner().invoke(cli, ["newsletter", "erase", "ERIKA.MUSTERMANN@example.org", "-c", str(lite.path)])
    assert result.exit_code == 0, result.output
    assert "erased" in result.output
    db = tmp_path / "hub.db"
    dump = "\n".join(sqlite3.connect(db).iterdump()).casefold()
    assert "erika" not in dump and "mustermann" not in dump
    assert "jemand@example.org" in dump
    for path in tmp_path.glob("hub.db*"):  # nor in the file's free pages or the WAL
        assert b"mustermann" not in path.read_bytes().lower(), path.name


# --- helpers ----------------------------------------------------------------------------------

def _all(town: Town):
    from sqlalchemy import select
    from hub.newsletter.store import _subscriber
    from hub.newsletter.tables import SUBSCRIBERS

    with town.store.engine.connect() as conn:
        return [_subscriber(r) for r in conn.execute(select(SUBSCRIBERS).order_by(SUBSCRIBERS.c.id))]


def _ledger(town: Town) -> list[dict]:
    from sqlalchemy import select
    from hub.newsletter.tables import DELIVERIES

    with town.store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(DELIVERIES))]
