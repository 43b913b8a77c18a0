"""The one hardened HTTP fetcher every connector uses.

Every URL the hub fetches comes from a config file that merchants' data flows into, so the
fetcher treats each one as hostile:

- SSRF guard: it connects only to public addresses. IP-literal hosts (also decimal, octal and
  hex forms) are checked before connecting; host names are checked inside aiohttp's resolver,
  after DNS and before the TCP connect, so DNS rebinding has no window. Every redirect hop
  passes the same checks, because the fetcher follows redirects itself.
- Size cap on the *decoded* body, enforced while streaming: a gzip bomb or an endless body
  costs at most the cap in memory.
- A total deadline per call (redirects, retries and body included) besides the connect and
  read timeouts, so a server dripping one byte per second cannot hold a worker.
- Retries with backoff (tenacity) for transient faults only; a long Retry-After is handed to
  the scheduler instead of being slept through.

GETs go straight to an aiohttp session: on a re-poll of many feeds, httpx's client
layer (cookies, auth, redirects: none of them used here), its request and response
objects and the conversion between them cost about as much CPU per conditional GET as
aiohttp itself. httpx parses and joins URLs, and sends the rare POST (WebSub) over the
same session through the `httpx-aiohttp` transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import random
import re
import socket
import ssl
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.cookiejar import CookieJar, DefaultCookiePolicy
from importlib import metadata
from json import dumps as json_dumps
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from httpx_aiohttp import AiohttpTransport
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from hub import demo_dates
from hub.config import FetcherConfig
from hub.errors import BlockedAddress, ConfigError, FetchError, NotModified, TooLarge
from hub.models import FetchState

__all__ = ["Fetcher", "Response", "redact", "user_agent"]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A Retry-After up to this long is waited out in place; a longer one goes to the scheduler.
MAX_RETRY_AFTER_WAIT = 5.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_FILE_TYPES = {".xml": "application/xml", ".rss": "application/rss+xml",
               ".atom": "application/atom+xml", ".json": "application/json",
               ".html": "text/html", ".htm": "text/html", ".ics": "text/calendar"}
_PRIVATE_HINT = ("set fetcher.allow_private_networks: true only if this source is on your own "
                 "network, or list its address in fetcher.allowed_networks")
_URL_HINT = "check the source's url in the config"
# Query parameters that carry secrets (Graph API tokens and proofs, OAuth client secrets),
# also URL-encoded inside another URL: their values never reach a message.
_SECRET_PARAMS = re.compile(
    r"((?:access_token|appsecret_proof|client_secret|input_token|fb_exchange_token|verify_token)(?:=|%3D))"
    r"[^&\s#'\"<>%]*(?:%(?!26)[0-9A-Fa-f]{2}[^&\s#'\"<>%]*)*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with the values of secret URL parameters (access_token=, appsecret_proof=,
    client_secret=, input_token=, fb_exchange_token=, verify_token=) replaced by REDACTED: for
    every message, log line or stored field that may hold a URL."""
    return _SECRET_PARAMS.sub(r"\1REDACTED", text) if "=" in text or "%3D" in text.upper() else text


