"""The demo town for the browser tests (tests/test_browser.py): the real CLI (`hub fetch`,
`hub serve`) on config.example.yaml at a pinned moment, and browser tabs that note every
request and console error.

The moment is pinned because the agenda's headings depend on the day and the hour. The
demo's dates move in whole days at 08:00 Berlin time (hub/demo/README.md): read on a
Thursday at 07:00, the feeds are dated as of Wednesday 08:00, so the demo's first events
(two days after its anchor) fall on tomorrow, Friday, and the next ones on the weekend. The
demo has nothing on the day it is read, so the bakery's Facebook page announces something
for today (`announce_today`). The pin is the next Thursday 07:00 after the test run's own
now, so it still moves with `--clock-ahead`; the processes the test starts get it through
tests/timeshift, the fake Graph API through its clock offset (the bakery's Facebook posts
stay in step with its blog)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen
from zoneinfo import ZoneInfo

from babel.dates import format_date

from hub.demo.graphapi import FakeGraph, load_fixtures
from tests.demo_graph import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
TIMESHIFT = Path(__file__).parent / "timeshift"
BERLIN = ZoneInfo("Europe/Berlin")
BAKERY = "104523984512345"  # the bakery's Facebook page in the demo's fake Graph API
LOCALES = {"de": "de-DE", "en": "en-GB"}  # the browser's language decides the page's (hub.web.i18n)
# Where the screenshots go: written afresh by every run, never committed (/build/ is ignored).
SCREENSHOTS = Path(os.environ.get("HUB_SCREENSHOTS") or ROOT / "build" / "screenshots")


def pinned_moment(now: datetime | None = None) -> datetime:
    """The next Thursday 07:00 in Berlin after `now` (the module docstring says why)."""
    now = (now or datetime.now(UTC)).astimezone(BERLIN)
    day = now.date() + timedelta(days=(3 - now.weekday()) % 7)
    moment = datetime.combine(day, datetime.min.time(), BERLIN).replace(hour=7)
    return moment if moment > now else moment + timedelta(days=7)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def demo_town(workdir: Path, moment: datetime) -> Iterator[str]:
    """`hub fetch` then `hub serve` on the demo config with its store in `workdir`, their
    clocks at `moment`; yields the server's base URL."""
    offset = moment - datetime.now(UTC)  # this process's now: a year on under --clock-ahead
    days_ahead = float(os.environ.get("HUB_TEST_CLOCK_AHEAD") or 0) + offset.total_seconds() / 86400
    graph = FakeGraph()
    graph.time_offset = offset
    load_fixtures(graph, FIXTURES)
    announce_today(graph, moment)
    with graph:
        env = {**os.environ, "HUB_DEMO_GRAPH_URL": graph.graph_url,
               "HUB_STORE_URL": f"sqlite:///{workdir / 'hub.db'}", "HUB_DATA_DIR": str(workdir / "data"),
               "HUB_TEST_CLOCK_AHEAD": repr(days_ahead),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(TIMESHIFT), os.environ.get("PYTHONPATH")]))}
        hub = [sys.executable, "-m", "hub"]
        fetched = subprocess.run([*hub, "fetch", "-c", "config.example.yaml"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=180)
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        port = free_port()
        server = subprocess.Popen([*hub, "serve", "-c", "config.example.yaml", "--port", str(port)], cwd=ROOT,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_for(base + "/healthz", server)
            yield base
        finally:
            server.terminate()
            server.wait(timeout=10)


def announce_today(graph: FakeGraph, moment: datetime) -> None:
    """A Facebook post of the bakery's, an hour old, about an event later that day: the
    Facebook connector reads the date and time from the text, as it does the demo's."""
    day = format_date(moment.astimezone(BERLIN).date(), "EEEE, d. MMMM y", locale="de_DE")
    graph.pages[BAKERY].post(f"Adventssingen vor der Backstube! Am {day}, ab 17 Uhr singt der Kinderchor "
                             "der Grundschule, dazu gibt es Kinderpunsch. #advent", age=timedelta(hours=1))


def _wait_for(url: str, server: subprocess.Popen) -> None:
    for _ in range(300):
        try:
            urlopen(url, timeout=1)
            return
        except OSError:
            assert server.poll() is None, f"hub serve ended with exit code {server.returncode}"
            time.sleep(0.1)
    raise AssertionError(f"hub serve did not answer {url} within 30 s")


def today_at(moment: datetime) -> date:
    return moment.astimezone(BERLIN).date()


class Tab:
    """A browser tab in one language that notes every URL it requests, every console error
    (CSP violations among them) and every answer of 400 or more, on every page it opens."""

    def __init__(self, browser, base: str, lang: str, width: int = 1280, height: int = 800) -> None:
        self.base, self.lang = base, lang
        self.context = browser.new_context(locale=LOCALES[lang], viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)  # a missing element fails in seconds, not half a minute
        self.requested: list[str] = []
        self.problems: list[str] = []
        self.expected_errors: set[str] = set()  # pages opened on purpose that answer 404
        self.page.on("request", lambda r: self.requested.append(r.url))
        self.page.on("console", self._console)
        self.page.on("response", lambda r: self.problems.append(f"{r.status} {r.url}")
                     if r.status >= 400 and r.url not in self.expected_errors else None)

    def _console(self, message) -> None:
        if message.type == "error" and message.location.get("url") not in self.expected_errors:
            self.problems.append(f"{message.text} ({message.location.get('url')})")

    def open(self, path: str, status: int = 200):
        """Open `path` and wait for it to load (images included); returns the page."""
        url = self.base + path
        if status >= 400:
            self.expected_errors.add(url)
        response = self.page.goto(url, wait_until="load")
        assert response is not None and response.status == status, (path, response and response.status)
        return self.page

    def foreign(self) -> list[str]:
        """Requests to any other host than the hub's own (data: and blob: stay in the page)."""
        own = urlsplit(self.base).netloc
        return [u for u in self.requested if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != own]

    def close(self) -> None:
        self.context.close()


@contextmanager
def tab(browser, base: str, lang: str = "de", **size) -> Iterator[Tab]:
    """A `Tab` checked when the test is done with it: nothing from another host, no console
    error or broken resource, no cookie."""
    t = Tab(browser, base, lang, **size)
    try:
        yield t
        assert t.requested, "the tab requested nothing"
        assert t.foreign() == [], f"requests to other hosts: {t.foreign()}"
        assert t.problems == [], t.problems
        assert t.context.cookies() == [], t.context.cookies()
    finally:
        t.close()


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header (IHDR)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def axe_report(violations: list[dict]) -> str:
    """Every violation axe found, one per line with its impact and where, for a failure
    message that explains itself."""
    lines = []
    for v in violations:
        where = "; ".join(" ".join(map(str, node["target"])) for node in v["nodes"][:5])
        more = f" (+{len(v['nodes']) - 5} more)" if len(v["nodes"]) > 5 else ""
        lines.append(f"{v['impact']}: {v['id']} – {v['help']} [{where}{more}] {v['helpUrl']}")
    return "\n".join(lines)
