"""Merchant activity (issue 17): posts, channels, reliability and completeness per month, the
documented activity score and its configurable weights, the quiet merchants, and a friendly
German reminder sent through a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import re
import socket
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from hub import activity
from hub.config import MailConfig
from hub.mail import Mail, MailError, Mailer
from hub.store.admin import AdminStore
from hub.web.app import create_app
from tests.admintown import csrf_of, files, ingest, login, open_town, write_config
from tests.feedserver import FeedServer


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "unbekannt" in address:
            return "550 5.1.1 Mailbox unbekannt"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture(scope="module")
def server():
    with FeedServer() as s:
        s.files.update(files(s.url("").rstrip("/")))
        yield s


@pytest.fixture
async def town(tmp_path, server, smtp):
    settings, store = open_town(write_config(tmp_path, server.url("").rstrip("/"), mail_port=smtp[0].port))
    await ingest(settings, store)
    yield settings, store
    store.close()


def this_month(settings) -> date:
    return datetime.now(ZoneInfo(settings.platform.timezone)).date().replace(day=1)


async def test_activity_of_a_month_by_the_documented_formula(town):
    settings, store = town
    found = {a.merchant_id: a for a in activity.month_activity(settings, store, this_month(settings))}
    bakery = found["baeckerei"]
    assert (bakery.posts, bakery.items, bakery.channels) == (3, 3, {"Feed": 3})
    assert (bakery.fetches, bakery.failures, bakery.reliability) == (1, 0, 1.0)
    assert bakery.fields == {"image": pytest.approx(2 / 3)}
    assert bakery.median_delay is None  # everything came with the source's first fetch: no delay to tell
    # posts 3/8, speed 0, reliability 1, completeness 2/3, channels 1/2; weights 35, 15, 20, 20, 10
    assert bakery.score == round(100 * (35 * 3 / 8 + 15 * 0 + 20 * 1 + 20 * 2 / 3 + 10 * 0.5) / 100) == 51
    assert found["kaputt"].score == 0 and found["kaputt"].reliability == 0.0
    assert list(found)[0] == "baeckerei"  # highest score first


async def test_the_weights_are_configurable(town):
    settings, store = town
    only_posts = settings.admin.activity.model_copy(update={"weights": settings.admin.activity.weights.model_copy(
        update={"speed": 0, "reliability": 0, "completeness": 0, "channels": 0})})
    changed = settings.model_copy(update={"admin": settings.admin.model_copy(update={"activity": only_posts})})
    found = {a.merchant_id: a for a in activity.month_activity(changed, store, this_month(settings))}
    assert found["baeckerei"].score == 38  # 3 of 8 posts: 37.5, rounded to even
    assert found["gaertnerei"].score == 0


def test_speed_falls_with_the_logarithm_of_the_delay():
    from datetime import timedelta

    from hub.config import ActivityConfig

    cfg = ActivityConfig()
    assert activity.speed(timedelta(minutes=5), cfg) == 1.0
    assert activity.speed(timedelta(days=3), cfg) == 0.0 and activity.speed(None, cfg) == 0.0
    middle = activity.speed(timedelta(hours=(72 ** 0.5)), cfg)  # halfway between 1 h and 72 h on a log scale
    assert middle == pytest.approx(0.5)


async def test_quiet_merchants_get_a_reminder_by_mail(town, smtp):
    settings, store = town
    controller, inbox = smtp
    with TestClient(create_app(*town), base_url="http://127.0.0.1", follow_redirects=False) as client:
        login(client)
        page = client.get("/admin/merchants").text
        quiet = page.split('id="still"')[1]
        assert "Gärtnerei Blüte" in quiet and "vor 60 Tagen" in quiet
        assert "Kiosk Kaputt" in quiet and "Noch nie etwas veröffentlicht" in quiet
        assert "Kiosk Kaputt" in quiet.split("Achtung:")[1]  # its source is broken: maybe not its fault
        assert "Bäckerei Korn" not in quiet
        assert "Zum Senden aus dem Cockpit fehlt <code>contact_email</code>" in quiet  # the kiosk has none
        token = csrf_of(page)
        subject = "Wir vermissen Ihre Neuigkeiten auf Teststadt erleben"
        assert subject in quiet
        body = quiet.split('name="text"')[1].split(">", 1)[1].split("</textarea>")[0]
        assert body.startswith("Guten Tag,") and "Gärtnerei Blüte" in body and "anna" in body
        answer = client.post("/admin/merchants/gaertnerei/remind",
                             data={"csrf": token, "betreff": subject, "text": body.replace("&#34;", '"')})
        assert answer.status_code == 303 and "meldung=reminded" in answer.headers["location"]
        after = client.get(answer.headers["location"]).text
        assert "Die Erinnerung an Gärtnerei Blüte ist verschickt." in after
        assert "zuletzt erinnert am" in after
    [(recipients, message)] = inbox.messages
    assert recipients == ["post@gaertnerei.example"]
    assert message["Subject"] == subject and message["To"] == "Gärtnerei Blüte <post@gaertnerei.example>"
    assert message["From"] == "Teststadt erleben <kuemmerer@teststadt.example>" and message["Message-ID"]
    text = message.get_content()
    assert "seit Ihrem letzten Beitrag am" in text and "erscheint automatisch auch auf Teststadt erleben" in text
    entry = AdminStore(store).audit(limit=1)[0]
    assert (entry.user, entry.action, entry.target, entry.detail["subject"]) == ("anna", "remind", "gaertnerei", subject)


async def test_a_big_town_s_merchants_come_a_page_at_a_time(town, monkeypatch):
    """Thousands of merchants: the activity table a page at a time, highest score first, and
    the quiet ones with their reminders on pages of their own; counts over all; each list's
    pager keeps the other list's page and the chosen month."""
    from hub.web.admin import pages

    settings, store = town
    monkeypatch.setattr(pages, "MERCHANTS_PAGE_SIZE", 2)  # the test town has five merchants
    monkeypatch.setattr(pages, "QUIET_PAGE_SIZE", 1)  # two of them are quiet
    month = this_month(settings).isoformat()[:7]
    ranked = [a.merchant_id for a in activity.month_activity(settings, store, this_month(settings))]

    def listed(html: str) -> tuple[list[str], str, str]:
        active, quiet = html.split('id="still"')
        return re.findall(r'data-label="Teilnehmer"><a href="/admin\?teilnehmer=([^"]+)"', active), active, quiet

    with TestClient(create_app(*town), base_url="http://127.0.0.1", follow_redirects=False) as client:
        login(client)
        rows, active, quiet = listed(client.get("/admin/merchants").text)
        assert rows == ranked[:2] and "5 Teilnehmer" in active and "Seite 1 von 3" in active
        assert '<a href="/admin/merchants?seite=2">Weiter</a>' in active
        assert "Kiosk Kaputt" in quiet and "Gärtnerei Blüte" not in quiet  # never posted: the longest quiet
        assert "2 Teilnehmer" in quiet and '<a href="/admin/merchants?still=2#still">Weiter</a>' in quiet
        page = client.get("/admin/merchants?seite=3&still=2").text
        rows, active, quiet = listed(page)
        assert rows == ranked[4:] and "Gärtnerei Blüte" in quiet and "Kiosk Kaputt" not in quiet
        assert "Wir vermissen Ihre Neuigkeiten" in quiet  # its reminder is on its page
        sent = client.post("/admin/merchants/gaertnerei/remind", data={
            "csrf": csrf_of(page), "still": re.search(r'name="still" value="(\d+)"', quiet).group(1),
            "betreff": "Wir vermissen Sie", "text": "Guten Tag"})
        assert sent.status_code == 303 and "still=2" in sent.headers["location"]  # back where it was sent from
        assert '<a href="/admin/merchants?seite=2&amp;still=2">Zurück</a>' in active
        assert '<a href="/admin/merchants?still=1&amp;seite=3#still">Zurück</a>' in quiet
        seen = [listed(client.get(f"/admin/merchants?seite={n}").text)[0] for n in (1, 2, 3, 99)]
        assert [r for page in seen[:3] for r in page] == ranked and seen[3] == seen[2]  # past the last: the last
        _, active, _ = listed(client.get(f"/admin/merchants?monat={month}&seite=2").text)
        assert f'<a href="/admin/merchants?seite=3&amp;monat={month}">Weiter</a>' in active


