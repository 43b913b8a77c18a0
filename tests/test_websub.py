"""WebSub end to end: a fake hub on loopback (the outside edge), the hub's real web app
serving the callback, the real dispatcher discovering and subscribing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from contextlib import asynccontextmanager
from datetime import timedelta

import aiohttp
import pytest
import uvicorn
from aiohttp import web

from connectors import websub
from connectors.feed import FeedConnector
from hub.models import FetchState, Retrieved, SourceRef
from hub.web.app import create_app
from hub.signatures import signature_ok
from tests.clock import ManualClock
from tests.feedserver import FeedServer
from tests.schedtown import feed, town, write_config


class FakeHub:
    """Accepts subscriptions, verifies intent against the callback, then pushes content."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.verified: list[tuple[int, str]] = []  # (status, body) of each intent check
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._checks: set[asyncio.Task] = set()

    async def start(self) -> FakeHub:
        app = web.Application()
        app.router.add_post("/hub", self._subscribe)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hub"
        return self

    async def stop(self) -> None:
        await asyncio.gather(*self._checks)
        await self._runner.cleanup()

    async def _subscribe(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append(form)
        task = asyncio.create_task(self._verify(form))  # the spec: verify after answering 202
        self._checks.add(task)
        return web.Response(status=202)

    async def _verify(self, form: dict[str, str]) -> None:
        await asyncio.sleep(0.05)
        query = {"hub.mode": "subscribe", "hub.topic": form["hub.topic"], "hub.challenge": "kekse-42",
                 "hub.lease_seconds": str(10 * 86400)}
        async with aiohttp.ClientSession() as session, session.get(form["hub.callback"], params=query) as resp:
            self.verified.append((resp.status, await resp.text()))

    async def push(self, callback: str, body: bytes, secret: str, method: str = "sha256") -> int:
        signature = hmac.new(secret.encode(), body, getattr(hashlib, method)).hexdigest()
        headers = {"Content-Type": "application/rss+xml", "X-Hub-Signature": f"{method}={signature}"}
        async with aiohttp.ClientSession() as session, session.post(callback, data=body, headers=headers) as resp:
            return resp.status


def bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serving(app, sock: socket.socket):
    """The web app on a real loopback port, in this test's event loop."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await wait_for(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def wait_for(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture
async def fake_hub():
    hub = await FakeHub().start()
    yield hub
    await hub.stop()


async def test_a_feed_with_a_hub_is_subscribed_verified_pushed_and_polled_slowly(tmp_path, fake_hub):
    sock = bound_socket()
    port = sock.getsockname()[1]
    with FeedServer() as srv:
        srv.files["laden.xml"] = feed("laden", posts=60, every=timedelta(hours=2), hub=fake_hub.url)
        path = write_config(tmp_path / "c.yaml", {"laden": srv.url("/files/laden.xml")},
                            store_url=f"sqlite:///{tmp_path}/h.db", fetcher=", host_spacing: 0",
                            platform=f", base_url: 'http://127.0.0.1:{port}'")
        clock = ManualClock()
        async with town(path, clock) as t:
            async with serving(create_app(t.settings, t.store), sock):
                clock.advance(1)
                await t.fetch_due()
                polled = t.plans.source_schedules()["laden"].interval_seconds

                # subscription requested with a secret, and the hub's intent check answered
                [asked] = fake_hub.requests
                callback = f"http://127.0.0.1:{port}/hooks/websub/laden"
                assert (asked["hub.mode"], asked["hub.topic"], asked["hub.callback"]) == \
                    ("subscribe", "https://laden.example/feed", callback)
                assert len(asked["hub.secret"]) == 64
                await wait_for(lambda: fake_hub.verified)
                assert fake_hub.verified == [(200, "kekse-42")]
                sub = t.plans.subscription("laden")
                assert sub.state == "live" and sub.lease_until > clock.now() + timedelta(days=9)

                # a signed delivery is stored; forged or unsigned ones are dropped with a 2xx
                pushed = feed("laden", posts=61, every=timedelta(hours=2), hub=fake_hub.url)
                forged = feed("fake", posts=1)
                assert await fake_hub.push(callback, forged, "wrong secret") == 202
                assert await fake_hub.push(callback, forged, asked["hub.secret"], method="md5") == 202
                assert t.store.count_items() == 60
                assert await fake_hub.push(callback, pushed, asked["hub.secret"], method="sha512") == 202
                assert t.store.count_items() == 61
                assert await fake_hub.push(f"http://127.0.0.1:{port}/hooks/websub/gibts-nicht", pushed, "x") == 410

                # polled 12x less while push is live
                clock.advance(polled * 1.2)
                assert await t.fetch_due() == ["laden"]
                plan = t.plans.source_schedules()["laden"]
                assert "WebSub push live" in plan.reason and plan.interval_seconds > 6 * polled
                assert len(fake_hub.requests) == 1  # live: no new subscription

                # renewed with the same secret before the lease ends
                await t.subscriber.renew()
                assert len(fake_hub.requests) == 1  # not yet
                clock.advance((sub.lease_until - clock.now()).total_seconds() - 3600)
                await t.subscriber.renew()
                assert len(fake_hub.requests) == 2 and fake_hub.requests[1]["hub.secret"] == asked["hub.secret"]
                await wait_for(lambda: len(fake_hub.verified) == 2)


async def test_intent_checks_we_did_not_ask_for_get_404(tmp_path):
    with FeedServer() as srv:
        srv.files["laden.xml"] = feed("laden")
        path = write_config(tmp_path / "c.yaml", {"laden": srv.url("/files/laden.xml")},
                            store_url=f"sqlite:///{tmp_path}/h.db")
        async with town(path, ManualClock()) as t:
            topic = "https://laden.example/feed"
            t.plans.push_requested("laden", "https://hub.example/", topic, "s3cret", t.clock.now())
            async with serving(create_app(t.settings, t.store), bound_socket()) as base, \
                    aiohttp.ClientSession() as session:
                async def check(source: str, **query: str) -> int:
                    params = {f"hub.{k}": v for k, v in query.items()}
                    async with session.get(f"{base}/hooks/websub/{source}", params=params) as resp:
                        return resp.status
                assert await check("laden", mode="subscribe", topic="https://other.example/", challenge="x") == 404
                assert await check("laden", mode="unsubscribe", topic=topic, challenge="x") == 404
                assert await check("nobody", mode="subscribe", topic=topic, challenge="x") == 404
                assert t.plans.subscription("laden").state == "pending"
                assert await check("laden", mode="denied", topic=topic, reason="nein") == 200
                sub = t.plans.subscription("laden")
                assert (sub.state, t.plans.source_schedules()["laden"].push_state) == ("denied", "denied")


@pytest.mark.parametrize("method", ["sha1", "sha256", "sha384", "sha512"])
def test_every_signature_method_of_the_spec_is_checked(method):
    body = b"<rss/>"
    good = hmac.new(b"geheim", body, getattr(hashlib, method)).hexdigest()
    assert signature_ok("geheim", f"{method}={good}", body)
    assert not signature_ok("geheim", f"{method}={good}", body + b" ")
    assert not signature_ok("anders", f"{method}={good}", body)
    assert not signature_ok(None, f"{method}={good}", body)
    assert not signature_ok("geheim", None, body)


def test_hubs_are_found_in_link_headers_feeds_and_json_feeds():
    base = "https://laden.example/feed.xml"
    header = '<https://hub.example/>; rel="hub", </feed.xml>; rel="self"'
    assert websub.from_link_header(header, base) == ("https://hub.example/", "https://laden.example/feed.xml")
    assert websub.from_link_header('<https://x.example/>; rel="alternate"', base) is None
    atom = (b'<feed xmlns="http://www.w3.org/2005/Atom"><link href="https://hub.example/" rel="hub"/>'
            b'<link rel="self" href="https://laden.example/atom"/>'
            b'<entry><link rel="hub" href="https://no/"/></entry></feed>')
    assert websub.from_document(atom, base) == ("https://hub.example/", "https://laden.example/atom")
    rss = feed("laden", hub="/hub")  # relative, and the topic is the feed's rel="self"
    assert websub.from_document(rss, base) == ("https://laden.example/hub", "https://laden.example/feed")
    assert websub.from_document(feed("laden"), base) is None
    json_feed = json.dumps({"version": "https://jsonfeed.org/version/1.1", "items": [],
                            "hubs": [{"type": "WebSub", "url": "https://hub.example/"}]}).encode()
    assert websub.from_document(json_feed, base) == ("https://hub.example/", base)


def test_the_feed_connector_reports_the_hub_and_prefers_the_link_header():
    connector = FeedConnector()
    opts = FeedConnector.Options(url="https://laden.example/feed.xml")
    ref = SourceRef(id="laden", merchant_id="laden")
    body = feed("laden", hub="https://in-the-feed.example/")
    plain = Retrieved(payload=body, state=FetchState(), url="https://laden.example/feed.xml")
    assert connector.parse(opts, ref, plain).websub == ("https://in-the-feed.example/", "https://laden.example/feed")
    headed = plain._replace(websub=("https://from-header.example/", "https://laden.example/feed.xml"))
    assert connector.parse(opts, ref, headed).websub[0] == "https://from-header.example/"
