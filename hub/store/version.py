"""The store's data version: a number that moves whenever a record residents may see changes.

Every write of records or revisions (ingest's placement, the project manager's actions) moves
it with `advance`, right before it writes its revisions, in the same transaction; the web's
answer cache (`hub.web.cache`) and the counts cache compare it. What time alone changes (an
event starting, an offer expiring) does not move it.

`advance` is also the town's turn on PostgreSQL: its row stays locked to COMMIT, so the
writers of a town write their revisions one at a time and revision ids commit in the order
they were taken. The change feed (`Records.changes(after=...)`) and the ledger's versions
rely on that; nothing relies on record ids committing in order, so the rest of a write
(records, origins, search rows, merges) runs side by side (hub.store.writelocks).
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection, Engine

from hub.store.tables import RecordRevisionRow

_REVISIONS = RecordRevisionRow.__table__
_ADVANCE = text("UPDATE data_version SET value = value + 1 WHERE id = 1")
# (the version, the newest revision id), read by primary key: cheap on SQLite and PostgreSQL.
VERSION = select(text("(SELECT value FROM data_version WHERE id = 1)"),
                 select(func.max(_REVISIONS.c.id)).scalar_subquery())


def advance(conn: Connection) -> None:
    """Move the data version; on PostgreSQL, take the town's turn until COMMIT."""
    conn.execute(_ADVANCE)


def data_version(engine: Engine) -> tuple[int, int]:
    """(the data version, the newest revision id: where the change feed stands)."""
    with engine.connect() as conn:
        row = conn.execute(VERSION).one()
    return row[0] or 0, row[1] or 0
