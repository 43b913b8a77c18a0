"""Driver-level bulk writes for the identity step's hot path.

SQLAlchemy's per-value bind processing costs more than SQLite itself for wide executemany
inserts (see ../shared/reference/ingest-performance.md), so the rows placed during ingest
are written as plain tuples, with datetimes encoded the way `UTCDateTime` stores them."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from operator import itemgetter
from typing import Any, Sequence

import orjson
from sqlalchemy import DateTime, Table
from sqlalchemy.engine import Connection

from hub.store.tables import UTCDateTime


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT every row (all with the same keys) in one driver-level executemany."""
    if not rows:
        return
    columns = list(rows[0])
    sql = (f"INSERT INTO {table.name} ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in columns)}) "
           f"VALUES ({placeholders(conn, len(columns))})")
    get = itemgetter(*columns) if len(columns) > 1 else (lambda row: (row[columns[0]],))
    dates = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, (DateTime, UTCDateTime))]
    if conn.dialect.name != "sqlite" or not dates:
        conn.exec_driver_sql(sql, [get(row) for row in rows])
        return
    values = []
    for row in rows:
        value = list(get(row))
        for i in dates:
            if value[i] is not None:
                value[i] = sqlite_datetime(value[i])
        values.append(tuple(value))
    conn.exec_driver_sql(sql, values)


def placeholders(conn: Connection, n: int) -> str:
    """`n` parameter marks for driver-level SQL: "?, ?" (SQLite) or "%s, %s" (psycopg)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * n)


def new_ids(conn: Connection, table: Table, n: int) -> list[int]:
    """`n` fresh primary keys for `table`, so rows can be inserted without RETURNING.
    PostgreSQL: from the table's sequence (safe under concurrency). SQLite: after the
    largest id, with the database's write lock taken first (a no-op UPDATE takes it), so no
    other writer can take the same ids before this transaction ends."""
    if n == 0:
        return []
    if conn.dialect.name == "postgresql":
        sql = f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) FROM generate_series(1, {n})"
        return list(conn.exec_driver_sql(sql).scalars())
    conn.exec_driver_sql(f"UPDATE {table.name} SET id = id WHERE 0")
    start = conn.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table.name}").scalar_one() + 1
    return list(range(start, start + n))


@lru_cache(maxsize=4096)  # a batch writes the same few moments (its fetch time) many times
def sqlite_datetime(value: datetime) -> str:
    """How SQLAlchemy's SQLite DATETIME stores a (UTC) datetime."""
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")


def to_json(value: Any) -> str:
    """Compact JSON text (UTF-8, not \\u-escaped) of lists and dicts of plain values, for
    the JSON columns written at ingest: orjson is several times faster than `json` here,
    where a few are written for every entry."""
    return orjson.dumps(value).decode()
