"""`/hooks/facebook`: Meta's page webhook (connector-facts 1.10), so a merchant's post is on
the platform within seconds instead of at the next poll.

GET is the subscription handshake: `hub.mode=subscribe` with our `facebook.verify_token`
is answered with `hub.challenge` as text/plain; anything else with 403.

POST is a change notification. Its `X-Hub-Signature-256` (HMAC-SHA256 of the raw body
under the app secret) is checked on the raw bytes before anything is parsed; a missing or
wrong one is answered 403 and changes nothing. A notification is thin (it names a post, and
what happened to it), so it is never stored as it is: the post is read again from the
Graph API by the page's source and stored through the normal pipeline as a push
(`hub.refresh.fetch_entries`). That handles every verb the same way and with Meta's word
as the truth: a new or edited post is stored, a removed one is not found and a hidden one is
hidden, so both are tombstoned, and a photo removed from a post that still exists only
changes the post.

The handler answers at once and leaves the reading to a background task (`PushQueue`):
changes are grouped per source, a post already waiting is not added twice, and a change
seen in the last ten minutes (Meta retries and batches deliveries) is dropped, so replays
and duplicates cost nothing. Comments and reactions, changes by visitors, other fields and
pages no source reads are ignored. A change that names no post makes the page's source due
at once, for the scheduler of `hub run` to fetch. Meta drops deliveries now and then, which
is why the sources are still polled (less often: the schedule does not change).

Under `hub serve` (the web server alone) the hook works the same: it reads and stores the
post itself, through its own pipeline, into the shared database.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from hub.config import Settings
from hub.http import Fetcher
from hub.pipeline import Pipeline
from hub.refresh import fetch_entries
from hub.signatures import signature_ok
from hub.store import Store, utcnow
from hub.store.scheduling import ScheduleStore
from hub.web.websub import capped_body

log = logging.getLogger("hub.facebook")
IGNORED_ITEMS = frozenset({"comment", "reaction", "like"})  # not posts: nothing residents see changes
REMEMBER = 600.0  # seconds a change is remembered, so a replay of it is dropped
LINGER = 0.2  # seconds the queue waits for more changes before reading (Meta batches in bursts)

Work = Callable[[dict[str, list[str]]], Awaitable[object]]


class PushQueue:
    """Posts to read again, per source, worked off one batch at a time in the background.

    `add` is cheap and never waits: the web handler calls it and answers. A change is
    dropped if the same change (same page, time and value) was added in the last `remember`
    seconds, and a post already waiting is not queued twice."""

    def __init__(self, work: Work, *, remember: float = REMEMBER, linger: float = LINGER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.work = work
        self.remember = remember
        self.linger = linger
        self.clock = clock
        self._waiting: dict[str, dict[str, None]] = {}  # source -> post ids, in order
        self._seen: dict[str, float] = {}  # change digest -> when it was added
        self._wake = asyncio.Event()
        self.done = 0  # batches worked off (tests wait for it)

    def add(self, source_id: str, post_id: str, change: str) -> bool:
        """Queue `post_id` of `source_id`; False if `change` (a digest) is a replay."""
        now = self.clock()
        if len(self._seen) > 10_000 or (self._seen and next(iter(self._seen.values())) < now - self.remember):
            self._seen = {k: t for k, t in self._seen.items() if t >= now - self.remember}
        if change in self._seen:
            return False
        self._seen[change] = now
        self._waiting.setdefault(source_id, {})[post_id] = None
        self._wake.set()
        return True

    @property
    def waiting(self) -> int:
        return sum(map(len, self._waiting.values()))

    async def run(self) -> None:
        """Work off what was added, until cancelled; a failing batch is logged, not retried
        (the next poll reconciles)."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.linger)
            self._wake.clear()
            batch = {sid: list(posts) for sid, posts in self._waiting.items()}
            self._waiting.clear()
            try:
                await self.work(batch)
            except Exception:
                log.exception("reading the posts Facebook notified failed; the next poll picks them up")
            self.done += 1


