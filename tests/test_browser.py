"""The resident page as residents see it: the demo town in headless Chromium.

Runs the real CLI (`hub fetch`, `hub serve`) on the bundled demo config and checks, in a
real browser, that the page shows the demo content, loads every resource from the hub
itself (no third party, GDPR) and sets no cookie."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

from tests.demo_graph import demo_graph

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser
playwright = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_graph_env():
    with demo_graph() as env:  # the bakery's Facebook page and Instagram account, as `make run` serves them
        yield env


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory, demo_graph_env):
    tmp = tmp_path_factory.mktemp("demo")
    env = {**os.environ, **demo_graph_env, "HUB_STORE_URL": f"sqlite:///{tmp / 'hub.db'}",
           "HUB_DATA_DIR": str(tmp / "data")}
    hub = [sys.executable, "-m", "hub"]
    fetched = subprocess.run([*hub, "fetch", "-c", "config.example.yaml"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    port = free_port()
    server = subprocess.Popen([*hub, "serve", "-c", "config.example.yaml", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urlopen(base + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield base
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


def test_demo_town_in_a_browser(demo_site, browser, tmp_path):
    context = browser.new_context(locale="de-DE")
    page = context.new_page()
    requested, problems = [], []
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(demo_site + "/", wait_until="networkidle")

    assert page.title() == "Musterstadt erleben"
    cards = page.locator("article.card")
    assert cards.count() >= 10
    merchants = set(page.locator("article.card .merchant").all_inner_texts())
    assert "Bäckerei Schmitz" in merchants or len(merchants) >= 5
    images = page.locator("article.card img")
    assert images.count() >= 3
    for img in images.all():  # lazy images load once they scroll into view
        img.scroll_into_view_if_needed()
        img.evaluate("i => i.decode()")
        assert img.evaluate("i => i.naturalWidth") > 0

    page.locator("article.card h2 a").first.click()
    page.wait_for_load_state("networkidle")
    assert page.locator("article.full h1").inner_text()
    assert page.locator("article.full .content").inner_text().strip()
    page.screenshot(path=str(tmp_path / "item.png"), full_page=True)

    assert requested and all(url.startswith(demo_site) for url in requested), \
        [u for u in requested if not u.startswith(demo_site)]
    assert context.cookies() == []
    assert problems == []  # CSP violations and broken resources show up as console errors
    context.close()


def test_every_merchant_page_and_health(demo_site, browser):
    page = browser.new_page(locale="de-DE")  # the browser's language decides the page's (hub.web.i18n)
    page.goto(demo_site + "/m/baeckerei-schmitz")
    assert page.locator("h1").inner_text() == "Bäckerei Schmitz"
    assert page.locator("article.card").count() >= 3
    response = page.goto(demo_site + "/m/gibt-es-nicht")
    assert response.status == 404 and "Nicht gefunden" in page.content()
    health = page.goto(demo_site + "/healthz").json()
    assert health["status"] == "ok" and health["items"] >= 80 and health["sources"]["failing"] == 0
    page.close()


@pytest.mark.parametrize("locale", ["de-DE", "en-GB"])
def test_the_pages_fit_a_320_px_screen_in_both_languages(demo_site, browser, locale):
    context = browser.new_context(locale=locale, viewport={"width": 320, "height": 640})
    page = context.new_page()
    requested, problems = [], []
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(demo_site + "/", wait_until="networkidle")
    item = page.locator("article.card h2 a").first.get_attribute("href")
    for path in ("/", "/events", "/offers", "/search?q=Advent", "/m/baeckerei-schmitz", item, "/gibt-es-nicht"):
        page.goto(demo_site + path, wait_until="networkidle")
        assert page.evaluate("document.documentElement.lang") == locale[:2], path
        assert page.evaluate("document.documentElement.scrollWidth") <= 320, path
        assert page.locator("h1").count() == 1, path
    assert all(url.startswith(demo_site) for url in requested), [u for u in requested if not u.startswith(demo_site)]
    assert [p for p in problems if "404" not in p] == []  # the unknown path's own 404 is the only error
    assert context.cookies() == []
    context.close()