async def test_a_past_month_is_read_once_in_a_while_this_month_every_time(town, monkeypatch):
    """A big town's month reads tens of thousands of records, and the cockpit shows six: a
    month that is over is kept for a while (only late edits change it); this month is read
    anew each time, as is any month after a config reload."""
    from sqlalchemy import event

    settings, store = town
    statements = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    def reads(month, settings_=settings) -> int:
        before = len(statements)
        activity.month_activity(settings_, store, month)
        return len(statements) - before

    now = this_month(settings)
    last = activity.month_of(now - timedelta(days=1))
    assert reads(now) and reads(now)  # this month: read every time
    assert reads(last) and not reads(last)  # a past month: kept
    reloaded = settings.model_copy()
    assert reads(last, reloaded) and not reads(last, reloaded)  # another config: read anew
    monkeypatch.setattr(activity, "PAST_KEPT", 0.0)
    assert reads(last, reloaded)  # kept no longer than PAST_KEPT


async def test_only_admins_send_and_only_where_an_address_is_known(town, smtp):
    with TestClient(create_app(*town), base_url="http://127.0.0.1", follow_redirects=False) as client:
        login(client, "ben")
        token = csrf_of(client.get("/admin/merchants").text)
        refused = client.post("/admin/merchants/gaertnerei/remind", data={"csrf": token, "betreff": "x", "text": "y"})
        assert refused.status_code == 403
    with TestClient(create_app(*town), base_url="http://127.0.0.1", follow_redirects=False) as client:
        login(client)
        token = csrf_of(client.get("/admin/merchants").text)
        no_address = client.post("/admin/merchants/kaputt/remind", data={"csrf": token, "betreff": "x", "text": "y"})
        assert no_address.status_code == 400 and "contact_email" in no_address.text
        empty = client.post("/admin/merchants/gaertnerei/remind", data={"csrf": token, "betreff": "x", "text": " "})
        assert empty.status_code == 400
    assert smtp[1].messages == []


