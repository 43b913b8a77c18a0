"""The towns registry (issue 18): which towns a deployment serves, in its own database.

`hub towns reload` records every town (id, host, config digest) and counts up a generation
number; running web processes read that number every ~2 s (one tiny query) and, when it
moved, pick up the towns that were added, changed or removed. The registry lives in the
deployment's database: on PostgreSQL in the `public` schema (beside procrastinate's tables,
apart from the towns' schemas), on SQLite in the deployment's own file.

Its two tables are created here, not by the towns' migrations: they belong to the
deployment, not to any one town.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import (Column, DateTime, Engine, Integer, MetaData, String, Table, create_engine, delete, insert,
                        select, update)

from hub.store import _make_engine, _resolve_sqlite_path

_META = MetaData()
TOWNS = Table("hub_towns", _META,
              Column("id", String, primary_key=True),
              Column("host", String, nullable=False),
              Column("digest", String, nullable=False),
              Column("config_path", String, nullable=False),
              Column("updated_at", DateTime(timezone=True), nullable=False))
GENERATION = Table("hub_towns_generation", _META,
                   Column("id", Integer, primary_key=True),  # always 1: one row
                   Column("generation", Integer, nullable=False))


@dataclass(frozen=True)
class RegisteredTown:
    id: str
    host: str
    digest: str
    config_path: str
    updated_at: datetime | None = None


@dataclass(frozen=True)
class RegistryChange:
    generation: int
    added: list[str]
    changed: list[str]
    removed: list[str]

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)


class TownRegistry:
    def __init__(self, url: str) -> None:
        url = _resolve_sqlite_path(url, None)
        # One connection is plenty: a web process asks once every two seconds.
        self.engine: Engine = _make_engine(url) if url.startswith("sqlite") else create_engine(
            url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1, max_overflow=2,
            pool_pre_ping=True)
        _META.create_all(self.engine, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    def generation(self) -> int:
        """The registry's generation (0 before the first reload): cheap, for polling."""
        with self.engine.connect() as conn:
            return conn.execute(select(GENERATION.c.generation).where(GENERATION.c.id == 1)).scalar() or 0

    def towns(self) -> dict[str, RegisteredTown]:
        with self.engine.connect() as conn:
            return {r.id: RegisteredTown(r.id, r.host, r.digest, r.config_path, r.updated_at)
                    for r in conn.execute(select(TOWNS).order_by(TOWNS.c.id))}

    def record(self, towns: list[RegisteredTown]) -> RegistryChange:
        """Make the registry list exactly `towns`; count the generation up if anything changed.
        One transaction: a web process sees the old set or the new one, never a mix."""
        now = datetime.now(timezone.utc)
        with self.engine.begin() as conn:
            row = conn.execute(select(GENERATION.c.generation).where(GENERATION.c.id == 1)
                               .with_for_update()).first()  # two reloads at once take turns (PostgreSQL)
            generation = row.generation if row else 0
            known = {r.id: r for r in conn.execute(select(TOWNS))}
            wanted = {t.id: t for t in towns}
            added = sorted(set(wanted) - set(known))
            removed = sorted(set(known) - set(wanted))
            changed = sorted(i for i in set(wanted) & set(known)
                             if (known[i].host, known[i].digest, known[i].config_path)
                             != (wanted[i].host, wanted[i].digest, wanted[i].config_path))
            if removed:
                conn.execute(delete(TOWNS).where(TOWNS.c.id.in_(removed)))
            for town_id in added:
                conn.execute(insert(TOWNS).values(**_row(wanted[town_id], now)))
            for town_id in changed:
                conn.execute(update(TOWNS).where(TOWNS.c.id == town_id).values(**_row(wanted[town_id], now)))
            if added or changed or removed:
                generation += 1
                if row is None:
                    conn.execute(insert(GENERATION).values(id=1, generation=generation))
                else:
                    conn.execute(update(GENERATION).where(GENERATION.c.id == 1).values(generation=generation))
        return RegistryChange(generation, added, changed, removed)


def _row(town: RegisteredTown, now: datetime) -> dict:
    return {"id": town.id, "host": town.host, "digest": town.digest, "config_path": town.config_path,
            "updated_at": now}
