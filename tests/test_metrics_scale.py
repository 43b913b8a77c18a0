"""`/metrics` at scale (issue 18): the delay histograms are counted by the database and the
sources' health states read without building each source's report, and they say exactly
what the Python computations before them said (kept here as the reference), on SQLite and
PostgreSQL: delays on a bucket's bound and a microsecond beyond it, negative ones, items of
a source's first fetch (left out), of sources never counted, deliveries of the ledger and of
the old per-item `deliveries`."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import func, insert, select

from hub import health
from hub.metrics import DELAY_BUCKETS, WINDOW, _histogram
from hub.models import TokenCheck
from hub.store import ITEMS, SOURCES
from hub.store import stats as stats_mod
from hub.store.holds import HOLDS
from hub.store.ledger import LEDGER
from hub.store.stats import DELIVERIES, FETCH_DAYS, StatsStore, _utc
from hub.store.tokens import TokenChecks

# Delays (seconds) on and around every bound, fractions, zero, negative (published after
# the hub saw it: counts as 0) and beyond the last bound.
DELAYS = [0, -30, 0.000001, 59.999999, 60, 60.000001, 299.5, 300, 300.000001, 899.999999, 900, 3600, 3600.25,
          4 * 3600, 12 * 3600 + 0.5, 86400, 86400.000001, 3 * 86400, 7 * 86400, 7 * 86400 + 1, 30 * 86400]


# --- the computations before issue 18's scale work: every delay loaded into Python ------------

def old_ingest_delays(stats: StatsStore, since: datetime) -> list[float]:
    first = first_fetch_days(stats)
    query = (select(ITEMS.c.source_id, ITEMS.c.published, ITEMS.c.first_seen_at)
             .where(ITEMS.c.first_seen_at >= since, ITEMS.c.published.is_not(None)))
    with stats.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [max(0.0, (r.first_seen_at - r.published).total_seconds()) for r in rows
            if not _backfill(r.first_seen_at, first.get(r.source_id))]


def first_fetch_days(stats: StatsStore) -> dict[str, date]:
    with stats.engine.connect() as conn:
        return {sid: date.fromisoformat(day) for sid, day in conn.execute(
            select(FETCH_DAYS.c.source_id, func.min(FETCH_DAYS.c.day)).group_by(FETCH_DAYS.c.source_id))}


def _backfill(first_seen: datetime, first_fetch_day: date | None) -> bool:
    """Seen on (or before) the day of its source's first fetch: posted before the hub knew it."""
    return first_fetch_day is not None and first_seen.astimezone(timezone.utc).date() <= first_fetch_day


def old_publish_delays(stats: StatsStore, since: datetime) -> dict[str, list[float]]:
    ledger = stats._ledger()
    if ledger is not None:
        query = (select(ledger.c.channel_id, ledger.c.sent_at, ledger.c.created_at.label("first_seen_at"))
                 .where(ledger.c.status == "sent", ledger.c.sent_at >= since))
    else:
        query = (select(DELIVERIES.c.channel_id, DELIVERIES.c.sent_at, ITEMS.c.first_seen_at)
                 .join(ITEMS, ITEMS.c.id == DELIVERIES.c.item_id)
                 .where(DELIVERIES.c.status == "sent", DELIVERIES.c.sent_at >= since))
    found: dict[str, list[float]] = defaultdict(list)
    with stats.engine.connect() as conn:
        for r in conn.execute(query):
            found[r.channel_id].append(max(0.0, (_utc(r.sent_at) - _utc(r.first_seen_at)).total_seconds()))
    return dict(found)


def old_buckets(seconds: list[float]) -> tuple[list[int], int, float]:
    return [sum(1 for s in seconds if s <= b) for b in DELAY_BUCKETS], len(seconds), sum(seconds)


def same(histogram, seconds: list[float]) -> None:
    buckets, count, total = old_buckets(seconds)
    assert (list(histogram.buckets), histogram.count) == (buckets, count)
    # The old sum added floats in whatever order the rows came; the new one is exact.
    assert histogram.seconds == pytest.approx(total, rel=1e-12, abs=1e-9)


# --- a town with varied delays --------------------------------------------------------------

