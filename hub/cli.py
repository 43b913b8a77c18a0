"""The `hub` command line. Every command takes `-c/--config` (default `config.yaml`, or the
HUB_CONFIG environment variable). Exit codes: 0 fine, 1 some source failed, 2 bad config."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, AsyncIterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub import config as config_mod
from hub.config import Settings
from hub.errors import ConfigError, HubError
from hub.http import Fetcher
from hub.pipeline import Pipeline, SourceReport, select_sources, source_specs
from hub.store import Store

app = typer.Typer(help="Post once, appear everywhere: the town's content hub.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path, typer.Option("-c", "--config", envvar="HUB_CONFIG", help="The YAML config file.")]
HostOpt = Annotated[str, typer.Option(help="Address to listen on.")]
PortOpt = Annotated[int, typer.Option(help="Port to listen on.")]


def main() -> None:
    app()


def _settings(path: Path) -> Settings:
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(problem, markup=False, highlight=False)
        err.print(f"{len(exc.problems)} problem(s) in {path}; nothing was started.", style="bold red")
        raise typer.Exit(2) from None


def _store(settings: Settings) -> Store:
    try:
        store = Store(settings.store.url, base_dir=settings.base_dir)
    except HubError as exc:
        err.print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(2) from None
    store.sync_sources(source_specs(settings))
    return store


@asynccontextmanager
async def _pipeline(settings: Settings, store: Store) -> AsyncIterator[Pipeline]:
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        pipeline = Pipeline(settings, store, fetcher)
        try:
            yield pipeline
        finally:
            pipeline.close()


@app.command()
def check(config: ConfigOpt = Path("config.yaml")) -> None:
    """Validate the config; print every problem as file:line: message (exit 2 if any)."""
    settings = _settings(config)
    n_sources = len(settings.sources())
    out.print(f"{config}: OK — {len(settings.merchants)} merchants, {n_sources} sources, "
              f"{len(settings.channels)} channels")


@app.command()
def fetch(config: ConfigOpt = Path("config.yaml"),
          source: Annotated[Optional[list[str]], typer.Option("--source", "-s", help="Only this source (repeatable).")] = None,
          merchant: Annotated[Optional[list[str]], typer.Option("--merchant", "-m", help="Only this merchant's sources (repeatable).")] = None,
          ) -> None:
    """Fetch sources once and show what was new, changed, unchanged or failed (exit 1 if any failed)."""
    settings = _settings(config)
    chosen = select_sources(settings, source, merchant)
    if not chosen:
        err.print("no source matches; `hub sources` lists the configured ones", style="yellow")
        raise typer.Exit(2)
    store = _store(settings)
    reports = asyncio.run(_fetch_with_progress(settings, store, chosen))
    out.print(_report_table(reports))
    failed = [r for r in reports if r.status == "failed"]
    if failed:
        err.print(f"{len(failed)} of {len(reports)} sources failed.", style="bold red")
        raise typer.Exit(1)


async def _fetch_with_progress(settings: Settings, store: Store, chosen) -> list[SourceReport]:
    columns = (TextColumn("fetching"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("fetch", total=len(chosen))
        async with _pipeline(settings, store) as pipeline:
            return await pipeline.run(chosen, on_done=lambda _: progress.advance(task))


def _report_table(reports: list[SourceReport]) -> Table:
    table = Table(title="Fetch summary", show_lines=False)
    for name in ("source", "status", "new", "changed", "unchanged", "gone", "detail"):
        numeric = name in ("new", "changed", "unchanged", "gone")
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    styles = {"ok": "green", "not_modified": "cyan", "failed": "red"}
    for r in sorted(reports, key=lambda r: (r.status != "failed", r.source_id)):
        detail = r.error or "; ".join(r.warnings)
        status = "304" if r.status == "not_modified" else r.status
        table.add_row(r.source_id, f"[{styles[r.status]}]{status}[/]", str(r.new), str(r.changed),
                      str(r.unchanged), str(r.gone), detail)
    totals = [sum(getattr(r, k) for r in reports) for k in ("new", "changed", "unchanged", "gone")]
    failed = sum(r.status == "failed" for r in reports)
    table.add_section()
    table.add_row(f"{len(reports)} sources", f"{failed} failed", *map(str, totals), "")
    return table


@app.command()
def items(config: ConfigOpt = Path("config.yaml"),
          search: Annotated[Optional[str], typer.Option("--search", "-q", help="Words that must all appear.")] = None,
          merchant: Annotated[Optional[str], typer.Option("--merchant", "-m")] = None,
          source: Annotated[Optional[str], typer.Option("--source", "-s")] = None,
          limit: Annotated[int, typer.Option(help="At most this many items.")] = 50,
          deleted: Annotated[bool, typer.Option("--deleted", help="Include items the merchant deleted.")] = False,
          format: Annotated[str, typer.Option("--format", "-f", help="table or json (one object per line).")] = "table",
          ) -> None:
    """List and search stored items, newest first."""
    settings = _settings(config)
    store = _store(settings)
    found = store.items(limit=limit, merchant_id=merchant, source_id=source, q=search, include_deleted=deleted)
    if format == "json":
        for stored in found:
            record = {"id": stored.id, **stored.item.to_dict(), "deleted": stored.deleted_at is not None,
                      "origins": [{"source_id": stored.item.source_id, "external_id": stored.item.external_id,
                                   "url": stored.item.url, "origin_url": stored.item.origin_url}]}
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    if format != "table":
        err.print("--format is 'table' or 'json'", style="red")
        raise typer.Exit(2)
    table = Table(title=f"{len(found)} items")
    for name in ("id", "published", "merchant", "title", "source"):
        table.add_column(name)
    for stored in found:
        title = stored.item.title + (" [red](gelöscht)[/]" if stored.deleted_at else "")
        table.add_row(str(stored.id), _when(stored.item.published), stored.item.merchant_id, title,
                      stored.item.source_id)
    out.print(table)


@app.command()
def sources(config: ConfigOpt = Path("config.yaml"),
            format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table") -> None:
    """Show every source's health: last fetch, status, last error."""
    settings = _settings(config)
    store = _store(settings)
    configured = {s.id for _, s in settings.sources()}
    statuses = [s for s in store.source_statuses() if s.id in configured]
    if format == "json":
        for s in statuses:
            sys.stdout.write(json.dumps(s.__dict__, default=str, ensure_ascii=False) + "\n")
        return
    table = Table(title="Sources")
    for name in ("source", "merchant", "status", "items", "last fetch", "last success", "last error"):
        table.add_column(name)
    styles = {"ok": "green", "failing": "red", "new": "yellow"}
    for s in statuses:
        table.add_row(s.id, s.merchant_id, f"[{styles.get(s.status, '')}]{s.status}[/]", str(s.items),
                      _when(s.last_fetch_at), _when(s.last_ok_at), s.last_error or "; ".join(s.warnings))
    out.print(table)


@app.command()
def serve(config: ConfigOpt = Path("config.yaml"), host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """Run the web server alone (resident pages, feeds, health)."""
    settings = _settings(config)
    store = _store(settings)
    asyncio.run(_serve(settings, store, host, port, with_loop=False))


@app.command()
def run(config: ConfigOpt = Path("config.yaml"), host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """The main job: the web server plus the loop that fetches due sources."""
    settings = _settings(config)
    store = _store(settings)
    asyncio.run(_serve(settings, store, host, port, with_loop=True))


async def _serve(settings: Settings, store: Store, host: str, port: int, *, with_loop: bool) -> None:
    import uvicorn

    from hub.web.app import create_app
    from schedules.loop import FetchLoop

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = uvicorn.Server(uvicorn.Config(create_app(settings, store), host=host, port=port, log_level="info"))
    if not with_loop:
        await server.serve()
        return
    async with _pipeline(settings, store) as pipeline:
        loop = FetchLoop(settings, pipeline)
        loop.start()
        try:
            await server.serve()
        finally:
            loop.shutdown()


def _when(dt: datetime | None) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M") if dt else "–"
