"""`/metrics`: the hub's state as Prometheus metrics (issue 17), read from the store at each
scrape, so every process that serves the web app tells the same story (the fetching may
happen in another process, or in another machine's worker).

Metrics (all prefixed `hub_`):

    sources{state}                               gauge     sources by health state (hub.health)
    fetches_total{connector}                     counter   fetches ever counted (migration 0013's trigger)
    fetch_failures_total{connector}              counter   ... of them failed
    records{status}                              gauge     records not removed, by status
    ledger_rows{channel,status}                  gauge     rows of the delivery ledger
    ledger_backlog{channel}                      gauge     deliveries a push channel has still to make
    ingest_delay_seconds                         gauge histogram   publication -> first sight, last 7 days
    publish_delay_seconds{channel}               gauge histogram   first sight -> delivery, last 7 days
    stats_pending                                gauge     counts waiting in memory to be written
    town_*{town}                                 gauge     dispatch: backlog, lag, in flight, recent fetches
                                                           and deliveries (hub.fleet_metrics, issue 18)

The delays are distributions of a recent window (Prometheus' gauge histogram), not counters
since start: a restart loses nothing. A scrape's cost in Python does not grow with the town's
items or deliveries: the database counts the delays per bucket and everything else; only the
sources' health states are judged per source (hub.health's rules), from the few columns they
need (issue 18: a town of 55,000 sources). The metrics have their own registry, never the global
one, so two apps in one process (tests) never collide.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hub import fleet_metrics, health, stats
from hub.store.ledger import LedgerStore
from hub.store.stats import DelayHistogram, StatsStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WINDOW = timedelta(days=7)
DELAY_BUCKETS = (60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)


class HubCollector(Collector):
    def __init__(self, settings, store, town: str = "default") -> None:
        self.settings = settings
        self.store = store
        self.town = town  # the `town` label of the dispatch figures
        self.stats = StatsStore(store)
        self._configured: frozenset[str] | None = None

    def collect(self) -> Iterable:
        now = datetime.now(timezone.utc)
        yield self._sources(now)
        yield from self._fetches()
        records = GaugeMetricFamily("hub_records", "Records not removed, by status", labels=["status"])
        for status, n in sorted(self.stats.records_by_status().items()):
            records.add_metric([status], n)
        yield records
        yield from self._ledger(now)
        since = now - WINDOW
        yield _histogram("hub_ingest_delay_seconds", "Seconds from a post's publication to the hub's first sight "
                         "of it, items first seen in the last 7 days",
                         {(): self.stats.ingest_delay_histogram(since, DELAY_BUCKETS)})
        yield _histogram("hub_publish_delay_seconds", "Seconds from the hub's first sight of an item to its "
                         "delivery by a channel, deliveries of the last 7 days",
                         {(c,): h for c, h in self.stats.publish_delay_histograms(since, DELAY_BUCKETS).items()},
                         ["channel"])
        yield GaugeMetricFamily("hub_stats_pending", "Counted events of this process waiting in memory to be "
                                "written", value=stats.pending(self.store))
        yield from fleet_metrics.families(fleet_metrics.fleet_status({self.town: self.store}, now))

    def _sources(self, now: datetime) -> GaugeMetricFamily:
        family = GaugeMetricFamily("hub_sources", "Configured sources by health state", labels=["state"])
        if self._configured is None:  # the app's settings stay; 100,000 ids are worth keeping
            self._configured = frozenset(s.id for _, s in self.settings.sources())
        for state, n in health.state_counts(self._configured, self.store, now).items():
            family.add_metric([state], n)
        return family

    def _fetches(self) -> Iterable:
        fetches = CounterMetricFamily("hub_fetches", "Fetches of sources, by connector", labels=["connector"])
        failures = CounterMetricFamily("hub_fetch_failures", "Failed fetches of sources, by connector",
                                       labels=["connector"])
        for connector, (f, x) in sorted(self.stats.fetch_totals().items()):
            fetches.add_metric([connector], f)
            failures.add_metric([connector], x)
        return fetches, failures

    def _ledger(self, now: datetime) -> Iterable:
        rows = GaugeMetricFamily("hub_ledger_rows", "Rows of the delivery ledger, by channel and status",
                                 labels=["channel", "status"])
        for (channel, status), n in sorted(self.stats.ledger_by_status().items()):
            rows.add_metric([channel, status], n)
        backlog = GaugeMetricFamily("hub_ledger_backlog", "Deliveries a push channel has still to make",
                                    labels=["channel"])
        for channel, n in LedgerStore(self.store).backlogs().items():  # issue 16: the delivery ledger's open rows
            backlog.add_metric([channel], n)
        return rows, backlog


def _histogram(name: str, documentation: str, histograms: dict[tuple, DelayHistogram],
               labels: list[str] | None = None) -> GaugeHistogramMetricFamily:
    """Delays counted by the database (hub.store.stats), bucket by bucket of DELAY_BUCKETS."""
    family = GaugeHistogramMetricFamily(name, documentation, labels=labels)
    for label_values, histogram in sorted(histograms.items()):
        buckets = [(str(float(b)), n) for b, n in zip(DELAY_BUCKETS, histogram.buckets)]
        buckets.append(("+Inf", histogram.count))
        family.add_metric(list(label_values), buckets, histogram.seconds)
    return family


def registry(settings, store, town: str = "default") -> CollectorRegistry:
    """A registry of its own with the hub's collector (never prometheus_client's global one)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(HubCollector(settings, store, town))
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
