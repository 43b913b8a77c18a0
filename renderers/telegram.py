"""The Telegram channel (`renderer: telegram`): a message per record in a channel or group.

    channels:
      - id: vereine-telegram
        renderer: telegram
        bot_token: "${TELEGRAM_BOT_TOKEN}"     # from @BotFather; the bot must be an admin allowed to post
        chat_id: "@musterstadt_vereine"         # or the numeric id, -100...
        api_url: https://api.telegram.org       # the default
        include: {categories: [verein]}

A record with an image becomes `sendPhoto` (the hub's own copy of the image, uploaded) with
the text as its caption, cut at a word to 1,024 characters; one without, `sendMessage`, cut
to 4,096. Both in HTML parse mode with only the tags Telegram allows and `& < >` escaped (the
template, renderers/templates/telegram.html.j2, is autoescaped, and its output is cleaned
to Telegram's allow-list), the link back to the platform always kept. An edit is
`editMessageText` or `editMessageCaption`; when the image came or went or changed, the
message is deleted and sent anew (Telegram cannot turn a text into a photo). A removal is
`deleteMessage`; where Telegram no longer lets the bot delete (a group's message older than
48 hours), the message is edited to say it was withdrawn. A 429 waits `retry_after`; at most
20 messages a minute go to one chat (`Capabilities.rate`). Telegram cannot tell a repeated
message: one whose answer was lost is left for a person to check, never sent twice.
"""

from __future__ import annotations

from datetime import timedelta
from json import loads
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator, SecretStr

from hub.errors import FetchError, HubError
from renderers.base import (Capabilities, ChannelError, ChannelRef, Outgoing, Preview, PushOptions, Receipt,
                            RendererOptions, network_error)
from renderers.text import check_template, context, default_template, fit, telegram_html, telegram_length

if TYPE_CHECKING:
    from hub.http import Fetcher

TEMPLATE = "telegram.html.j2"
CAPTION_LIMIT = 1024
MESSAGE_LIMIT = 4096
WITHDRAWN = "<i>Dieser Beitrag wurde zurückgezogen.</i>"


