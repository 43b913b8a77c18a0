"""The `hub` command line. Every command takes `-c/--config` (default `config.yaml`, or the
HUB_CONFIG environment variable). Exit codes: 0 fine, 1 some source failed, 2 bad config."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sys
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, AsyncIterator, Awaitable, Iterator, Optional, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from hub.cli.admin import admin_app
from hub.cli.channels import channels_app, print_previews
from hub.cli.common import ConfigOpt, HostOpt, PortOpt, deployment_from, err, open_store, out, settings_from, when
from hub.cli.facebook import facebook_app
from hub.cli.items import items_app
from hub.cli.newsletter import newsletter_app, publish_newsletters
from hub.cli.status import status
from hub.cli.towns import run_towns, serve_towns, towns_app
from hub.cli.trysource import try_source
from hub.cli.worker import migrate, worker
from hub.config import Settings
from hub.http import Fetcher
from hub.media import INGEST_BATCH, INGEST_ROUNDS, IngestReport, MediaStore, ingest_media
from hub.pipeline import Pipeline, SourceReport, Stop, select_sources
from hub.refresh import refresh_expired_images
from hub.store import Store
from hub.store.scheduling import ScheduleStore, SourceSchedule
from hub.towns import is_deployment_file
from schedules.clock import SystemClock
from schedules.policy import describe
from schedules.publishing import ChannelPublisher, PublishReport, push_channels
from schedules.scheduler import Scheduler, process_owner

T = TypeVar("T")
app = typer.Typer(help="Post once, appear everywhere: the town's content hub.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)


def main() -> None:
    app()


@asynccontextmanager
async def _pipeline(settings: Settings, store: Store) -> AsyncIterator[Pipeline]:
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        pipeline = Pipeline(settings, store, fetcher)
        # Config, plugins and libraries live as long as the process: the garbage
        # collector need not scan them on every full pass (~10% of a re-poll's CPU).
        gc.freeze()
        try:
            yield pipeline
        finally:
            pipeline.close()


@app.command()
def check(config: ConfigOpt = Path("config.yaml")) -> None:
    """Validate the config (or a deployment file and every town's config); print every
    problem as file:line: message (exit 2 if any)."""
    if is_deployment_file(config):  # issue 18: a deployment of many towns
        deployment = deployment_from(config)
        out.print(f"{config}: OK — {len(deployment.towns)} towns, runtime {deployment.runtime}")
        for town in deployment.towns.values():
            _check_summary(f"  {town.id} ({town.settings.path})", town.settings)
        return
    _check_summary(str(config), settings_from(config))


def _check_summary(label: str, settings: Settings) -> None:
    for warning in settings.warnings:  # worth a look, not a problem: the exit code stays 0
        err.print(warning, markup=False, highlight=False, style="yellow")
    out.print(f"{label}: OK — {len(settings.merchants)} merchants, {len(settings.sources())} sources, "
              f"{len(settings.channels)} channels")


@app.command()
def fetch(config: ConfigOpt = Path("config.yaml"),
          source: Annotated[Optional[list[str]], typer.Option("--source", "-s", help="Only this source (repeatable).")] = None,
          merchant: Annotated[Optional[list[str]], typer.Option("--merchant", "-m", help="Only this merchant's sources (repeatable).")] = None,
          no_images: Annotated[bool, typer.Option("--no-images", help="Skip the image downloads after the fetch; "
                                                  "`hub run` downloads them, or they load on first view.")] = False,
          ) -> None:
    """Fetch sources once and show what was new, changed, unchanged or failed (exit 1 if any
    failed), then download the new entries' images. SIGTERM or Ctrl-C stops it cleanly (exit
    143 or 130): no new fetch starts, what was fetched is stored, nothing is half-written."""
    settings = settings_from(config)
    chosen = select_sources(settings, source, merchant)
    if not chosen:
        err.print("no source matches; `hub sources` lists the configured ones", style="yellow")
        raise typer.Exit(2)
    store = open_store(settings)
    run = asyncio.run(_fetch_with_progress(settings, store, chosen, images=not no_images))
    out.print(_report_table(run.reports))
    out.print(f"fetched and stored {len(run.reports):,} sources in {run.fetch_seconds:.1f} s")
    if images := _images_summary(run):
        out.print(images)
    if run.stopped_by:
        if len(run.reports) < len(chosen):
            err.print(f"stopped by {run.stopped_by}: {len(run.reports):,} of {len(chosen):,} sources done; "
                      "run again to fetch the rest", style="bold yellow")
        else:
            err.print(f"stopped by {run.stopped_by} after the fetch: all {len(chosen):,} sources done; "
                      f"{run.waiting_after:,} entries wait for their images", style="bold yellow")
        raise typer.Exit(130 if run.stopped_by == "SIGINT" else 143)
    failed = [r for r in run.reports if r.status == "failed"]
    if failed:
        err.print(f"{len(failed)} of {len(run.reports)} sources failed.", style="bold red")
        raise typer.Exit(1)


@dataclass
class _FetchRun:
    """What `hub fetch` did, for its summary."""

    reports: list[SourceReport]
    fetch_seconds: float
    images: IngestReport | None = None  # None: the image phase did not run
    image_seconds: float = 0.0
    waiting_before: int = 0  # entries waiting for their images before this run
    waiting: int = 0  # ... once this run's entries were stored
    waiting_after: int = 0  # ... at the end
    stopped_by: str | None = None  # the signal that stopped it


async def _fetch_with_progress(settings: Settings, store: Store, chosen, *, images: bool = True) -> _FetchRun:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    stop = Stop()
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress, \
            _stopping_on_signals(stop, settings.schedule.shutdown_grace.total_seconds()):
        task = progress.add_task("fetching", total=len(chosen))
        index = store.records.media
        waiting_before = await asyncio.to_thread(index.count_pending)
        async with _pipeline(settings, store) as pipeline:
            started = time.perf_counter()
            reports = await pipeline.run(chosen, on_done=lambda _: progress.advance(task), stop=stop)
            await asyncio.to_thread(pipeline.close)  # the workers' memory is not needed for the images
            run = _FetchRun(reports, time.perf_counter() - started, waiting_before=waiting_before,
                            waiting=await asyncio.to_thread(index.count_pending))
            if images and not stop.requested.is_set():
                # issue 4: the new records' images are downloaded at ingest, before their URLs expire
                media = MediaStore(settings.data_dir, settings.base_dir, index, pipeline.fetcher)
                bar = progress.add_task("images", total=min(run.waiting, INGEST_BATCH * INGEST_ROUNDS))
                started = time.perf_counter()
                run.images = await _unless_abandoned(stop, ingest_media(
                    media, on_round=lambda r: progress.advance(bar, r.items), stop=stop.requested))
                if run.images is not None and not stop.requested.is_set():
                    # issue 12: an expired Facebook/Instagram image URL: its entry is re-read once
                    await refresh_expired_images(settings, store, media, pipeline.fetcher)
                run.image_seconds = time.perf_counter() - started
            run.waiting_after = await asyncio.to_thread(index.count_pending)
    run.stopped_by = stop.reason
    return run


async def _unless_abandoned(stop: Stop, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None if `stop` is abandoned first (then `work` is cancelled: an
    image batch under way is not recorded, and its entries wait for the next run)."""
    doing, abandoning = asyncio.ensure_future(work), asyncio.ensure_future(stop.abandoned.wait())
    try:
        await asyncio.wait([doing, abandoning], return_when=asyncio.FIRST_COMPLETED)
    finally:
        abandoning.cancel()
        if not doing.done():
            doing.cancel()
            await asyncio.wait([doing])
    return None if doing.cancelled() else doing.result()


