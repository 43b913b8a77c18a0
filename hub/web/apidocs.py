"""The API's description: `/openapi.json` (OpenAPI 3.1) and `/docs` (Swagger UI).

The document describes the public API only (hub.web.api): it is built from that router's
routes, so pages, feeds, webhooks, media and the admin API never show up in it, whoever
adds them to the app.

Swagger UI comes from the `swagger-ui-bundle` package and is served by the hub itself
(`/docs/assets/...`), not from a CDN: a resident's browser asks no third party, and the
Content-Security-Policy holds. FastAPI's own docs page starts Swagger UI with an inline
script, which that policy forbids, so `/docs` is our page with an external start script
(`/static/swagger-init.js`). Its policy differs from the pages' in two points only: the
stylesheet draws its icons from `data:` images, and the script reads /openapi.json and
sends "Try it out" requests (`connect-src 'self'`).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import APIRouter, HTTPException
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from hub.config import Settings

SWAGGER = Path(swagger_ui_bundle.swagger_ui_path)
ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
          "favicon-32x32.png": "image/png"}
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
OPENAPI_VERSION = "3.0.3"  # what Swagger UI 4 reads; see `as_openapi_30`
_NULL = {"type": "null"}
ASSET_CACHE = "public, max-age=86400"  # the package's version is pinned; a day keeps upgrades visible soon
DESCRIPTION = """\
Die Einträge von {name} für andere Websites und Apps: Beiträge, Veranstaltungen und Angebote
der Teilnehmer, so wie die Plattform sie zeigt.

* **Filter** wie auf den Seiten: `merchant`, `category`, `district`, `kind` (post, event,
  offer), `tag`; ein Schlüssel mehrfach heißt „einer davon“, verschiedene Schlüssel müssen alle
  passen. `/events` nimmt außerdem `von` und `bis` (Daten wie 2026-12-24).
* **Blättern** mit `limit` (Standard 20, höchstens 100) und `cursor`: die Antwort nennt die
  nächste Seite in `next` (URL), `next_cursor` und im `Link`-Header; auf der letzten Seite
  `null`. Neue Einträge verschieben nichts: jeder Eintrag kommt genau einmal.
* **Von überall lesbar** (CORS für GET, HEAD, OPTIONS von jeder Herkunft, ohne Cookies);
  **ETag** und `If-None-Match` ergeben 304, wenn sich nichts geändert hat.
* **Fehler** als `{{"detail": "..."}}` mit dem passenden Status (400, 404).
* Zeiten in ISO 8601 mit Zeitzone; Links absolut; Bilder nur über die Plattform.

Schema-Version 1: Felder kommen hinzu, keines wird umbenannt oder entfernt.
"""


def docs_router(settings: Settings, api: APIRouter) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    title = f"{settings.platform.name} – API"
    described: dict[str, Any] = {}

    @router.get("/openapi.json")
    def openapi() -> JSONResponse:
        if not described:
            described.update(_document(title, settings.platform.name, api))
        return JSONResponse(described, headers={"Access-Control-Allow-Origin": "*",
                                                "Cache-Control": "public, max-age=3600"})

    @router.get("/docs", response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        return HTMLResponse(_page(title), headers={"Content-Security-Policy": DOCS_CSP,
                                                   "Cache-Control": "public, max-age=3600"})

    @router.get("/docs/assets/{name}")
    def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, "Diese Datei gibt es nicht.")
        return FileResponse(SWAGGER / name, media_type=ASSETS[name], headers={"Cache-Control": ASSET_CACHE})

    return router


def _document(title: str, town: str, api: APIRouter) -> dict[str, Any]:
    described = get_openapi(title=title, version="1", description=DESCRIPTION.format(name=town), routes=api.routes)
    document = {**as_openapi_30(described), "openapi": OPENAPI_VERSION}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)  # wrong parameters are 400 `Problem`s here
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def as_openapi_30(node: Any) -> Any:
    """FastAPI's OpenAPI 3.1 (JSON Schema 2020-12) as OpenAPI 3.0, which the bundled Swagger
    UI 4 reads (it refuses 3.1) and every client generator knows: "X or null" (`anyOf`
    with `{"type": "null"}`) becomes X with `nullable: true`, `const` a one-value `enum`."""
    if isinstance(node, list):
        return [as_openapi_30(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: as_openapi_30(v) for k, v in node.items()}
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and _NULL in options:
            rest = [o for o in options if o != _NULL]
            del node[key]
            node["nullable"] = True
            if len(rest) > 1:
                node[key] = rest
            elif rest and "$ref" in rest[0]:
                node["allOf"] = rest  # a $ref takes no siblings in 3.0
            elif rest:
                node = {**rest[0], **node}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node


def _page(title: str) -> str:
    return f"""<!doctype html>
<html lang="de">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{escape(title)}</title>
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<noscript><p>Die Dokumentation braucht JavaScript. Die Beschreibung der API als OpenAPI-Dokument:
<a href="/openapi.json">/openapi.json</a></p></noscript>
<div id="swagger-ui" data-openapi="/openapi.json"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/static/swagger-init.js"></script>
</body>
</html>
"""
