"""The answer cache of resident pages (hub.web.cache): an answer is reused while the store's
data version and the wall clock allow, never for the admin area, signed-in requests or
answers that set a cookie; a change of any record shows on the next request."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import time_machine
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from hub import config
from hub.store.version import data_version
from hub.web.app import create_app
from hub.web.cache import PageCache, cacheable
from tests.feedserver import FeedServer
from tests.test_records_web import OFFER, OLD, blog, facebook, fetch_cycle, write_config


class Backend:
    """The app behind the cache: counts how often it is asked and answers with that count."""

    def __init__(self) -> None:
        self.calls = 0
        self.version = 1

    def app(self) -> Starlette:
        def page(request):
            self.calls += 1
            return PlainTextResponse(f"answer {self.calls}", headers={"ETag": f'W/"v{self.calls}"'})

        def login(request):
            self.calls += 1
            response = PlainTextResponse("welcome")
            response.set_cookie("session", "s3cret")
            return response

        def missing(request):
            self.calls += 1
            return Response("nope", status_code=404)

        def feed(request):  # dated from its second answer on, as hub.web.feeds does
            self.calls += 1
            dated = {"Last-Modified": "Sat, 05 Dec 2026 10:00:00 GMT"} if self.calls > 1 else {}
            return PlainTextResponse(f"feed {self.calls}", headers={"ETag": '"f"', **dated})

        routes = [Route("/", page), Route("/events", page), Route("/admin", page), Route("/search", login),
                  Route("/m/{id}", missing), Route("/feed.atom", feed)]
        return Starlette(routes=routes)


def cached(backend: Backend, **options) -> TestClient:
    return TestClient(PageCache(backend.app(), version=lambda: backend.version, **options))


def test_an_answer_is_reused_until_the_store_changes():
    backend = Backend()
    client = cached(backend)
    assert client.get("/").text == "answer 1"
    assert client.get("/").text == "answer 1" and backend.calls == 1
    assert client.get("/?seite=2").text == "answer 2"  # another query, another answer
    assert client.get("/", headers={"Accept-Language": "en"}).text == "answer 3"  # another language too
    backend.version = 2  # a record changed
    assert client.get("/").text == "answer 4"
    assert client.get("/").text == "answer 4" and backend.calls == 4


def test_an_answer_expires_with_the_wall_clock():
    backend = Backend()
    client = cached(backend, ttl=60)
    with time_machine.travel(datetime.now(timezone.utc), tick=False) as traveller:
        assert client.get("/events").text == "answer 1"
        traveller.shift(timedelta(seconds=59))
        assert client.get("/events").text == "answer 1"
        traveller.shift(timedelta(seconds=2))  # an event began, an offer ran out: time alone
        assert client.get("/events").text == "answer 2"


def test_a_matching_etag_gets_304_from_the_cache():
    backend = Backend()
    client = cached(backend)
    etag = client.get("/").headers["etag"]
    again = client.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get("/", headers={"If-None-Match": '"other"'}).text == "answer 1"
    assert backend.calls == 1
    assert client.head("/").status_code == 200 and backend.calls == 1


def test_private_and_unsuccessful_answers_are_never_kept():
    backend = Backend()
    client = cached(backend)
    for path in ("/admin", "/search", "/m/nobody"):
        client.get(path)
        client.get(path)
    assert backend.calls == 6
    client.get("/")
    client.get("/", headers={"Cookie": "session=abc"})  # someone signed in: not a resident's view
    assert backend.calls == 8
    assert not cacheable("/api/v1/admin/health") and not cacheable("/hooks/facebook")
    assert cacheable("/feed.atom") and cacheable("/api/v1/items") and cacheable("/items/4")


def test_the_least_recently_used_answer_goes_first():
    backend = Backend()
    client = cached(backend, max_entries=2)
    client.get("/?seite=1"), client.get("/?seite=2"), client.get("/?seite=1"), client.get("/?seite=3")
    assert backend.calls == 3
    client.get("/?seite=1")
    assert backend.calls == 3
    client.get("/?seite=2")  # pushed out by seite=3
    assert backend.calls == 4


async def test_a_new_post_shows_on_the_next_request(tmp_path):
    files = {"blog.xml": blog(OLD), "fb.json": facebook()}
    with FeedServer(files=files) as server:
        path = write_config(tmp_path, server)
        store = await fetch_cycle(path)
        client = TestClient(create_app(config.load(path, env={}), store))
        first = client.get("/").text
        assert "Winter" in first and "Adventsfrühstück" not in first
        assert client.get("/").text == first
        before = data_version(store.engine)
        server.files["blog.xml"] = blog(OFFER, OLD)
        await fetch_cycle(path)  # another Store, as another process would write
        assert data_version(store.engine) != before
        assert "Adventsfrühstück" in client.get("/").text


def test_a_feed_is_kept_once_it_is_dated_and_dates_are_asked_of_the_app():
    backend = Backend()
    client = cached(backend)
    with time_machine.travel(datetime(2026, 12, 5, 10, 0, 0, 100_000, tzinfo=timezone.utc), tick=False) as clock:
        assert client.get("/feed.atom").text == "feed 1"  # not dated yet: kept for this second only
        assert client.get("/feed.atom").text == "feed 1" and backend.calls == 1
        clock.shift(timedelta(seconds=1))
        assert client.get("/feed.atom").text == "feed 2"  # dated now: kept
        clock.shift(timedelta(seconds=5))
        assert client.get("/feed.atom").text == "feed 2" and backend.calls == 2
        client.get("/feed.atom", headers={"If-Modified-Since": "Sat, 05 Dec 2026 10:00:00 GMT"})
        assert backend.calls == 3  # the app answers a date
        assert client.get("/feed.atom", headers={"If-None-Match": '"f"'}).status_code == 304 and backend.calls == 3


async def test_a_burst_of_readers_costs_one_rendering():
    import asyncio

    import httpx

    calls = 0

    async def slow(request):
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)  # a rendering at a million records
        return PlainTextResponse(f"page {calls}")

    cache = PageCache(Starlette(routes=[Route("/events", slow)]), version=lambda: 1, in_thread=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=cache), base_url="http://hub") as client:
        answers = await asyncio.gather(*(client.get("/events") for _ in range(20)))
    assert calls == 1 and {a.text for a in answers} == {"page 1"}