@contextmanager
def _stopping_on_signals(stop: Stop, grace: float) -> Iterator[None]:
    """SIGTERM (kill, systemd, a container runtime) and SIGINT (Ctrl-C) end `hub fetch`
    the way they end `hub run`: no new work, `grace` for the work under way, nothing
    half-written. A second signal abandons the fetches under way at once."""
    loop = asyncio.get_running_loop()

    def on(sig: signal.Signals) -> None:
        if stop.request(sig.name, grace):
            err.print(f"{sig.name}: stopping. No new fetches; those under way get {grace:g} s, and what was "
                      f"fetched is stored ({'Ctrl-C' if sig == signal.SIGINT else sig.name} again: abandon them now)",
                      style="yellow")
        else:
            err.print(f"{sig.name} again: abandoning the fetches under way", style="yellow")

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _images_summary(run: _FetchRun) -> Text | None:
    """Where the image phase's time went: how many entries' images it saw to, of this run
    and of earlier ones, what became of them, and why hosts were given up on."""
    new = max(0, run.waiting - run.waiting_before)
    if run.images is None:
        if run.stopped_by and not run.waiting_after:
            return None
        why = f"not downloaded (stopped by {run.stopped_by})" if run.stopped_by else "skipped (--no-images)"
        text = Text(f"images {why}: ", style="yellow")
        if run.waiting_after:
            text.append(f"{run.waiting_after:,} entries wait for their images ({new:,} of this run); `hub run` "
                        "downloads them, or they load on first view")
        else:
            text.append("no entry waits for its images")
        return text
    report = run.images
    if not report.items:
        return Text(f"images: none to download ({run.image_seconds:.1f} s)")
    origin = ("all from this run" if new >= run.waiting else "all from earlier runs" if not new
              else f"{new:,} from this run, {run.waiting - new:,} from earlier runs")
    seen = f"{report.items:,}" if report.items >= run.waiting else f"{report.items:,} of {run.waiting:,} waiting"
    images = report.downloaded + report.failed
    text = Text(f"images: {run.image_seconds:.1f} s for {seen} entries ({origin}): {images:,} new images")
    if report.failed:
        not_tried = f"; {report.not_tried:,} of them not tried, their host being unreachable" if report.not_tried else ""
        text.append(f", {report.downloaded:,} stored, {report.failed:,} not{not_tried} (a page asks the hub for "
                    "those again when it shows them)", style="yellow")
    elif images:
        text.append(", all stored")
    for why in report.unreachable.values():
        text.append(f"\n  {why}", style="yellow")
    if run.waiting_after:
        text.append(f"\n  {run.waiting_after:,} entries still wait for their images: the next `hub fetch` or "
                    "`hub run` downloads them, or they load on first view", style="yellow")
    return text


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


