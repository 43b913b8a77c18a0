"""A real HTTP server on loopback, for tests and benchmarks.

It runs aiohttp.web on its own event loop in a background thread, so a test's own loop (and
the fetcher in it) talks to it over real sockets, exactly as it would to a merchant's site.

    with FeedServer(files={"feed.xml": b"<rss/>"}) as server:
        url = server.url("/files/feed.xml")

Routes:
    /files/{path}         a file from `files` (an in-memory dict tests may change at runtime)
                          or from `root`; strong ETag, Last-Modified, 304 on a match;
                          `?encoding=gzip` sends it gzip-encoded; `?delay=0.5` answers
                          after half a second (a slow site, for concurrency checks)
    /huge?mb=20           20 MiB of "x", streamed without Content-Length
    /gzipbomb?gb=10       gzip body (Content-Encoding: gzip) that decodes to 10 GiB of zeros;
                          compressed lazily, so a client that stops early costs nothing
    /notxml               an HTML page, 200 text/html
    /redirect?to=URL      302 to URL
    /hang                 accepts and never answers (until the server stops)
    /drip?seconds=600     200, then one byte per second
    /status/{code}        that status; `?retry_after=N` adds a Retry-After header

`enqueue(path, status, ...)` scripts one-shot answers for a path ahead of the normal routes
(e.g. one 503, then the file). `requests` logs every request; `in_flight` and
`max_in_flight` count concurrent requests, for politeness checks.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import socket
import threading
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import NamedTuple

from aiohttp import web

_MiB = 1024 * 1024
_CONTENT_TYPES = {
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
    ".html": "text/html; charset=utf-8",
    ".ics": "text/calendar",
}


class LoggedRequest(NamedTuple):
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-case names


class Scripted(NamedTuple):
    status: int
    body: bytes = b""
    headers: dict[str, str] = {}


class FeedServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, root: Path | None = None,
                 files: dict[str, bytes] | None = None, aliases: Iterable[str] = ()) -> None:
        self.host = host
        self.aliases = list(aliases)  # more loopback addresses served on the same port (more "hosts")
        self.root = root
        self.files: dict[str, bytes] = dict(files or {})
        self.requests: list[LoggedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._port = port
        self._scripts: dict[str, deque[Scripted]] = defaultdict(deque)
        # Last-Modified of in-memory files: stamped when a new content is first served.
        self._stamps: dict[str, tuple[str, float, bytes]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> FeedServer:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._port = sock.getsockname()[1]
        socks = [sock] + [_bound(alias, self._port) for alias in self.aliases]
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(socks, ready), daemon=True,
                                        name=f"feedserver-{self._port}")
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop = self._thread = None

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    def url(self, path: str = "/", host: str | None = None) -> str:
        host = host or self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self._port}/{path.lstrip('/')}"

    def enqueue(self, path: str, status: int, body: bytes = b"",
                headers: dict[str, str] | None = None) -> None:
        """Answer the next request for `path` (without query) with this, once."""
        self._scripts["/" + path.lstrip("/")].append(Scripted(status, body, headers or {}))

    def _serve(self, socks: list[socket.socket], ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._startup(socks))
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _startup(self, socks: list[socket.socket]) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._track])
        app.router.add_get("/files/{path:.+}", self._files)
        app.router.add_get("/huge", self._huge)
        app.router.add_get("/gzipbomb", self._gzipbomb)
        app.router.add_get("/notxml", self._notxml)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/hang", self._hang)
        app.router.add_get("/drip", self._drip)
        app.router.add_get("/status/{code:\\d+}", self._status)
        # No access log: it would cost more than the responses in the 1,000-feed benchmark.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        for sock in socks:
            await web.SockSite(self._runner, sock).start()

    async def _shutdown(self) -> None:
        self._stopping.set()  # releases /hang and /drip, so shutdown is immediate
        await self._runner.cleanup()

    # --- bookkeeping ---------------------------------------------------------------------

    @web.middleware
    async def _track(self, request: web.Request, handler) -> web.StreamResponse:
        self.requests.append(LoggedRequest(request.method, request.path_qs,
                                           {k.lower(): v for k, v in request.headers.items()}))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            script = self._scripts.get(request.path)
            if script:
                answer = script.popleft()
                return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
            return await handler(request)
        finally:
            self.in_flight -= 1

    async def _wait_stopping(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the server is stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    # --- routes --------------------------------------------------------------------------

    async def _files(self, request: web.Request) -> web.Response:
        if "delay" in request.query and await self._wait_stopping(float(request.query["delay"])):
            raise web.HTTPServiceUnavailable()
        name = request.match_info["path"]
        found = self._lookup(name)
        if found is None:
            raise web.HTTPNotFound(text=f"no such file: {name}\n")
        body, etag, mtime = found
        headers = {"ETag": etag, "Last-Modified": formatdate(mtime, usegmt=True),
                   "Content-Type": _CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")}
        if _not_modified(request, etag, mtime):
            return web.Response(status=304, headers=headers)
        if request.query.get("encoding") == "gzip":
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    def _lookup(self, name: str) -> tuple[bytes, str, float] | None:
        """(body, strong ETag, mtime) of a served file, or None."""
        if name in self.files:
            body = self.files[name]
            stamp = self._stamps.get(name)
            if stamp is None or stamp[2] is not body:  # hash each new content once, not per request
                etag = _etag(body)
                mtime = stamp[1] if stamp and stamp[0] == etag else time.time()
                stamp = self._stamps[name] = (etag, mtime, body)
            return body, stamp[0], stamp[1]
        if self.root is None:
            return None
        path = (self.root / name).resolve()
        if not path.is_file() or not path.is_relative_to(self.root.resolve()):
            return None
        body = path.read_bytes()
        return body, _etag(body), path.stat().st_mtime

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/xml"})
        response.enable_chunked_encoding()  # no Content-Length
        chunk = b"x" * (64 * 1024)
        count = int(float(request.query.get("mb", "20")) * _MiB) // len(chunk)
        return await _stream(request, response, (chunk for _ in range(count)))

    async def _gzipbomb(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/xml",
                                               "Content-Encoding": "gzip"})
        response.enable_chunked_encoding()
        mebibytes = int(float(request.query.get("gb", "10")) * 1024)

        def bomb() -> Iterator[bytes]:  # compressed on demand: an early hang-up costs nothing
            packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
            zeros = bytes(_MiB)
            for _ in range(mebibytes):
                yield packer.compress(zeros)
            yield packer.flush()

        return await _stream(request, response, bomb())

    async def _notxml(self, request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><html><head><title>Bäckerei</title></head>"
                                 "<body><p>Willkommen!</p></body></html>",
                            content_type="text/html")

    async def _redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["to"]})

    async def _hang(self, request: web.Request) -> web.Response:
        await self._stopping.wait()
        return web.Response(status=503)

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/xml"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(int(request.query.get("seconds", "600"))):
            await response.write(b"<")
            if await self._wait_stopping(1.0):
                break
        return response

    async def _status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        body = None if code in (204, 304) or code < 200 else f"status {code}\n".encode()
        return web.Response(status=code, body=body, headers=headers)


async def _stream(request: web.Request, response: web.StreamResponse,
                  chunks: Iterable[bytes]) -> web.StreamResponse:
    """Send `chunks` lazily; a client that hangs up early (as a capped one does) is normal."""
    await response.prepare(request)
    try:
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        pass
    return response


def _bound(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'


def _not_modified(request: web.Request, etag: str, mtime: float) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or etag in tags
    since = request.headers.get("If-Modified-Since")
    if since is None:
        return False
    try:
        return int(mtime) <= parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError):
        return False
