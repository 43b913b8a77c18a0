"""Claim throughput of the scaled tier's dispatch (issue 18), without fetching: N due sources
over H hosts in a fresh PostgreSQL database, claimed tick by tick (capacity per tick) until
all are taken, as the procrastinate dispatch tick does; every claimed batch is finished at
once (lease released), so hosts free up as they would with instant workers.

    .venv/bin/python tests/benchmarks/bench_claim.py [--sources 100000] [--hosts 5000] [--capacity 2000]

Prints claims per second, the time per tick and the database's size. Needs PostgreSQL at
HUB_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres)."""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psycopg  # noqa: E402
from sqlalchemy import insert, text, update  # noqa: E402

from hub.store import SOURCES, Store  # noqa: E402
from hub.store.dispatch import DispatchStore  # noqa: E402
from hub.store.holds import HOLDS  # noqa: E402
from schedules.dispatch import StoreClaimer, plan_fetch_jobs  # noqa: E402

ADMIN = os.environ.get("HUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=100_000)
    parser.add_argument("--hosts", type=int, default=5_000)
    parser.add_argument("--capacity", type=int, default=2_000)
    parser.add_argument("--per-host", type=int, default=2)
    args = parser.parse_args()
    name = f"hub_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        run(ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}", args)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(url: str, args) -> None:
    store = Store(url)
    now = datetime.now(timezone.utc)
    ids = [f"s{i:07d}" for i in range(args.sources)]
    started = time.perf_counter()
    with store.engine.begin() as conn:
        conn.execute(insert(SOURCES), [{"id": sid, "merchant_id": "m", "connector": "rss", "status": "ok",
                                        "error_count": 0, "next_fetch_at": now - timedelta(seconds=i % 600)}
                                       for i, sid in enumerate(ids)])
    with store.engine.begin() as conn:  # as `sync_sources` keeps them: a row per source, none held
        conn.execute(insert(HOLDS), [{"source_id": sid, "fingerprint": "f"} for sid in ids])
    DispatchStore(store).sync_hosts({sid: f"h{i % args.hosts}.example" for i, sid in enumerate(ids)})
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    print(f"{args.sources} sources over {args.hosts} hosts seeded in {time.perf_counter() - started:.1f} s")
    claimed, ticks, tick = 0, 0, 0.0
    clock = now
    while claimed < args.sources:
        towns = [StoreClaimer("t", DispatchStore(store), clock, f"tick{ticks}", clock + timedelta(minutes=5),
                              args.per_host, timedelta(0))]
        t0 = time.perf_counter()
        jobs = plan_fetch_jobs(towns, args.capacity, clock, start=ticks)
        tick += time.perf_counter() - t0
        got = [sid for job in jobs for sid in job.source_ids]
        if not got:
            break
        with store.engine.begin() as conn:  # instant workers: planned an hour later, lease released
            conn.execute(update(SOURCES).where(SOURCES.c.id.in_(got))
                         .values(lease_owner=None, lease_until=None, next_fetch_at=clock + timedelta(hours=1)))
        claimed += len(got)
        ticks += 1
    with store.engine.connect() as conn:
        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
    print(f"claimed {claimed} in {ticks} ticks: {claimed / tick:,.0f} sources/s claiming, "
          f"{tick / ticks * 1000:.0f} ms per tick of up to {args.capacity}; database {size / 2**20:.0f} MiB")
    store.close()


if __name__ == "__main__":
    main()