def fill_items(store, now: datetime) -> None:
    """Sources `fresh` (fetched days before its items were seen), `first` (its items are its
    first fetch's: backfill), `uncounted` (no fetch days at all) and `seen-later` (first fetched
    on the day of its odd items, the day before its even ones); items with every delay of
    DELAYS, seen around noon (UTC) two or three days ago, a few outside the window or without
    a publication date."""
    today = now.date()
    noon = datetime.combine(today, time(12), timezone.utc)
    days = {"fresh": [today - timedelta(days=20), today], "first": [today - timedelta(days=2)],
            "seen-later": [today - timedelta(days=3)], "uncounted": []}
    items, fetch_days = [], []
    for n, (source, fetched) in enumerate(days.items()):
        fetch_days += [{"day": d.isoformat(), "source_id": source, "fetches": 1, "failures": 0} for d in fetched]
        for k, delay in enumerate(DELAYS):
            seen = noon - timedelta(days=2 + k % 2, minutes=k, microseconds=n * 7 + k)
            items.append(item(source, f"e{k}", seen - timedelta(seconds=delay), seen))
        items.append(item(source, "undated", None, now - timedelta(hours=1)))
        items.append(item(source, "old", now - timedelta(days=9), now - WINDOW - timedelta(seconds=1)))
    # on the window's edge: first seen exactly at `since` counts
    items.append(item("fresh", "edge", now - WINDOW - timedelta(seconds=300), now - WINDOW))
    with store.engine.begin() as conn:
        conn.execute(insert(SOURCES), [{"id": s, "merchant_id": "m", "connector": "rss", "status": "ok",
                                        "error_count": 0} for s in days])
        conn.execute(insert(FETCH_DAYS), fetch_days)
        conn.execute(insert(ITEMS), items)


def item(source: str, key: str, published: datetime | None, seen: datetime) -> dict:
    return {"source_id": source, "external_id": key, "merchant_id": "m", "title": key, "summary": "",
            "content_html": "", "content_text": "", "media": "[]", "tags": "[]", "content_hash": key,
            "published": published, "sort_at": published or seen, "first_seen_at": seen, "changed_at": seen}


def fill_deliveries(store, now: datetime) -> None:
    """Sent, failed and pending rows of two channels in the ledger, and the same delays in the
    old per-item `deliveries`."""
    with store.engine.connect() as conn:
        item_ids = [r.id for r in conn.execute(select(ITEMS.c.id, ITEMS.c.first_seen_at).order_by(ITEMS.c.id))]
        seen = dict(conn.execute(select(ITEMS.c.id, ITEMS.c.first_seen_at)).all())
    ledger, deliveries = [], []
    for k, delay in enumerate(DELAYS):
        for channel in ("archiv", "hook"):
            created = now - timedelta(days=1, minutes=k, microseconds=k)
            status = "sent" if k % 5 or channel == "archiv" else "failed"
            ledger.append({"channel_id": channel, "record_id": k, "version": 1, "op": "publish", "status": status,
                           "attempts": 1, "created_at": created,
                           "sent_at": created + timedelta(seconds=delay) if status == "sent" else None})
            i = item_ids[k] if channel == "archiv" else item_ids[-1 - k]
            deliveries.append({"channel_id": channel, "item_id": i, "status": status, "attempts": 1,
                               "created_at": seen[i], "sent_at": seen[i] + timedelta(seconds=delay)})
    ledger.append({"channel_id": "archiv", "record_id": 999, "version": 1, "op": "publish", "status": "sent",
                   "attempts": 1, "created_at": now - timedelta(days=9),
                   "sent_at": now - WINDOW - timedelta(seconds=1)})
    ledger.append({"channel_id": "archiv", "record_id": 998, "version": 1, "op": "publish", "status": "pending",
                   "attempts": 0, "created_at": now - timedelta(hours=1), "sent_at": None})
    with store.engine.begin() as conn:
        conn.execute(insert(LEDGER), ledger)
        conn.execute(insert(DELIVERIES), deliveries)


def test_ingest_delays_are_counted_as_before(store):
    now = datetime.now(timezone.utc)
    fill_items(store, now)
    stats = StatsStore(store)
    since = now - WINDOW
    seconds = old_ingest_delays(stats, since)
    # none of `first`'s items (its first fetch), the even ones of `seen-later`, and `edge`
    assert len(seconds) == 2 * len(DELAYS) + (len(DELAYS) + 1) // 2 + 1
    same(stats.ingest_delay_histogram(since, DELAY_BUCKETS), seconds)


def test_an_empty_window_has_zero_counts(store):
    now = datetime.now(timezone.utc)
    histogram = StatsStore(store).ingest_delay_histogram(now - WINDOW, DELAY_BUCKETS)
    assert (histogram.buckets, histogram.count, histogram.seconds) == ((0,) * len(DELAY_BUCKETS), 0, 0.0)
    assert StatsStore(store).publish_delay_histograms(now - WINDOW, DELAY_BUCKETS) == {}


