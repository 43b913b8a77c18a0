"""`hub items`: canonical records for the project manager. Lists and searches them (each with
its origins and why they were merged), shows one with its revisions, works the review queue
(`--pending`, `approve`, `hide`) and undoes a wrong merge (`split`).

`--config` is a town config or a deployment file (then `--town` names the town). With
`runtime: procrastinate`, what `approve`, `hide` and `split` change queues its push
channels' publish job with the rows, as the cockpit does."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from hub.cli.common import deployment_from, err, out, when
from hub.cli.towns import web_store_opener
from hub.errors import HubError
from hub.records import HASHED_FIELDS, Record
from hub.store import Store

items_app = typer.Typer(help="Canonical records: one per real thing, with their origins.", invoke_without_command=True)
ConfigOpt = Annotated[Optional[Path], typer.Option("-c", "--config", envvar="HUB_CONFIG", help="The YAML config file.")]
TownOpt = Annotated[Optional[str], typer.Option("-t", "--town", help="The town, when --config is a deployment file.")]
IdArg = Annotated[int, typer.Argument(help="The record's id (first column of `hub items`).")]


@items_app.callback()
def items(ctx: typer.Context, config: ConfigOpt = None, town: TownOpt = None,
          search: Annotated[Optional[str], typer.Option("--search", "-q", help="Search as residents do: every word (\"Konzerte\" also finds \"Konzert\"), \"a phrase\", a OR b, -not; best matches first.")] = None,
          merchant: Annotated[Optional[str], typer.Option("--merchant", "-m", help="Records with an origin of this merchant.")] = None,
          source: Annotated[Optional[str], typer.Option("--source", "-s", help="Records with an origin from this source.")] = None,
          kind: Annotated[Optional[str], typer.Option(help="post, event or offer.")] = None,
          pending: Annotated[bool, typer.Option("--pending", help="The review queue: records waiting for approval.")] = False,
          hidden: Annotated[bool, typer.Option("--hidden", help="Records hidden by a rule or by hand.")] = False,
          every: Annotated[bool, typer.Option("--all", help="Whatever their status, removed and expired ones too.")] = False,
          deleted: Annotated[bool, typer.Option("--deleted", help="Include records whose origins are all gone.")] = False,
          limit: Annotated[int, typer.Option(help="At most this many records.")] = 50,
          format: Annotated[str, typer.Option("--format", "-f", help="table or json (one object per line).")] = "table",
          ) -> None:
    """List and search canonical records, newest first or best match first (default: what residents see)."""
    ctx.obj = (config, town)
    if ctx.invoked_subcommand:
        return
    if format not in ("table", "json"):
        _fail("--format is 'table' or 'json'")
    store = _open(config, town)
    status = None if every else ("pending" if pending else "hidden" if hidden else "published")
    found = store.records.list(limit=limit, merchant_id=merchant, source_id=source, kind=kind, q=search,
                               order="relevance" if search else "newest",
                               status=status, removed=deleted or every, expired=every or pending or hidden)
    if format == "json":
        for record in found:
            sys.stdout.write(json.dumps(as_json(record), ensure_ascii=False, default=str) + "\n")
        return
    out.print(_table(found, "review queue" if pending else "records"))


@items_app.command()
def show(ctx: typer.Context, record_id: IdArg, config: ConfigOpt = None, town: TownOpt = None,
         format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table") -> None:
    """One record: its fields, every origin and why it joined, and its revisions."""
    store = _open(*_given(ctx, config, town))
    record = store.records.get(record_id)
    if record is None:
        _fail(f"there is no record {record_id}")
    revisions = store.records.revisions(record_id)
    if format == "json":
        body = {**as_json(record), "revisions": [{"at": r.at, "change": r.change, "actor": r.actor,
                                                   "item_id": r.item_id, **r.detail} for r in revisions]}
        sys.stdout.write(json.dumps(body, ensure_ascii=False, default=str) + "\n")
        return
    out.print(_table([record], f"record {record_id}"))
    origins = Table(title="origins")
    for name in ("item", "source", "external id", "merchant", "live", "joined because"):
        origins.add_column(name, overflow="fold")
    for o in record.origins:
        why = "founded the record" if o.rule == "first" else f"{o.rule} ({o.score:.2f}) with item {o.matched_item_id}"
        origins.add_row(str(o.item_id), o.item.source_id, o.item.external_id, o.item.merchant_id,
                        "yes" if o.live else "gone", why)
    out.print(origins)
    history = Table(title="revisions")
    for name in ("at", "change", "by", "detail"):
        history.add_column(name, overflow="fold")
    for r in revisions:
        history.add_row(when(r.at), r.change, r.actor, _detail(r.item_id, r.detail))
    out.print(history)


@items_app.command()
def approve(ctx: typer.Context, record_id: IdArg, config: ConfigOpt = None, town: TownOpt = None) -> None:
    """Publish a record (from the review queue, or one hidden before)."""
    _act(_given(ctx, config, town), record_id, "approve", "published")


@items_app.command()
def hide(ctx: typer.Context, record_id: IdArg, config: ConfigOpt = None, town: TownOpt = None) -> None:
    """Hide a record from residents and every channel."""
    _act(_given(ctx, config, town), record_id, "hide", "hidden")


@items_app.command()
def split(ctx: typer.Context, record_id: IdArg, config: ConfigOpt = None, town: TownOpt = None,
          origin: Annotated[Optional[list[int]], typer.Option("--origin", help="An origin's item id to take out (repeatable); default: all but the first.")] = None,
          ) -> None:
    """Undo a wrong merge: the origins get records of their own, never to be merged again."""
    store = _open(*_given(ctx, config, town))
    new = store.records.split(record_id, origin)
    if not new:
        _fail(f"nothing to split: record {record_id} does not exist, has one origin, or those are not its origins")
    out.print(f"record {record_id} split; new records: {', '.join(map(str, new))}")


def as_json(record: Record) -> dict[str, Any]:
    """A record as `hub items --format json` prints it."""
    item = {k: v for k, v in record.item.to_dict().items() if k not in ("_hash", "source_id", "external_id", "origin_url")}
    return {"id": record.id, **item, "status": record.status, "status_reason": record.status_reason,
            "label": record.label, "removed": record.removed_at is not None,
            "expires_at": record.expires_at, "fields_from": dict(record.fields_from),
            "origins": [o.to_dict() for o in record.origins], "merged_because": record.merged_because}


def _act(given: tuple[Path | None, str | None], record_id: int, verb: str, status: str) -> None:
    store = _open(*given)
    if not getattr(store.records, verb)(record_id):
        _fail(f"there is no record {record_id}")
    out.print(f"record {record_id} is {status}")


def _table(records: list[Record], title: str) -> Table:
    table = Table(title=f"{len(records)} {title}")
    for name in ("id", "published", "kind", "merchant", "title", "status", "origins"):
        table.add_column(name, overflow="fold")
    for r in records:
        title = r.item.title + (" [red](entfernt)[/]" if r.removed_at else "")
        status = r.status + (f": {r.status_reason}" if r.status_reason else "")
        sources = ", ".join(dict.fromkeys(o.item.source_id for o in r.origins if o.live))
        table.add_row(str(r.id), when(r.item.published), r.item.kind.value, r.item.merchant_id, title, status, sources)
    return table


def _detail(item_id: int | None, detail: dict[str, Any]) -> str:
    parts = [f"item {item_id}"] if item_id else []
    for key, value in detail.items():
        if key == "changes":
            parts += [f"{field} changed" if field in HASHED_FIELDS else f"{field}: {old!r} → {new!r}"
                      for field, (old, new) in value.items()]
        else:
            parts.append(f"{key}: {value}")
    return "; ".join(parts)


def _given(ctx: typer.Context, config: Path | None, town: str | None) -> tuple[Path | None, str | None]:
    """--config and --town of the subcommand, else those given before it (`hub items -c X hide 5`)."""
    before = ctx.obj or (None, None)
    return config or before[0], town or before[1]


def _open(config: Path | None, town: str | None = None) -> Store:
    """The store of the town, opened as `hub serve` opens it (hub.cli.towns.web_store_opener)."""
    path = config or Path("config.yaml")
    deployment = deployment_from(path)
    if town is None and len(deployment.towns) == 1:
        town = next(iter(deployment.towns))
    if town not in deployment.towns:
        _fail(f"{path} is a deployment of the towns {', '.join(sorted(deployment.towns))}: "
              + ("name one with --town" if town is None else f"it has no town {town!r}"))
    try:
        return web_store_opener(deployment)(deployment.towns[town])
    except HubError as exc:
        _fail(f"error: {exc}")


def _fail(message: str) -> None:
    err.print(message, style="red")
    raise typer.Exit(2)
