"""The hardened fetcher against a real loopback server (tests/feedserver.py); nothing of ours
is mocked. The feed server listens on 127.0.0.2 and the fetcher allows exactly that address
(`allowed_networks: [127.0.0.2/32]`), so the SSRF guard is on in every test; a canary on
127.0.0.1 proves that refused addresses are never connected to."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from urllib.parse import quote

import pytest
import pytest_asyncio

from hub.config import FetcherConfig
from hub.errors import BlockedAddress, ConfigError, FetchError, NotModified, TooLarge
from hub.http import Fetcher
from hub.models import FetchState
from tests.feedserver import FeedServer

pytestmark = [pytest.mark.asyncio, pytest.mark.timeless]  # timeless: the fetcher against loopback servers

FEED = (b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Schmitz</title>'
        b"<item><guid>1</guid><title>Frische Br\xc3\xb6tchen</title></item></channel></rss>")
CONTACT = "https://musterstadt.example/impressum"
MiB = 1024 * 1024


def config(**overrides) -> FetcherConfig:
    base = dict(contact_url=CONTACT, allowed_networks=["127.0.0.2/32"], total_timeout=10.0, retries=2)
    return FetcherConfig(**{**base, **overrides})


@pytest.fixture
def server():
    with FeedServer("127.0.0.2", files={"feed.xml": FEED}) as srv:
        yield srv


@pytest_asyncio.fixture
async def fetch(tmp_path):
    """`await fetch(url, **get_kwargs)` with a default Fetcher; `fetch.using(**config)` for others."""
    fetchers: list[Fetcher] = []

    def using(**overrides) -> Fetcher:
        fetchers.append(Fetcher(config(**overrides), base_dir=tmp_path))
        return fetchers[-1]

    async def fetch(url: str, **kwargs):
        return await (fetchers[0] if fetchers else using()).get(url, **kwargs)

    fetch.using = using
    yield fetch
    for f in fetchers:
        await f.aclose()


@pytest_asyncio.fixture
async def canary():
    """Listeners on 127.0.0.1 and (if available) ::1, same port, counting every connection."""
    accepted: list[str] = []
    v4 = await asyncio.start_server(lambda r, w: (accepted.append("v4"), w.close()), "127.0.0.1", 0)
    port = v4.sockets[0].getsockname()[1]
    servers = [v4]
    try:
        servers.append(await asyncio.start_server(lambda r, w: (accepted.append("v6"), w.close()),
                                                  "::1", port))
    except OSError:
        pass  # no IPv6 loopback here
    yield port, accepted
    for s in servers:
        s.close()


# --- the ordinary path -----------------------------------------------------------------------

async def test_fetches_a_feed_and_identifies_itself(server, fetch):
    resp = await fetch(server.url("/files/feed.xml"), accept="application/rss+xml")

    assert (resp.status, resp.body, resp.content_type) == (200, FEED, "application/xml")
    assert resp.url == server.url("/files/feed.xml")
    assert resp.state.etag and resp.state.last_modified
    seen = server.requests[-1].headers
    assert seen["user-agent"].startswith("MusterHub/") and seen["user-agent"].endswith(f"(+{CONTACT})")
    assert seen["accept"] == "application/rss+xml"


async def test_decodes_a_gzip_body(server, fetch):
    resp = await fetch(server.url("/files/feed.xml?encoding=gzip"))
    assert resp.headers["content-encoding"] == "gzip" and resp.body == FEED


async def test_follows_a_relative_redirect(server, fetch):
    resp = await fetch(server.url("/redirect?to=/files/feed.xml"))
    assert resp.url == server.url("/files/feed.xml") and resp.body == FEED


async def test_gives_up_after_max_redirects(server, fetch):
    url = server.url("/files/feed.xml")
    for _ in range(3):
        url = server.url("/redirect?to=" + quote(url, safe=""))
    with pytest.raises(FetchError, match="more than 2 redirects"):
        await fetch.using(max_redirects=2).get(url)


async def test_reports_freshness_from_cache_control(server, fetch):
    server.enqueue("/files/feed.xml", 200, FEED, {"Cache-Control": "public, max-age=600"})
    resp = await fetch(server.url("/files/feed.xml"))
    assert resp.fresh_until - datetime.now(UTC) == pytest.approx(timedelta(seconds=600), abs=timedelta(seconds=5))


# --- conditional GET -------------------------------------------------------------------------

async def test_second_fetch_with_the_state_is_not_modified(server, fetch):
    first = await fetch(server.url("/files/feed.xml"), state=FetchState(cursor="page-2"))
    assert first.state.cursor == "page-2"

    with pytest.raises(NotModified):
        await fetch(server.url("/files/feed.xml"), state=first.state)
    sent = server.requests[-1].headers
    assert sent["if-none-match"] == first.state.etag
    assert sent["if-modified-since"] == first.state.last_modified

    server.files["feed.xml"] = FEED.replace(b"Schmitz", b"Schmidt")
    changed = await fetch(server.url("/files/feed.xml"), state=first.state)
    assert b"Schmidt" in changed.body and changed.state.etag != first.state.etag


async def test_last_modified_alone_is_enough(server, fetch):
    first = await fetch(server.url("/files/feed.xml"))
    with pytest.raises(NotModified):
        await fetch(server.url("/files/feed.xml"), state=FetchState(last_modified=first.state.last_modified))


# --- size caps -------------------------------------------------------------------------------

async def _failure_and_peak_memory(coro) -> tuple[Exception, int]:
    """The exception `coro` raises and the peak of memory traced meanwhile."""
    tracemalloc.start()
    try:
        await coro
    except Exception as exc:
        return exc, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    pytest.fail("no exception raised")


async def test_huge_body_without_content_length_stops_at_the_cap(server, fetch):
    started = time.monotonic()
    with pytest.raises(TooLarge, match="larger than 10 MiB; the hub stops reading there") as caught:
        await fetch(server.url("/huge?mb=20"))
    assert time.monotonic() - started < 5
    assert caught.value.transient is False


async def test_memory_stays_near_the_cap(server, fetch):
    exc, peak = await _failure_and_peak_memory(fetch(server.url("/huge?mb=20"), max_bytes=1 * MiB))
    assert isinstance(exc, TooLarge)
    assert peak < 3 * MiB, f"peak {peak / MiB:.1f} MiB for a 1 MiB cap"


async def test_gzip_bomb_stops_at_the_decoded_cap(server, fetch):
    started = time.monotonic()
    exc, peak = await _failure_and_peak_memory(fetch(server.url("/gzipbomb?gb=10"), max_bytes=1 * MiB))
    assert isinstance(exc, TooLarge) and "larger than 1 MiB" in str(exc)
    assert time.monotonic() - started < 5
    assert peak < 5 * MiB, f"peak {peak / MiB:.1f} MiB for a 1 MiB cap"  # 1 MiB is the server's


async def test_announced_length_over_the_cap_is_refused_before_reading(server, fetch):
    with pytest.raises(TooLarge, match="announced"):
        await fetch(server.url("/files/feed.xml"), max_bytes=100)


# --- timeouts --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/hang", "/drip"])
async def test_a_silent_or_dripping_server_hits_the_total_deadline(server, fetch, path):
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"no answer within 1\.5 s") as caught:
        await fetch.using(total_timeout=1.5).get(server.url(path))
    assert time.monotonic() - started < 2.5
    assert caught.value.transient is True


async def test_a_silent_server_hits_the_read_timeout_first(server, fetch):
    with pytest.raises(FetchError, match=r"sent nothing for 0\.5 s") as caught:
        await fetch.using(read_timeout=0.5, retries=0).get(server.url("/hang"))
    assert caught.value.transient is True


# --- HTTP errors and retries -----------------------------------------------------------------

async def test_404_is_permanent_with_a_helpful_message(server, fetch):
    with pytest.raises(FetchError) as caught:
        await fetch(server.url("/files/missing.xml"))
    err = caught.value
    assert (err.status, err.transient) == (404, False)
    assert "HTTP 404 Not Found: the feed URL is wrong" in str(err) and "url in the config" in str(err)
    assert len(server.requests) == 1  # never retried


async def test_503_is_retried_until_it_succeeds(server, fetch):
    server.enqueue("/files/feed.xml", 503)
    resp = await fetch(server.url("/files/feed.xml"))
    assert resp.body == FEED and len(server.requests) == 2


async def test_a_short_retry_after_is_waited_out(server, fetch):
    server.enqueue("/files/feed.xml", 503, headers={"Retry-After": "1"})
    started = time.monotonic()
    assert (await fetch(server.url("/files/feed.xml"))).body == FEED
    assert time.monotonic() - started >= 1


async def test_a_long_retry_after_goes_back_to_the_scheduler_at_once(server, fetch):
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        await fetch(server.url("/status/429?retry_after=120"))
    err = caught.value
    assert (err.status, err.transient, err.retry_after) == (429, True, 120)
    assert time.monotonic() - started < 1 and len(server.requests) == 1


async def test_every_configured_retry_is_used(server, fetch):
    server.enqueue("/files/feed.xml", 503)
    server.enqueue("/files/feed.xml", 503)
    resp = await fetch.using(retries=2).get(server.url("/files/feed.xml"))
    assert resp.body == FEED and len(server.requests) == 3


async def test_retries_stop_after_the_configured_number(server, fetch):
    with pytest.raises(FetchError, match="HTTP 500 Internal Server Error") as caught:
        await fetch.using(retries=1).get(server.url("/status/500"))
    assert caught.value.transient and len(server.requests) == 2


# --- network errors --------------------------------------------------------------------------

async def test_connection_refused(fetch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.2", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match="refused the connection") as caught:
        await fetch.using(retries=0).get(f"http://127.0.0.2:{port}/feed.xml")
    assert caught.value.transient and isinstance(caught.value.__cause__, Exception)


async def test_unresolvable_host(fetch):
    with pytest.raises(FetchError, match="example.invalid") as caught:
        await fetch.using(retries=0).get("http://example.invalid/feed.xml")
    assert not isinstance(caught.value, BlockedAddress)
    assert "resolve" in str(caught.value) or "DNS" in str(caught.value)


# --- SSRF guard ------------------------------------------------------------------------------

async def test_redirect_to_loopback_is_refused_before_connecting(server, fetch, canary):
    port, accepted = canary
    with pytest.raises(BlockedAddress, match=r"refused to connect to 127\.0\.0\.1 \(loopback address\)"):
        await fetch(server.url(f"/redirect?to=http://127.0.0.1:{port}/"))
    assert accepted == []


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/", "http://[::1]:{port}/", "http://2130706433:{port}/",
    "http://0x7f.1:{port}/", "http://0177.0.0.1:{port}/", "http://127.1:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/", "http://0.0.0.0:{port}/", "http://169.254.169.254/",
    "http://10.1.2.3/", "http://192.168.0.1/", "http://100.64.0.1/", "http://[fe80::1]/",
    "http://[fc00::1]/", "http://224.0.0.1/",
])
async def test_non_public_addresses_are_refused(fetch, canary, url):
    port, accepted = canary
    with pytest.raises(BlockedAddress, match="refused to connect"):
        await fetch(url.format(port=port))
    assert accepted == []


async def test_a_name_resolving_to_loopback_is_refused_after_dns(fetch, canary):
    port, accepted = canary
    with pytest.raises(BlockedAddress, match="localhost: it resolves to"):
        await fetch(f"http://localhost:{port}/")
    assert accepted == []


async def test_a_malformed_allowed_network_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="allowed_networks"):
        Fetcher(config(allowed_networks=["10.0.0.300/32"]), base_dir=tmp_path)


async def test_a_redirect_to_another_scheme_is_not_followed(server, fetch):
    with pytest.raises(FetchError, match="only http, https"):
        await fetch(server.url("/redirect?to=file:///etc/passwd"))


async def test_allow_private_networks_lifts_the_guard(fetch):
    with FeedServer("127.0.0.1", files={"feed.xml": FEED}) as local:
        resp = await fetch.using(allow_private_networks=True).get(local.url("/files/feed.xml"))
    assert resp.body == FEED


# --- file: URLs ------------------------------------------------------------------------------

async def test_file_url_relative_to_base_dir(tmp_path, fetch):
    feed = tmp_path / "demo" / "feed.xml"
    feed.parent.mkdir()
    feed.write_bytes(FEED)

    resp = await fetch("file:demo/feed.xml")
    assert resp.body == FEED and resp.content_type == "application/xml"
    assert resp.url == feed.as_uri()
    assert resp.state.last_modified == formatdate(feed.stat().st_mtime, usegmt=True)

    with pytest.raises(NotModified):
        await fetch("file:demo/feed.xml", state=resp.state)
    with pytest.raises(NotModified):  # a stored Last-Modified alone is enough
        await fetch("file:demo/feed.xml", state=FetchState(last_modified=resp.state.last_modified))

    feed.write_bytes(FEED + b"\n")
    os.utime(feed, (time.time() + 5, time.time() + 5))
    assert (await fetch("file:demo/feed.xml", state=resp.state)).body == FEED + b"\n"


async def test_absolute_file_url_and_missing_file(tmp_path, fetch):
    (tmp_path / "a.json").write_bytes(b"{}")
    assert (await fetch((tmp_path / "a.json").as_uri())).body == b"{}"
    with pytest.raises(FetchError, match="file not found: .*nope.xml"):
        await fetch("file:nope.xml")


async def test_file_over_the_cap(tmp_path, fetch):
    (tmp_path / "big.xml").write_bytes(b"x" * 2048)
    with pytest.raises(TooLarge):
        await fetch("file:big.xml", max_bytes=1024)
