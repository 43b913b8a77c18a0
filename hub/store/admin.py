"""The store's side of the project manager's cockpit (issue 17, migration 0013).

- `admin_sessions`: a row per login. The cookie holds a random id; the table keeps only
  its SHA-256, so a copy of the database opens no session (and holds no cookie value).
- `admin_audit`: who did what, when: every action in the cockpit, kept and shown.
- `record_edits`: the project manager's title and image for a record. They stand over
  what the sources say, like an approval does, until the project manager changes them;
  `Records` applies them whenever it reads a record (`edits_of`).

The actions on records (approve, hide with a reason, edit, merge by hand) each write a
revision, as the store's own changes do: feeds see the change (SEQUENCE, ETag), renderers
see it in the change feed, and the pages' answer cache sees a new data version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Collection, Optional

from sqlalchemy import Text, and_, delete, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Column, Field, SQLModel

from hub.models import Item
from hub.store.placement import ORIGINS, RECORDS, SPLITS, Placement
from hub.store.tables import UTCDateTime
from hub.store.writelocks import write_transaction

# Statuses of records that wait for a person: `pending` (a merchant under review) and
# `held` (a rule that holds a record back rather than hiding it).
WAITING = ("pending", "held")


class AdminSessionRow(SQLModel, table=True):
    __tablename__ = "admin_sessions"

    id_hash: str = Field(primary_key=True)  # sha256 of the cookie's session id
    user_name: str
    role: str
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))


class AuditRow(SQLModel, table=True):
    __tablename__ = "admin_audit"

    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    user_name: str
    action: str
    target: Optional[str] = None
    detail: str = Field(sa_column=Column(Text, nullable=False))  # JSON


class RecordEditRow(SQLModel, table=True):
    __tablename__ = "record_edits"

    record_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    title: Optional[str] = Field(default=None, sa_column=Column(Text))
    image: Optional[str] = Field(default=None, sa_column=Column(Text))
    by: str
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


SESSIONS = AdminSessionRow.__table__
AUDIT = AuditRow.__table__
EDITS = RecordEditRow.__table__
SEEN_EVERY = timedelta(minutes=1)  # a session's last use is written at most this often


@dataclass(frozen=True)
class Session:
    user: str
    role: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    user: str
    action: str
    target: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class RecordEdit:
    """The project manager's title and image of a record (None: as the sources say)."""

    record_id: int
    title: str | None
    image: str | None
    by: str
    at: datetime

    def applied_to(self, item: Item) -> Item:
        """`item` with this title, and this image first (if the record still has it)."""
        changes: dict[str, Any] = {}
        if self.title:
            changes["title"] = self.title
        if self.image:
            chosen = [m for m in item.media if m.url == self.image]
            if chosen:
                changes["media"] = (*chosen, *(m for m in item.media if m.url != self.image))
        return replace(item, **changes) if changes else item


def edits_of(conn: Connection, record_ids: Collection[int]) -> dict[int, RecordEdit]:
    """record id -> its edit, for those of `record_ids` that have one (one lookup by key)."""
    if not record_ids:
        return {}
    rows = conn.execute(select(EDITS).where(EDITS.c.record_id.in_(list(record_ids)))).all()
    return {r.record_id: RecordEdit(r.record_id, r.title, r.image, r.by, r.at) for r in rows}


