"""A new configuration without a restart (issue 17): from the cockpit's config page, or by
SIGHUP to `hub serve` / `hub run`.

The running app is the one the server was given (its "root"). A reload builds a fresh app
for the new settings with the same factory and store, starts its lifespan, and makes the
root hand every request from then on to it (Starlette calls `middleware_stack`, which is
the fresh app now). Requests under way finish on the old one. The store learns the new
sources and moderation rules first; `on_reload` hooks (`hub run`'s scheduler) follow in the
background. The config file is read again with `hub.config.load`: with problems, nothing
changes and the problems are logged (SIGHUP) or shown (cockpit).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI

from hub import config as config_mod
from hub.config import Settings
from hub.errors import ConfigError
from hub.moderation import rules_from
from hub.pipeline import source_specs

log = logging.getLogger("hub.reload")
Factory = Callable[[Settings, object], FastAPI]
Hook = Callable[[Settings], Awaitable[None]]


def root_of(app: FastAPI) -> FastAPI:
    return getattr(app.state, "hub_root", app)


def on_reload(app: FastAPI, hook: Hook) -> None:
    """Call `hook(settings)` after every reload of `app` (in the background)."""
    root = root_of(app)
    hooks = getattr(root.state, "hub_on_reload", None)
    if hooks is None:
        hooks = root.state.hub_on_reload = []
    hooks.append(hook)


def current_settings(app: FastAPI, default: Settings) -> Settings:
    return getattr(root_of(app).state, "hub_settings", default)


async def apply(app: FastAPI, settings: Settings, store, factory: Factory) -> FastAPI:
    """Serve `settings` from now on (see the module's docstring). Returns the fresh app."""
    root = root_of(app)
    store.sync_sources(source_specs(settings))
    store.records.configure(rules_from(settings))
    fresh = factory(settings, store)
    fresh.state.hub_root = root
    lifespan = AsyncExitStack()
    await lifespan.enter_async_context(fresh.router.lifespan_context(fresh))
    previous = getattr(root.state, "hub_lifespan", None)
    root.middleware_stack = fresh  # from here on, every request goes to the fresh app
    root.state.hub_lifespan, root.state.hub_settings = lifespan, settings
    if previous is not None:
        await previous.aclose()
    for hook in getattr(root.state, "hub_on_reload", []):
        _background(hook(settings))
    log.info("configuration reloaded: %d merchants, %d sources, %d channels", len(settings.merchants),
             len(settings.sources()), len(settings.channel_list()))
    return fresh


async def close(app: FastAPI) -> None:
    """End the lifespan of the app a reload started (at shutdown)."""
    lifespan = getattr(root_of(app).state, "hub_lifespan", None)
    if lifespan is not None:
        await lifespan.aclose()


async def reload_file(app: FastAPI, path: Path, store, factory: Factory) -> list[str]:
    """Read `path` again and apply it; returns its problems (then nothing changed)."""
    try:
        settings = await asyncio.to_thread(config_mod.load, path)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        log.error("the configuration has %d problem(s); the hub keeps running with the previous one",
                  len(exc.problems))
        return exc.problems
    await apply(app, settings, store, factory)
    return []


@asynccontextmanager
async def reloadable(app: FastAPI, path: Path | None, store, factory: Factory) -> AsyncIterator[None]:
    """While inside, SIGHUP (`kill -HUP <pid>`) reads the config file at `path` again and
    applies it; on leaving, the lifespan of a reloaded app ends too."""
    loop = asyncio.get_running_loop()

    def hangup() -> None:
        log.info("SIGHUP: reading %s again", path)
        _background(reload_file(app, path, store, factory))

    if path is not None:
        loop.add_signal_handler(signal.SIGHUP, hangup)
    try:
        yield
    finally:
        if path is not None:
            loop.remove_signal_handler(signal.SIGHUP)
        await close(app)


_TASKS: set[asyncio.Task] = set()  # kept until done, so they are not collected half-way


def _background(work: Awaitable[object]) -> None:
    task = asyncio.ensure_future(work)
    _TASKS.add(task)
    task.add_done_callback(_done)


def _done(task: asyncio.Task) -> None:
    _TASKS.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("reloading failed", exc_info=task.exception())
