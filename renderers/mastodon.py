"""The Mastodon channel (`renderer: mastodon`): a status per record on the town's account.

    channels:
      - id: mastodon
        renderer: mastodon
        base_url: https://social.musterstadt.example
        access_token: "${MASTODON_TOKEN}"      # an app's token with write:statuses write:media
        visibility: public                      # public | unlisted | private | direct
        language: de                            # default: platform.language
        pace: {per_hour: 6, quiet: "22:00-07:00"}

The status is the channel's template (renderers/templates/mastodon.txt.j2) cut at a word to
the instance's limit, read from `GET /api/v2/instance` (`max_characters`; every URL counts
`characters_reserved_per_url`, 23), always ending with the link back to the platform. Up to
`max_media_attachments` (4) images are uploaded first (`POST /api/v2/media` with their alt
text; a 202 is polled at `GET /api/v1/media/:id` until processed). Every status carries an
`Idempotency-Key`, the delivery's id: Mastodon keeps it an hour, so a request that got no
answer is tried again within that hour only (`Capabilities.dedup`); later it is left for a
person. An edit is `PUT /api/v1/statuses/:id` (the images uploaded again only if they
changed), a removal `DELETE /api/v1/statuses/:id`. A 429 waits until `X-RateLimit-Reset`;
401 and 403 pause the channel (the token was revoked or lacks a scope).
"""

from __future__ import annotations

import asyncio
import time
from json import loads
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, SecretStr

from hub.errors import FetchError, HubError
from hub.http import Response
from renderers.base import (Capabilities, ChannelError, ChannelRef, Outgoing, Preview, PushOptions, Receipt,
                            RendererOptions, network_error, status_error)
from renderers.text import check_template, context, default_template, fit, mastodon_length

if TYPE_CHECKING:
    from hub.http import Fetcher

TEMPLATE = "mastodon.txt.j2"
DEFAULTS = {"max_characters": 500, "url_length": 23, "max_media": 4}
INSTANCE_TTL = 3600.0  # seconds an instance's limits are remembered
MEDIA_WAIT = 60.0  # seconds an upload may take to be processed
POLL_FIRST = 0.2


def _base_url(value: str) -> str:
    if not value.lower().startswith(("https://", "http://")):
        raise ValueError("write the instance's address like https://social.musterstadt.example")
    return value.rstrip("/")


class MastodonOptions(PushOptions):
    base_url: Annotated[str, AfterValidator(_base_url)]
    access_token: SecretStr
    visibility: Literal["public", "unlisted", "private", "direct"] = "public"
    language: str | None = None  # ISO 639-1; default: platform.language
    template: Annotated[str, AfterValidator(check_template)] | None = None


