"""The cockpit in a real browser (issue 17): headless Chromium drives `hub serve` on a small
town (feeds on a loopback server, filled by `hub fetch`), as a project manager would: logs
in, sees the broken source explained in plain German, approves a held record and finds it on
`/`, hides one with a reason, sends a reminder through a real SMTP server (aiosmtpd) and
downloads the month's CSV. A request without a CSRF token is refused, wrong passwords are
throttled, anonymous requests go to the login (the admin API answers 401); nothing loads
from elsewhere and the CSP is never violated; on a phone nothing is wider than the screen.
Afterwards the store holds no IP address, cookie value or user agent of the session."""

from __future__ import annotations

import csv
import io
import re
import shutil
import socket
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path
from urllib.request import urlopen

import pytest
from aiosmtpd.controller import Controller

from tests.admintown import ROOT, USERS, files, write_config
from tests.feedserver import FeedServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser
playwright = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)

CLIENT_IP = "203.0.113.99"  # uvicorn takes it from X-Forwarded-For (the test talks over loopback)
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Kuemmerer-Testbrowser/3.1"


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cockpit")
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    with FeedServer() as feeds:
        url = feeds.url("").rstrip("/")
        feeds.files.update(files(url))
        path = write_config(tmp, url, mail_port=smtp.port)
        hub = [sys.executable, "-m", "hub"]
        fetched = subprocess.run([*hub, "fetch", "-c", str(path), "--no-images"], cwd=ROOT, capture_output=True,
                                 text=True, timeout=180)
        assert fetched.returncode == 1 and "kaputt-feed" in fetched.stdout, fetched.stdout + fetched.stderr
        port = free_port()
        server = subprocess.Popen([*hub, "serve", "-c", str(path), "--port", str(port)], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=(tmp / "serve.log").open("w"))
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield base, inbox, tmp
        server.terminate()
        server.wait(timeout=30)
    smtp.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


def new_page(browser, base: str, **context):
    ctx = browser.new_context(locale="de-DE", user_agent=USER_AGENT, accept_downloads=True,
                              extra_http_headers={"X-Forwarded-For": CLIENT_IP}, **context)
    return ctx, watched(ctx.new_page())


def watched(page):
    """`page` noting console errors (CSP violations among them) and every URL it requests."""
    page.problems, page.requested = [], []
    page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: page.requested.append(r.url))
    return page


def log_in(page, base: str, name: str = "anna", password: str | None = None):
    page.goto(base + "/admin")
    assert "/admin/login" in page.url
    page.fill("#name", name)
    page.fill("#passwort", password or USERS[name][1])
    with page.expect_navigation():
        page.click("form[action='/admin/login'] button[type=submit]")