@pytest.mark.parametrize("ledger", [True, False], ids=["ledger", "deliveries"])
def test_publish_delays_are_counted_as_before(store, ledger):
    now = datetime.now(timezone.utc)
    fill_items(store, now)
    fill_deliveries(store, now)
    stats = StatsStore(store)
    if not ledger:  # a database from before the ledger of issue 16: the per-item deliveries
        stats._ledger()
        stats_mod._LEDGERS[store.engine] = None
    try:
        since = now - WINDOW
        old = old_publish_delays(stats, since)
        new = stats.publish_delay_histograms(since, DELAY_BUCKETS)
    finally:
        stats_mod._LEDGERS.pop(store.engine, None)
    assert sorted(new) == sorted(old) == ["archiv", "hook"]
    for channel in old:
        same(new[channel], old[channel])


def test_the_metric_family_reads_as_before(store):
    """The rendered histogram: the same buckets, labels and count as the old `_histogram`'s."""
    now = datetime.now(timezone.utc)
    fill_items(store, now)
    fill_deliveries(store, now)
    stats = StatsStore(store)
    family = _histogram("hub_publish_delay_seconds", "doc", {(c,): h for c, h in stats.publish_delay_histograms(
        now - WINDOW, DELAY_BUCKETS).items()}, ["channel"])
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
    for channel, seconds in old_publish_delays(stats, now - WINDOW).items():
        buckets, count, total = old_buckets(seconds)
        for bound, n in zip(DELAY_BUCKETS, buckets):
            assert found[("hub_publish_delay_seconds_bucket", (("channel", channel), ("le", str(float(bound)))))] == n
        assert found[("hub_publish_delay_seconds_bucket", (("channel", channel), ("le", "+Inf")))] == count
        assert found[("hub_publish_delay_seconds_gcount", (("channel", channel),))] == count
        assert found[("hub_publish_delay_seconds_gsum", (("channel", channel),))] == pytest.approx(total, rel=1e-12)


# --- sources by health state ----------------------------------------------------------------

def test_states_are_counted_as_the_report_counts_them(store):
    """Every state, from the same rules: errors by code and by message, a held source, a
    warning of nothing found, token checks (current and of old options), stale by interval,
    never fetched, pushing; a source no longer configured is not counted."""
    now = datetime.now(timezone.utc)
    ok = {"status": "ok", "last_ok_at": now - timedelta(minutes=5), "last_fetch_at": now - timedelta(minutes=5)}
    failing = {"status": "failing", "error_count": 3, "last_fetch_at": now - timedelta(hours=1)}
    sources = {
        "ok": ok, "ok-2": {**ok, "interval_seconds": 3600},
        "stale": {**ok, "last_ok_at": now - timedelta(days=2), "interval_seconds": 3600},
        "stale-by-interval": {**ok, "last_ok_at": now - timedelta(days=4), "interval_seconds": 86400},
        "fresh-long-interval": {**ok, "last_ok_at": now - timedelta(days=2), "interval_seconds": 86400},
        "new": {}, "pushing": {**ok, "push_state": "live"},
        "http-404": {**failing, "last_error": "HTTP 404 from https://x.example/feed"},
        "robots": {**failing, "last_error": "robots.txt of x.example disallows /feed"},
        "robots-code": {**failing, "last_error": "no", "last_error_code": "robots_blocked"},
        "selectors": {**failing, "last_error": "selectors matched nothing on the page"},
        "nothing-found": {**ok, "warnings": json.dumps(["selectors matched nothing on https://x.example"])},
        "other-warning": {**ok, "warnings": json.dumps(["entry id 7 appears twice"])},
        "token-invalid": {**failing, "last_error": "Facebook-Zugang ungültig", "last_error_code": "token_invalid"},
        "held": {**failing, "last_error": "Bitte neu verbinden", "last_error_code": "needs_person"},
        "held-ok": {**ok, "last_ok_at": now - timedelta(days=2), "interval_seconds": 600},  # held: no interval
        "token-expiring": ok, "token-bad": ok, "token-old-options": ok,
        "unconfigured": failing,
    }
    with store.engine.begin() as conn:
        for sid, row in sources.items():  # each with its own columns
            conn.execute(insert(SOURCES).values({"id": sid, "merchant_id": "m", "connector": "rss",
                                                 "status": "new", "error_count": 0, **row}))
        conn.execute(insert(HOLDS), [{"source_id": sid, "fingerprint": "f1",
                                      "hold": "needs_person" if sid.startswith("held") else None,
                                      "held_at": now if sid.startswith("held") else None} for sid in sources])
    checked = now - timedelta(hours=1)
    TokenChecks(store.engine).save({
        "token-expiring": ("f1", TokenCheck(checked, True, expires_at=now + timedelta(days=3))),
        "token-bad": ("f1", TokenCheck(checked, False)),
        "token-old-options": ("f0", TokenCheck(checked, False)),  # made with other options: no longer counts
    })
    configured = [(SimpleNamespace(id="m", name="Händler"), SimpleNamespace(id=sid)) for sid in sources
                  if sid != "unconfigured"]
    settings = SimpleNamespace(sources=lambda: configured)

    expected = health.counts(health.report(settings, store, now))
    assert health.state_counts({s.id for _, s in configured}, store, now) == expected
    assert expected == {"reconnect": 3, "robots": 2, "failing": 1, "selectors": 2, "token": 1, "stale": 2,
                        "new": 1, "pushing": 1, "ok": 6}


