"""The newsletter's side of the store: subscriptions, editions and the per-recipient ledger.

"Never twice, never skipped" rests on three things here:

- An edition is unique per (channel, slot): whoever creates it first wins, the others find it.
  Its recipients are written with it, in the same transaction: one ledger row per confirmed
  subscriber, unique on (edition, subscriber).
- One process at a time sends an edition: it holds the edition's lease, taken by a
  compare-and-set UPDATE (the write lock on SQLite, a row lock on PostgreSQL, where the WHERE
  clause is checked again once the lock is held) and renewed while it sends. A process that
  loses it stops.
- A ledger row goes pending -> sending (claimed in a batch) -> sent only once the SMTP server
  accepted the mail. A holder that died leaves rows in `sending`; whoever takes the lease next
  sends those again: those few are the only possible duplicates (same Message-ID).
"""

from __future__ import annotations

import json
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator, Sequence

from sqlalchemy import and_, bindparam, delete, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from hub.newsletter.tables import DELIVERIES, EDITIONS, KEYS, SUBSCRIBERS
from hub.newsletter.tokens import Signer
from hub.store import Store
from hub.store.scheduling import CHANNELS
from hub.store.writelocks import write_transaction

BOUNCES_TO_DISABLE = 3  # permanent rejections in a row, then the address gets no more mail
MAX_ATTEMPTS = 5  # a temporarily rejected mail is tried this often, then given up
OPEN = ("pending", "sending", "deferred")  # ledger states that still need work


@dataclass(frozen=True)
class Preferences:
    """What a subscriber wants; an empty tuple means "all of them"."""

    categories: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    merchants: tuple[str, ...] = ()

    def to_row(self) -> dict[str, str]:
        return {k: json.dumps(sorted(set(getattr(self, k))), ensure_ascii=False)
                for k in ("categories", "kinds", "merchants")}


@dataclass(frozen=True)
class Subscriber:
    id: int
    channel_id: str
    email: str
    status: str  # pending | confirmed | disabled
    preferences: Preferences
    nonce: str
    form_version: str
    created_at: datetime
    confirmed_at: datetime | None = None
    confirm_sent_at: datetime | None = None
    bounces: int = 0


@dataclass(frozen=True)
class SignUp:
    """What the form did: `state` is "new" (a pending row made), "pending" (it was already
    waiting for confirmation: preferences updated) or "confirmed" (nothing changed: an
    address cannot change someone else's preferences by typing it in)."""

    subscriber: Subscriber
    state: str


@dataclass(frozen=True)
class Edition:
    id: int
    channel_id: str
    slot: datetime
    created_at: datetime
    since: datetime
    subject: str
    new: tuple[int, ...]
    upcoming: tuple[int, ...]
    revision: int | None  # the newest record revision when it was made
    status: str
    recipients: int
    failures: int = 0
    last_error: str | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Recipient:
    """A claimed ledger row with what sending to it needs."""

    delivery_id: int
    subscriber_id: int
    attempts: int  # including this one
    subscriber: Subscriber | None  # None: erased or unsubscribed since the edition was made


@dataclass(frozen=True)
class Mark:
    """The outcome of one delivery: sent | skipped | deferred | failed. `permanent`: the
    server rejected the address for good (5xx), which counts towards disabling it."""

    delivery_id: int
    subscriber_id: int
    status: str
    detail: str | None = None
    next_try_at: datetime | None = None
    permanent: bool = False


@dataclass
class Progress:
    """How far an edition got: ledger rows by state."""

    counts: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, status: str) -> int:
        return self.counts.get(status, 0)

    @property
    def open(self) -> int:
        return sum(self[s] for s in OPEN)


class NewsletterStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        self._signer: Signer | None = None

    # --- the signing key --------------------------------------------------------------------

    def signer(self) -> Signer:
        """The installation's link signer; the key is made on first use and kept in the
        database, so every process (and every host of a scaled setup) agrees on it."""
        if self._signer is None:
            with write_transaction(self.engine) as conn:
                conn.execute(_insert(conn, KEYS).values(id="links", secret=secrets.token_hex(32))
                             .on_conflict_do_nothing(index_elements=["id"]))
                secret = conn.execute(select(KEYS.c.secret).where(KEYS.c.id == "links")).scalar_one()
            self._signer = Signer(bytes.fromhex(secret))
        return self._signer

    # --- subscriptions ----------------------------------------------------------------------

    def sign_up(self, channel_id: str, email: str, wanted: Preferences, form_version: str, now: datetime) -> SignUp:
        """Record a sent form: a new pending subscription, or the preferences (and the time
        and wording of the form: the one its confirmation will answer) of one still pending;
        a confirmed one is left as it is. A disabled address (mail to it bounced) starts over
        as pending: it must confirm again."""
        key = email_key(email)
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(SUBSCRIBERS).where(SUBSCRIBERS.c.channel_id == channel_id,
                                                         SUBSCRIBERS.c.email_key == key)).first()
            if row is not None and row.status == "confirmed":
                return SignUp(_subscriber(row), "confirmed")
            values = {**wanted.to_row(), "email": email, "form_version": form_version, "created_at": now,
                      "updated_at": now}
            if row is None:
                values.update(channel_id=channel_id, email_key=key, status="pending", nonce=secrets.token_urlsafe(6),
                              bounces=0)
                conn.execute(_insert(conn, SUBSCRIBERS).values(values)
                             .on_conflict_do_nothing(index_elements=["channel_id", "email_key"]))
                state = "new"
            else:
                if row.status == "disabled":  # a fresh start: a new consent, new links
                    values.update(status="pending", nonce=secrets.token_urlsafe(6), bounces=0, disabled_at=None,
                                  confirmed_at=None)
                conn.execute(update(SUBSCRIBERS).where(SUBSCRIBERS.c.id == row.id).values(values))
                state = "pending" if row.status == "pending" else "new"
            row = conn.execute(select(SUBSCRIBERS).where(SUBSCRIBERS.c.channel_id == channel_id,
                                                         SUBSCRIBERS.c.email_key == key)).one()
        return SignUp(_subscriber(row), state)

    def confirmation_sent(self, subscriber_id: int, now: datetime) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(update(SUBSCRIBERS).where(SUBSCRIBERS.c.id == subscriber_id).values(confirm_sent_at=now))

    def subscriber(self, subscriber_id: int, nonce: str) -> Subscriber | None:
        """The subscription a link names, if it still exists (the nonce must match)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(SUBSCRIBERS).where(SUBSCRIBERS.c.id == subscriber_id,
                                                         SUBSCRIBERS.c.nonce == nonce)).first()
        return _subscriber(row) if row else None

    def confirm(self, subscriber_id: int, nonce: str, now: datetime) -> tuple[Subscriber | None, bool]:
        """Give consent: (the subscription, whether this call confirmed it). Following the
        link again confirms nothing new and keeps the first consent time."""
        with write_transaction(self.engine) as conn:
            done = conn.execute(update(SUBSCRIBERS).where(SUBSCRIBERS.c.id == subscriber_id,
                                                          SUBSCRIBERS.c.nonce == nonce,
                                                          SUBSCRIBERS.c.status == "pending")
                                .values(status="confirmed", confirmed_at=now, bounces=0, updated_at=now)).rowcount
            row = conn.execute(select(SUBSCRIBERS).where(SUBSCRIBERS.c.id == subscriber_id,
                                                         SUBSCRIBERS.c.nonce == nonce)).first()
        return (_subscriber(row) if row else None), bool(done)

    def set_preferences(self, subscriber_id: int, nonce: str, wanted: Preferences, now: datetime) -> bool:
        with write_transaction(self.engine) as conn:
            return conn.execute(update(SUBSCRIBERS).where(SUBSCRIBERS.c.id == subscriber_id,
                                                          SUBSCRIBERS.c.nonce == nonce)
                                .values(**wanted.to_row(), updated_at=now)).rowcount == 1

    def unsubscribe(self, subscriber_id: int, nonce: str) -> bool:
        """End a subscription: the row and its ledger rows are deleted at once (nothing is
        kept that is no longer needed). False if it had ended already."""
        with self._forgetting() as conn:
            gone = conn.execute(delete(SUBSCRIBERS).where(SUBSCRIBERS.c.id == subscriber_id,
                                                          SUBSCRIBERS.c.nonce == nonce)).rowcount
            if gone:
                conn.execute(delete(DELIVERIES).where(DELIVERIES.c.subscriber_id == subscriber_id))
        return bool(gone)

    def erase(self, email: str) -> int:
        """Remove every trace of an address: its subscriptions to every newsletter and their
        ledger rows, overwritten in the file too (`_forgetting`), and on SQLite the WAL
        folded back into the database, so no older copy of a page stays behind in it.
        Returns the number of subscriptions removed."""
        with self._forgetting() as conn:
            ids = list(conn.execute(select(SUBSCRIBERS.c.id).where(SUBSCRIBERS.c.email_key == email_key(email)))
                       .scalars())
            if ids:
                conn.execute(delete(DELIVERIES).where(DELIVERIES.c.subscriber_id.in_(ids)))
                conn.execute(delete(SUBSCRIBERS).where(SUBSCRIBERS.c.id.in_(ids)))
        if ids and self.store.dialect == "sqlite":
            with self.engine.connect() as conn:  # outside a transaction: the driver's own connection
                conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(ids)

    @contextmanager
    def _forgetting(self) -> Iterator[Connection]:
        """A write transaction whose deletions are overwritten with zeros in the database file
        (SQLite's secure_delete, for this connection only); PostgreSQL's VACUUM reclaims dead
        rows by itself."""
        with self.engine.connect() as conn:
            lite = self.store.dialect == "sqlite"
            if lite:
                conn.connection.driver_connection.execute("PRAGMA secure_delete=ON")
            conn.execution_options(begin="IMMEDIATE")
            try:
                with conn.begin():
                    yield conn
            finally:
                if lite:
                    conn.connection.driver_connection.execute("PRAGMA secure_delete=OFF")

    def forget_unconfirmed(self, before: datetime) -> int:
        """Delete sign-ups never confirmed that were made before `before`."""
        with self._forgetting() as conn:
            return conn.execute(delete(SUBSCRIBERS).where(SUBSCRIBERS.c.status == "pending",
                                                          SUBSCRIBERS.c.created_at < before)).rowcount

    def forget_ledgers(self, before: datetime) -> int:
        """Delete the per-recipient rows of editions finished before `before`: who got which
        edition is personal data too, and needed only while an edition is being sent."""
        old = select(EDITIONS.c.id).where(EDITIONS.c.status == "sent", EDITIONS.c.finished_at < before)
        with write_transaction(self.engine) as conn:
            return conn.execute(delete(DELIVERIES).where(DELIVERIES.c.edition_id.in_(old))).rowcount

    def counts(self) -> dict[str, dict[str, int]]:
        """channel -> status -> subscriptions."""
        query = select(SUBSCRIBERS.c.channel_id, SUBSCRIBERS.c.status, func.count()).group_by(
            SUBSCRIBERS.c.channel_id, SUBSCRIBERS.c.status)
        found: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for channel_id, status, n in conn.execute(query):
                found.setdefault(channel_id, {})[status] = n
        return found

    def confirmed(self, channel_id: str | None = None) -> Iterator[Subscriber]:
        """Confirmed subscriptions (of one channel), oldest first."""
        query = select(SUBSCRIBERS).where(SUBSCRIBERS.c.status == "confirmed")
        if channel_id:
            query = query.where(SUBSCRIBERS.c.channel_id == channel_id)
        with self.engine.connect() as conn:
            for row in conn.execute(query.order_by(SUBSCRIBERS.c.channel_id, SUBSCRIBERS.c.id)):
                yield _subscriber(row)

    # --- editions ---------------------------------------------------------------------------

    def channel_slot(self, channel_id: str) -> datetime | None:
        """The schedule slot a channel's row is due at (hub.store.scheduling keeps it)."""
        with self.engine.connect() as conn:
            return conn.execute(select(CHANNELS.c.next_run_at).where(CHANNELS.c.id == channel_id)).scalar()

    def last_edition(self, channel_id: str) -> Edition | None:
        query = select(EDITIONS).where(EDITIONS.c.channel_id == channel_id).order_by(EDITIONS.c.created_at.desc(),
                                                                                      EDITIONS.c.id.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _edition(row) if row else None

    def edition(self, edition_id: int) -> Edition | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(EDITIONS).where(EDITIONS.c.id == edition_id)).first()
        return _edition(row) if row else None

    def edition_at(self, channel_id: str, slot: datetime) -> Edition | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(EDITIONS).where(EDITIONS.c.channel_id == channel_id,
                                                      EDITIONS.c.slot == slot)).first()
        return _edition(row) if row else None

    def unfinished(self, channel_id: str | None = None) -> list[Edition]:
        """Editions still being sent, oldest first."""
        query = select(EDITIONS).where(EDITIONS.c.status == "sending")
        if channel_id:
            query = query.where(EDITIONS.c.channel_id == channel_id)
        with self.engine.connect() as conn:
            return [_edition(r) for r in conn.execute(query.order_by(EDITIONS.c.id))]

    def blocking(self, channel_id: str) -> list[Edition]:
        """Unfinished editions that hold the next one back: recipients still waiting for a
        first try, or a server that could not be reached. (Temporary rejections retried
        over hours do not.)"""
        busy = select(DELIVERIES.c.edition_id).where(DELIVERIES.c.status.in_(("pending", "sending")))
        query = (select(EDITIONS).where(EDITIONS.c.channel_id == channel_id, EDITIONS.c.status == "sending",
                                        or_(EDITIONS.c.failures > 0, EDITIONS.c.id.in_(busy)))
                 .order_by(EDITIONS.c.id))
        with self.engine.connect() as conn:
            return [_edition(r) for r in conn.execute(query)]

    def create_edition(self, channel_id: str, slot: datetime, now: datetime, since: datetime, subject: str,
                       new: Sequence[int], upcoming: Sequence[int], revision: int) -> tuple[Edition, bool]:
        """The edition of `slot`, made now with a ledger row for every confirmed subscriber,
        or the one made for it before: (edition, whether this call made it)."""
        content = json.dumps({"new": list(new), "upcoming": list(upcoming), "revision": revision})
        with write_transaction(self.engine) as conn:
            made = conn.execute(_insert(conn, EDITIONS).values(
                channel_id=channel_id, slot=slot, created_at=now, since=since, subject=subject, content=content,
                status="sending", failures=0, recipients=0).on_conflict_do_nothing(
                index_elements=["channel_id", "slot"]).returning(EDITIONS.c.id)).scalar()
            edition_id = made or conn.execute(select(EDITIONS.c.id).where(EDITIONS.c.channel_id == channel_id,
                                                                          EDITIONS.c.slot == slot)).scalar_one()
            if made:
                audience = select(literal(edition_id), SUBSCRIBERS.c.id, literal("pending"), literal(0)).where(
                    SUBSCRIBERS.c.channel_id == channel_id, SUBSCRIBERS.c.status == "confirmed")
                conn.execute(insert(DELIVERIES).from_select(["edition_id", "subscriber_id", "status", "attempts"],
                                                            audience))
                n = conn.execute(select(func.count()).where(DELIVERIES.c.edition_id == edition_id)).scalar_one()
                conn.execute(update(EDITIONS).where(EDITIONS.c.id == edition_id).values(recipients=n))
            row = conn.execute(select(EDITIONS).where(EDITIONS.c.id == edition_id)).one()
        return _edition(row), made is not None

    def claim_edition(self, edition_id: int, owner: str, now: datetime, until: datetime) -> int | None:
        """Take the lease of an edition that is being sent, if it is free or has passed, and
        is not waiting for a retry. Returns how many mails were in flight when the previous
        holder stopped (sent again now: the possible duplicates), or None if not taken."""
        with write_transaction(self.engine) as conn:
            taken = conn.execute(update(EDITIONS).where(
                EDITIONS.c.id == edition_id, EDITIONS.c.status == "sending",
                or_(EDITIONS.c.lease_until.is_(None), EDITIONS.c.lease_until < now),
                or_(EDITIONS.c.next_try_at.is_(None), EDITIONS.c.next_try_at <= now))
                .values(lease_owner=owner, lease_until=until)).rowcount == 1
            if not taken:
                return None
            return conn.execute(update(DELIVERIES).where(DELIVERIES.c.edition_id == edition_id,
                                                         DELIVERIES.c.status == "sending")
                                .values(status="pending", detail="in flight when its sender stopped")).rowcount

    def renew(self, edition_id: int, owner: str, until: datetime) -> bool:
        """Extend the lease; False if it is not ours any more (then stop sending)."""
        with write_transaction(self.engine) as conn:
            return conn.execute(update(EDITIONS).where(EDITIONS.c.id == edition_id, EDITIONS.c.lease_owner == owner)
                                .values(lease_until=until)).rowcount == 1

    def release(self, edition_id: int, owner: str, *, error: str | None = None,
                next_try_at: datetime | None = None) -> None:
        """Give the lease back. With `error` (the SMTP server could not be reached), the
        edition waits until `next_try_at` and counts the failure; without, failures reset."""
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "next_try_at": next_try_at}
        values.update({"last_error": error, "failures": EDITIONS.c.failures + 1} if error else {"failures": 0})
        with write_transaction(self.engine) as conn:
            conn.execute(update(EDITIONS).where(EDITIONS.c.id == edition_id, EDITIONS.c.lease_owner == owner)
                         .values(values))

    def next_batch(self, edition_id: int, now: datetime, limit: int) -> list[Recipient]:
        """Claim up to `limit` recipients who are due (pending, or deferred until now), in
        ledger order: their rows go to `sending`. Only the lease holder calls this."""
        d, s = DELIVERIES, SUBSCRIBERS
        due = or_(d.c.status == "pending", and_(d.c.status == "deferred", d.c.next_try_at <= now))
        query = (select(d.c.id, d.c.subscriber_id, d.c.attempts, s)
                 .select_from(d.outerjoin(s, s.c.id == d.c.subscriber_id))
                 .where(d.c.edition_id == edition_id, due).order_by(d.c.id).limit(limit))
        with write_transaction(self.engine) as conn:
            rows = conn.execute(query).all()
            if rows:
                conn.execute(update(d).where(d.c.id.in_([r[0] for r in rows]), d.c.status.in_(("pending", "deferred")))
                             .values(status="sending", attempts=d.c.attempts + 1))
        return [Recipient(r[0], r[1], r[2] + 1, _subscriber(r, offset=3) if r[3] is not None else None) for r in rows]

    def record(self, marks: Sequence[Mark], now: datetime) -> None:
        """Write what became of claimed deliveries, in one transaction; count permanent
        rejections per address and disable one after BOUNCES_TO_DISABLE in a row (a
        delivered mail resets the count)."""
        if not marks:
            return
        d, s = DELIVERIES, SUBSCRIBERS
        rows = [{"p_id": m.delivery_id, "p_status": m.status, "p_detail": m.detail, "p_next": m.next_try_at,
                 "p_sent": now if m.status == "sent" else None} for m in marks]
        statement = (update(d).where(d.c.id == bindparam("p_id"), d.c.status == "sending")
                     .values(status=bindparam("p_status"), detail=bindparam("p_detail"),
                             next_try_at=bindparam("p_next", type_=d.c.next_try_at.type),
                             sent_at=bindparam("p_sent", type_=d.c.sent_at.type)))
        bounced = [m.subscriber_id for m in marks if m.permanent]
        delivered = [m.subscriber_id for m in marks if m.status == "sent"]
        with write_transaction(self.engine) as conn:
            conn.execute(statement, rows)
            if delivered:
                conn.execute(update(s).where(s.c.id.in_(delivered), s.c.bounces > 0).values(bounces=0))
            if bounced:
                conn.execute(update(s).where(s.c.id.in_(bounced)).values(bounces=s.c.bounces + 1, updated_at=now))
                conn.execute(update(s).where(s.c.id.in_(bounced), s.c.bounces >= BOUNCES_TO_DISABLE,
                                             s.c.status == "confirmed")
                             .values(status="disabled", disabled_at=now))

    def progress(self, edition_id: int) -> Progress:
        query = (select(DELIVERIES.c.status, func.count()).where(DELIVERIES.c.edition_id == edition_id)
                 .group_by(DELIVERIES.c.status))
        with self.engine.connect() as conn:
            return Progress(dict(conn.execute(query).all()))

    def next_retry(self, edition_id: int) -> datetime | None:
        """When the earliest deferred recipient of an edition is due."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.min(DELIVERIES.c.next_try_at)).where(
                DELIVERIES.c.edition_id == edition_id, DELIVERIES.c.status == "deferred")).scalar()

    def finish(self, edition_id: int, owner: str, now: datetime) -> bool:
        """Close the edition if no recipient needs more work; the lease is given back."""
        open_rows = select(DELIVERIES.c.id).where(DELIVERIES.c.edition_id == edition_id,
                                                  DELIVERIES.c.status.in_(OPEN)).limit(1)
        with write_transaction(self.engine) as conn:
            if conn.execute(open_rows).first() is not None:
                return False
            return conn.execute(update(EDITIONS).where(EDITIONS.c.id == edition_id, EDITIONS.c.lease_owner == owner)
                                .values(status="sent", finished_at=now, lease_owner=None, lease_until=None,
                                        next_try_at=None)).rowcount == 1


# --- helpers -------------------------------------------------------------------------------

def email_key(email: str) -> str:
    """What makes two spellings one address: case does not matter (in practice, mailbox
    providers ignore it in the local part too)."""
    return email.strip().casefold()


_SUBSCRIBER_COLUMNS = [c.name for c in SUBSCRIBERS.columns]


def _subscriber(row: Any, offset: int = 0) -> Subscriber:
    """A Subscriber from a row of SUBSCRIBERS, or from its columns starting at `offset` of a
    joined row."""
    values = dict(zip(_SUBSCRIBER_COLUMNS, tuple(row)[offset:offset + len(_SUBSCRIBER_COLUMNS)]))
    prefs = Preferences(tuple(json.loads(values["categories"])), tuple(json.loads(values["kinds"])),
                        tuple(json.loads(values["merchants"])))
    return Subscriber(values["id"], values["channel_id"], values["email"], values["status"], prefs, values["nonce"],
                      values["form_version"], values["created_at"], values["confirmed_at"], values["confirm_sent_at"],
                      values["bounces"])


def _edition(row: Any) -> Edition:
    content = json.loads(row.content)
    return Edition(row.id, row.channel_id, row.slot, row.created_at, row.since, row.subject,
                   tuple(content.get("new", ())), tuple(content.get("upcoming", ())), content.get("revision"),
                   row.status, row.recipients, row.failures, row.last_error, row.finished_at)


def _insert(conn: Connection, table: Any) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
