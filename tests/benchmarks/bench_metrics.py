"""How long `/metrics` takes for one big town (issue 18): the scaled tier's biggest town has
55,000 sources with about three items each; Prometheus gives a scrape 10 s by default.

    .venv/bin/python tests/benchmarks/bench_metrics.py [--sources 55000] [--items 3]
        [--days 14] [--backend postgresql|sqlite|both]

Each backend gets a fresh store (PostgreSQL: a database of its own at HUB_TEST_PG, default
postgres@127.0.0.1:5432, dropped at the end; SQLite: a temporary file), filled directly (bulk
executemany, not the ingest path): N sources of one merchant each, spread over hosts, with
their schedule and a fetch-day row per source and day of the last `--days` days; `--items`
items per source first seen within the last week (a third of them a source's first fetch:
the backfill `/metrics` leaves out), a record per item, a ledger of one channel with a sent
row for every tenth record and a few pending and failed ones; a few sources failing, one
held back, a few stale and new. Then it times the collector and Prometheus' rendering (what
`/metrics` answers, without HTTP): the first scrape (cold caches) and the median of 5.

To compare with older code, copy this file into a checkout of it (a `git worktree`) and run
it there: it imports the hub next to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from hub import config as config_mod  # noqa: E402
from hub import metrics  # noqa: E402
from hub.store import ITEMS, SOURCES, Store  # noqa: E402
from hub.store.holds import HOLDS  # noqa: E402
from hub.store.placement import RECORDS  # noqa: E402

ADMIN = os.environ.get("HUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CHUNK = 5000  # rows per executemany


def write_config(folder: Path, n: int) -> Path:
    """One merchant per source (as in bench_scale), one line each: written, not dumped."""
    lines = ["platform: {name: Messstadt, base_url: 'http://127.0.0.1:8000'}", "merchants:"]
    lines += [f"  - {{id: m{i}, name: Händler {i}, sources: [{{connector: rss, id: s{i}, "
              f"url: 'http://h{i % 2000}.bench/f/s{i}.xml'}}]}}" for i in range(n)]
    path = folder / "town.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def source_row(i: int, now: datetime) -> dict:
    """Mostly healthy sources fetched every 15 minutes; every 5,000th failing (a 404), every
    2,000th stale, every 10,000th new."""
    row = {"id": f"s{i}", "merchant_id": f"m{i}", "connector": "rss", "status": "ok", "error_count": 0,
           "last_fetch_at": now - timedelta(seconds=i % 900), "last_ok_at": now - timedelta(seconds=i % 900),
           "next_fetch_at": now + timedelta(seconds=900 - i % 900) - timedelta(seconds=60 if i % 7 == 0 else 0),
           "interval_seconds": 900, "interval_reason": "bench", "warnings": None,
           "last_error": None, "last_error_code": None}
    if i % 5000 == 1:
        row.update(status="failing", error_count=3, last_error="HTTP 404 from the server", last_error_code="http_404")
    elif i % 2000 == 2:
        row.update(last_ok_at=now - timedelta(days=3))
    elif i % 10000 == 3:
        row.update(status="new", last_ok_at=None, last_fetch_at=None)
    return row


def item_rows(i: int, items: int, now: datetime) -> list[dict]:
    """Items first seen within the week, published a varied while before (sources whose
    number is divisible by 3 were first fetched the day their items were seen: backfill)."""
    rows = []
    for k in range(items):
        seen = now - timedelta(hours=(i * 7 + k * 13) % 160, seconds=k)
        published = seen - timedelta(seconds=(i * 37 + k * 1013) % 200000)
        rows.append({"source_id": f"s{i}", "external_id": f"e{k}", "merchant_id": f"m{i}", "title": f"Eintrag {k}",
                     "summary": "", "content_html": "", "content_text": "", "media": "[]", "tags": "[]",
                     "content_hash": f"h{i}-{k}", "published": published, "sort_at": published,
                     "first_seen_at": seen, "changed_at": seen})
    return rows


def record_row(i: int, k: int, now: datetime) -> dict:
    at = now - timedelta(hours=(i * 7 + k * 13) % 160)
    return {"kind": "post", "merchant_id": f"m{i}", "status": ("published", "pending", "hidden")[(i + k) % 3],
            "status_by": "hub", "sort_at": at, "sort_day": at.date().isoformat(), "snapshot": "{}",
            "created_at": at, "changed_at": at}


def in_chunks(conn, statement, rows) -> None:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == CHUNK:
            conn.execute(statement, batch)
            batch = []
    if batch:
        conn.execute(statement, batch)


def fill(store: Store, n: int, items: int, days: int, now: datetime) -> None:
    with store.engine.begin() as conn:
        in_chunks(conn, insert(SOURCES), (source_row(i, now) for i in range(n)))
        in_chunks(conn, insert(HOLDS), ({"source_id": f"s{i}", "fingerprint": "f",
                                         "hold": "token_invalid" if i == 4 else None} for i in range(n)))
        # `host` is no column of the store's table class (hub.store.dispatch has its own view)
        conn.execute(text("UPDATE sources SET host = 'h' || (CAST(substr(id, 2) AS INTEGER) % 2000) || '.bench'"))
        conn.execute(text("INSERT INTO dispatch_hosts (host) SELECT DISTINCT host FROM sources"))
        in_chunks(conn, insert(ITEMS), (r for i in range(n) for r in item_rows(i, items, now)))
        # Fetch days: every source every day of the last `days` days, but those numbered
        # 0 mod 3 only since their items' first day (so those items are a first fetch).
        today = now.date()
        in_chunks(conn, text("INSERT INTO source_fetch_days (day, source_id, fetches, failures) "
                             "VALUES (:day, :source_id, 96, 0)"),
                  ({"day": (today - timedelta(days=d)).isoformat(), "source_id": f"s{i}"}
                   for i in range(n) for d in range(days if i % 3 else 0, -1, -1)))
        in_chunks(conn, insert(RECORDS), (record_row(i, k, now) for i in range(n) for k in range(items)))
        ids = conn.execute(text("SELECT min(id), max(id) FROM records")).one()
        ledger = text("INSERT INTO ledger (channel_id, record_id, version, op, status, attempts, created_at, "
                      "sent_at, last_try_at) VALUES ('archiv', :r, 1, 'publish', :status, 1, :created, :sent, :sent)")
        in_chunks(conn, ledger, ({"r": r, "status": "sent" if r % 50 else "pending",
                                  "created": now - timedelta(hours=r % 150, seconds=r % 3600),
                                  "sent": now - timedelta(hours=r % 150) if r % 50 else None}
                                 for r in range(ids[0], ids[1] + 1, 10)))
    if store.dialect == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def scrape(settings, store) -> tuple[float, int]:
    started = time.perf_counter()
    body = metrics.render(metrics.registry(settings, store, "bench"))
    return time.perf_counter() - started, len(body)


def measure(name: str, url: str, settings, n: int, items: int, days: int) -> None:
    store = Store(url)
    try:
        started = time.perf_counter()
        fill(store, n, items, days, datetime.now(timezone.utc))
        print(f"{name}: filled {n} sources, {n * items} items in {time.perf_counter() - started:.1f} s", flush=True)
        first, size = scrape(settings, store)
        times = [scrape(settings, store)[0] for _ in range(5)]
        print(f"{name}: /metrics {size} bytes: first {first * 1000:.0f} ms, median of 5 "
              f"{statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})",
              flush=True)
    finally:
        store.close()


def pg_database():
    name = f"hub_bench_metrics_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return name, f"{base}/{name}"


def drop_pg(name: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=55_000)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--days", type=int, default=14, help="fetch-day rows per source")
    parser.add_argument("--backend", choices=("postgresql", "sqlite", "both"), default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        settings = config_mod.load(write_config(Path(folder), args.sources), env={})
        print(f"config of {len(settings.sources())} sources read in {time.perf_counter() - started:.1f} s", flush=True)
        if args.backend in ("postgresql", "both"):
            name, url = pg_database()
            try:
                measure("postgresql", url, settings, args.sources, args.items, args.days)
            finally:
                drop_pg(name)
        if args.backend in ("sqlite", "both"):
            measure("sqlite", f"sqlite:///{folder}/hub.db", settings, args.sources, args.items, args.days)


if __name__ == "__main__":
    main()