@dataclass(frozen=True)
class Response:
    url: str  # the final URL after redirects: the base for relative links
    status: int
    body: bytes  # decoded, never longer than the cap
    headers: Mapping[str, str]  # names in lower case; a repeated header's values joined by ", "
    state: FetchState  # the validators to send next time
    fresh_until: datetime | None  # UTC; from Retry-After, Cache-Control max-age or Expires

    @property
    def content_type(self) -> str:
        """The media type alone, lower-case ("application/rss+xml"); parameters are in headers."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """certifi's CA bundle, as httpx would use; read once per process (20-40 ms), as every
    app, pipeline and publisher makes a fetcher of its own. A context is safe to share."""
    return httpx.create_ssl_context()


class Fetcher:
    """Fetches http(s) and file: URLs for connectors. One per process; use as a context manager."""

    def __init__(self, config: FetcherConfig, *, base_dir: Path,
                 user_agent_product: str = "MusterHub",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """`base_dir` resolves relative file: URLs (the config file's folder); `clock` is
        the day demo feeds are dated to (see `hub.demo_dates`)."""
        self._config = config
        self._base_dir = base_dir
        self._clock = clock
        self._guard = _AddressGuard(config)
        self._checked: set[str] = set()  # URLs `send` found allowed (scheme, IP literal); DNS is checked each time
        # Waiting for a slot must not eat into a request's deadline, so the limit is taken
        # here, before the deadline starts, rather than in the connection pool.
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self._tls = _tls_context()
        self._session: aiohttp.ClientSession | None = None  # made on first use, inside the loop
        self._headers = {"User-Agent": user_agent(user_agent_product, config.contact_url),
                         # Only what _Inflater decodes with a bounded output.
                         "Accept-Encoding": "gzip, deflate"}
        self._timeout = aiohttp.ClientTimeout(sock_connect=config.connect_timeout, sock_read=config.read_timeout,
                                              connect=config.connect_timeout)
        # GETs go to the session directly (`_hop`); the client serves the rare POST.
        self._client = httpx.AsyncClient(
            transport=AiohttpTransport(verify=self._tls, client=self._aiohttp),
            headers=self._headers,
            timeout=httpx.Timeout(connect=config.connect_timeout, read=config.read_timeout,
                                  write=config.read_timeout, pool=config.connect_timeout),
            follow_redirects=False,  # each hop must pass the SSRF guard: see _fetch_once
            trust_env=False,  # an environment proxy would connect on our behalf, unchecked
            # Sources are unrelated sites; a cookie one sets must not follow the hub around.
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._session is not None:
            await self._session.close()

    def _aiohttp(self) -> aiohttp.ClientSession:
        """The session every request goes through: its resolver is the SSRF guard's."""
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=_GuardedResolver(self._guard),
                                             limit=self._config.max_in_flight, ssl=self._tls)
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                                  auto_decompress=False, trust_env=False)
        return self._session

    async def get(self, url: str, *, state: FetchState = FetchState(), max_bytes: int | None = None,
                  accept: str | None = None, raise_for_status: bool = True) -> Response:
        """GET `url` (http, https or file:), conditionally if `state` holds validators.

        Args:
            url: the address; a relative file: path resolves against `base_dir`.
            state: the validators of the last successful fetch; `cursor` is carried over.
            max_bytes: cap on the decoded body; default `fetcher.max_body_bytes`.
            accept: the Accept header; default */*.
            raise_for_status: False returns an HTTP error status (4xx, 5xx) as a response
                with its body, unretried, for APIs whose error bodies say what went wrong
                (the Graph API decides from the body's error code, not the status).
        Returns:
            the response, with the new validators in `state`.
        Raises:
            NotModified: the source answered 304 (or the file's mtime is unchanged).
            BlockedAddress: the URL, a redirect or a resolved address is not public.
            TooLarge: the decoded body is longer than the cap.
            FetchError: anything else; `.transient` says whether trying again soon may help,
                `.status` and `.retry_after` come from the HTTP answer. Its message never
                holds a secret URL parameter (see `redact`).
        """
        cap = self._config.max_body_bytes if max_bytes is None else max_bytes
        try:
            if url[:5].lower() == "file:":
                return await asyncio.to_thread(_read_file, self._file_path(url), state, cap, self._clock())
            async with self._slots:
                deadline = asyncio.timeout(self._config.total_timeout)
                try:
                    async with deadline:
                        return await self._attempts(url, state, cap, accept, raise_for_status)
                except TimeoutError as exc:
                    if not deadline.expired():
                        raise
                    raise FetchError(f"no answer within {self._config.total_timeout:g} s",
                                     hint="the server is down or too slow; the hub tries again later",
                                     transient=True) from exc
        except FetchError as exc:
            raise _redacted(exc)

    async def post_form(self, url: str, form: Mapping[str, str]) -> int:
        """POST a form (a WebSub subscription request) through the same address guard.

        No redirects are followed and nothing is retried: the caller decides what a refusal
        means. Returns the HTTP status.
        Raises:
            BlockedAddress: the URL or a resolved address is not public.
            FetchError: the request could not be sent or got no answer in time.
        """
        return (await self.post(url, form)).status

    async def post(self, url: str, form: Mapping[str, str]) -> Response:
        """POST a form and return the answer whatever its status, with its body (capped at
        `fetcher.max_body_bytes`): for APIs whose error bodies say what went wrong (the
        Graph API's subscriptions). No redirects, no retries, the same address guard.
        Raises:
            BlockedAddress, TooLarge, FetchError: as `post_form`; messages never hold a secret
                URL parameter.
        """
        try:
            self._guard.check_url(url)
            async with self._slots:
                try:
                    async with asyncio.timeout(self._config.total_timeout):
                        response = await self._client.post(url, data=dict(form))
                except TimeoutError as exc:
                    raise FetchError(f"no answer within {self._config.total_timeout:g} s", transient=True) from exc
                except _NETWORK_ERRORS as exc:
                    raise _network_error(exc, url, self._config) from exc
            if len(response.content) > self._config.max_body_bytes:
                raise TooLarge(f"the answer to a POST is longer than {self._config.max_body_bytes:,} bytes")
        except FetchError as exc:
            raise _redacted(exc)
        headers = {k.lower(): v for k, v in response.headers.items()}
        return Response(str(response.url), response.status_code, response.content, headers, FetchState(), None)

    async def send(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                   content: bytes | None = None, json: Any = None, data: Mapping[str, Any] | None = None,
                   files: Mapping[str, tuple[str, bytes, str]] | None = None, timeout: float | None = None) -> Response:
        """One request to a channel's API (issue 16: a webhook, Mastodon, Telegram,
        WordPress) through the same address guard, straight on the aiohttp session as GETs go
        (httpx's layer cost more CPU than a delivery to a local receiver). The body is `content`
        (bytes), `json`, or a form of `data` fields and `files` (name -> (filename, bytes,
        media type): multipart). No redirect is followed (a 3xx comes back as it is) and
        nothing is retried (the delivery ledger decides when to try again); `timeout` (seconds,
        at most `fetcher.total_timeout`) bounds the whole request. Returns the answer whatever
        its status, its body capped at `fetcher.max_body_bytes`.
        Raises:
            BlockedAddress: the URL or a resolved address is not public; nothing was sent.
            FetchError: no answer. `maybe_sent` says whether the request may have reached the
                server: False when it cannot have (DNS, refused, connect timeout, TLS), True
                when it may (the connection broke off, no answer in time). Messages never hold
                a secret URL parameter.
        """
        limit = min(timeout or self._config.total_timeout, self._config.total_timeout)
        body, extra = _request_body(content, json, data, files)
        try:
            try:
                if url not in self._checked:  # a channel posts to one URL again and again: parsed once
                    self._guard.check_url(url)
                    if len(self._checked) > 1000:
                        self._checked.clear()
                    self._checked.add(url)
                async with self._slots:
                    async with asyncio.timeout(limit):  # after the slot: waiting for one is no part of it
                        async with self._aiohttp().request(
                                method, url, headers={**self._headers, **extra, **(headers or {})}, data=body,
                                allow_redirects=False, timeout=self._timeout) as response:
                            answer = _header_dict(response.headers)
                            got = await _read_capped(response.content, answer, self._config.max_body_bytes)
            except TimeoutError as exc:
                raise _unanswered(FetchError(f"no answer within {limit:g} s", transient=True), True) from exc
            except _NETWORK_ERRORS as exc:
                raise _unanswered(_network_error(exc, url, self._config), not _before_sending(exc)) from exc
            except FetchError as exc:  # the guard (before or after DNS), or the answer's size
                raise _unanswered(exc, exc.code != "address_blocked")
        except FetchError as exc:
            raise _redacted(exc)
        return Response(url, response.status, got, answer, FetchState(), None)

    async def _attempts(self, url: str, state: FetchState, cap: int, accept: str | None,
                        raise_for_status: bool = True) -> Response:
        """The first attempt, then (for transient faults only) the retries, with backoff.
        tenacity takes over only once an attempt failed: setting it up costs more CPU
        than a conditional GET on a kept-alive connection."""
        try:
            return await self._fetch_once(url, state, cap, accept, raise_for_status)
        except Exception as exc:
            if self._config.retries == 0 or not _worth_retrying_now(exc):
                raise
            await asyncio.sleep(_backoff(1, exc))
        retrying = AsyncRetrying(stop=stop_after_attempt(self._config.retries),
                                 retry=retry_if_exception(_worth_retrying_now), reraise=True,
                                 wait=lambda rs: _backoff(rs.attempt_number + 1, rs.outcome.exception()))
        return await retrying(self._fetch_once, url, state, cap, accept, raise_for_status)

    async def _fetch_once(self, url: str, state: FetchState, cap: int, accept: str | None,
                          raise_for_status: bool = True) -> Response:
        """One attempt: follow redirects by hand, checking every hop against the guard."""
        headers = {**self._headers, **_request_headers(state, accept)}
        for _ in range(self._config.max_redirects + 1):
            parsed = self._guard.check_url(url)
            try:
                outcome = await self._hop(parsed, headers, state, cap, raise_for_status)
            except _NETWORK_ERRORS as exc:
                raise _network_error(exc, url, self._config) from exc
            if isinstance(outcome, Response):
                return outcome
            url = outcome
        raise FetchError(f"more than {self._config.max_redirects} redirects, last to {url}",
                         hint="open the url in a browser and put the address it ends at in the config")

    async def _hop(self, url: httpx.URL, headers: dict[str, str], state: FetchState,
                   cap: int, raise_for_status: bool = True) -> Response | str:
        """Send one request; the response, or the URL a redirect points to. Redirects,
        cookies (none: sources are unrelated sites) and retries are this fetcher's own."""
        async with self._aiohttp().get(str(url), headers=headers, allow_redirects=False,
                                       timeout=self._timeout) as response:
            answer = _header_dict(response.headers)
            location = answer.get("location")
            if response.status in _REDIRECTS and location:
                return str(url.join(location))
            conditional = any(h.startswith("If-") for h in headers)
            if raise_for_status or (response.status == 304 and conditional) or response.status < 400:
                _raise_for_status(response.status, answer, conditional=conditional)
            body = await _read_capped(response.content, answer, cap)
        return Response(url=str(url), status=response.status, body=body, headers=answer,
                        state=_new_state(answer, state), fresh_until=_fresh_until(answer, datetime.now(UTC)))

    def _file_path(self, url: str) -> Path:
        """file:relative/path (against base_dir), file:/abs/path or file:///abs/path."""
        rest = url[5:]
        if rest.startswith("//"):
            parts = urlsplit(url)
            if parts.netloc not in ("", "localhost"):
                raise FetchError(f"{url}: a file: URL cannot name another host",
                                 hint="write file:///absolute/path or file:relative/path")
            rest = parts.path
        path = Path(unquote(rest))
        return path if path.is_absolute() else self._base_dir / path


