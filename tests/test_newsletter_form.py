"""The newsletter's form and links without a mail client: limits and the honeypot, expiring
and forged links, forgetting unconfirmed sign-ups, the preview, and the commands
(`hub newsletter ...`, `hub publish --channel ... --dry-run`)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hub import config
from hub.cli.commands import app as cli
from hub.models import Kind
from hub.newsletter.store import Preferences
from hub.newsletter.subscribe import CONFIRM_VALID, Desk, Limits, valid_address
from hub.newsletter.tokens import CONFIRM, MANAGE, UNSUBSCRIBE
from hub.newsletter.upkeep import forget_expired
from hub.web.app import create_app
from hub.web.newsletter import newsletter_router
from tests.newsletter_town import SmtpSink, Town, free_port

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
def sink():
    with SmtpSink() as server:
        yield server


@pytest.fixture
def town(tmp_path, sink):
    t = Town(tmp_path, sink.port)
    yield t
    t.close()


def client_with(town: Town, limits: Limits) -> TestClient:
    app = FastAPI()
    app.include_router(newsletter_router(town.settings, town.store, limits=limits))
    return TestClient(app)


def sign_up(client: TestClient, email: str, **more) -> int:
    return client.post("/newsletter", data={"channel": "wochenpost", "email": email, **more}).status_code


def test_the_honeypot_sends_nothing_and_says_nothing(town, sink):
    with client_with(town, Limits()) as client:
        answer = client.post("/newsletter", data={"channel": "wochenpost", "email": "bot@example.org",
                                                  "website": "http://spam.example"})
    assert answer.status_code == 200 and "bestätigen" in answer.text  # the bot learns nothing
    assert sink.messages == [] and town.letters.counts() == {}


def test_an_address_gets_its_confirmation_mails_sparingly(town, sink):
    with client_with(town, Limits(per_address=2, address_gap=timedelta(0))) as client:
        assert [sign_up(client, "anna@example.org") for _ in range(4)] == [200] * 4
        assert sign_up(client, "ANNA@example.org ") == 200
    assert len(sink.to("anna@example.org")) == 2  # the limit, whatever the spelling
    with client_with(town, Limits()) as client:  # by default at least ten minutes apart
        sign_up(client, "bert@example.org")
        sign_up(client, "bert@example.org")
    assert len(sink.to("bert@example.org")) == 1
    assert town.letters.counts() == {"wochenpost": {"pending": 2}}


def test_the_form_pauses_when_too_many_sign_up_at_once(town, sink):
    with client_with(town, Limits(overall=3)) as client:
        answers = [sign_up(client, f"leser{n}@example.org") for n in range(5)]
        page = client.post("/newsletter", data={"channel": "wochenpost", "email": "noch@example.org"})
    assert answers == [200, 200, 200, 429, 429]
    assert page.headers["Retry-After"] and "einigen Minuten" in page.text
    assert len(sink.messages) == 3


def test_no_smtp_server_means_a_clear_answer_and_a_second_try_works(tmp_path):
    port = free_port()
    t = Town(tmp_path, port)
    try:
        with client_with(t, Limits()) as client:
            failed = client.post("/newsletter", data={"channel": "wochenpost", "email": "anna@example.org"})
            assert failed.status_code == 503 and "nicht verschickt" in failed.text
            with SmtpSink(port=port) as sink:
                assert sign_up(client, "anna@example.org") == 200
        assert len(sink.to("anna@example.org")) == 1
    finally:
        t.close()


def test_confirmation_links_expire_and_forged_links_do_nothing(town):
    clock = [NOW]
    desk = Desk(town.settings, town.store, now=lambda: clock[0])
    sub = town.letters.sign_up("wochenpost", "anna@example.org", Preferences(), "2026-1", NOW).subscriber
    signer = town.letters.signer()
    token = signer.make(CONFIRM, sub.id, sub.nonce, NOW + CONFIRM_VALID)
    clock[0] = NOW + CONFIRM_VALID + timedelta(seconds=1)
    assert desk.confirm(token).state == "expired"
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    other = signer.make(CONFIRM, sub.id + 1, sub.nonce, NOW + CONFIRM_VALID)
    clock[0] = NOW
    assert desk.confirm(forged).state == "invalid"
    assert desk.confirm(other).state == "gone"  # a genuine link of nobody
    assert desk.confirm(signer.make(MANAGE, sub.id, sub.nonce)).state == "invalid"  # wrong purpose
    assert desk.unsubscribe(forged.replace("c.", "u.", 1)).state == "invalid"
    assert town.letters.counts() == {"wochenpost": {"pending": 1}}
    assert desk.confirm(token).state == "ok" and town.letters.counts() == {"wochenpost": {"confirmed": 1}}
    with TestClient(create_app(town.settings, town.store)) as client:
        assert client.get(f"/newsletter/confirm/{forged}").status_code == 404
        assert client.get(f"/newsletter/preferences/{forged}").status_code == 404
        assert client.post(f"/newsletter/unsubscribe/{forged}").status_code == 404
        # an ended subscription's unsubscribe link still answers kindly (RFC 8058 clients retry)
        leave = signer.make(UNSUBSCRIBE, sub.id, sub.nonce)
        assert client.post(f"/newsletter/unsubscribe/{leave}").status_code == 200
        assert client.post(f"/newsletter/unsubscribe/{leave}").status_code == 200
        assert client.get(f"/newsletter/unsubscribe/{leave}").status_code == 200


def test_unconfirmed_sign_ups_are_forgotten_after_seven_days(town):
    town.letters.sign_up("wochenpost", "alt@example.org", Preferences(), "2026-1", NOW - timedelta(days=8))
    town.letters.sign_up("wochenpost", "neu@example.org", Preferences(), "2026-1", NOW - timedelta(days=6))
    town.subscribe("treu@example.org", at=NOW - timedelta(days=30))
    assert forget_expired(town.store, NOW, timedelta(days=90)) == (1, 0)
    assert sorted(s.email for s in town.letters.confirmed()) == ["treu@example.org"]
    assert town.letters.counts() == {"wochenpost": {"confirmed": 1, "pending": 1}}


@pytest.mark.parametrize("address, ok", [
    ("anna@example.org", True), ("anna.maria+news@stadt.example.de", True), ("info@müller-bäckerei.de", True),
    ("anna", False), ("anna@localhost", False), ("anna@@example.org", False), ("an na@example.org", False),
    ("anna@example.org>", False), ("<anna@example.org>", False), (".anna@example.org", False),
    ("jürgen@example.org", False), ("a" * 65 + "@example.org", False)])
def test_which_addresses_the_form_takes(address, ok):
    assert (valid_address(address) is not None) == ok


def test_the_form_offers_the_channels_kinds_categories_and_merchants(tmp_path, sink):
    t = Town(tmp_path, sink.port, include="{kinds: [event, post], categories: [verein, gastronomie]}")
    try:
        with TestClient(create_app(t.settings, t.store)) as client:
            page = client.get("/newsletter").text
        assert 'value="event"' in page and 'value="post"' in page and 'value="offer"' not in page
        assert 'value="verein"' in page and 'value="gastronomie"' in page and 'value="einzelhandel"' not in page
        assert 'value="musikverein"' in page and 'value="modehaus"' not in page
        assert 'name="website"' in page  # the honeypot, hidden from people
        assert "Ja, ich möchte den Newsletter" in page  # what one agrees to, next to the button
    finally:
        t.close()


def test_the_platform_links_to_the_form_only_when_there_is_a_newsletter(town, tmp_path):
    with TestClient(create_app(town.settings, town.store)) as client:
        assert 'href="/newsletter"' in client.get("/").text
    settings = town.settings.model_copy(update={"channels": [c for c in town.settings.channel_list()
                                                             if c.renderer != "newsletter"]})
    with TestClient(create_app(settings, town.store)) as client:
        assert 'href="/newsletter"' not in client.get("/").text
        assert client.get("/newsletter").status_code == 404


def test_the_preview_shows_the_next_edition(town):
    town.add("baeckerei", "Frische Stollen", at=NOW - timedelta(hours=1))
    town.add("musikverein", "Adventskonzert", at=NOW - timedelta(hours=1), kind=Kind.EVENT,
             start=NOW + timedelta(days=2))
    with TestClient(create_app(town.settings, town.store)) as client:
        html = client.get("/newsletter/preview/wochenpost")
        text = client.get("/newsletter/preview/wochenpost?format=text")
        missing = client.get("/newsletter/preview/gibtsnicht")
    assert html.status_code == 200 and "Frische Stollen" in html.text and 'style="' in html.text
    assert html.headers["cache-control"] == "no-store"
    assert "VERANSTALTUNGEN" in text.text and "Adventskonzert" in text.text
    assert missing.status_code == 404


def test_subscribers_export_and_erase_commands(town):
    town.subscribe("anna@example.org", Preferences(kinds=("event",), categories=("verein",)))
    town.subscribe("bert@example.org")
    town.subscribe("offen@example.org", confirmed=False)
    runner = CliRunner()
    counts = runner.invoke(cli, ["newsletter", "subscribers", "-c", str(town.path), "--format", "json"])
    assert counts.exit_code == 0 and '"confirmed": 2' in counts.output and '"pending": 1' in counts.output
    table = runner.invoke(cli, ["newsletter", "subscribers", "-c", str(town.path), "--channel", "wochenpost"])
    assert table.exit_code == 0 and "wochenpost" in table.output
    assert runner.invoke(cli, ["newsletter", "subscribers", "-c", str(town.path), "--channel", "x"]).exit_code == 2
    target = town.path.parent / "abonnenten.csv"
    exported = runner.invoke(cli, ["newsletter", "export", "-c", str(town.path), "-o", str(target)])
    assert exported.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["email"] for r in rows] == ["anna@example.org", "bert@example.org"]  # confirmed only
    assert rows[0]["kinds"] == "event" and rows[0]["categories"] == "verein" and rows[0]["form_version"] == "2026-1"
    assert rows[0]["confirmed_at"]
    assert "Ja, ich möchte den Newsletter „Die Woche in Musterstadt“" in rows[0]["consent_text"]
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    erased = runner.invoke(cli, ["newsletter", "erase", "anna@example.org", "-c", str(town.path)])
    assert erased.exit_code == 0 and [s.email for s in town.letters.confirmed()] == ["bert@example.org"]
    again = runner.invoke(cli, ["newsletter", "erase", "anna@example.org", "-c", str(town.path)])
    assert again.exit_code == 0 and "nothing to erase" in again.output


def hub(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HUB_TEST_CLOCK_AHEAD": os.environ.get("HUB_TEST_CLOCK_AHEAD", ""), "COLUMNS": "250",
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=120)


def test_hub_publish_dry_run_writes_the_edition_for_a_sample_subscriber_then_publish_sends_it(town, sink):
    town.add("baeckerei", "Frische Stollen", at=NOW - timedelta(hours=1))
    town.add("musikverein", "Adventskonzert", at=NOW - timedelta(hours=1), kind=Kind.EVENT,
             start=NOW + timedelta(days=2))
    town.subscribe("anna@example.org", Preferences(kinds=("event",)))
    town.subscribe("bert@example.org")
    dry = hub("publish", "-c", str(town.path), "--channel", "wochenpost", "--dry-run", cwd=town.path.parent)
    assert dry.returncode == 0, dry.stderr
    eml = town.path.parent / "data" / "newsletter" / "wochenpost-dry-run.eml"
    assert str(eml) in dry.stdout.replace("\n", "") and "subscriber #1" in dry.stdout
    written = eml.read_text()
    assert "Adventskonzert" in written and "Frische Stollen" not in written  # subscriber #1's topics
    assert "anna@example.org" not in written  # a sample: no real address, no working personal link
    assert sink.messages == []
    sent = hub("publish", "-c", str(town.path), "--channel", "wochenpost", cwd=town.path.parent)
    assert sent.returncode == 0, sent.stderr
    assert "published" in sent.stdout and sorted(sink.recipients()) == ["anna@example.org", "bert@example.org"]
    again = hub("publish", "-c", str(town.path), "--channel", "wochenpost", cwd=town.path.parent)
    assert "nothing new" in again.stdout and len(sink.messages) == 2


def test_the_example_config_has_a_harmless_newsletter(tmp_path):
    settings = config.load(ROOT / "config.example.yaml", env={})
    [letter] = [c for c in settings.channel_list() if c.renderer == "newsletter"]
    assert letter.id == "wochenpost" and letter.schedule
    assert letter.options.smtp is None or letter.options.smtp.host in ("127.0.0.1", "localhost")