def test_a_month_s_posts_and_their_delays_are_counted_as_before(store):
    """The cockpit's participants page reads a month's items per merchant and connector, and
    each one's delay from publication to first sight (not those of a source's first fetch):
    counted and computed by the database, exactly as Python did from every item's times."""
    now = datetime.now(timezone.utc)
    fill_items(store, now)
    stats = StatsStore(store)
    start, end = now - timedelta(days=40), now  # by sort_at: all of them
    first = first_fetch_days(stats)
    with stats.engine.connect() as conn:
        rows = conn.execute(select(ITEMS.c.merchant_id, ITEMS.c.source_id, SOURCES.c.connector, ITEMS.c.published,
                                   ITEMS.c.first_seen_at).join(SOURCES, SOURCES.c.id == ITEMS.c.source_id)
                            .where(ITEMS.c.sort_at >= start, ITEMS.c.sort_at < end)).all()
    counts = defaultdict(int)
    delays = defaultdict(list)
    for r in rows:
        counts[(r.merchant_id, r.connector)] += 1
        if r.published is not None and not _backfill(r.first_seen_at, first.get(r.source_id)):
            delays[r.merchant_id].append(max(timedelta(0), r.first_seen_at - r.published) // timedelta(microseconds=1))

    assert {(m, c): n for m, c, n in stats.posted_counts(start, end)} == counts
    assert len(rows) == 4 * (len(DELAYS) + 2) + 1  # the undated ones counted too
    found = stats.posting_delays(start, end)
    assert {m: sorted(d) for m, d in found.items()} == {m: sorted(d) for m, d in delays.items()}
    # `fresh`'s, `uncounted`'s and the even ones of `seen-later`, with `old` and `edge` where not backfill
    assert len(found["m"]) == 2 * (len(DELAYS) + 1) + 1 + (len(DELAYS) + 1) // 2


def test_a_month_s_record_fields_are_counted_as_before(store):
    """Completeness (the participants page) counts, per merchant and kind, the records of a
    month that have an image, a date, a place, a price: read from the snapshots' JSON by the
    database, as Python read them (a field is had when one of its keys holds a value)."""
    from hub.activity import _FIELD_KEYS
    from hub.store.placement import RECORDS

    now = datetime.now(timezone.utc)
    values = [{}, {"image": "https://x.example/a.jpg"}, {"event_start": "2026-12-24T18:00:00+00:00"},
              {"offer_valid_until": "2026-12-31"}, {"event_location": "Stadthalle", "offer_price": "6,90"},
              {"offer_price": ""}, {"image": "", "event_location": 'Kirche "St. Marien" 🎄'}]
    rows = []
    for n in range(60):
        snapshot = {"kind": ("post", "event", "offer")[n % 3], **values[n % len(values)]}
        rows.append({"kind": snapshot["kind"], "merchant_id": f"m{n % 4}", "status": "published", "status_by": "hub",
                     "snapshot": json.dumps(snapshot, ensure_ascii=False), "sort_at": now - timedelta(hours=n),
                     "created_at": now, "changed_at": now, "removed_at": now if n % 11 == 0 else None})
    with store.engine.begin() as conn:
        conn.execute(insert(RECORDS), rows)
    start, end = now - timedelta(hours=50), now + timedelta(hours=1)

    expected: dict = {}
    for r in rows:
        if r["removed_at"] is None and start <= r["sort_at"] < end:
            n, have = expected.get((r["merchant_id"], r["kind"]), (0, dict.fromkeys(_FIELD_KEYS, 0)))
            snapshot = json.loads(r["snapshot"])
            expected[(r["merchant_id"], r["kind"])] = (n + 1, {name: have[name] + any(snapshot.get(k) for k in keys)
                                                              for name, keys in _FIELD_KEYS.items()})
    assert StatsStore(store).record_fields(start, end, _FIELD_KEYS) == expected
    assert sum(n for n, _ in expected.values()) == 51 - 5  # 51 in the window, 5 of them removed
