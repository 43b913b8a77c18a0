"""Config with confidence (issue 17): the loaded config with secrets masked; a pasted or
uploaded version checked with `hub check`'s own `file:line` messages; a dry run of an added
source; apply without a restart (and `hub run` on SIGHUP), keeping the old config when the
new one has errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from hub import config
from hub.errors import ConfigError
from hub.store.admin import AdminStore
from hub.web.admin.configpage import unmask
from hub.web.app import create_app
from tests.admintown import ROOT, csrf_of, files, ingest, login, open_town, write_config
from tests.feedserver import FeedServer

# Timeless: its feeds are dated relative to now and it checks nothing calendar-bound.
pytestmark = pytest.mark.timeless

SECRET = "sehr-geheim-4711"
NEW_MERCHANT = ("  - id: eisdiele\n    name: Eisdiele Venezia\n"
                "    sources: [{{connector: rss, url: '{url}/files/eis.xml'}}]\n")
EIS = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>Eis</title>'
       b"<item><title>Neue Sorte: Holunder</title><guid>holunder</guid><link>https://eis.example/holunder</link>"
       b"<description>Ab heute in der Theke.</description></item></channel></rss>")


@pytest.fixture(scope="module")
def server():
    with FeedServer() as s:
        s.files.update(files(s.url("").rstrip("/")))
        s.files["eis.xml"] = EIS
        yield s


@pytest.fixture
async def town(tmp_path, server):
    path = write_config(tmp_path, server.url("").rstrip("/"))
    text = path.read_text(encoding="utf-8").replace(
        "merchants:\n", f"mail: {{host: 127.0.0.1, port: 2525, security: none, username: hub, password: '{SECRET}', "
                        "from: hub@teststadt.example}\nmerchants:\n", 1)
    path.write_text(text, encoding="utf-8")
    settings, store = open_town(path)
    await ingest(settings, store)
    yield settings, store
    store.close()


@pytest.fixture
def client(town):
    with TestClient(create_app(*town), base_url="http://127.0.0.1", follow_redirects=False) as c:
        login(c)
        yield c


def with_eisdiele(text: str, server: FeedServer) -> str:
    """`text` with one more merchant, the ice cream parlour, at the end of `merchants:`."""
    assert text.count("\nchannels:\n") == 1
    return text.replace("\nchannels:\n", "\n" + NEW_MERCHANT.format(url=server.url("").rstrip("/")) + "channels:\n")


def textarea(html: str) -> str:
    import html as htmllib

    return htmllib.unescape(html.split('name="yaml"')[1].split(">", 1)[1].split("</textarea>")[0])


def test_the_loaded_config_is_shown_with_secrets_masked(client, town):
    page = client.get("/admin/config").text
    assert SECRET not in page
    assert "password: ••••••" in page  # the running config
    assert "password: '" not in textarea(page) and 'password: "••••••"' in textarea(page)  # the editor
    assert "Bäckerei Korn" in page and "password_hash" in textarea(page)
    assert "$argon2id$" not in page  # the users' hashes are masked too


def test_a_pasted_config_is_checked_with_hub_checks_messages(client, town, tmp_path):
    settings, _ = town
    page = client.get("/admin/config").text
    broken = textarea(page).replace("name: Bäckerei Korn", "nmae: Bäckerei Korn").replace("trust: review", "trust: sometimes")
    answer = client.post("/admin/config/check", data={"csrf": csrf_of(page), "yaml": broken})
    assert answer.status_code == 200
    # what `hub check` says of the same text, in a file of the same name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy = elsewhere / "config.yaml"
    copy.write_text(unmask(broken, settings.path.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        config.load(copy, env={})
    expected = [p.replace(str(copy), str(settings.path)) for p in caught.value.problems]
    assert len(expected) >= 2
    for problem in expected:
        assert f"<code>{_html(problem)}</code>" in answer.text
    assert f"{settings.path}:" in answer.text and ".cockpit-check-" not in answer.text
    assert "did you mean &#39;name&#39;?" in answer.text


def test_an_uploaded_file_is_checked_too(client, town, server):
    settings, _ = town
    page = client.get("/admin/config").text
    added = with_eisdiele(settings.path.read_text(encoding="utf-8"), server)
    answer = client.post("/admin/config/check", data={"csrf": csrf_of(page), "yaml": ""},
                         files={"datei": ("neu.yaml", added.encode(), "application/yaml")})
    assert answer.status_code == 200 and "Keine Fehler gefunden" in answer.text
    assert "Teilnehmer neu: <code>eisdiele</code>" in answer.text and "Quelle neu: <code>eisdiele-rss</code>" in answer.text


def test_a_dry_run_of_an_added_source_stores_nothing(client, town, server):
    settings, store = town
    page = client.get("/admin/config").text
    added = with_eisdiele(textarea(page), server)
    checked = client.post("/admin/config/check", data={"csrf": csrf_of(page), "yaml": added}).text
    assert '<option value="eisdiele-rss" selected>eisdiele-rss (neu/geändert)</option>' in checked
    answer = client.post("/admin/config/dry-run", data={"csrf": csrf_of(checked), "yaml": textarea(checked),
                                                        "quelle": "eisdiele-rss"})
    assert answer.status_code == 200
    assert "Die Quelle liefert 1 Eintrag" in answer.text and "Neue Sorte: Holunder" in answer.text
    assert store.count_items(merchant_id="eisdiele") == 0 and "eisdiele-rss" not in {s.id for s in store.source_statuses()}
    broken = client.post("/admin/config/dry-run", data={"csrf": csrf_of(checked), "yaml": textarea(checked),
                                                        "quelle": "kaputt-feed"})
    assert "Unter dieser Adresse gibt es nichts (mehr)" in broken.text and "HTTP 404" in broken.text
    assert [e.action for e in AdminStore(store).audit(limit=3)] == ["config_dry_run", "config_dry_run", "config_check"]


def test_a_config_with_errors_is_not_applied(client, town):
    settings, store = town
    before = settings.path.read_text(encoding="utf-8")
    page = client.get("/admin/config").text
    answer = client.post("/admin/config/apply", data={"csrf": csrf_of(page), "yaml": "merchants:\n  - {id: x}\n"})
    assert answer.status_code == 422 and "die bisherige gilt weiter" in answer.text
    assert "missing required key" in answer.text
    assert settings.path.read_text(encoding="utf-8") == before
    assert client.get("/m/baeckerei").status_code == 200
    assert AdminStore(store).audit(limit=1)[0].action == "config_refused"


def test_apply_without_a_restart(client, town, server):
    settings, store = town
    original = settings.path.read_text(encoding="utf-8")
    assert client.get("/m/eisdiele").status_code == 404
    page = client.get("/admin/config").text
    new = with_eisdiele(textarea(page), server)
    answer = client.post("/admin/config/apply", data={"csrf": csrf_of(page), "yaml": new})
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/config?meldung=uebernommen"
    written = settings.path.read_text(encoding="utf-8")
    assert "Eisdiele Venezia" in written and f"password: '{SECRET}'" in written  # the masked secret came back
    assert settings.path.with_name("config.yaml.bak").read_text(encoding="utf-8") == original
    # the same app, the same client: the new config is served at once, the session lives on
    assert client.get("/m/eisdiele").status_code == 200
    assert "Eisdiele Venezia" in client.get("/admin").text
    assert "eisdiele-rss" in {s.id for s in store.source_statuses()}
    assert "Die neue Konfiguration ist übernommen" in client.get(answer.headers["location"]).text
    entry = AdminStore(store).audit(limit=1)[0]
    assert entry.action == "config_apply" and "Teilnehmer neu eisdiele" in entry.detail["changes"]


def test_hub_run_reloads_its_config_on_sighup(tmp_path, server):
    path = write_config(tmp_path, server.url("").rstrip("/"))
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "run.log").open("w")
    run = subprocess.Popen([sys.executable, "-m", "hub", "run", "-c", str(path), "--port", str(port)], cwd=ROOT,
                           env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _status(base + "/m/baeckerei") == 200, "hub run to serve")
        assert _status(base + "/m/eisdiele") == 404
        good = with_eisdiele(path.read_text(encoding="utf-8"), server)
        path.write_text("merchants: [{id: kaputt}]\n", encoding="utf-8")  # a broken config first: nothing changes
        run.send_signal(signal.SIGHUP)
        _wait_for(lambda: "keeps running with the previous one" in (tmp_path / "run.log").read_text(), "the refusal")
        assert _status(base + "/m/baeckerei") == 200
        path.write_text(good, encoding="utf-8")
        run.send_signal(signal.SIGHUP)
        _wait_for(lambda: _status(base + "/m/eisdiele") == 200, "the new merchant")
        _wait_for(lambda: "eisdiele-rss" in _fetched(tmp_path), "the scheduler to fetch the new source")
        assert run.poll() is None
    finally:
        run.terminate()
        run.wait(timeout=30)
        log.close()
    text = (tmp_path / "run.log").read_text()
    assert "configuration reloaded" in text and "Traceback" not in text


def _fetched(folder: Path) -> str:
    import sqlite3

    with sqlite3.connect(folder / "hub.db") as conn:
        return " ".join(r[0] for r in conn.execute("SELECT id FROM sources WHERE last_fetch_at IS NOT NULL"))


def _status(url: str) -> int:
    from urllib.error import HTTPError, URLError

    try:
        return urlopen(url, timeout=5).status
    except HTTPError as exc:
        return exc.code
    except (URLError, OSError):
        return 0


def _wait_for(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"waited {seconds:g} s for {what}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _html(text: str) -> str:
    return str(escape(text))
