"""`hub status`: each town's dispatch and delivery figures in the terminal, the same numbers
`/metrics` gives with a `town` label (hub/fleet_metrics.py)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import create_engine

from hub.cli.common import ConfigOpt, deployment_from, err, out
from hub.errors import HubError
from hub.fleet_metrics import WINDOW, TownStatus, fleet_status

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one object per town) instead of a table.")]


def status(config: ConfigOpt = Path("config.yaml"), as_json: JsonOpt = False) -> None:
    """Per town: sources due and in flight, lag behind schedule, recent fetches and
    deliveries with their errors, and (scaled tier) the task queue's jobs."""
    deployment = deployment_from(config)
    with ExitStack() as stack:
        stores = {}
        for town_id, town in deployment.towns.items():
            try:
                stores[town_id] = town.open_store()
            except HubError as exc:
                err.print(f"error: town {town_id}: {exc}", style="red", markup=False)
                raise typer.Exit(2) from None
            stack.callback(stores[town_id].close)
        jobs_engine = None
        if deployment.store_url.startswith("postgresql"):  # procrastinate's jobs live there, if anywhere
            jobs_engine = create_engine(deployment.store_url)
            stack.callback(jobs_engine.dispose)
        statuses = fleet_status(stores, datetime.now(timezone.utc), jobs_engine=jobs_engine)
    if as_json:
        out.print_json(json.dumps([s.as_dict() for s in statuses]))
        return
    out.print(_table(statuses))


def _table(statuses: list[TownStatus]) -> Table:
    minutes = int(WINDOW.total_seconds() // 60)
    table = Table("town", "sources", "due", "in flight", "lag", "hosts waiting", f"fetched {minutes}m",
                  f"failed {minutes}m", f"published {minutes}m", f"publish errors {minutes}m", "to publish",
                  "jobs todo/doing", title="Dispatch by town")
    for s in statuses:
        f = s.figures
        todo = sum(n for (_, state), n in s.jobs.items() if state == "todo")
        doing = sum(n for (_, state), n in s.jobs.items() if state == "doing")
        table.add_row(s.town, str(f.sources), str(f.due), str(f.in_flight), _duration(f.lag_seconds),
                      f"{f.hosts_waiting}/{f.hosts}", str(f.fetched), str(f.failed), str(f.published),
                      str(f.publish_errors), str(f.publish_backlog), f"{todo}/{doing}" if s.jobs else "–")
    return table


def _duration(seconds: float) -> str:
    """Lag for people: 0s, 42s, 7m 5s, 3h 12m."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"