def user_agent(product: str, contact_url: str | None) -> str:
    """`MusterHub/0.1.0 (+https://town.example/impressum)`: lets a site owner reach us."""
    try:
        version = metadata.version("musterhub")
    except metadata.PackageNotFoundError:  # running from a source checkout
        version = "dev"
    return f"{product}/{version} (+{contact_url})" if contact_url else f"{product}/{version}"


# --- SSRF guard ----------------------------------------------------------------------------

class _AddressGuard:
    """Decides which addresses the fetcher may connect to."""

    def __init__(self, config: FetcherConfig) -> None:
        self._allow_all = config.allow_private_networks
        self._exceptions = _parse_networks(config.allowed_networks)

    def check_url(self, url: str) -> httpx.URL:
        """Scheme and IP-literal host, before any connection; returns the parsed URL. Host
        names are checked by `_GuardedResolver`, after DNS; aiohttp skips the resolver for
        IP literals."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            # httpx refuses some numeric forms (0177.0.0.1) that C libraries would accept;
            # say what the address is rather than only that the URL is odd.
            with contextlib.suppress(ValueError):
                self.check_host(urlsplit(url).hostname or "")
            raise FetchError(f"{url} is not a valid URL: {exc}", hint=_URL_HINT) from exc
        if parsed.scheme not in ("http", "https"):
            raise FetchError(f"{url}: the hub fetches only http, https and file: URLs",
                             hint=_URL_HINT)
        if not parsed.host:
            raise FetchError(f"{url} names no host", hint=_URL_HINT)
        self.check_host(parsed.host)
        return parsed

    def check_host(self, host: str) -> None:
        ip = _literal_ip(host)
        if ip is not None:
            self._check(host, ip, "is")

    def check_resolved(self, host: str, addresses: list[str]) -> None:
        for address in addresses:
            self._check(host, ipaddress.ip_address(address.split("%")[0]), "resolves to")

    def _check(self, host: str, ip: _IPAddress, verb: str) -> None:
        if self._allow_all or any(_in(ip, net) for net in self._exceptions):
            return
        ip = _embedded_ipv4(ip) or ip  # ::ffff:127.0.0.1 and 2002:7f00:1:: reach 127.0.0.1
        reason = _why_not_public(ip)
        if reason:
            target = str(ip) if host.strip("[]") == str(ip) else f"{host}: it {verb} {ip}"
            raise BlockedAddress(f"refused to connect to {target} ({reason})", hint=_PRIVATE_HINT)


def _embedded_ipv4(ip: _IPAddress) -> ipaddress.IPv4Address | None:
    return getattr(ip, "ipv4_mapped", None) or getattr(ip, "sixtofour", None)


def _why_not_public(ip: _IPAddress) -> str | None:
    """Why `ip` is no address on the public internet, or None if it is one."""
    checks = [(ip.is_loopback, "loopback address"), (ip.is_link_local, "link-local address"),
              (ip.is_multicast, "multicast address"), (ip.is_unspecified, "unspecified address"),
              (ip in _CGNAT, "carrier-grade NAT address"),
              (getattr(ip, "is_site_local", False), "site-local address"),
              (ip.is_private, "private address"), (ip.is_reserved, "reserved address"),
              (not ip.is_global, "non-public address")]
    return next((reason for hit, reason in checks if hit), None)


def _literal_ip(host: str) -> _IPAddress | None:
    """The address an IP-literal host means, in any form a C resolver accepts
    (2130706433, 0x7f.1, 0177.0.0.1, [::1]); None for a host name."""
    host = host.strip("[]").split("%")[0].removesuffix(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _parse_networks(cidrs: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
    except ValueError as exc:
        raise ConfigError([f"fetcher.allowed_networks: {exc} "
                           "(hint: write networks like 10.1.2.3/32 or fd00::/8)"]) from exc


def _in(ip: _IPAddress, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    embedded = _embedded_ipv4(ip)
    return ip in network or (embedded is not None and embedded in network)


class _GuardedResolver(AbstractResolver):
    """aiohttp's resolver plus the guard: runs after DNS and before the connect, and aiohttp
    connects only to the addresses returned here, so what is checked is what is used."""

    def __init__(self, guard: _AddressGuard) -> None:
        self._guard = guard
        self._dns = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._dns.resolve(host, port, family)
        self._guard.check_resolved(host, [r["host"] for r in results])
        return results

    async def close(self) -> None:
        await self._dns.close()


# --- requests and responses ----------------------------------------------------------------

def _header_dict(headers: Mapping[str, str]) -> dict[str, str]:
    """Response headers with lower-case names, a repeated header's values joined by ", "."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        name = name.lower()
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _request_headers(state: FetchState, accept: str | None) -> dict[str, str]:
    headers = {"Accept": accept or "*/*"}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    return headers