app.add_typer(admin_app, name="admin")  # issue 17: the cockpit's users (hub/cli/admin.py)
app.add_typer(items_app, name="items")  # issue 4: canonical records (hub/cli/items.py)
app.add_typer(facebook_app, name="facebook")  # issue 12: page tokens, token checks (hub/cli/facebook.py)
app.add_typer(newsletter_app, name="newsletter")  # issue 15: subscribers, erase, export (hub/cli/newsletter.py)
app.add_typer(channels_app, name="channels")  # issue 16: push channels' state, backlog, errors (hub/cli/channels.py)
app.add_typer(towns_app, name="towns")  # issue 18: the towns of a deployment (hub/cli/towns.py)
app.command()(worker)  # issue 18: a procrastinate worker of the scaled tier (hub/cli/worker.py)
app.command()(status)  # issue 18: dispatch and delivery figures per town (hub/cli/status.py)
app.command()(migrate)  # issue 18: the hub's schema in every town, procrastinate's tables (hub/cli/worker.py)
app.command("try-source")(try_source)  # issue 13: what a source would give, nothing stored (hub/cli/trysource.py)


@app.command()
def sources(config: ConfigOpt = Path("config.yaml"),
            format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table") -> None:
    """Show every source's health and schedule: last fetch, error, next fetch, interval, why."""
    settings = settings_from(config)
    store = open_store(settings)
    configured = {s.id for _, s in settings.sources()}
    statuses = [s for s in store.source_statuses() if s.id in configured]
    schedules = ScheduleStore(store).source_schedules()
    if format == "json":
        for s in statuses:
            record = {**s.__dict__, **schedules[s.id].__dict__}
            sys.stdout.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        return
    table = Table(title="Sources")
    for name in ("source", "merchant", "status", "items", "last fetch", "last success", "last error or warnings"):
        table.add_column(name)
    styles = {"ok": "green", "failing": "red", "new": "yellow"}
    for s in statuses:
        notes = Text(s.last_error or "; ".join(s.warnings))
        for warning in s.token_warnings:  # issue 12: the token runs out soon, lacks a permission
            notes.append(("\n" if notes else "") + warning, style="yellow")
        table.add_row(s.id, s.merchant_id, f"[{styles.get(s.status, '')}]{s.status}[/]", str(s.items),
                      when(s.last_fetch_at), when(s.last_ok_at), notes)
    out.print(table)
    out.print(_schedule_table([(s.id, schedules[s.id]) for s in statuses]))


def _schedule_table(rows: list[tuple[str, SourceSchedule]]) -> Table:
    """When each source is fetched next, how often, and why that often."""
    table = Table(title="Schedule")
    for name in ("source", "next fetch", "interval", "why"):
        table.add_column(name)
    for source_id, plan in rows:
        interval = describe(timedelta(seconds=plan.interval_seconds)) if plan.interval_seconds else "–"
        why = plan.reason or ("first fetch" if plan.next_fetch_at else "scheduled when `hub run` starts")
        if plan.push_state in ("pending", "denied", "failed"):
            why += f"; WebSub {plan.push_state}"
        table.add_row(source_id, when(plan.next_fetch_at), interval, why)
    return table


@app.command()
def publish(config: ConfigOpt = Path("config.yaml"),
            channel: Annotated[Optional[list[str]], typer.Option("--channel", help="Only this channel (repeatable).")] = None,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would go out; send nothing.")] = False,
            ) -> None:
    """Publish push channels now, whatever their schedule (exit 1 if an item failed)."""
    settings = settings_from(config)
    pushing = [c.id for c in push_channels(settings)]
    pushing_too = [c.id for c in settings.channel_list() if c.renderer == "newsletter"]  # issue 15
    unknown = sorted(set(channel or ()) - set(pushing) - set(pushing_too))
    if unknown or not (pushing or pushing_too):
        err.print(f"no push channel {', '.join(unknown)}; push channels in the config: "
                  f"{', '.join(pushing + pushing_too) or 'none'} (pull channels such as `platform` are served by "
                  "the web app)", style="yellow")
        raise typer.Exit(2)
    store = open_store(settings)
    reports = []
    if not channel or set(channel) & set(pushing):
        reports = asyncio.run(_publish(settings, store, channel and [c for c in channel if c in pushing], dry_run))
    reports += publish_newsletters(settings, store, channel, dry_run)  # issue 15: editions (hub/cli/newsletter.py)
    print_previews(reports)  # issue 16: a dry run shows each delivery as its channel would (hub/cli/channels.py)
    out.print(_publish_table(reports))
    if any(r.status == "failed" for r in reports):
        raise typer.Exit(1)


async def _publish(settings: Settings, store: Store, channels: list[str] | None, dry_run: bool
                   ) -> list[PublishReport]:
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        publisher = ChannelPublisher(settings, store, fetcher, clock=SystemClock(), owner=process_owner())
        return await publisher.publish(channels, dry_run=dry_run)


def _publish_table(reports: list[PublishReport]) -> Table:
    table = Table(title="Publish summary")
    for name in ("channel", "status", "sent", "skipped", "failed", "detail"):
        table.add_column(name, justify="right" if name in ("sent", "skipped", "failed") else "left", overflow="fold")
    for r in reports:
        detail = r.error or ""
        if r.status == "dry run":
            detail = f"would send {len(r.titles)}: " + "; ".join(r.titles[:10]) + (" …" if len(r.titles) > 10 else "")
        elif r.status == "busy":
            detail = "another process is publishing this channel right now"
        table.add_row(r.channel_id, r.status, str(r.sent), str(r.skipped), str(r.failed), detail)
    return table


@app.command()
def serve(config: ConfigOpt = Path("config.yaml"), host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """Run the web server alone (resident pages, feeds, health); every town of a deployment file."""
    if is_deployment_file(config):  # issue 18: many towns, picked by the Host header
        return serve_towns(config, host, port)
    settings = settings_from(config)
    store = open_store(settings)
    asyncio.run(_serve(settings, store, host, port, with_loop=False))


@app.command()
def run(config: ConfigOpt = Path("config.yaml"), host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """The main job: the web server plus the scheduler (fetching, publishing, WebSub, upkeep)."""
    if is_deployment_file(config):  # issue 18: every town's pages and, in-process, its scheduler
        return run_towns(config, host, port, absorb_stop_signals=_absorb_stop_signals)
    settings = settings_from(config)
    store = open_store(settings)
    # issue 18: with `runtime: procrastinate` the workers (`hub worker`) do the work, not this process
    asyncio.run(_serve(settings, store, host, port, with_loop=settings.runtime == "inprocess"))


async def _serve(settings: Settings, store: Store, host: str, port: int, *, with_loop: bool) -> None:
    import uvicorn

    from hub.web.admin.reload import on_reload, reloadable
    from hub.web.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, store)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
    if not with_loop:
        async with reloadable(app, settings.path, store, create_app):  # issue 17: SIGHUP reads the config again
            await server.serve()
        return
    async with _pipeline(settings, store) as pipeline:
        scheduler = Scheduler(settings, store, pipeline, pipeline.fetcher)
        scheduler.start()
        _absorb_stop_signals()

        async def restart(new: Settings) -> None:  # issue 17: a new config (cockpit or SIGHUP), no restart
            nonlocal scheduler
            await scheduler.stop()
            pipeline.settings = new
            scheduler = Scheduler(new, store, pipeline, pipeline.fetcher)
            scheduler.start()

        on_reload(app, restart)
        try:
            async with reloadable(app, settings.path, store, create_app):
                await server.serve()
        finally:
            await scheduler.stop()


def _absorb_stop_signals() -> None:
    """uvicorn handles SIGTERM and SIGINT while it serves, and raises them again once it has
    stopped. These handlers take that second delivery, so the scheduler can still finish
    or hand back its work (`Scheduler.stop`) before the process ends."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
