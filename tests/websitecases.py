"""Recorded web pages (tests/data/websites/) served by a real local site, and the website
connector run on them as the pipeline runs it (retrieve, then parse and normalize).

`SiteServer` is a small merchant website on loopback: pages from a dict (tests change them
between fetches), a robots.txt (or a status for it), strong ETags with 304 answers, and a
log of every request with its headers and the moment it came in.

    python -m tests.websitecases          # rewrite the expected files (then read the diff!)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any, Iterator, NamedTuple
from zoneinfo import ZoneInfo

import time_machine
from aiohttp import web

DATA = Path(__file__).parent / "data" / "websites"
# The moment the recorded pages are read: their year-less dates ("Sa., 9. Januar") are the
# next such day after it. Set with time-machine, so the suite may run on any day.
FETCH_TIME = datetime(2026, 12, 20, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
ORIGIN = "http://merchant.example"  # the local server's address, as written in expected files

_TYPES = {".html": "text/html; charset=utf-8", ".xml": "application/xml", ".txt": "text/plain",
          ".json": "application/json"}


class Request(NamedTuple):
    path: str
    headers: dict[str, str]
    at: float  # time.monotonic()


class SiteServer:
    """A merchant's site on 127.0.0.1: `pages` maps a path ("/termine") to its body (bytes)
    or to (status, body) or (status, body, content type); `robots` is robots.txt's body
    (None: 404) or an int status."""

    def __init__(self, pages: dict[str, Any] | None = None, robots: bytes | int | None = None) -> None:
        self.pages: dict[str, Any] = dict(pages or {})
        self.robots = robots
        self.requests: list[Request] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def __enter__(self) -> SiteServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(sock, ready), daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def _serve(self, sock: socket.socket, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/{path:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.SockSite(self._runner, sock).start())
        ready.set()
        self._loop.run_forever()

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests.append(Request(request.path_qs, {k.lower(): v for k, v in request.headers.items()},
                                     time.monotonic()))
        if request.path == "/robots.txt":
            if isinstance(self.robots, int):
                return web.Response(status=self.robots)
            if self.robots is None:
                return web.Response(status=404, text="not found")
            return web.Response(body=self.robots, content_type="text/plain")
        found = self.pages.get(request.path_qs, self.pages.get(request.path))
        if found is None:
            return web.Response(status=404, text="not found")
        status, body, *content_type = found if isinstance(found, tuple) else (200, found)
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        headers = {"ETag": etag, "Last-Modified": formatdate(1_700_000_000, usegmt=True),
                   "Content-Type": content_type[0] if content_type else
                   _TYPES.get(Path(request.path).suffix, "text/html; charset=utf-8")}
        if status == 200 and request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(status=status, body=body, headers=headers)


# --- the recorded cases ------------------------------------------------------------------------

class Case(NamedTuple):
    page: str  # file in tests/data/websites
    options: dict[str, Any]  # the source's options besides url


def expected_path(name: str) -> Path:
    return DATA / f"{name}.expected.json"


PLAIN_FIELDS = {"title": "h2", "link": "a@href", "date": ".datum", "end": ".bis", "location": ".ort",
                "image": "img@src", "summary": "p.teaser", "price": ".preis"}
CASES = {
    "shop-graph": Case("shop-graph.html", {}),
    "kino-microdata": Case("kino-microdata.html", {}),
    "verein-hevent": Case("verein-hevent.html", {}),
    "verein-plain": Case("verein-plain.html", {"items": "article.termin", "fields": PLAIN_FIELDS, "kind": "event"}),
    "rathaus-news": Case("rathaus-news.html", {}),
    "broken-jsonld": Case("broken-jsonld.html", {}),
    "script-title": Case("script-title.html", {}),
    "hostile-plain": Case("hostile-plain.html", {"items": "article.aktion", "kind": "event",
                                                 "fields": {"date": ".wann", "summary": ".text"}}),
    "rdfa-events": Case("rdfa-events.html", {}),
    "vhs-kurse": Case("vhs-kurse.html", {}),
    "heimatverein-divs": Case("heimatverein-divs.html", {}),
}


def options(url: str, **kw: Any):
    from connectors.website import WebsiteOptions

    opts = WebsiteOptions(url=url, **kw)
    settled = opts.model_copy()
    settled._zone = "Europe/Berlin"
    return settled


def fetcher_config(**kw: Any):
    from hub.config import FetcherConfig

    return FetcherConfig(allow_private_networks=True, host_spacing=0, retries=0, **kw)


async def fetch_and_parse(opts, state=None, config=None):
    """retrieve, then parse and normalize (hub.ingest.parse_payload): what the pipeline stores.
    Returns (Parsed, Retrieved)."""
    from connectors.website import WebsiteConnector
    from hub.http import Fetcher
    from hub.ingest import parse_payload
    from hub.models import FetchState, SourceRef

    async with Fetcher(config or fetcher_config(), base_dir=DATA) as fetcher:
        got = await WebsiteConnector().retrieve(opts, state or FetchState(), fetcher)
    source = SourceRef("web", "merchant", "de", "Europe/Berlin")
    return parse_payload("website", opts, source, got), got


@contextmanager
def at_fetch_time() -> Iterator[None]:
    with time_machine.travel(FETCH_TIME, tick=True):
        yield


def run_case(name: str) -> dict[str, Any]:
    """The items (as JSON, the server's address written as ORIGIN) and warnings of a case."""
    from hub.robots import robots

    case = CASES[name]
    robots.clear()
    with SiteServer({f"/{case.page}": (DATA / case.page).read_bytes()}) as server, at_fetch_time():
        parsed, _ = asyncio.run(fetch_and_parse(options(server.url(case.page), **case.options)))
        origin = server.url("/").rstrip("/")
    text = json.dumps({"items": [_jsonable(i) for i in parsed.items], "warnings": list(parsed.warnings),
                       "gone": list(parsed.gone)}, ensure_ascii=False)
    return json.loads(text.replace(origin, ORIGIN))


def _jsonable(item) -> dict[str, Any]:
    data = item.to_dict()
    del data["content_text"]  # derived from content_html
    return data


def write_expected() -> None:
    for name, case in CASES.items():
        if (DATA / case.page).exists():
            path = expected_path(name)
            path.write_text(json.dumps(run_case(name), ensure_ascii=False, indent=1) + "\n")
            print("wrote", path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)


if __name__ == "__main__":
    if sys.argv[1:] and sys.argv[1] != "--write":
        print(json.dumps(run_case(sys.argv[1]), ensure_ascii=False, indent=1))
    else:
        write_expected()