def test_a_project_managers_session(site, browser):
    base, inbox, tmp = site
    ctx, page = new_page(browser, base)
    log_in(page, base)
    assert page.url == base + "/admin"

    # the broken source first, in plain German, with what to do
    first = page.locator("table.sources tbody tr").first
    assert "Kiosk Kaputt" in first.inner_text() and "Gestört" in first.inner_text()
    assert "Unter dieser Adresse gibt es nichts (mehr)" in first.inner_text()
    assert "Was tun?" in first.inner_text()

    # approve a held record: it is on the platform at once
    page.goto(base + "/admin/review")
    held = page.locator("article.record", has_text="Vereinsfest am Sportplatz")
    with page.expect_navigation():
        held.locator("button:has-text('Freigeben')").click()
    assert "erscheint jetzt auf der Plattform" in page.locator(".notice.ok").inner_text()
    resident = watched(ctx.new_page())
    resident.goto(base + "/")
    assert "Vereinsfest am Sportplatz" in resident.content()
    assert "Neues Dinkelbrot" in resident.content()

    # hide a published one, with a reason
    page.goto(base + "/admin/review")
    page.fill("#suche", "Dinkelbrot")
    with page.expect_navigation():
        page.click("form[role=search] button")
    record = page.locator("section.search article.record", has_text="Neues Dinkelbrot")
    record.locator("input[name=grund]").fill("Doppelt gemeldet")
    with page.expect_navigation():
        record.locator("button:has-text('Verbergen')").click()
    resident.goto(base + "/")
    assert "Neues Dinkelbrot" not in resident.content()
    page.goto(base + "/admin/audit")
    assert "Doppelt gemeldet" in page.locator("table").inner_text()

    # a reminder to the quiet nursery, through the SMTP server
    page.goto(base + "/admin/merchants")
    quiet = page.locator("article.quiet", has_text="Gärtnerei Blüte")
    assert "vor 60 Tagen" in quiet.inner_text()
    with page.expect_navigation():
        quiet.locator("button:has-text('Erinnerung senden')").click()
    assert "ist verschickt" in page.locator(".notice.ok").inner_text()
    for _ in range(50):
        if inbox.messages:
            break
        time.sleep(0.1)
    [mail] = inbox.messages
    assert mail["To"] == "Gärtnerei Blüte <post@gaertnerei.example>" and "Gärtnerei Blüte" in mail.get_content()

    # the month as CSV
    page.goto(base + "/admin/stats")
    with page.expect_download() as caught:
        page.click("a:has-text('CSV')")
    download = caught.value
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert download.suggested_filename.startswith("statistik-") and rows[0] == [
        "Datum", "Kennzahl", "Teilnehmer", "Kanal", "Detail", "Anzahl"]
    assert any(r[1] == "Aufrufe der Übersichten" for r in rows[1:])  # the resident's visits of / above

    # a form sent without its CSRF token is refused, with the session's cookie
    refused = page.request.post(base + "/admin/records/1/approve", form={"zurueck": "/admin/review"})
    assert refused.status == 403 and "Sicherheitsprüfung" in refused.text()

    assert page.problems == [] and resident.problems == []  # no CSP violation, nothing broken
    assert all(u.startswith(base) for u in page.requested + resident.requested)
    cookies = ctx.cookies()
    assert {c["name"] for c in cookies} == {"hub_admin"}
    [session] = cookies
    assert session["path"] == "/admin" and session["httpOnly"] and session["sameSite"] == "Strict"
    secrets = {session["value"], CLIENT_IP, USER_AGENT, "Kuemmerer-Testbrowser"}
    ctx.close()

    # afterwards, the store holds nothing that would identify the browser or its user
    import sqlite3

    with sqlite3.connect(tmp / "hub.db") as conn:
        dump = "\n".join(conn.iterdump())
    assert "Doppelt gemeldet" in dump
    for secret in secrets:
        assert secret not in dump, secret


def test_anonymous_visitors_and_wrong_passwords(site, browser):
    base, inbox, tmp = site
    ctx, page = new_page(browser, base)
    page.goto(base + "/admin/stats")
    assert page.url.startswith(base + "/admin/login?weiter=/admin/stats")
    assert page.request.get(base + "/api/v1/admin/health").status == 401
    anonymous_post = page.request.post(base + "/admin/records/1/approve", form={"csrf": "x"}, max_redirects=0)
    assert anonymous_post.status == 303 and anonymous_post.headers["location"].startswith("/admin/login")
    for attempt in range(5):
        page.goto(base + "/admin/login")
        page.fill("#name", "ben")
        page.fill("#passwort", f"falsch-{attempt}")
        with page.expect_navigation():
            page.click("form[action='/admin/login'] button[type=submit]")
        assert "Benutzername oder Passwort ist falsch" in page.content()
    page.fill("#name", "ben")
    page.fill("#passwort", USERS["ben"][1])  # right, but too late
    with page.expect_navigation() as nav:
        page.click("form[action='/admin/login'] button[type=submit]")
    assert nav.value.status == 429 and "Zu viele Fehlversuche" in page.content()
    # the only console errors: the browser noting the 401s and the 429 of the login itself
    assert all(re.search(r"status of (401|429)", p) for p in page.problems), page.problems
    ctx.close()


def test_the_cockpit_on_a_phone(site, browser):
    base, inbox, tmp = site
    ctx, page = new_page(browser, base, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    log_in(page, base)  # (ben is locked out by the test before)
    for path in ("/admin", "/admin/review", "/admin/merchants", "/admin/stats", "/admin/audit"):
        page.goto(base + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, (path, overflow)
        assert page.locator("nav[aria-label=Cockpit]").is_visible()
    assert page.problems == []
    ctx.close()
