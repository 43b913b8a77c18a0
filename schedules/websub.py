"""WebSub subscriptions (W3C WebSub): push where a feed offers it, polling as the fallback.

After a fetch finds a hub advertised (connectors/websub.py), the hub is asked to push to
`{platform.base_url}/hooks/websub/{source}` with a fresh `hub.secret`. The hub then checks
that we meant it (a GET with `hub.challenge`, answered by hub/web/websub.py) and from then
on POSTs each update, signed with the secret. While a subscription is live, the source is
polled `push_slowdown` times less often; before its lease ends it is renewed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import datetime, timedelta
from urllib.parse import quote

from hub.config import Settings
from hub.errors import FetchError
from hub.http import Fetcher
from hub.pipeline import SourceReport
from hub.store.scheduling import ScheduleStore, Subscription
from schedules.clock import Clock

log = logging.getLogger("hub.websub")

VERIFY_TIMEOUT = timedelta(hours=1)  # a hub that has not verified by then is asked again
RETRY_REFUSED = timedelta(days=1)  # after a refusal or an error, ask again this much later
RENEW_BEFORE = timedelta(days=1)  # renew a lease when less than this is left (or half of it)


def callback_url(settings: Settings, source_id: str) -> str:
    return f"{settings.platform.base_url.rstrip('/')}/hooks/websub/{quote(source_id, safe='')}"


def wants_subscription(sub: Subscription, found: tuple[str, str], now: datetime) -> bool:
    """Whether to (re)subscribe a source whose feed advertises `found` = (hub, topic)."""
    if (sub.hub, sub.topic) != found or sub.state is None:
        return True
    asked = sub.requested_at or datetime.min.replace(tzinfo=now.tzinfo)
    if sub.state == "pending":
        return now - asked > VERIFY_TIMEOUT
    if sub.state in ("denied", "failed"):
        return now - asked > RETRY_REFUSED
    return False  # live: renewed by `Subscriber.renew`


def renewal_due(sub: Subscription, now: datetime) -> bool:
    """A live lease is renewed when less than a day, or half of it, is left; while the hub
    has not confirmed a renewal, it is asked again only after a pause."""
    if sub.lease_until is None or sub.requested_at is None:
        return False
    margin = min(RENEW_BEFORE, (sub.lease_until - sub.requested_at) / 2)
    return sub.lease_until - now < margin and now - sub.requested_at > min(VERIFY_TIMEOUT, margin / 2)


class Subscriber:
    def __init__(self, settings: Settings, plans: ScheduleStore, fetcher: Fetcher, *, clock: Clock) -> None:
        self.settings = settings
        self.plans = plans
        self.fetcher = fetcher
        self.clock = clock

    async def after_fetch(self, reports: list[SourceReport]) -> None:
        """Subscribe the sources whose feeds advertise a hub we are not subscribed to yet."""
        found = {r.source_id: r.websub for r in reports if r.websub}
        if not found or not self.settings.schedule.websub:
            return
        subs = await asyncio.to_thread(self.plans.subscriptions, list(found))
        now = self.clock.now()
        for source_id, (hub, topic) in found.items():
            if source_id in subs and wants_subscription(subs[source_id], (hub, topic), now):
                secret = secrets.token_hex(32)
                await asyncio.to_thread(self.plans.push_requested, source_id, hub, topic, secret, now)
                await self._ask(source_id, hub, topic, secret, renewal=False)

    async def renew(self) -> None:
        """Renew live subscriptions whose lease is about to end (a job of its own)."""
        now = self.clock.now()
        for sub in await asyncio.to_thread(self.plans.push_renewals, now + RENEW_BEFORE):
            if renewal_due(sub, now) and sub.hub and sub.topic and sub.secret:
                await asyncio.to_thread(self.plans.push_renewing, sub.source_id, now)
                await self._ask(sub.source_id, sub.hub, sub.topic, sub.secret, renewal=True)

    async def _ask(self, source_id: str, hub: str, topic: str, secret: str, *, renewal: bool) -> None:
        lease = int(self.settings.schedule.websub_lease.total_seconds())
        form = {"hub.mode": "subscribe", "hub.topic": topic, "hub.callback": callback_url(self.settings, source_id),
                "hub.secret": secret, "hub.lease_seconds": str(lease)}
        try:
            status = await self.fetcher.post_form(hub, form)
            error = None if 200 <= status < 300 else f"the hub {hub} answered HTTP {status}"
        except FetchError as exc:
            error = f"the hub {hub} cannot be reached: {exc}"
        if error is None:
            log.info("asked %s to push %s (%s)", hub, source_id, "renewal" if renewal else "new subscription")
            return
        log.warning("WebSub for source %s: %s; polling goes on as usual", source_id, error)
        await asyncio.to_thread(self.plans.push_problem, source_id, error, keep_state=renewal)