class MastodonPublisher:
    kind: ClassVar[str] = "mastodon"
    Options: ClassVar[type[RendererOptions]] = MastodonOptions
    # Idempotency-Keys are kept for an hour; a margin for clocks and queues.
    capabilities: ClassVar[Capabilities] = Capabilities(dedup=timedelta(minutes=50), rate=(300, timedelta(minutes=5)))
    _limits: ClassVar[dict[str, tuple[float, dict[str, int]]]] = {}  # base_url -> (read at, limits)

    def preview(self, opts: MastodonOptions, channel: ChannelRef, out: Outgoing) -> Preview:
        limits = self._limits.get(opts.base_url, (0.0, DEFAULTS))[1]
        status = self._text(opts, channel, out, limits)
        return Preview(status, {"status": status, "visibility": opts.visibility,
                                "language": opts.language or channel.language,
                                "media": [{"file": p.public_url, "description": p.alt or out.item.title}
                                          for p in out.pictures[:limits["max_media"]]]})

    async def create(self, opts: MastodonOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        limits = await self._instance(opts, client)
        media = await self._upload_all(opts, channel, out, client, limits, known=())
        body = self._status(opts, channel, out, limits, media)
        answer = await self._call(client, opts, "POST", "/api/v1/statuses", "post the status", json=body,
                                  headers={"Idempotency-Key": out.id})
        found = _json(answer)
        return Receipt(str(found["id"]), url=found.get("url"), remote={"media": media})

    async def update(self, opts: MastodonOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        limits = await self._instance(opts, client)
        media = await self._upload_all(opts, channel, out, client, limits, known=out.remote.get("media") or ())
        body = self._status(opts, channel, out, limits, media)
        body.pop("visibility")  # an edit cannot change it
        try:
            answer = await self._call(client, opts, "PUT", f"/api/v1/statuses/{out.remote_id}", "edit the status",
                                      json=body)
        except ChannelError as exc:
            if exc.status != 404:
                raise
            return await self.create(opts, channel, out, client)  # deleted by hand on Mastodon: post it anew
        found = _json(answer)
        return Receipt(str(found.get("id") or out.remote_id), url=found.get("url") or out.remote_url,
                       remote={"media": media})

    async def delete(self, opts: MastodonOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        try:
            await self._call(client, opts, "DELETE", f"/api/v1/statuses/{out.remote_id}", "delete the status")
        except ChannelError as exc:
            if exc.status not in (404, 410):  # already gone: what a removal wants
                raise
        return Receipt(out.remote_id)

    # --- the status -------------------------------------------------------------------------

    def _text(self, opts: MastodonOptions, channel: ChannelRef, out: Outgoing, limits: dict[str, int]) -> str:
        return fit(opts.template or default_template(TEMPLATE), context(out, channel), limits["max_characters"],
                   lambda s: mastodon_length(s, limits["url_length"]))

    def _status(self, opts: MastodonOptions, channel: ChannelRef, out: Outgoing, limits: dict[str, int],
                media: list[dict[str, str]]) -> dict[str, Any]:
        return {"status": self._text(opts, channel, out, limits), "visibility": opts.visibility,
                "language": opts.language or channel.language, "media_ids": [m["id"] for m in media]}

    async def _instance(self, opts: MastodonOptions, client: Fetcher) -> dict[str, int]:
        """The instance's limits (remembered an hour); the defaults if it does not say."""
        known = self._limits.get(opts.base_url)
        if known is not None and time.monotonic() - known[0] < INSTANCE_TTL:
            return known[1]
        limits = dict(DEFAULTS)
        try:
            answer = await client.send("GET", f"{opts.base_url}/api/v2/instance", timeout=20)
            config = _json(answer).get("configuration", {}) if answer.status == 200 else {}
            statuses, media = config.get("statuses", {}), config.get("media_attachments", {})
            limits["max_characters"] = int(statuses.get("max_characters") or DEFAULTS["max_characters"])
            limits["url_length"] = int(statuses.get("characters_reserved_per_url") or DEFAULTS["url_length"])
            limits["max_media"] = int(statuses.get("max_media_attachments") or media.get("max_media_attachments")
                                      or DEFAULTS["max_media"])
        except (FetchError, ChannelError, ValueError, TypeError, AttributeError):
            return limits  # not remembered: asked again next time
        self._limits[opts.base_url] = (time.monotonic(), limits)
        return limits

    # --- images ---------------------------------------------------------------------------

    async def _upload_all(self, opts: MastodonOptions, channel: ChannelRef, out: Outgoing, client: Fetcher,
                          limits: dict[str, int], known: Any) -> list[dict[str, str]]:
        """[{url, id}] of the record's first images on the instance: those uploaded for an
        earlier version again, the others uploaded now. An image the hub has no copy of is
        left out (the status goes out without it)."""
        earlier = {m["url"]: m["id"] for m in known if isinstance(m, dict)}
        found = []
        for picture in out.pictures[:limits["max_media"]]:
            if picture.url in earlier:
                found.append({"url": picture.url, "id": earlier[picture.url]})
                continue
            if channel.images is None:
                break
            try:
                image = await channel.images.read(picture.url)
            except HubError:
                continue
            media_id = await self._upload(opts, client, image, picture.alt or out.item.title)
            found.append({"url": picture.url, "id": media_id})
        return found

    async def _upload(self, opts: MastodonOptions, client: Fetcher, image, alt: str) -> str:
        answer = await self._call(client, opts, "POST", "/api/v2/media", "upload an image",
                                  files={"file": (image.filename, image.body, image.media_type)},
                                  data={"description": alt[:1500]})
        media = _json(answer)
        waited, pause = 0.0, POLL_FIRST
        while answer.status != 200 or media.get("url") is None:  # 202, then 206 while it is processed
            if waited >= MEDIA_WAIT:
                raise ChannelError(f"Mastodon has not processed an upload after {MEDIA_WAIT:g} s",
                                   hint="the instance is busy; the hub tries again later")
            await asyncio.sleep(pause)
            waited, pause = waited + pause, min(pause * 2, 5.0)
            answer = await self._call(client, opts, "GET", f"/api/v1/media/{media['id']}", "check an upload")
            if answer.status == 200:
                media = _json(answer)
        return str(media["id"])

    # --- the API --------------------------------------------------------------------------

    async def _call(self, client: Fetcher, opts: MastodonOptions, method: str, path: str, what: str, *,
                    json: Any = None, files: Any = None, data: Any = None,
                    headers: dict[str, str] | None = None) -> Response:
        auth = {"Authorization": f"Bearer {opts.access_token.get_secret_value()}", **(headers or {})}
        try:
            answer = await client.send(method, f"{opts.base_url}{path}", headers=auth, json=json, files=files,
                                       data=data, timeout=30)
        except FetchError as exc:
            raise network_error(exc, f"Mastodon ({what})") from exc
        if 200 <= answer.status < 300:
            return answer
        error = status_error(answer, f"Mastodon ({what})", _said(answer))
        if answer.status == 429:
            error.retry_after = _reset_in(answer) or error.retry_after
        elif answer.status == 422:
            error.hint = "Mastodon rejected the status; it is not tried again"
        raise error


def _json(answer: Response) -> dict[str, Any]:
    try:
        found = loads(answer.body or b"{}")
    except ValueError:
        raise ChannelError(f"Mastodon answered HTTP {answer.status} with something that is not JSON",
                           maybe_sent=True) from None
    return found if isinstance(found, dict) else {}


def _said(answer: Response) -> str:
    try:
        return str(_json(answer).get("error") or "")
    except ChannelError:
        return answer.body[:200].decode("utf-8", "replace")


def _reset_in(answer: Response) -> float | None:
    """Seconds until `X-RateLimit-Reset` (an ISO 8601 moment)."""
    value = answer.headers.get("x-ratelimit-reset")
    if not value:
        return None
    try:
        reset = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    reset = reset if reset.tzinfo else reset.replace(tzinfo=timezone.utc)
    return max(1.0, (reset - datetime.now(timezone.utc)).total_seconds())