async def test_a_mail_server_that_is_down_is_reported_in_german(tmp_path, server):
    settings, store = open_town(write_config(tmp_path, server.url("").rstrip("/"), mail_port=_free_port()))
    await ingest(settings, store)
    with TestClient(create_app(settings, store), base_url="http://127.0.0.1", follow_redirects=False) as client:
        login(client)
        token = csrf_of(client.get("/admin/merchants").text)
        answer = client.post("/admin/merchants/gaertnerei/remind", data={"csrf": token, "betreff": "Hallo", "text": "Hallo!"})
        assert answer.status_code == 303 and "fehler=" in answer.headers["location"]
        page = client.get(answer.headers["location"]).text
        assert "wurde nicht verschickt" in page and "lehnt die Verbindung ab" in page
    assert AdminStore(store).audit(limit=1)[0].action == "remind_failed"
    store.close()


def test_mail_errors_say_what_to_check(smtp):
    controller, inbox = smtp
    plain = MailConfig.model_validate({"host": "127.0.0.1", "port": controller.port, "security": "starttls",
                                       "from": "hub@teststadt.example", "timeout": 5})
    with pytest.raises(MailError) as caught:  # the server offers no STARTTLS: nothing goes out unencrypted
        Mailer(plain).send(Mail("a@b.example", "Betreff", "Text"))
    assert "bietet kein STARTTLS an" in str(caught.value) and inbox.messages == []
    tls = plain.model_copy(update={"security": "tls"})
    with pytest.raises(MailError) as caught:
        Mailer(tls).send(Mail("a@b.example", "Betreff", "Text"))
    assert "verschlüsselte Verbindung" in str(caught.value)
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        slow = plain.model_copy(update={"port": silent.getsockname()[1], "timeout": 0.5, "security": "none"})
        with pytest.raises(MailError) as caught:
            Mailer(slow).send(Mail("a@b.example", "Betreff", "Text"))
    assert "antwortet nicht innerhalb von 0.5 s" in str(caught.value)
    ok = plain.model_copy(update={"security": "none"})
    assert Mailer(ok).send(Mail("a@b.example", "Grüße", "Schöne Grüße")).startswith("<")
    assert inbox.messages[0][1]["Subject"] == "Grüße"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_several_mails_over_one_connection(smtp):
    controller, inbox = smtp
    config = MailConfig.model_validate({"host": "127.0.0.1", "port": controller.port, "security": "none",
                                        "from": "hub@teststadt.example"})
    sent = Mailer(config).send_many([Mail("a@teststadt.example", "Eins", "1"), Mail("unbekannt@teststadt.example", "Zwei", "2"),
                                     Mail("c@teststadt.example", "Drei", "3")])
    assert isinstance(sent[1], MailError) and "unbekannt@teststadt.example" in str(sent[1]) and "550" in str(sent[1])
    assert all(isinstance(r, str) and r.startswith("<") for r in (sent[0], sent[2]))
    assert [m["Subject"] for _, m in inbox.messages] == ["Eins", "Drei"]
