"""`/hooks/websub/{source}`: the callback a WebSub hub talks to (schedules/websub.py subscribes).

GET is the hub checking that we asked for the subscription: answered with its
`hub.challenge` only if the store has a pending or live subscription to that topic. POST is
a content delivery: signed with the subscription's secret (X-Hub-Signature), parsed by the
source's connector and stored through the pipeline like a fetched payload. A delivery with
a bad or missing signature is dropped but still answered 2xx, as the spec asks (a non-2xx
would make the hub retry a forgery). A delivery for a source that is no longer configured is
answered 410 Gone, which tells the hub to end the subscription.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response

from hub.config import Settings
from hub.http import Fetcher
from hub.models import FetchState, Retrieved
from hub.pipeline import Pipeline
from hub.store import Store, utcnow
from hub.store.scheduling import ScheduleStore
from hub.signatures import signature_ok

log = logging.getLogger("hub.websub")


def websub_router(settings: Settings, store: Store) -> APIRouter:
    plans = ScheduleStore(store)
    sources = {s.id: (m, s) for m, s in settings.sources()}
    pipelines: list[Pipeline] = []  # one, made in the lifespan (the pipeline needs a loop)

    @asynccontextmanager
    async def lifespan(_app):
        async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
            pipelines.append(Pipeline(settings, store, fetcher, parse_workers=0))
            yield
            pipelines.clear()

    router = APIRouter(lifespan=lifespan)

    @router.get("/hooks/websub/{source_id}", response_class=PlainTextResponse)
    def verify(source_id: str, mode: Annotated[str, Query(alias="hub.mode")],
               topic: Annotated[str, Query(alias="hub.topic")],
               challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
               lease_seconds: Annotated[int | None, Query(alias="hub.lease_seconds", ge=0)] = None,
               reason: Annotated[str | None, Query(alias="hub.reason")] = None):
        if source_id in sources and mode == "subscribe" and challenge:
            lease = timedelta(seconds=lease_seconds) if lease_seconds else settings.schedule.websub_lease
            if plans.push_verified(source_id, topic, utcnow() + lease):
                log.info("WebSub push for %s is live (lease %s)", source_id, lease)
                return challenge
        if source_id in sources and mode == "denied" and plans.push_denied(source_id, topic, reason or "no reason"):
            log.warning("the WebSub hub refused to push %s: %s", source_id, reason)
            return ""
        # Anything we did not ask for, including every unsubscribe: the hub only hears 404.
        raise HTTPException(404, "no such subscription")

    @router.post("/hooks/websub/{source_id}")
    async def deliver(source_id: str, request: Request) -> Response:
        if source_id not in sources:
            return Response(status_code=410)
        body = await capped_body(request, settings.fetcher.max_body_bytes)
        sub = await asyncio.to_thread(plans.subscription, source_id)
        if sub is None or sub.state not in ("pending", "live") or \
                not signature_ok(sub.secret, request.headers.get("x-hub-signature"), body):
            log.warning("dropped a WebSub delivery for %s: missing or wrong signature", source_id)
            return Response(status_code=202)
        got = Retrieved(payload=body, state=FetchState(), url=sub.topic or "",
                        content_type=request.headers.get("content-type", ""))
        [report] = await pipelines[0].run([sources[source_id]], pushed={source_id: got})
        log.info("WebSub delivery for %s: %s, %d new, %d changed", source_id, report.status, report.new,
                 report.changed)
        return Response(status_code=202)

    return router


async def capped_body(request: Request, cap: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise HTTPException(413, "delivery too large")
    return bytes(body)
