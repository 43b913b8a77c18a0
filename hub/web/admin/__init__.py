"""The project manager's cockpit (issue 17): `/admin` behind a login, in German, for a laptop
and a phone, without JavaScript.

    /admin                 source health, worst first (filters by state and merchant)
    /admin/review          the review queue: approve, hide with a reason, edit the title,
                           choose the image, split, merge two records by hand
    /admin/merchants       merchant activity, the monthly score, quiet merchants and reminders
    /admin/stats           views, searches, clicks, feed and API requests, deliveries; charts
    /admin/stats.csv       one month as CSV, for the council's report
    /admin/config          the loaded config (secrets masked), check, dry run, apply
    /admin/audit           who did what, when
    /api/v1/admin/health   the health page as JSON (HTTP Basic with a configured user)
    /metrics               Prometheus metrics
    /go/{record}           a click through to the merchant's own site, counted

`admin_router(settings, store, factory)` gives all of it as one router; `factory` is the
app factory (`hub.web.app.create_app`), which applying a new config calls again.
`CountingMiddleware` counts what residents look at (hub.stats).
"""

from __future__ import annotations

import weakref
from typing import Callable

from fastapi import APIRouter

from hub import auth
from hub.config import Settings
from hub.web.admin.core import Cockpit, route_class
from hub.web.admin.counting import CountingMiddleware

__all__ = ["admin_router", "CountingMiddleware"]

_THROTTLES: "weakref.WeakKeyDictionary[object, auth.Throttle]" = weakref.WeakKeyDictionary()


def admin_router(settings: Settings, store, factory: Callable | None = None, *, town: str = "default") -> APIRouter:
    from hub.web.admin import configpage, pages, public, session, statspage

    cockpit = Cockpit(settings, store, _throttle(store), town=town)
    router = APIRouter(route_class=route_class(cockpit), include_in_schema=False)
    session.add(router, cockpit)
    pages.add(router, cockpit)
    statspage.add(router, cockpit)
    configpage.add(router, cockpit, factory)
    public.add(router, cockpit)  # last: its catch-alls answer what no other route did
    return router


def _throttle(store) -> auth.Throttle:
    """One throttle per store in this process: failed logins are remembered across reloads."""
    throttle = _THROTTLES.get(store)
    if throttle is None:
        throttle = _THROTTLES[store] = auth.Throttle()
    return throttle