def _new_state(headers: Mapping[str, str], old: FetchState) -> FetchState:
    return FetchState(etag=headers.get("etag") or old.etag,
                      last_modified=headers.get("last-modified") or old.last_modified,
                      cursor=old.cursor)


def _fresh_until(headers: Mapping[str, str], now: datetime) -> datetime | None:
    """Until when the server asks not to be polled again, if it says so."""
    retry_after = _seconds_until(headers.get("retry-after"), now)
    if retry_after is not None:
        return now + timedelta(seconds=retry_after)
    for directive in headers.get("cache-control", "").split(","):
        name, _, value = directive.strip().partition("=")
        if name.lower() == "max-age" and value.strip('"').isdigit():
            return now + timedelta(seconds=int(value.strip('"')))
    return _http_date(headers.get("expires"))


def _seconds_until(retry_after: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from now: it is either seconds or an HTTP date."""
    if not retry_after:
        return None
    if retry_after.strip().isdigit():
        return float(retry_after.strip())
    when = _http_date(retry_after)
    return None if when is None else max(0.0, (when - now).total_seconds())


def _http_date(value: str | None) -> datetime | None:
    try:
        when = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _raise_for_status(status: int, headers: Mapping[str, str], *, conditional: bool) -> None:
    if 200 <= status < 300:
        return
    if status == 304 and conditional:
        raise NotModified("not modified since the last fetch")
    raise _status_error(status, _seconds_until(headers.get("retry-after"), datetime.now(UTC)))


_ACCESS_HINT = ("the feed may need a login, or the site blocks the hub; "
                "ask the site owner to let it in")
_STATUS_TEXT = {
    304: ("the server answered 'not modified' to a plain request", "report this to the site owner"),
    401: ("the server refuses access", _ACCESS_HINT),
    403: ("the server refuses access", _ACCESS_HINT),
    404: ("the feed URL is wrong or the feed was removed", _URL_HINT),
    410: ("the site removed this feed for good", "ask the merchant for the new address, or remove the source"),
}


def _status_error(status: int, retry_after: float | None) -> FetchError:
    try:
        label = f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        label = f"HTTP {status}"
    transient = status == 429 or (status >= 500 and status not in (501, 505))
    if status == 429:
        wait = f"after {retry_after:g} s" if retry_after is not None else "later"
        text, hint = ("the server asks the hub to slow down",
                      f"the hub tries again {wait}; consider a longer `every:` for this source")
    elif status in _STATUS_TEXT:
        text, hint = _STATUS_TEXT[status]
    elif transient:
        text, hint = "the server has a problem", "usually temporary; the hub tries again later"
    elif status >= 400:
        text, hint = "the server rejected the request", _URL_HINT
    else:
        text, hint = "an answer the hub cannot use", _URL_HINT
    return FetchError(f"{label}: {text}", hint=hint, transient=transient, status=status,
                      retry_after=retry_after)


# --- the body, capped after decoding -------------------------------------------------------

async def _read_capped(stream: aiohttp.StreamReader, headers: Mapping[str, str], cap: int) -> bytes:
    """Stream the body, decoding as it comes, and stop as soon as it passes `cap`."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(cap, f" (the server announced {_size(int(declared))})")
    inflater = _Inflater(headers.get("content-encoding", ""))
    body = bytearray()
    async for chunk in stream.iter_chunked(1 << 16):
        body += inflater.decode(chunk, limit=cap - len(body) + 1)
        if len(body) > cap:
            raise _too_large(cap)
        if inflater.finished:  # whatever follows the compressed stream is not body
            break
    return bytes(body)


class _Inflater:
    """Decodes a gzip or deflate body without ever producing more than asked for: httpx's
    own decoders inflate each chunk whole, ~1,000x its size for a gzip bomb."""

    def __init__(self, content_encoding: str) -> None:
        encoding = content_encoding.strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise FetchError(f"the server sent the body encoded as '{encoding}', which the hub "
                             "does not read", hint="report this to the site owner")
        # wbits 47: zlib or gzip container, detected from the header.
        self._zlib = None if encoding in ("", "identity") else zlib.decompressobj(47)

    @property
    def finished(self) -> bool:
        return self._zlib is not None and self._zlib.eof

    def decode(self, data: bytes, *, limit: int) -> bytes:
        """Up to `limit` decoded bytes; fewer means all of `data` was consumed."""
        if self._zlib is None:
            return data
        try:
            return self._zlib.decompress(data, limit)
        except zlib.error as exc:
            raise FetchError(f"the server sent a broken compressed body: {exc}",
                             hint="usually temporary; the hub tries again later",
                             transient=True) from exc


def _redacted(exc: FetchError) -> FetchError:
    """`exc` with secret URL parameters gone from its message, hint and args (in place:
    its type, status and cause stay)."""
    exc.message = redact(exc.message)
    exc.hint = redact(exc.hint) if exc.hint else exc.hint
    exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
    return exc


def _too_large(cap: int, detail: str = "") -> TooLarge:
    return TooLarge(f"response is larger than {_size(cap)}{detail}; the hub stops reading there",
                    hint="for a feed, ask the site to list fewer entries; or raise "
                         "fetcher.max_body_bytes if this source really is that big")


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n // factor} {unit}" if n % factor == 0 else f"{n / factor:.1f} {unit}"
    return f"{n} bytes"


# --- retries ---------------------------------------------------------------------------------

def _worth_retrying_now(exc: BaseException) -> bool:
    if not isinstance(exc, FetchError) or not exc.transient:
        return False
    return exc.retry_after is None or exc.retry_after <= MAX_RETRY_AFTER_WAIT


def _backoff(failed_attempts: int, exc: BaseException | None) -> float:
    """The server's own Retry-After if it gave one, else exponential backoff with jitter:
    0.5 s, 1 s, 2 s ... plus up to 0.5 s, at most MAX_RETRY_AFTER_WAIT."""
    if isinstance(exc, FetchError) and exc.retry_after is not None:
        return exc.retry_after
    return min(MAX_RETRY_AFTER_WAIT, 0.5 * 2 ** (failed_attempts - 1) + random.uniform(0, 0.5))


# --- network errors, mapped in one place ---------------------------------------------------

_NETWORK_ERRORS = (httpx.HTTPError, httpx.InvalidURL, aiohttp.ClientError, OSError)


def _network_error(exc: BaseException, url: str, config: FetcherConfig) -> FetchError:
    """A readable FetchError for any httpx, aiohttp or socket exception.

    Decided on the whole cause chain, innermost types first: httpx-aiohttp maps aiohttp's
    exceptions onto httpx's loosely (a dropped connection arrives as httpx.ConnectTimeout)."""
    chain = _causes(exc)
    host = urlsplit(url).hostname or url
    for types, describe in _ERROR_RULES:
        if found := next((e for e in chain if isinstance(e, types)), None):
            message, hint, transient = describe(found, host, config)
            return FetchError(message, hint=hint, transient=transient)
    return FetchError(f"fetching {url} failed: {exc}", transient=True,
                      hint="if this persists, report it with the url")


def _request_body(content: bytes | None, json_body: Any, data: Mapping[str, Any] | None,
                  files: Mapping[str, tuple[str, bytes, str]] | None) -> tuple[Any, dict[str, str]]:
    """What `Fetcher.send` hands aiohttp as the body, and the headers that go with it."""
    if json_body is not None:
        return json_dumps(json_body, ensure_ascii=False).encode(), {"Content-Type": "application/json"}
    if files:
        form = aiohttp.FormData()
        for name, value in (data or {}).items():
            form.add_field(name, str(value))
        for name, (filename, payload, media_type) in files.items():
            form.add_field(name, payload, filename=filename, content_type=media_type)
        return form, {}
    if data is not None:
        return {k: str(v) for k, v in data.items()}, {}
    return content, {}


def _unanswered(exc: FetchError, maybe_sent: bool) -> FetchError:
    exc.maybe_sent = maybe_sent  # see Fetcher.send
    return exc


def _before_sending(exc: BaseException) -> bool:
    """Whether a network error happened before any byte of the request could reach the
    server: resolving, connecting, the TLS handshake. Judged on aiohttp's and the socket's
    own exceptions: httpx-aiohttp maps a dropped connection to httpx.ConnectTimeout."""
    before = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, ConnectionRefusedError, socket.gaierror,
              ssl.SSLError, httpx.InvalidURL, httpx.UnsupportedProtocol)
    return any(isinstance(e, before) for e in _causes(exc))


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _dns(exc: Any, host: str, config: FetcherConfig) -> tuple[str, str, bool]:
    cause = getattr(exc, "os_error", exc)
    if getattr(cause, "errno", None) == socket.EAI_AGAIN:
        return f"DNS lookup for {host} failed for now", "the hub tries again later", True
    return f"cannot resolve host {host}", "check the url for typos", False


