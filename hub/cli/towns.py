"""`hub towns ...` (issue 18): the towns of a deployment. `reload` checks every town's config,
prepares new towns' schemas and records the set in the towns registry, which running web
processes watch; `list` shows what is registered. `serve_towns` is `hub serve` for a
deployment file, `run_towns` is `hub run` for one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import typer
from rich.table import Table

from hub.cli.common import ConfigOpt, deployment_from, err, out
from hub.errors import HubError
from hub.moderation import rules_from
from hub.pipeline import source_specs
from hub.store import Store
from hub.store.ledger import attach_outbox
from hub.store.townregistry import RegisteredTown, RegistryChange, TownRegistry
from hub.towns import Deployment, Town
from schedules.publishing import prepare_channels

towns_app = typer.Typer(help="The towns of a deployment (a file with `towns:`): reload, list.",
                        no_args_is_help=True)


@towns_app.command("reload")
def reload(config: ConfigOpt = Path("deploy.yaml")) -> None:
    """Check every town's config, prepare new towns' databases and tell running web processes
    (within a few seconds) which towns to serve. Any problem: exit 2, nothing changes."""
    deployment = deployment_from(config, "nothing was changed")
    change = register(deployment)
    if not change.any:
        out.print(f"Nothing changed: {len(deployment.towns)} town(s), generation {change.generation}.")
        return
    for label, ids in (("added", change.added), ("changed", change.changed), ("removed", change.removed)):
        if ids:
            out.print(f"{label}: {', '.join(ids)}")
    if change.removed:
        out.print("Removed towns are no longer served; their data stays in the database "
                  "(add them again to serve it).")
    out.print(f"Generation {change.generation}: running web processes follow within a few seconds.")


@towns_app.command("list")
def list_towns(config: ConfigOpt = Path("deploy.yaml")) -> None:
    """The registered towns, and whether the deployment file still says the same."""
    deployment = deployment_from(config)
    registry = _registry(deployment)
    try:
        registered, generation = registry.towns(), registry.generation()
    finally:
        registry.close()
    table = Table("town", "host", "config", "state", title=f"Towns (generation {generation})")
    for town_id in sorted(set(registered) | set(deployment.towns)):
        town, known = deployment.towns.get(town_id), registered.get(town_id)
        if known is None:
            state = "not served yet (run hub towns reload)"
        elif town is None:
            state = "removed from the file (served until hub towns reload)"
        elif town.digest != known.digest:
            state = "changed since the last reload"
        else:
            state = "served"
        host = _host_text(town) if town else known.host
        path = str(town.settings.path) if town else known.config_path
        table.add_row(town_id, host, path, state)
    out.print(table)


def register(deployment: Deployment) -> RegistryChange:
    """Prepare every town the registry does not know yet (or knows with another config),
    then record the set. A town that cannot be prepared stops it all: exit 2, no change."""
    registry = _registry(deployment)
    try:
        known = registry.towns()
        for town in deployment.towns.values():
            if town.id not in known or known[town.id].digest != town.digest:
                try:
                    prepared_store(town).close()
                except HubError as exc:
                    err.print(f"town '{town.id}': {exc}", style="red", markup=False)
                    err.print("Nothing was changed.", style="bold red")
                    raise typer.Exit(2) from None
        return registry.record([RegisteredTown(t.id, _host_text(t), t.digest, str(t.settings.path))
                                for t in deployment.towns.values()])
    finally:
        registry.close()


def prepared_store(town: Town) -> Store:
    """The town's store, migrated, with its configured sources and channels known (as
    `hub serve` prepares the store of a single town)."""
    store = town.open_store()
    store.sync_sources(source_specs(town.settings))
    store.records.configure(rules_from(town.settings))
    prepare_channels(town.settings, store)
    return store


def serve_towns(path: Path, host: str, port: int) -> None:
    """`hub serve` for a deployment file: every town, picked by the Host header; the set
    follows `hub towns reload`. Starting counts as a reload (the file as it is now)."""
    deployment = _started(path)
    asyncio.run(_serve(_towns_app(deployment), host, port))


def run_towns(path: Path, host: str, port: int, *, absorb_stop_signals: Callable[[], None]) -> None:
    """`hub run` for a deployment file: every town's web pages (as `hub serve`) and, with
    `runtime: inprocess`, every town's embedded scheduler in this process, following
    `hub towns reload` (schedules/townsrunner.py). With `runtime: procrastinate` the
    workers (`hub worker`) do the work, and this process serves only.

    `absorb_stop_signals`: called before the web server starts, so that the SIGTERM or
    SIGINT which ends it (uvicorn raises it again once it has stopped) leaves time to stop
    every scheduler cleanly (hub.cli.commands' `_absorb_stop_signals`)."""
    deployment = _started(path)
    if deployment.runtime != "inprocess":
        logging.getLogger("hub.towns.run").info(
            "runtime %s: this process serves the towns' pages only; `hub worker -c %s` processes fetch and "
            "publish", deployment.runtime, path)
        asyncio.run(_serve(_towns_app(deployment), host, port))
        return
    from schedules.townsrunner import town_in_log_records

    town_in_log_records()  # "hub.schedule [musterstadt]: fetched 3 sources ..."
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s%(town)s: %(message)s"))
    asyncio.run(_run(deployment, host, port, absorb_stop_signals))


async def _run(deployment: Deployment, host: str, port: int, absorb_stop_signals: Callable[[], None]) -> None:
    from schedules.townsrunner import TownsRunner  # the scheduler's libraries only where they run

    runner = TownsRunner(deployment, registry=_registry(deployment))
    await runner.start(background=True)  # the pages are served while the towns' schedulers start
    absorb_stop_signals()
    try:
        await _serve(_towns_app(deployment), host, port)
    finally:
        await runner.stop()
        runner.registry.close()


def _started(path: Path) -> Deployment:
    """The deployment, checked and recorded in the registry (starting counts as a reload),
    with the log set up and each town's address shown."""
    deployment = deployment_from(path)
    register(deployment)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for town in deployment.towns.values():
        out.print(f"{town.id}: {town.settings.platform.base_url}")
    return deployment


def _towns_app(deployment: Deployment):
    from hub.web.towns import TownsApp

    return TownsApp(deployment.path, registry=_registry(deployment), open_store=web_store_opener(deployment),
                    deployment=deployment)


def web_store_opener(deployment: Deployment) -> Callable[[Town], Store]:
    """How the web process opens a town's store: `prepared_store`, and with `runtime:
    procrastinate` the ledger hook that queues a push channel's publish job in the
    transaction of the rows the cockpit writes (else they would wait for the publish tick)."""
    if deployment.runtime != "procrastinate":
        return prepared_store
    from schedules.procrastinate_app import publishing_outbox

    outbox_of = publishing_outbox(deployment)

    def open_store(town: Town) -> Store:
        store = prepared_store(town)
        attach_outbox(store.engine, outbox_of(town.id))
        return store
    return open_store


async def _serve(app, host: str, port: int) -> None:
    import uvicorn

    await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info")).serve()


def _registry(deployment: Deployment) -> TownRegistry:
    try:
        return TownRegistry(deployment.store_url)
    except Exception as exc:  # noqa: BLE001 - an unreachable database: say so, exit 2
        err.print(f"error: cannot open the towns registry in {deployment.store_url}: {exc}", style="red",
                  markup=False)
        raise typer.Exit(2) from None


def _host_text(town: Town) -> str:
    name, port = town.host
    return f"{name}:{port}" if port else name