class AdminStore:
    """Sessions, the audit log and the project manager's actions on records."""

    def __init__(self, store) -> None:
        self.store = store
        self.engine = store.engine
        self.records = store.records

    # --- sessions -------------------------------------------------------------------------

    def open_session(self, id_hash: str, user: str, role: str, now: datetime, lifetime: timedelta) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(SESSIONS).where(SESSIONS.c.expires_at <= now))  # the expired ones go now
            conn.execute(SESSIONS.insert().values(id_hash=id_hash, user_name=user, role=role, created_at=now,
                                                  seen_at=now, expires_at=now + lifetime))

    def session(self, id_hash: str, now: datetime, idle: timedelta) -> Session | None:
        """The session, if it has not expired nor been idle for longer than `idle`."""
        with self.engine.connect() as conn:
            row = conn.execute(select(SESSIONS).where(SESSIONS.c.id_hash == id_hash)).first()
        if row is None or row.expires_at <= now or now - row.seen_at > idle:
            return None
        if now - row.seen_at >= SEEN_EVERY:
            with self.engine.begin() as conn:
                conn.execute(update(SESSIONS).where(SESSIONS.c.id_hash == id_hash).values(seen_at=now))
        return Session(row.user_name, row.role, row.created_at, row.expires_at)

    def close_session(self, id_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(SESSIONS).where(SESSIONS.c.id_hash == id_hash))

    # --- the audit log --------------------------------------------------------------------

    def log(self, user: str, action: str, target: str | None = None, *, at: datetime | None = None,
            **detail: Any) -> None:
        with self.engine.begin() as conn:
            self._log(conn, user, action, target, at or _now(), detail)

    def _log(self, conn: Connection, user: str, action: str, target: str | None, at: datetime,
             detail: dict[str, Any]) -> None:
        conn.execute(AUDIT.insert().values(at=at, user_name=user, action=action, target=target,
                                           detail=json.dumps(detail, ensure_ascii=False, default=str)))

    def audit(self, *, limit: int = 100, offset: int = 0, user: str | None = None,
              actions: Collection[str] | None = None, target: str | None = None) -> list[AuditEntry]:
        """The newest entries first."""
        query = select(AUDIT).order_by(AUDIT.c.id.desc()).limit(limit).offset(offset)
        if user:
            query = query.where(AUDIT.c.user_name == user)
        if actions:
            query = query.where(AUDIT.c.action.in_(list(actions)))
        if target:
            query = query.where(AUDIT.c.target == target)
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(query)]

    def count_audit(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(AUDIT)).scalar_one()

    def last_of(self, action: str, targets: Collection[str]) -> dict[str, AuditEntry]:
        """target -> the newest entry of `action` about it."""
        if not targets:
            return {}
        newest = (select(func.max(AUDIT.c.id)).where(AUDIT.c.action == action, AUDIT.c.target.in_(list(targets)))
                  .group_by(AUDIT.c.target))
        with self.engine.connect() as conn:
            return {r.target: _entry(r) for r in conn.execute(select(AUDIT).where(AUDIT.c.id.in_(newest)))}

    # --- the review queue -----------------------------------------------------------------

    def review_ids(self, *, limit: int = 20, offset: int = 0, now: datetime | None = None) -> tuple[list[int], int]:
        """Ids of the records that wait for a person, oldest first, and how many there are:
        waiting (`WAITING`) or hidden by a rule (a block word), neither removed nor expired."""
        now = now or _now()
        # Found by status alone (an index), the expired left out here: with either OR in SQL,
        # SQLite read every record of the store (~0.2 s at 300,000) for a queue of a few.
        waiting = and_(RECORDS.c.status.in_((*WAITING, "hidden")), RECORDS.c.removed_at.is_(None),
                       or_(RECORDS.c.status != "hidden", RECORDS.c.status_by == "rule"))
        with self.engine.connect() as conn:
            rows = conn.execute(select(RECORDS.c.id, RECORDS.c.expires_at).where(waiting)
                                .order_by(RECORDS.c.created_at, RECORDS.c.id)).all()
        ids = [r.id for r in rows if r.expires_at is None or r.expires_at > now]
        return ids[offset:offset + limit], len(ids)

    def edit_of(self, record_id: int) -> RecordEdit | None:
        with self.engine.connect() as conn:
            return edits_of(conn, [record_id]).get(record_id)

    # --- the project manager's actions ----------------------------------------------------

    def approve(self, record_id: int, user: str, now: datetime | None = None) -> bool:
        return self._set_status(record_id, "published", None, user, now or _now())

    def hide(self, record_id: int, reason: str, user: str, now: datetime | None = None) -> bool:
        """Hide a record from residents and every channel, keeping why (`reason`)."""
        return self._set_status(record_id, "hidden", reason, user, now or _now())

    def _set_status(self, record_id: int, status: str, reason: str | None, user: str, now: datetime) -> bool:
        with write_transaction(self.engine) as conn:
            old = conn.execute(select(RECORDS.c.status, RECORDS.c.status_reason).where(RECORDS.c.id == record_id)).first()
            if old is None:
                return False
            conn.execute(update(RECORDS).where(RECORDS.c.id == record_id).values(
                status=status, status_by="manager", status_reason=reason, changed_at=now))
            placement = self._placement(conn, now)
            placement.revision(record_id, "status", actor="manager", status=status, reason=reason)
            placement.write_revisions()
            self._log(conn, user, "approve" if status == "published" else "hide", str(record_id), now,
                      {"before": old.status, "held_because": old.status_reason, **({"reason": reason} if reason else {})})
        return True

    def edit(self, record_id: int, user: str, *, title: str | None = None, image: str | None = None,
             now: datetime | None = None) -> bool:
        """Set the record's title and image as the project manager wants them; an empty title
        or image gives it back to the sources. False if there is no such record."""
        now = now or _now()
        title, image = (title or "").strip() or None, (image or "").strip() or None
        with write_transaction(self.engine) as conn:
            if conn.execute(select(RECORDS.c.id).where(RECORDS.c.id == record_id)).first() is None:
                return False
            before = edits_of(conn, [record_id]).get(record_id)
            conn.execute(delete(EDITS).where(EDITS.c.record_id == record_id))
            if title or image:
                conn.execute(EDITS.insert().values(record_id=record_id, title=title, image=image, by=user, at=now))
            conn.execute(update(RECORDS).where(RECORDS.c.id == record_id).values(changed_at=now))
            changes = {k: [getattr(before, k, None), v] for k, v in (("title", title), ("image", image))
                       if getattr(before, k, None) != v}
            placement = self._placement(conn, now)
            placement.revision(record_id, "edited", actor="manager", changes=changes)
            placement.write_revisions()
            self._log(conn, user, "edit", str(record_id), now, {"changes": changes})
        return True

    def merge(self, keep: int, other: int, user: str, now: datetime | None = None) -> bool:
        """Merge record `other` into `keep` by hand: its origins join `keep` (which keeps its
        id and status) and `other` is removed. A split between their items is forgotten.
        False if either record does not exist, is removed, or they are the same."""
        now = now or _now()
        if keep == other:
            return False
        with write_transaction(self.engine) as conn:
            found = conn.execute(select(RECORDS.c.id).where(RECORDS.c.id.in_([keep, other]),
                                                            RECORDS.c.removed_at.is_(None))).scalars().all()
            if len(found) != 2:
                return False
            members = dict(conn.execute(select(ORIGINS.c.item_id, ORIGINS.c.record_id)
                                        .where(ORIGINS.c.record_id.in_([keep, other]))).all())
            moving = sorted(i for i, r in members.items() if r == other)
            staying = sorted(i for i, r in members.items() if r == keep)
            if not moving or not staying:
                return False
            conn.execute(update(ORIGINS).where(ORIGINS.c.record_id == other).values(
                record_id=keep, rule="manual", score=1.0, matched_item_id=staying[0], linked_at=now))
            conn.execute(delete(SPLITS).where(or_(and_(SPLITS.c.item_a.in_(moving), SPLITS.c.item_b.in_(staying)),
                                                  and_(SPLITS.c.item_a.in_(staying), SPLITS.c.item_b.in_(moving)))))
            conn.execute(delete(EDITS).where(EDITS.c.record_id == other))
            placement = self._placement(conn, now)
            for item_id in moving:
                placement.revision(keep, "merged", actor="manager", item_id=item_id, rule="manual",
                                   from_record=other)
            placement.revision(other, "moved", actor="manager", to_record=keep, items=moving)
            placement.refresh({keep, other})  # `other` has no origins left: it is removed
            placement.write_revisions()
            self._log(conn, user, "merge", str(keep), now, {"merged": other, "items": moving})
        return True

    def split(self, record_id: int, item_ids: list[int] | None, user: str) -> list[int]:
        """`Records.split`, in the audit log."""
        new = self.records.split(record_id, item_ids)
        if new:
            self.log(user, "split", str(record_id), new_records=new, items=item_ids or "all but the first")
        return new

    def _placement(self, conn: Connection, now: datetime) -> Placement:
        return Placement(conn, self.records.rules, now, self.records.read_item)


def _entry(r: Any) -> AuditEntry:
    return AuditEntry(r.id, r.at, r.user_name, r.action, r.target, json.loads(r.detail))


def _now() -> datetime:
    return datetime.now(timezone.utc)
