"""Signed inbound deliveries: `X-Hub-Signature`-style HMACs (WebSub hubs, and the same
scheme of Facebook's webhooks). Pure; the web routes call it before trusting a body."""

from __future__ import annotations

import hashlib
import hmac

_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def signature_ok(secret: str | None, header: str | None, body: bytes) -> bool:
    """Whether `X-Hub-Signature: method=hexdigest` is the HMAC of `body` under `secret`."""
    method, _, given = (header or "").partition("=")
    digest = _DIGESTS.get(method.strip().lower())
    if not secret or digest is None or not given:
        return False
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())
