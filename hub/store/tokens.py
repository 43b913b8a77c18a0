"""The store's table of token checks (issue 12): what the platform said about each source's
access token when the hub last asked (`hub.tokens`), so that `hub sources` and `/healthz`
can warn before a token runs out or when it lacks a permission.

A row holds facts about the token (valid, expiry, scopes), never the token, and the
fingerprint of the options it was checked with: once the token in the config changes, the
old check no longer applies and is not shown (`Store.source_statuses` joins on the
fingerprint the store keeps for the current options, `source_holds.fingerprint`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Mapping, Optional

from sqlalchemy import Engine, Text, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Column, Field, SQLModel

from hub.models import TokenCheck
from hub.store.tables import UTCDateTime


class TokenCheckRow(SQLModel, table=True):
    __tablename__ = "token_checks"

    source_id: str = Field(primary_key=True)
    fingerprint: Optional[str] = None  # of the options the token was checked with
    checked_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    result: str = Field(sa_column=Column(Text, nullable=False))  # TokenCheck.as_json()


TOKEN_CHECKS = TokenCheckRow.__table__


class TokenChecks:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def save(self, checks: Mapping[str, tuple[str | None, TokenCheck]]) -> None:
        """source id -> (fingerprint of its options, check): the newest check replaces the last."""
        rows = [{"source_id": sid, "fingerprint": fp, "checked_at": check.checked_at,
                 "result": json.dumps(check.as_json(), ensure_ascii=False)} for sid, (fp, check) in checks.items()]
        if not rows:
            return
        insert = (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(TOKEN_CHECKS)
        upsert = insert.on_conflict_do_update(index_elements=["source_id"], set_={
            "fingerprint": insert.excluded.fingerprint, "checked_at": insert.excluded.checked_at,
            "result": insert.excluded.result})
        with self.engine.begin() as conn:
            conn.execute(upsert, rows)

    def checked(self) -> dict[str, tuple[str | None, datetime]]:
        """source id -> (fingerprint, when) of its last check."""
        with self.engine.connect() as conn:
            return {r.source_id: (r.fingerprint, r.checked_at)
                    for r in conn.execute(select(TOKEN_CHECKS.c.source_id, TOKEN_CHECKS.c.fingerprint,
                                                 TOKEN_CHECKS.c.checked_at))}


def check_from(result: str | None) -> TokenCheck | None:
    """A stored check (None for none, or for one this version cannot read)."""
    if not result:
        return None
    try:
        return TokenCheck.from_json(json.loads(result))
    except (ValueError, TypeError, KeyError):
        return None
