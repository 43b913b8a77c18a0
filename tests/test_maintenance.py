"""Housekeeping yields to writers: it never waits for SQLite's write lock, never raises for
a busy database, and does the rest when the database is quiet again."""

from __future__ import annotations

import sqlite3
import time

from hub.store import Store
from hub.store.scheduling import ScheduleStore


def test_housekeeping_yields_to_a_writer_and_finishes_once_the_writer_is_done(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    plans = ScheduleStore(store)
    writer = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # as an ingest batch does
        writer.execute("UPDATE sources SET next_fetch_at = NULL")
        started = time.monotonic()
        assert plans.housekeeping() is False  # postponed, not an error
        assert time.monotonic() - started < 2  # and it did not sit out the 30 s busy timeout
        writer.execute("COMMIT")
        assert plans.housekeeping() is True
        assert (tmp_path / "hub.db-wal").stat().st_size == 0  # folded back and truncated
    finally:
        writer.close()
        store.close()
