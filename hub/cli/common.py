"""What every `hub` command shares: the consoles, the common options, reading the config
and opening the store with it. Errors end the command with exit code 2 and a clear message."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from hub import config as config_mod
from hub.config import Settings
from hub.errors import ConfigError, HubError
from hub.moderation import rules_from
from hub.pipeline import source_specs
from hub.store import Store
from hub.towns import Deployment, load_deployment
from schedules.publishing import prepare_channels

# On a terminal, tables fit its width; into a pipe or a file (a script, a log, a test), they
# keep whole lines rather than cutting errors and advice to the 80 columns rich assumes.
PIPED_WIDTH = 240
out = Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)
err = Console(stderr=True, width=None if sys.stderr.isatty() else PIPED_WIDTH)

ConfigOpt = Annotated[Path, typer.Option("-c", "--config", envvar="HUB_CONFIG", help="The YAML config file.")]
HostOpt = Annotated[str, typer.Option(help="Address to listen on.")]
PortOpt = Annotated[int, typer.Option(help="Port to listen on.")]


T = TypeVar("T")


def settings_from(path: Path) -> Settings:
    return _loaded(config_mod.load, path, "nothing was started")


def deployment_from(path: Path, consequence: str = "nothing was started") -> Deployment:
    """A deployment file's towns, or a single town config as the town "default"."""
    return _loaded(load_deployment, path, consequence)


def _loaded(load: Callable[[Path], T], path: Path, consequence: str) -> T:
    """What `load` makes of `path`; on config errors, every problem as file:line, then exit 2."""
    try:
        return load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(problem, markup=False, highlight=False)
        err.print(f"{len(exc.problems)} problem(s) in {path}; {consequence}.", style="bold red")
        raise typer.Exit(2) from None


def open_store(settings: Settings) -> Store:
    try:
        store = Store(settings.store.url, base_dir=settings.base_dir)
    except HubError as exc:
        err.print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(2) from None
    store.sync_sources(source_specs(settings))
    store.records.configure(rules_from(settings))  # moderation rules of the config (issue 4)
    prepare_channels(settings, store)
    return store


def when(dt: datetime | None) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M") if dt else "–"
