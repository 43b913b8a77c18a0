"""The generic webhook channel (`renderer: webhook`): every change of a record the channel
wants, POSTed to a URL as Standard Webhooks 1.0 describe (../shared/reference/connector-facts.md 5.4).

    channels:
      - id: stadtapp
        renderer: webhook
        url: https://app.musterstadt.example/hooks/hub
        secret: "${STADTAPP_WEBHOOK_SECRET}"     # whsec_ + base64 of 24-64 random bytes
        events: [created, updated, deleted]      # which to send (default: all three)
        include: {kinds: [event]}

The body is our own versioned payload, never the internal model (its JSON Schema:
renderers/schemas/webhook-record-v1.schema.json):

    {"type": "record.created" | "record.updated" | "record.deleted",
     "timestamp": "<when the record changed, RFC 3339>",
     "data": {"schema_version": 1, "id": 123, "version": 456, "url": "<the record's page>", ...}}

(`record.deleted` carries only schema_version, id, version and url). Headers: `webhook-id`,
the same on every attempt of one delivery, so a receiver drops a repeat; `webhook-timestamp`,
this attempt's Unix time; `webhook-signature`, `v1,` and the base64 HMAC-SHA256 of
`{id}.{timestamp}.{body}` keyed with the secret's bytes (the base64 after `whsec_`). Any 2xx
is success; a redirect is a failure (never followed); 410 disables the channel until its
options change (or `hub channels enable`); any other answer is tried again as the ledger's
schedule says (about three days), never sooner than a Retry-After. The fetcher's SSRF guard
applies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, SecretStr

from hub.errors import FetchError
from hub.ledger import FOREVER
from renderers.base import (Capabilities, ChannelRef, Outgoing, Preview, PushOptions, Receipt, RendererOptions,
                            network_error, status_error)

if TYPE_CHECKING:
    from hub.http import Fetcher

SCHEMA_VERSION = 1
EVENTS = ("created", "updated", "deleted")


def _http_url(value: str) -> str:
    if not value.lower().startswith(("http://", "https://")):
        raise ValueError("the webhook url must start with https:// (or http://)")
    return value


def _whsec(value: SecretStr) -> SecretStr:
    secret_key(value.get_secret_value())
    return value


def secret_key(secret: str) -> bytes:
    """The signing key: the bytes the base64 after `whsec_` stands for."""
    if not secret.startswith("whsec_"):
        raise ValueError("the secret must look like whsec_ followed by base64 (make one with: python -c \"import "
                         "base64, secrets; print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\")")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("the part after whsec_ is not base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"the secret holds {len(key)} bytes; use 24 to 64 random bytes")
    return key


class WebhookOptions(PushOptions):
    takes_template: ClassVar[bool] = False
    url: Annotated[str, AfterValidator(_http_url)]
    secret: Annotated[SecretStr, AfterValidator(_whsec)]
    events: list[Literal["created", "updated", "deleted"]] = list(EVENTS)
    timeout: Annotated[float, Field(ge=1, le=60)] = 20.0  # seconds an attempt may take (Standard Webhooks: 15-30)
    concurrency: Annotated[int, Field(ge=1, le=32)] = 8  # deliveries in flight at once
    headers: dict[str, str] = {}  # more headers, e.g. a receiving platform's API key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def payload(out: Outgoing) -> dict[str, Any]:
    """The versioned body: `type`, `timestamp` (when the record changed) and `data`."""
    return {"type": f"record.{out.event}", "timestamp": _rfc3339(out.occurred_at), "data": record_data(out)}


def record_data(out: Outgoing) -> dict[str, Any]:
    """The record in the webhook's public schema (schema_version 1)."""
    head = {"schema_version": SCHEMA_VERSION, "id": out.record_id, "version": out.version, "url": out.link}
    if out.event == "deleted":
        return head
    item, m = out.item, out.merchant
    event = item.event
    return {**head, "kind": item.kind.value, "title": item.title, "summary": item.summary,
            "text": item.content_text, "html": item.content_html, "language": item.language,
            "published": _rfc3339(item.published), "updated": _rfc3339(item.updated), "source_url": item.url,
            "merchant": {"id": m.id, "name": m.name, "category": m.category, "district": m.district,
                         "website": m.website},
            "label": out.label, "tags": list(item.tags),
            "images": [{"url": p.public_url, "alt": p.alt, "width": p.width, "height": p.height} for p in out.pictures],
            "event": None if event is None else {
                "start": event.start.isoformat(), "end": event.end.isoformat() if event.end else None,
                "all_day": event.all_day, "timezone": event.timezone, "location": event.location,
                "cancelled": event.cancelled, "latitude": event.latitude, "longitude": event.longitude},
            "offer": None if item.offer is None else {
                "price": item.offer.price, "currency": item.offer.currency,
                "valid_from": _rfc3339(item.offer.valid_from), "valid_until": _rfc3339(item.offer.valid_until)}}


def _rfc3339(moment: datetime | None) -> str | None:
    """UTC, with a Z."""
    return None if moment is None else moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class WebhookPublisher:
    kind: ClassVar[str] = "webhook"
    Options: ClassVar[type[RendererOptions]] = WebhookOptions
    capabilities: ClassVar[Capabilities] = Capabilities(dedup=FOREVER, concurrency=8)

    def preview(self, opts: WebhookOptions, channel: ChannelRef, out: Outgoing) -> Preview:
        body = payload(out)
        headers = self._headers(opts, out, _body(body), int(time.time()))
        return Preview(json.dumps(body, ensure_ascii=False, indent=2),
                       {"method": "POST", "url": opts.url, "headers": headers, "body": body})

    async def create(self, opts: WebhookOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        return await self._post(opts, out, client)

    async def update(self, opts: WebhookOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        return await self._post(opts, out, client)

    async def delete(self, opts: WebhookOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        return await self._post(opts, out, client)

    async def _post(self, opts: WebhookOptions, out: Outgoing, client: Fetcher) -> Receipt:
        if out.event not in opts.events:  # the endpoint does not want it; as far as it is concerned, done
            return Receipt(out.remote_id or str(out.record_id), skipped=f"record.{out.event} is not among `events`")
        body = _body(payload(out))
        headers = self._headers(opts, out, body, int(time.time()))
        try:
            answer = await client.send("POST", opts.url, headers=headers, content=body, timeout=opts.timeout)
        except FetchError as exc:
            raise network_error(exc, f"webhook {opts.url}") from exc
        if not 200 <= answer.status < 300:
            error = status_error(answer, f"webhook {opts.url}", answer.body[:200].decode("utf-8", "replace").strip())
            if error.permanent:  # a receiver's 404 or 400 may be a deployment under way: the schedule decides
                error.permanent = False
                error.hint = "the receiver refused it; it is tried again on Standard Webhooks' schedule"
            raise error
        return Receipt(_their_id(answer.body) or out.remote_id or str(out.record_id))

    @staticmethod
    def _headers(opts: WebhookOptions, out: Outgoing, body: bytes, timestamp: int) -> dict[str, str]:
        key = secret_key(opts.secret.get_secret_value())
        return {**opts.headers, "content-type": "application/json", "webhook-id": out.id,
                "webhook-timestamp": str(timestamp), "webhook-signature": sign(key, out.id, timestamp, body)}


def _body(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _their_id(body: bytes) -> str | None:
    """The receiver's own id for what it made of the delivery, if it answers with one
    (`{"id": ...}`): a platform's API often does."""
    try:
        found = json.loads(body) if body else None
    except ValueError:
        return None
    value = found.get("id") if isinstance(found, dict) else None
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