def facebook_router(settings: Settings, store: Store) -> APIRouter:
    fb = settings.facebook
    secret = fb.app_secret.get_secret_value() if fb and fb.app_secret else None
    verify_token = fb.verify_token.get_secret_value() if fb and fb.verify_token else None
    pages = _pages(settings)
    plans = ScheduleStore(store)
    queues: list[PushQueue] = []  # one, made in the lifespan (it needs the loop)

    @asynccontextmanager
    async def lifespan(_app):
        if not (secret and verify_token and pages):
            yield
            return
        async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
            pipeline = Pipeline(settings, store, fetcher, parse_workers=0)
            queue = PushQueue(lambda wanted: _read(pipeline, wanted))
            worker = asyncio.create_task(queue.run(), name="facebook-push")
            queues.append(queue)
            try:
                yield
            finally:
                queues.clear()
                worker.cancel()
                with suppress(asyncio.CancelledError):
                    await worker
                if queue.waiting:
                    log.info("%d notified Facebook posts not read before the shutdown; the next poll reads them",
                             queue.waiting)

    router = APIRouter(lifespan=lifespan)

    def unavailable() -> Response | None:
        missing = [k for k, v in (("app_secret", secret), ("verify_token", verify_token)) if not v]
        if missing:
            log.warning("/hooks/facebook called, but facebook.%s is not configured: answered 503 (hint: set it "
                        "in the facebook: block, see README, 'Facebook and Instagram: a guide')", " and ".join(missing))
            return PlainTextResponse("the Facebook webhook is not configured", status_code=503)
        return None

    @router.get("/hooks/facebook", response_class=PlainTextResponse)
    def handshake(mode: Annotated[str | None, Query(alias="hub.mode")] = None,
                  token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
                  challenge: Annotated[str | None, Query(alias="hub.challenge")] = None) -> Response:
        if refused := unavailable():
            return refused
        if mode == "subscribe" and challenge and token and hmac.compare_digest(token.encode(), verify_token.encode()):
            log.info("Facebook webhook subscription verified")
            return PlainTextResponse(challenge)
        log.warning("refused a Facebook webhook handshake: %s", "wrong verify_token" if token else "no verify_token")
        return PlainTextResponse("forbidden", status_code=403)

    @router.post("/hooks/facebook")
    async def notified(request: Request) -> Response:
        if refused := unavailable():
            return refused
        body = await capped_body(request, settings.fetcher.max_body_bytes)
        header = request.headers.get("x-hub-signature-256") or ""
        if not header.lower().startswith("sha256=") or not signature_ok(secret, header, body):
            log.warning("dropped a Facebook webhook delivery: %s X-Hub-Signature-256",
                        "wrong" if header else "no")
            return PlainTextResponse("forbidden", status_code=403)
        try:
            payload = json.loads(body)
        except ValueError:
            log.warning("dropped a signed Facebook webhook delivery that is not JSON")
            return PlainTextResponse("not JSON", status_code=400)
        posts, due = changes(payload, pages)
        if not queues:  # no facebook sources: nothing here reads pages
            return PlainTextResponse("ok")
        queued = sum(queues[0].add(sid, post_id, digest) for sid, post_id, digest in posts)
        if due:
            await asyncio.to_thread(plans.postpone, {sid: utcnow() for sid in due}, utcnow())
        if queued or due:
            log.info("Facebook notified %d post(s) to read, %d source(s) to fetch", queued, len(due))
        return PlainTextResponse("ok")

    return router


async def _read(pipeline: Pipeline, wanted: dict[str, list[str]]) -> None:
    for report in await fetch_entries(pipeline, wanted):
        log.info("Facebook push for %s: %s, %d new, %d changed, %d gone%s", report.source_id, report.status,
                 report.new, report.changed, report.gone, f" ({report.error})" if report.error else "")


def _pages(settings: Settings) -> dict[str, list[str]]:
    """Page id -> the ids of the facebook sources that read it."""
    pages: dict[str, list[str]] = {}
    for _, source in settings.sources():
        if source.connector == "facebook":
            pages.setdefault(str(source.options.page_id), []).append(source.id)  # type: ignore[union-attr]
    return pages


def changes(payload: Any, pages: Mapping[str, list[str]]) -> tuple[list[tuple[str, str, str]], set[str]]:
    """What a notification asks for: (source id, post id, digest of the change) for every
    post to read again, and the sources to fetch for changes that name no post. Pure."""
    posts: list[tuple[str, str, str]] = []
    due: set[str] = set()
    if not isinstance(payload, dict) or payload.get("object") != "page":
        return posts, due
    for entry in payload.get("entry") or ():
        if not isinstance(entry, dict):
            continue
        page_id = str(entry.get("id") or "")
        sources = pages.get(page_id)
        if not sources:
            log.debug("a Facebook notification about page %s, which no source reads: ignored", page_id)
            continue
        for change in entry.get("changes") or ():
            if not isinstance(change, dict) or change.get("field") != "feed":
                continue
            value = change.get("value")
            if not isinstance(value, dict) or value.get("item") in IGNORED_ITEMS:
                continue
            author = value.get("from") if isinstance(value.get("from"), dict) else {}
            if author.get("id") and str(author["id"]) != page_id:
                continue  # a visitor's post on the page: the sources read the page's own posts only
            post_id = str(value.get("post_id") or "")
            if not post_id:
                due.update(sources)
                continue
            if "_" not in post_id:
                post_id = f"{page_id}_{post_id}"
            digest = hashlib.sha256(json.dumps([page_id, entry.get("time"), value], sort_keys=True,
                                               default=str).encode()).hexdigest()
            posts += [(sid, post_id, f"{sid}:{digest}") for sid in sources]
    return posts, due