def _tls(exc: Any, host: str, config: FetcherConfig) -> tuple[str, str, bool]:
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, ssl.CertificateError)):
        reason = getattr(exc, "certificate_error", exc)
        hint = "the site's certificate is invalid or expired; the site owner must fix it"
    else:
        reason = getattr(exc, "os_error", exc)
        hint = "the site's HTTPS is broken; if it has none, write the url with http://"
    return f"TLS handshake with {host} failed: {reason}", hint, False


def _refused(exc: Any, host: str, config: FetcherConfig) -> tuple[str, str, bool]:
    return f"{host} refused the connection", "the server is down or the port is wrong", True


def _connect_timeout(exc: Any, host: str, config: FetcherConfig) -> tuple[str, str, bool]:
    return (f"could not connect to {host} within {config.connect_timeout:g} s",
            "the server is down or unreachable; the hub tries again later", True)


def _read_timeout(exc: Any, host: str, config: FetcherConfig) -> tuple[str, str, bool]:
    return (f"{host} sent nothing for {config.read_timeout:g} s",
            "the server is overloaded; the hub tries again later", True)


def _broken(exc: Any, host: str, config: FetcherConfig) -> tuple[str, str, bool]:
    return (f"the connection to {host} broke off: {exc}",
            "usually temporary; the hub tries again later", True)


