"""The store's data version: a number that moves whenever a record residents may see changes.

A new record takes a new id; every change of a record (merged, edited, approved, hidden,
removed) writes a revision. So the newest record id and the newest revision id together are
such a number, whichever process committed them. Both are read by primary key (cheap on
SQLite and PostgreSQL) and used by the web's answer cache
(`hub.web.cache`). What time alone changes (an event starting, an offer expiring) does not
move it.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from hub.store.tables import RecordRevisionRow, RecordRow

_RECORDS, _REVISIONS = RecordRow.__table__, RecordRevisionRow.__table__


def data_version(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        row = conn.execute(select(select(func.max(_RECORDS.c.id)).scalar_subquery(),
                                  select(func.max(_REVISIONS.c.id)).scalar_subquery())).one()
    return row[0] or 0, row[1] or 0
