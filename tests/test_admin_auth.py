"""The cockpit's door (issue 17): login, sessions, cookies, CSRF, throttling, roles, the
audit log, `hub admin hash-password`; through the real app and a store filled by the real
ingest path."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from hub.auth import Throttle, session_key, verify_password
from hub.store.admin import AdminStore
from hub.web.app import create_app
from tests.admintown import ROOT, USERS, csrf_of, files, ingest, login, open_town, record_id, write_config
from tests.feedserver import FeedServer

# Not about the date (logging in, sessions, CSRF, throttling: monotonic windows, no calendar dates): left out of make test's second run (--clock-ahead).
pytestmark = pytest.mark.timeless

ADMIN_PAGES = ["/admin", "/admin/review", "/admin/merchants", "/admin/stats", "/admin/stats.csv", "/admin/config",
               "/admin/audit", "/admin/records/1", "/admin/health.json", "/admin/gibt-es-nicht"]


@pytest.fixture(scope="module")
def server():
    with FeedServer() as s:
        s.files.update(files(s.url("").rstrip("/")))
        yield s


@pytest.fixture
def town(tmp_path, server):
    settings, store = open_town(write_config(tmp_path, server.url("").rstrip("/")))
    yield settings, store
    store.close()


@pytest.fixture
async def filled(town):
    await ingest(*town)
    return town


def client_for(town, base_url: str = "http://127.0.0.1") -> TestClient:
    return TestClient(create_app(*town), base_url=base_url, follow_redirects=False)


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_anonymous_requests_to_the_admin_area_go_to_the_login(town, path):
    with client_for(town) as client:
        answer = client.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/admin/login?weiter=")
        assert client.post(path, data={"x": "1"}).status_code == 303  # a form sent anonymously, too


def test_the_login_page_brings_you_back_where_you_wanted_to_go(town):
    with client_for(town) as client:
        assert client.get("/admin/stats?monat=2026-01").headers["location"] == "/admin/login?weiter=/admin/stats%3Fmonat%3D2026-01"
        page = client.get("/admin/login", params={"weiter": "/admin/stats?monat=2026-01"})
        answer = client.post("/admin/login", data={"csrf": csrf_of(page.text), "username": "anna",
                                                   "password": USERS["anna"][1], "weiter": "/admin/stats?monat=2026-01"})
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/stats?monat=2026-01"
        page = client.get("/admin/login", params={"weiter": "https://evil.example/"})  # logged in: off to the cockpit
        assert page.headers["location"] == "/admin"


def test_login_after_an_offsite_next_lands_in_the_cockpit(town):
    with client_for(town) as client:
        page = client.get("/admin/login")
        for wanted in ("https://evil.example/admin", "//evil.example/admin", "/items/1"):
            client.cookies.clear()
            page = client.get("/admin/login")
            answer = client.post("/admin/login", data={"csrf": csrf_of(page.text), "username": "anna",
                                                       "password": USERS["anna"][1], "weiter": wanted})
            assert answer.headers["location"] == "/admin"


@pytest.mark.parametrize("path", ["/api/v1/admin/health", "/api/v1/admin/etwas"])
def test_the_admin_api_answers_401_without_credentials(town, path):
    with client_for(town) as client:
        answer = client.get(path)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Basic")
        assert client.get(path, auth=("anna", "falsch-falsch")).status_code == 401
        login(client)  # the cookie is for /admin only: the API still wants its own credentials
        assert client.get(path).status_code == 401


async def test_the_admin_api_with_basic_credentials(filled):
    with client_for(filled) as client:
        answer = client.get("/api/v1/admin/health", auth=("ben", USERS["ben"][1]))
        assert answer.status_code == 200
        body = answer.json()
        assert body["sources"][0]["id"] == "kaputt-feed" and body["sources"][0]["state"] == "failing"
        assert client.get("/api/v1/admin/etwas", auth=("ben", USERS["ben"][1])).status_code == 404


def test_session_cookie_flags_on_localhost(town):
    with client_for(town) as client:
        answer = login(client)
        assert answer.status_code == 303
        cookie = _set_cookie(answer, "hub_admin")
        assert "Path=/admin" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # a browser would not send it back over plain http to localhost


def test_session_cookie_is_secure_for_any_other_host(town):
    with client_for(town, base_url="https://cockpit.teststadt.example") as client:
        answer = login(client)
        cookie = _set_cookie(answer, "hub_admin")
        assert "Secure" in cookie and "Path=/admin" in cookie and "HttpOnly" in cookie
        assert client.get("/admin").status_code == 200


async def test_residents_pages_set_no_cookie_even_for_someone_logged_in(filled):
    with client_for(filled) as client:
        login(client)
        for path in ("/", "/m/baeckerei", f"/items/{record_id(filled[1], 'Neues Dinkelbrot')}", "/search?q=Brot",
                     "/feed.atom", "/metrics"):
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert "set-cookie" not in answer.headers, path


def test_wrong_password_then_right_one(town):
    with client_for(town) as client:
        assert login(client, "anna", "falsch-falsch").status_code == 401
        assert client.get("/admin").status_code == 303
        assert login(client).status_code == 303
        assert client.get("/admin").status_code == 200


def test_a_login_without_its_csrf_token_is_refused(town):
    with client_for(town) as client:
        client.get("/admin/login")
        answer = client.post("/admin/login", data={"name": "anna", "password": USERS["anna"][1]})
        assert answer.status_code == 403
        assert "hub_admin=" not in answer.headers.get("set-cookie", "")


async def test_forms_without_a_csrf_token_are_refused_and_change_nothing(filled):
    settings, store = filled
    held = record_id(store, "Vereinsfest am Sportplatz")
    shown = record_id(store, "Neues Dinkelbrot")
    with client_for(filled) as client:
        login(client)
        token = csrf_of(client.get("/admin/review").text)
        refused = [
            client.post(f"/admin/records/{held}/approve", data={}),
            client.post(f"/admin/records/{held}/approve", data={"csrf": "gefälscht"}),
            client.post(f"/admin/records/{shown}/hide", data={"grund": "Spam"}),
            client.post(f"/admin/records/{shown}/edit", data={"titel": "Gehackt"}),
            client.post(f"/admin/records/{shown}/merge", data={"mit": str(held)}),
            client.post("/admin/merchants/gaertnerei/remind", data={"betreff": "x", "text": "y"}),
            client.post("/admin/config/apply", data={"yaml": "merchants: []"}),
            client.post("/admin/logout", data={}),
            client.post("/admin/filter", data={"ziel": "/admin"}),
        ]
        assert [a.status_code for a in refused] == [403] * len(refused)
        assert store.records.get(held).status == "pending"
        assert store.records.get(shown).status == "published" and store.records.get(shown).item.title == "Neues Dinkelbrot"
        assert client.get("/admin").status_code == 200  # still logged in: the logout without a token did nothing
        # with the token, the same form works
        assert client.post(f"/admin/records/{held}/approve", data={"csrf": token}).status_code == 303
        assert store.records.get(held).status == "published"


def test_wrong_passwords_are_throttled_per_account(town):
    with client_for(town) as client:
        answers = [login(client, "anna", f"falsch-{i}").status_code for i in range(5)]
        assert answers == [401] * 5
        throttled = login(client, "anna")  # the right password, but too late
        assert throttled.status_code == 429 and "Zu viele Fehlversuche" in throttled.text
        assert int(throttled.headers["retry-after"]) > 60
        assert client.get("/admin").status_code == 303
        assert login(client, "ben").status_code == 303  # another account is not locked


def test_wrong_passwords_are_throttled_per_client(town):
    with client_for(town) as client:
        names = [f"rate{i}" for i in range(20)]
        assert {login(client, name, "falsch-falsch").status_code for name in names} == {401}
        assert login(client, "ben").status_code == 429  # this client tried too often, whichever account
    with TestClient(create_app(*town), base_url="http://127.0.0.1", client=("192.0.2.44", 4000),
                    follow_redirects=False) as other:
        assert login(other, "ben").status_code == 303  # another client is not held back


def test_the_throttle_forgets_after_its_window():
    clock = [1000.0]
    throttle = Throttle(per_account=3, per_client=10, window=60, clock=lambda: clock[0])
    client = throttle.client("198.51.100.7")
    assert "198.51.100.7" not in client and client == throttle.client("198.51.100.7")
    for _ in range(3):
        throttle.failed("anna", client)
    assert 59 < throttle.wait("ANNA", client) <= 60
    clock[0] += 30
    assert 29 < throttle.wait("anna", client) <= 30
    clock[0] += 31
    assert throttle.wait("anna", client) == 0


def test_logout_ends_the_session(town):
    settings, store = town
    with client_for(town) as client:
        login(client)
        session = client.cookies.get("hub_admin")
        token = csrf_of(client.get("/admin").text)
        answer = client.post("/admin/logout", data={"csrf": token})
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/login"
        assert client.get("/admin").status_code == 303
        client.cookies.set("hub_admin", session, path="/admin")  # the old cookie opens nothing any more
        assert client.get("/admin").status_code == 303
    assert AdminStore(store).session(session_key(session), _now(), _hours(4)) is None


def test_a_moderator_may_review_but_not_configure(town):
    with client_for(town) as client:
        login(client, "ben")
        assert client.get("/admin/review").status_code == 200
        assert client.get("/admin/stats").status_code == 200
        forbidden = client.get("/admin/config")
        assert forbidden.status_code == 403 and "vorbehalten" in forbidden.text
        token = csrf_of(client.get("/admin").text)
        assert client.post("/admin/config/check", data={"csrf": token, "yaml": "merchants: []"}).status_code == 403


def test_the_store_keeps_only_a_hash_of_the_session(town):
    settings, store = town
    with client_for(town) as client:
        login(client)
        session = client.cookies.get("hub_admin")
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id_hash, user_name, role FROM admin_sessions").all()
    assert [(r.user_name, r.role) for r in rows] == [("anna", "admin")]
    assert rows[0].id_hash == session_key(session) and session not in rows[0].id_hash


def test_logins_and_logouts_are_in_the_audit_log(town):
    settings, store = town
    with client_for(town) as client:
        login(client, "anna", "falsch-falsch")
        login(client, "niemand", "falsch-falsch")
        login(client)
        client.post("/admin/logout", data={"csrf": csrf_of(client.get("/admin").text)})
    entries = [(e.user, e.action) for e in reversed(AdminStore(store).audit())]
    assert entries == [("anna", "login_failed"), ("?", "login_failed"), ("anna", "login"), ("anna", "logout")]


def test_a_user_removed_from_the_config_is_logged_out(tmp_path, server, town):
    settings, store = town
    with client_for(town) as client:
        login(client)
        assert client.get("/admin").status_code == 200
        fewer = settings.model_copy(update={"admin": settings.admin.model_copy(
            update={"users": [u for u in settings.admin.users if u.name != "anna"]})})
        with TestClient(create_app(fewer, store), base_url="http://127.0.0.1", follow_redirects=False) as after:
            after.cookies.set("hub_admin", client.cookies.get("hub_admin"), path="/admin")
            assert after.get("/admin").status_code == 303


def test_hash_password_reads_standard_input():
    done = subprocess.run([sys.executable, "-m", "hub", "admin", "hash-password"], input="ein langes Passwort\n",
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    digest = done.stdout.strip()
    assert digest.startswith("$argon2id$") and verify_password(digest, "ein langes Passwort")
    assert not verify_password(digest, "ein langes Passwort\n")
    short = subprocess.run([sys.executable, "-m", "hub", "admin", "hash-password"], input="kurz\n",
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert short.returncode == 0 and "kurz" in short.stderr and verify_password(short.stdout.strip(), "kurz")
    empty = subprocess.run([sys.executable, "-m", "hub", "admin", "hash-password"], input="\n",
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert empty.returncode == 2 and empty.stdout == ""


def test_a_config_with_a_plain_password_is_refused(tmp_path):
    from hub import config
    from hub.errors import ConfigError

    path = tmp_path / "config.yaml"
    path.write_text("admin:\n  users:\n    - {name: anna, password_hash: geheim, role: chef}\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, env={})
    text = "\n".join(caught.value.problems)
    assert f"{path}:3:" in text and "hub admin hash-password" in text and "'admin' or 'moderator'" in text


def _set_cookie(answer, name: str) -> str:
    cookies = answer.headers.get_list("set-cookie")
    return next(c for c in cookies if c.startswith(name + "="))


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def _hours(n: int):
    from datetime import timedelta

    return timedelta(hours=n)
