"""Logging in to the project manager's cockpit (issue 17): argon2 password hashes, session
ids, CSRF tokens and login throttling. No web framework here: `hub.web.admin` uses these.

- Passwords are checked against the argon2id hashes in `admin.users` (`hub admin
  hash-password` makes them); an unknown user name costs the same time as a wrong password.
- A session id is 256 random bits; the store keeps only its SHA-256 (`session_key`).
- A form's CSRF token is an HMAC of the session id: nothing to store, and useless to anyone
  who cannot read the cookie (synchronizer token, OWASP).
- `Throttle` counts failed logins per account and per client, in memory only. A client is
  an HMAC of its address with a salt made in this process and changed every day: no address
  is kept, and none can be recovered from what is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import date
from typing import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # argon2id with the library's defaults (RFC 9106's second profile)
_DUMMY: list[str] = []  # a hash to check unknown users against, made on first use


def hash_password(password: str) -> str:
    """An argon2id hash of `password`, for `admin.users[].password_hash`."""
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; False for a missing or malformed hash (after the same work,
    so a wrong user name cannot be told from a wrong password by the time it takes)."""
    if not password_hash:
        if not _DUMMY:
            _DUMMY.append(_HASHER.hash(secrets.token_urlsafe(16)))
        password_hash = _DUMMY[0]
        password = password + "\0"  # never matches
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def session_key(session_id: str) -> str:
    """What the store keeps of a session id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_token(secret: str, purpose: str = "csrf") -> str:
    """The token forms carry, derived from a cookie's secret value."""
    digest = hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def csrf_ok(secret: str | None, token: str | None, purpose: str = "csrf") -> bool:
    if not secret or not token:
        return False
    return hmac.compare_digest(csrf_token(secret, purpose).encode(), token.encode())  # bytes: any text compares


@dataclass
class _Failures:
    times: deque[float] = field(default_factory=deque)


class Throttle:
    """Allows `per_account` failed logins per account and `per_client` per client within
    `window` seconds; then asks to wait until the oldest of them leaves the window."""

    MAX_KEYS = 20_000  # keys kept at most; the stalest go first

    def __init__(self, *, per_account: int = 5, per_client: int = 20, window: float = 15 * 60,
                 clock: Callable[[], float] = time.monotonic, today: Callable[[], date] = date.today) -> None:
        self.per_account, self.per_client, self.window = per_account, per_client, window
        self.clock, self.today = clock, today
        self._failures: dict[tuple[str, str], _Failures] = defaultdict(_Failures)
        self._lock = threading.Lock()
        self._salt, self._salt_day = secrets.token_bytes(16), today()

    def client(self, address: str | None) -> str:
        """A client's key: an HMAC of its address with today's salt (never the address)."""
        with self._lock:
            if self.today() != self._salt_day:  # a new day: a new salt, yesterday's keys mean nothing
                self._salt, self._salt_day = secrets.token_bytes(16), self.today()
                self._failures = defaultdict(_Failures, {k: v for k, v in self._failures.items() if k[0] == "account"})
            salt = self._salt
        return hmac.new(salt, (address or "?").encode(), hashlib.sha256).hexdigest()[:32]

    def wait(self, account: str, client: str) -> float:
        """Seconds until another attempt is allowed (0: now)."""
        now = self.clock()
        with self._lock:
            return max(self._wait(("account", account.casefold()), self.per_account, now),
                       self._wait(("client", client), self.per_client, now))

    def failed(self, account: str, client: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (("account", account.casefold()), ("client", client)):
                self._failures[key].times.append(now)
            if len(self._failures) > self.MAX_KEYS:
                self._forget_stalest()

    def succeeded(self, account: str) -> None:
        """A correct password clears the account's failures (not the client's)."""
        with self._lock:
            self._failures.pop(("account", account.casefold()), None)

    def _wait(self, key: tuple[str, str], limit: int, now: float) -> float:
        found = self._failures.get(key)
        if found is None:
            return 0.0
        times = found.times
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < limit:
            return 0.0
        return self.window - (now - times[len(times) - limit])

    def _forget_stalest(self) -> None:
        newest = sorted(self._failures, key=lambda k: self._failures[k].times[-1] if self._failures[k].times else 0)
        for key in newest[: len(newest) - self.MAX_KEYS // 2]:
            del self._failures[key]
