"""datetimes written with their UTC offset become plain UTC, as everywhere else

Before this, identity placement wrote record and origin rows past SQLAlchemy's type, so
SQLite got datetimes as "2026-12-05 16:00:00+01:00" (an event's local time with its offset)
where the rest of the store keeps "2026-12-05 15:00:00.000000" (UTC, no offset). Reading
dropped the offset, and comparisons of the two forms as text were off. PostgreSQL stored
them correctly, so it has nothing to do.

Revision ID: 0004
Revises: 0003
"""
from datetime import datetime, timezone

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

COLUMNS = {
    "records": ("sort_at", "event_start", "expires_at", "created_at", "changed_at", "removed_at"),
    "record_origins": ("at", "event_start", "linked_at"),
}


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            rows = conn.exec_driver_sql(
                f"SELECT rowid, {column} FROM {table} WHERE {column} LIKE '%+__:__' OR {column} LIKE '%-__:__'").all()
            if rows:
                conn.exec_driver_sql(f"UPDATE {table} SET {column} = ? WHERE rowid = ?",
                                     [(_utc(value), rowid) for rowid, value in rows])


def _utc(value: str) -> str:
    moment = datetime.fromisoformat(value).astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(" ", "microseconds")


def downgrade() -> None:
    pass