def _unreachable(exc: Any, host: str, config: FetcherConfig) -> tuple[str, str, bool]:
    reason = getattr(getattr(exc, "os_error", None), "strerror", None) or exc
    return f"cannot connect to {host}: {reason}", "the hub tries again later", True


def _bad_url(exc: Any, host: str, config: FetcherConfig) -> tuple[str, str, bool]:
    return f"not a valid http(s) URL: {exc}", _URL_HINT, False


def _bad_response(exc: Any, host: str, config: FetcherConfig) -> tuple[str, str, bool]:
    return (f"{host} sent a malformed HTTP response: {getattr(exc, 'message', exc)}",
            "report this to the site owner", False)


# Order matters: the first rule matching anywhere in the chain wins, so precise aiohttp and
# socket types come before the broad httpx classes httpx-aiohttp wraps them in.
_ERROR_RULES = [
    ((aiohttp.ClientConnectorDNSError, socket.gaierror), _dns),
    ((aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError), _tls),
    ((ConnectionRefusedError,), _refused),
    ((aiohttp.ConnectionTimeoutError,), _connect_timeout),
    ((aiohttp.SocketTimeoutError,), _read_timeout),
    ((aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, ConnectionResetError,
      httpx.RemoteProtocolError, httpx.ReadError), _broken),
    ((aiohttp.ClientConnectorError,), _unreachable),
    ((aiohttp.ClientResponseError,), _bad_response),
    ((aiohttp.InvalidURL, httpx.InvalidURL, httpx.UnsupportedProtocol), _bad_url),
    ((httpx.ConnectTimeout,), _connect_timeout),
    ((httpx.ReadTimeout, httpx.TimeoutException), _read_timeout),
    ((httpx.ConnectError, OSError), _unreachable),
]


