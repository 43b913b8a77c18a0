"""The cockpit's routes outside `/admin`: the click-through `/go/{record}`, `/metrics`, the
admin API `/api/v1/admin/health`, and the catch-alls that make every other `/admin` address
ask for a login (and every other `/api/v1/admin` address answer 401) before it says 404."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from hub import metrics, stats
from hub.web.admin.core import NO_STORE, Cockpit, Forbidden
from hub.web.admin.pages import health_body

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def add(router: APIRouter, cockpit: Cockpit) -> None:
    registry = metrics.registry(cockpit.settings, cockpit.store, cockpit.town)
    tally = stats.tally_for(cockpit.store, cockpit.settings.platform.timezone)

    @router.get("/go/{record_id}")
    def go(request: Request, record_id: int):
        """A resident's click through to the merchant's own site: counted, then sent there."""
        record = cockpit.store.records.get(record_id)
        if record is None or record.status != "published" or record.removed_at is not None:
            return JSONResponse({"detail": "Diesen Beitrag gibt es nicht (mehr)."}, status_code=404)
        merchant = cockpit.merchants.get(record.item.merchant_id)
        target = next((u for u in (record.item.url, merchant.website if merchant else None) if _web(u)), None)
        if target is None:
            return JSONResponse({"detail": "Dieser Beitrag verlinkt keine Website."}, status_code=404)
        if request.method == "GET":
            tally.count("click", record=record.id, merchant=record.item.merchant_id, channel="web")
        return RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store"})

    @router.get("/metrics")
    def metrics_page():
        return Response(metrics.render(registry), media_type=metrics.CONTENT_TYPE, headers=NO_STORE)

    @router.get("/api/v1/admin/health")
    def admin_health(request: Request):
        cockpit.api_user(request)
        return JSONResponse(health_body(cockpit), headers=NO_STORE)

    @router.api_route("/api/v1/admin/{rest:path}", methods=METHODS)
    def admin_api_unknown(request: Request, rest: str):
        cockpit.api_user(request)
        return JSONResponse({"detail": "Unbekannte Adresse."}, status_code=404, headers=NO_STORE)

    @router.api_route("/admin", methods=METHODS)
    @router.api_route("/admin/{rest:path}", methods=METHODS)
    def admin_unknown(request: Request, rest: str = ""):
        cockpit.page_user(request)
        raise Forbidden("Diese Seite gibt es im Cockpit nicht.", status=404)


def _web(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme in ("http", "https") and bool(urlsplit(url).netloc)
