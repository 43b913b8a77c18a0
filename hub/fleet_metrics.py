"""Per-town operations figures of a deployment (issue 18): for `/metrics` (with a `town`
label) and `hub status`, read from each town's store and, on the scaled tier, from
procrastinate's job table. Nothing is kept in memory: every process tells the same story.

Metrics (prefixed `hub_town_`, label `town`; jobs also `queue` and `status`):

    sources                     gauge   sources with a schedule
    due_sources                 gauge   due now and not in flight (the backlog)
    in_flight_sources           gauge   claimed, not yet planned again
    lag_seconds                 gauge   now - the oldest due source's next_fetch_at
    hosts / hosts_waiting       gauge   hosts; of them, waiting for their politeness spacing
    fetched_recent              gauge   sources fetched within the window (default 5 min)
    fetch_failed_recent         gauge   ... whose fetch failed
    published_recent            gauge   channel deliveries sent within the window
    publish_errors_recent       gauge   deliveries failed or in doubt, tried within the window
    publish_backlog             gauge   deliveries waiting
    jobs{queue,status}          gauge   procrastinate jobs todo/doing (scaled tier only)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Iterable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hub.store import Store
from hub.store.dispatch import DispatchFigures, DispatchStore, procrastinate_jobs

WINDOW = timedelta(minutes=5)

_GAUGES = (  # DispatchFigures field, metric name, help
    ("sources", "sources", "Sources with a schedule"),
    ("due", "due_sources", "Sources due now and not in flight (the backlog)"),
    ("in_flight", "in_flight_sources", "Sources claimed and not yet planned again"),
    ("lag_seconds", "lag_seconds", "Seconds the oldest due source is behind its schedule"),
    ("hosts", "hosts", "Hosts the town's sources talk to"),
    ("hosts_waiting", "hosts_waiting", "Hosts whose next batch waits for their politeness spacing"),
    ("fetched", "fetched_recent", "Sources fetched within the window"),
    ("failed", "fetch_failed_recent", "Sources whose fetch within the window failed"),
    ("published", "published_recent", "Channel deliveries sent within the window"),
    ("publish_errors", "publish_errors_recent", "Channel deliveries failed or in doubt, tried within the window"),
    ("publish_backlog", "publish_backlog", "Channel deliveries waiting to be made"),
)


@dataclass(frozen=True)
class TownStatus:
    town: str
    figures: DispatchFigures
    jobs: dict[tuple[str, str], int]  # (queue, status) -> jobs of this town waiting or running

    def as_dict(self) -> dict:
        return {"town": self.town, **asdict(self.figures),
                "jobs": {f"{queue}:{status}": n for (queue, status), n in sorted(self.jobs.items())}}


def fleet_status(stores: Mapping[str, Store], now: datetime, *, window: timedelta = WINDOW,
                 jobs_engine=None) -> list[TownStatus]:
    """Each town's figures at `now`; `jobs_engine`: the deployment's database, where
    procrastinate keeps its jobs (None, or no such table: no job counts)."""
    jobs = procrastinate_jobs(jobs_engine) if jobs_engine is not None else None
    statuses = []
    for town, store in stores.items():
        mine = {(q, s): n for (t, q, s), n in (jobs or {}).items() if t == town}
        statuses.append(TownStatus(town, DispatchStore(store).figures(now, window), mine))
    return statuses


def families(statuses: Iterable[TownStatus]) -> list[GaugeMetricFamily]:
    """The statuses as Prometheus metric families, labelled by town."""
    statuses = list(statuses)
    result = []
    for field, name, doc in _GAUGES:
        family = GaugeMetricFamily(f"hub_town_{name}", doc + f" (window {int(WINDOW.total_seconds())} s)"
                                   if name.endswith("_recent") else doc, labels=["town"])
        for status in statuses:
            family.add_metric([status.town], float(getattr(status.figures, field)))
        result.append(family)
    jobs = GaugeMetricFamily("hub_town_jobs", "Task queue jobs waiting (todo) or running (doing)",
                             labels=["town", "queue", "status"])
    for status in statuses:
        for (queue, state), n in sorted(status.jobs.items()):
            jobs.add_metric([status.town, queue, state], n)
    result.append(jobs)
    return result


class FleetCollector(Collector):
    """Collects every town's figures at each scrape (`clock`: a function giving now)."""

    def __init__(self, stores: Mapping[str, Store], clock, *, jobs_engine=None) -> None:
        self.stores = stores
        self.clock = clock
        self.jobs_engine = jobs_engine

    def collect(self) -> Iterable:
        yield from families(fleet_status(self.stores, self.clock(), jobs_engine=self.jobs_engine))


def registry(stores: Mapping[str, Store], clock, *, jobs_engine=None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FleetCollector(stores, clock, jobs_engine=jobs_engine))
    return reg
