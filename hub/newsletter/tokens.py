"""The links in newsletter mails: signed, so that nobody can make one for somebody else.

A token names its purpose, the subscriber's id and the subscriber row's nonce, and carries an
HMAC-SHA256 (cut to 120 bits) with the installation's key:

    c.42.Xb3kQ9.1767225600.<signature>    confirm, valid until the Unix time given
    m.42.Xb3kQ9.<signature>               manage preferences, valid while the subscription lasts
    u.42.Xb3kQ9.<signature>               unsubscribe, likewise (RFC 8058 links must keep working)

Nothing personal is in a token (no address). The nonce is the row's: once a subscription is
erased or ends, its links stop working, even if a later subscriber gets the same id. Tokens
are URL-safe (letters, digits, `.`, `-`, `_`) and fit in a path segment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

Purpose = Literal["c", "m", "u"]
CONFIRM, MANAGE, UNSUBSCRIBE = "c", "m", "u"
_SIGNATURE_BYTES = 15


@dataclass(frozen=True)
class Claim:
    """What a valid token says. `expired`: a confirm token past its time."""

    purpose: str
    subscriber_id: int
    nonce: str
    expires: datetime | None
    expired: bool = False


class Signer:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def make(self, purpose: Purpose, subscriber_id: int, nonce: str, expires: datetime | None = None) -> str:
        payload = f"{purpose}.{subscriber_id}.{nonce}"
        if expires is not None:
            payload += f".{int(expires.timestamp())}"
        return f"{payload}.{self._sign(payload)}"

    def read(self, token: str, purpose: Purpose, now: datetime) -> Claim | None:
        """The claim of a genuine token for `purpose`; None for anything else (a typo, a
        forgery, another purpose's token)."""
        payload, _, signature = token.rpartition(".")
        if not payload or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        parts = payload.split(".")
        if parts[0] != purpose or len(parts) != (4 if purpose == CONFIRM else 3) or not parts[1].isdigit():
            return None
        expires = None
        if purpose == CONFIRM:
            if not parts[3].isdigit():
                return None
            expires = datetime.fromtimestamp(int(parts[3]), timezone.utc)
        return Claim(purpose, int(parts[1]), parts[2], expires, expired=expires is not None and expires <= now)

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:_SIGNATURE_BYTES]
        return base64.urlsafe_b64encode(digest).decode()