def _chat_id(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _check_chat(value: str) -> str:
    value = value.strip()
    if not (value.startswith("@") and len(value) > 1) and not value.lstrip("-").isdigit():
        raise ValueError("write the chat like \"@musterstadt_vereine\" or its numeric id like \"-1001234567890\"")
    return value


def _api_url(value: str) -> str:
    if not value.lower().startswith(("https://", "http://")):
        raise ValueError("write the Bot API's address like https://api.telegram.org")
    return value.rstrip("/")


class TelegramOptions(PushOptions):
    bot_token: SecretStr
    chat_id: Annotated[str, BeforeValidator(_chat_id), AfterValidator(_check_chat)]
    api_url: Annotated[str, AfterValidator(_api_url)] = "https://api.telegram.org"
    silent: bool = False  # disable_notification: members get no sound
    template: Annotated[str, AfterValidator(lambda v: check_template(v, html=True))] | None = None


class TelegramPublisher:
    kind: ClassVar[str] = "telegram"
    Options: ClassVar[type[RendererOptions]] = TelegramOptions
    capabilities: ClassVar[Capabilities] = Capabilities(rate=(20, timedelta(minutes=1)))

    def preview(self, opts: TelegramOptions, channel: ChannelRef, out: Outgoing) -> Preview:
        picture = out.pictures[0] if out.pictures else None
        text = self._text(opts, channel, out, CAPTION_LIMIT if picture else MESSAGE_LIMIT)
        if picture:
            return Preview(text, {"method": "sendPhoto", "chat_id": opts.chat_id, "photo": picture.public_url,
                                  "caption": text, "parse_mode": "HTML"})
        return Preview(text, {"method": "sendMessage", "chat_id": opts.chat_id, "text": text, "parse_mode": "HTML"})

    async def create(self, opts: TelegramOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        picture = out.pictures[0] if out.pictures else None
        image = None
        if picture is not None and channel.images is not None:
            try:
                image = await channel.images.read(picture.url)
            except HubError:
                image = None  # the hub has no copy: the text goes out alone
        if image is not None:
            caption = self._text(opts, channel, out, CAPTION_LIMIT)
            result = await self._call(client, opts, "sendPhoto", "send the photo", data={
                "chat_id": opts.chat_id, "caption": caption, "parse_mode": "HTML",
                "disable_notification": str(opts.silent).lower()},
                files={"photo": (image.filename, image.body, image.media_type)})
            kind = "photo"
        else:
            result = await self._call(client, opts, "sendMessage", "send the message", json={
                "chat_id": opts.chat_id, "text": self._text(opts, channel, out, MESSAGE_LIMIT), "parse_mode": "HTML",
                "disable_notification": opts.silent})
            kind = "text"
        message_id = str(result["message_id"])
        return Receipt(message_id, url=_link(opts.chat_id, message_id),
                       remote={"type": kind, "image": picture.url if image is not None else None})

    async def update(self, opts: TelegramOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        kind, image = out.remote.get("type", "text"), out.remote.get("image")
        wanted = out.pictures[0].url if out.pictures else None
        if (kind == "photo") != (wanted is not None) or (kind == "photo" and wanted != image):
            await self.delete(opts, channel, out, client)  # a text cannot become a photo: send it anew
            return await self.create(opts, channel, out, client)
        ids = {"chat_id": opts.chat_id, "message_id": int(out.remote_id), "parse_mode": "HTML"}
        try:
            if kind == "photo":
                await self._call(client, opts, "editMessageCaption", "edit the caption",
                                 json={**ids, "caption": self._text(opts, channel, out, CAPTION_LIMIT)})
            else:
                await self._call(client, opts, "editMessageText", "edit the message",
                                 json={**ids, "text": self._text(opts, channel, out, MESSAGE_LIMIT)})
        except ChannelError as exc:
            if "message is not modified" in str(exc):
                return Receipt(out.remote_id, url=out.remote_url, remote=dict(out.remote))
            if "message to edit not found" in str(exc):  # deleted by hand in Telegram
                return await self.create(opts, channel, out, client)
            raise
        return Receipt(out.remote_id, url=out.remote_url, remote=dict(out.remote))

    async def delete(self, opts: TelegramOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        try:
            await self._call(client, opts, "deleteMessage", "delete the message",
                             json={"chat_id": opts.chat_id, "message_id": int(out.remote_id)})
        except ChannelError as exc:
            text = str(exc)
            if "message to delete not found" in text:
                return Receipt(out.remote_id)
            if "can't be deleted" not in text:
                raise
            # Telegram lets a bot delete a group's message for 48 hours only: say it is withdrawn
            ids = {"chat_id": opts.chat_id, "message_id": int(out.remote_id), "parse_mode": "HTML"}
            if out.remote.get("type") == "photo":
                await self._call(client, opts, "editMessageCaption", "mark it withdrawn",
                                 json={**ids, "caption": WITHDRAWN})
            else:
                await self._call(client, opts, "editMessageText", "mark it withdrawn",
                                 json={**ids, "text": WITHDRAWN})
        return Receipt(out.remote_id)

    # --- text and API -------------------------------------------------------------------------

    def _text(self, opts: TelegramOptions, channel: ChannelRef, out: Outgoing, limit: int) -> str:
        html = fit(opts.template or default_template(TEMPLATE), context(out, channel), limit,
                   lambda s: telegram_length(telegram_html(s)), html=True)
        return telegram_html(html)

    async def _call(self, client: Fetcher, opts: TelegramOptions, method: str, what: str, *, json: Any = None,
                    data: Any = None, files: Any = None) -> Any:
        """The Bot API's `result`; its errors as ChannelError (the token never in a message)."""
        token = opts.bot_token.get_secret_value()
        url = f"{opts.api_url}/bot{token}/{method}"
        try:
            answer = await client.send("POST", url, json=json, data=data, files=files, timeout=30)
        except FetchError as exc:
            error = network_error(exc, f"Telegram ({what})")
            error.message = error.message.replace(token, "<bot_token>")
            raise error from None
        try:
            found = loads(answer.body or b"{}")
        except ValueError:
            found = {}
        if isinstance(found, dict) and found.get("ok") is True:
            return found.get("result")
        raise _error(found if isinstance(found, dict) else {}, answer.status, what)


def _error(found: dict[str, Any], status: int, what: str) -> ChannelError:
    code = int(found.get("error_code") or status)
    description = str(found.get("description") or f"HTTP {status}")
    parameters = found.get("parameters") or {}
    message = f"Telegram ({what}): {description}"
    if code == 429:
        return ChannelError(message, stop="wait", retry_after=float(parameters.get("retry_after") or 30), status=code,
                            hint="Telegram's flood limit; the hub waits as long as it asks")
    if "migrate_to_chat_id" in parameters:
        return ChannelError(message, stop="pause", status=code,
                            hint=f"the group became a supergroup: set chat_id: \"{parameters['migrate_to_chat_id']}\"")
    if (code in (401, 403, 404) and "message" not in description.lower()) or "chat not found" in description.lower():
        return ChannelError(message, stop="pause", status=code,
                            hint="check bot_token and chat_id, and that the bot is an admin of the chat allowed "
                                 "to post")
    if code >= 500 or status >= 500:
        return ChannelError(message, retry_after=float(parameters.get("retry_after") or 0) or None, status=code,
                            hint="usually temporary; the hub tries again later")
    return ChannelError(message, permanent=True, status=code, hint="Telegram rejected the message")


def _link(chat_id: str, message_id: str) -> str | None:
    """t.me link of a public channel's message."""
    return f"https://t.me/{chat_id[1:]}/{message_id}" if chat_id.startswith("@") else None