# --- file: URLs ------------------------------------------------------------------------------

def _read_file(path: Path, state: FetchState, cap: int, now: datetime) -> Response:
    """A local file as a response: how the demo town ships its sample feeds. A demo feed
    (one that names its anchor, see `hub.demo_dates`) comes dated to `now`, and its
    validators change with the shift, so a long-running hub re-reads it each day."""
    try:
        stat = path.stat()
        with path.open("rb") as f:
            head = f.read(demo_dates.HEAD_BYTES)
    except FileNotFoundError:
        raise FetchError(f"file not found: {path}",
                         hint="a relative file: path is read from the config file's folder") from None
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        anchor = demo_dates.find_anchor(head)
    except ValueError as exc:
        raise FetchError(f"{path}: {exc}", hint="see hub/demo/README.md for the marker's form") from None
    modified = stat.st_mtime
    # Last-Modified has whole seconds only; mtime_ns and size also catch a quick second edit.
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    if anchor is not None:
        days = anchor.days_until(now)
        modified = max(modified, anchor.moved(days).timestamp())  # the dates changed then
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}-{days:+d}d"'
    last_modified = formatdate(modified, usegmt=True)
    if (state.etag == etag) if state.etag else (state.last_modified == last_modified):
        raise NotModified(f"{path} has not changed since the last fetch")
    if stat.st_size > cap:
        raise _too_large(cap, f" (the file has {_size(stat.st_size)})")
    try:
        with path.open("rb") as f:
            body = f.read(cap + 1)
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror}") from exc
    if len(body) > cap:  # it grew since the stat
        raise _too_large(cap)
    if anchor is not None:
        body = demo_dates.redate(body, anchor, days)
    headers = {"content-type": _FILE_TYPES.get(path.suffix.lower(), "application/octet-stream"),
               "last-modified": last_modified, "etag": etag}
    return Response(url=path.resolve().as_uri(), status=200, body=body, headers=headers,
                    state=FetchState(etag, last_modified, state.cursor), fresh_until=None)
