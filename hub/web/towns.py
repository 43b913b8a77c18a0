"""The web app of a deployment of many towns (issue 18): picks the town by the Host header.

Each town gets the ordinary app (`hub.web.app.create_app`) over its own store, built on its
first request (a deployment of hundreds of towns starts at once and only pays for the towns
that are visited) and its lifespan run until the town is removed or the process ends.

A request whose host no town claims gets a plain 404 page, never another town's content.

With a registry (hub.store.townregistry), the app checks its generation every
`poll_seconds`; when `hub towns reload` moved it, the app re-reads the deployment file and
adds, rebuilds or drops towns without a restart. It only serves a town's config whose digest
is the one the registry recorded: a file edited after the reload (not yet validated) waits
for the next reload, and the town keeps running as it was.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hub.store import Store
from hub.store.townregistry import TownRegistry
from hub.towns import Deployment, FollowsReloads, Town, host_matches, load_deployment

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0
UNKNOWN_HOST = ("<!doctype html><html lang=de><meta charset=utf-8><title>Keine Stadt</title>"
                "<h1>Unter dieser Adresse ist keine Stadt eingerichtet.</h1>"
                "<p lang=en>No town is set up at this address.</p></html>").encode()
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass
class _Running:
    """A town as this process serves it; `app` is built on the first request."""

    town: Town
    digest: str
    app: Any = None
    store: Store | None = None
    stack: AsyncExitStack | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class TownsApp(FollowsReloads):
    """An ASGI app serving every town of the deployment at `path`.

    `open_store(town)`: the town's store, ready to serve (the CLI also syncs its sources and
    channels); `create_app(settings, store)`: a town's app (hub.web.app's by default)."""

    def __init__(self, path: Path, *, registry: TownRegistry | None = None,
                 open_store: Callable[[Town], Store] = Town.open_store,
                 create_app: Callable[..., Any] | None = None, poll_seconds: float = POLL_SECONDS,
                 deployment: Deployment | None = None) -> None:
        self.path = Path(path)
        self.registry = registry
        self.open_store = open_store
        self.create_app = create_app
        self.poll_seconds = poll_seconds
        self.towns: dict[str, _Running] = {}
        self.generation: int | None = None
        self._first = deployment
        self._poller: asyncio.Task | None = None

    # --- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        running = self._town_for(scope)
        if running is None:
            await _not_found(scope, send)
            return
        app = await self._app_of(running)
        await app(scope, receive, send)

    def _town_for(self, scope: dict) -> _Running | None:
        host, port = _request_host(scope)
        return next((r for r in self.towns.values() if host_matches(r.town.host, host, port)), None)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:  # noqa: BLE001 - uvicorn shows the message and exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- the set of towns ----------------------------------------------------------------

    async def start(self) -> None:
        deployment = self._first or await asyncio.to_thread(load_deployment, self.path)
        self._first = None
        generation, registered = await self._registered()
        await self._apply(deployment, registered)
        self.generation = generation
        if self.registry is not None:
            self._poller = asyncio.create_task(self._poll(), name="towns-registry-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        running, self.towns = list(self.towns.values()), {}
        for town in running:
            await _close(town)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the polling
                log.exception("towns: cannot read the towns registry; trying again")

    async def _apply(self, deployment: Deployment, registered: dict[str, str] | None) -> None:
        """Swap in the new set of towns at once (a changed town is never missing in between),
        then shut down the towns that went and the old apps of the towns that changed."""
        wanted = set(deployment.towns) if registered is None else set(registered)
        towns = {i: r for i, r in self.towns.items() if i in wanted}
        retired = [r for i, r in self.towns.items() if i not in wanted]
        for town_id in sorted(wanted):
            town = deployment.towns.get(town_id)
            digest = town.digest if town is not None else None
            if registered is not None and digest != registered[town_id]:
                log.warning("towns: %s's config differs from the one `hub towns reload` checked; "
                            "it keeps running as it was (run `hub towns reload` again)", town_id)
                continue
            running = towns.get(town_id)
            if running is not None and running.digest == digest:
                continue
            if running is not None:
                log.info("towns: %s changed; it is rebuilt", town_id)
                retired.append(running)
            else:
                log.info("towns: serving %s at %s", town_id, town.settings.platform.base_url)
            towns[town_id] = _Running(town, digest)
        self.towns = towns
        for running in retired:
            if running.town.id not in towns:
                log.info("towns: %s is no longer served (its data stays)", running.town.id)
            await _close(running)

    async def _app_of(self, running: _Running) -> Any:
        if running.app is not None:
            return running.app
        async with running.lock:
            if running.app is None:
                running.store = await asyncio.to_thread(self.open_store, running.town)
                app = self._factory()(running.town.settings, running.store, town=running.town.id)
                stack = AsyncExitStack()
                await stack.enter_async_context(_lifespan_of(app))
                running.stack, running.app = stack, app
        return running.app

    def _factory(self) -> Callable[..., Any]:
        if self.create_app is None:
            from hub.web.app import create_app  # the towns app itself stays light to import
            self.create_app = create_app
        return self.create_app


async def _close(running: _Running) -> None:
    """End a town's app (its lifespan: counts written) and its store's connections; requests
    already inside it finish on their own."""
    async with running.lock:
        try:
            if running.stack is not None:
                await running.stack.aclose()
        except Exception:  # noqa: BLE001 - the town goes either way
            log.exception("towns: %s did not shut down cleanly", running.town.id)
        finally:
            if running.store is not None:
                running.store.close()
            running.app = running.store = running.stack = None


@asynccontextmanager
async def _lifespan_of(app: Any):
    """Run `app`'s ASGI lifespan as a server would: startup now, shutdown on exit. Through
    the protocol rather than the router's context, so the middleware hears it too (the
    counting middleware writes its counts at shutdown)."""
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                   inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    answer = await _answer(outbox, task)
    if answer["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"a town's app did not start: {answer.get('message', answer['type'])}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await _answer(outbox, task)
        await asyncio.gather(task, return_exceptions=True)


async def _answer(outbox: asyncio.Queue, task: asyncio.Task) -> dict:
    """The app's next lifespan message, or its failure if it ended without one."""
    getting = asyncio.ensure_future(outbox.get())
    await asyncio.wait({getting, task}, return_when=asyncio.FIRST_COMPLETED)
    if getting.done():
        return getting.result()
    getting.cancel()
    task.result()  # raises what ended the app's lifespan
    return {"type": "lifespan.ended"}


def _request_host(scope: dict) -> tuple[str, int | None]:
    """The Host header as (name, port); the port the scheme implies if it names none."""
    raw = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), "")
    name, port = raw, None
    if raw.startswith("["):  # [::1]:8000
        end = raw.find("]")
        name, rest = raw[1:end], raw[end + 1:]
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    elif raw.count(":") == 1:
        name, _, digits = raw.partition(":")
        port = int(digits) if digits.isdigit() else None
    return name.strip().lower(), port if port is not None else DEFAULT_PORTS.get(scope.get("scheme", "http"))


async def _not_found(scope: dict, send: Callable) -> None:
    if scope["type"] != "http":  # a websocket to an unknown host: refuse it
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"text/html; charset=utf-8"),
                            (b"content-length", str(len(UNKNOWN_HOST)).encode()),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": UNKNOWN_HOST})
