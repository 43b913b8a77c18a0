"""Fake channel servers on loopback, shaped as their documentation describes, and a small town
that publishes to them (issue 16).

- `WebhookReceiver`: verifies every delivery with the official `standardwebhooks` library and
  keeps it (id, type, data); scripted answers (500, 410, a redirect, no answer in time).
- `FakeMastodon`: `/api/v2/instance`, `/api/v2/media` (202, then 206 while "processing",
  then 200), `/api/v1/statuses` with `Idempotency-Key`, `PUT` and `DELETE` of a status, 429
  with `X-RateLimit-Reset`; a Bearer token.
- `FakeTelegram`: the Bot API's `sendMessage`, `sendPhoto` (multipart), `editMessageText`,
  `editMessageCaption`, `deleteMessage`; rejects tags outside Telegram's HTML allow-list
  ("can't parse entities") and texts over 4,096 / captions over 1,024 characters after
  entity parsing, as Telegram does; `{"ok": false, "error_code": 429, ... retry_after}`.
- `FakeWordPress`: `/wp-json/wp/v2/posts` (create 201, update, DELETE to the trash),
  `/media` (raw bytes with Content-Disposition, then alt_text), `/tags` (`?slug=`, create,
  400 `term_exists`), with HTTP Basic auth by application password.

Each runs aiohttp.web on its own loop in a thread, like tests/feedserver.py, and keeps every
request (`requests`); `fail(n, status)` makes the next n requests answer `status`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import threading
import time
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from html import unescape
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp import web
from standardwebhooks import Webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the fact sheet's test vector's secret
_URL_RE = re.compile(r"https?://[^\s<>\"]+")
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "blockquote",
                 "tg-spoiler", "span", "tg-emoji"}


class Logged(dict):
    """A request as a fake saw it: method, path (with query), headers (lower case), body."""


class Fake:
    """An aiohttp app on loopback in its own thread."""

    def __init__(self) -> None:
        self.requests: list[Logged] = []
        self._failures: deque[tuple[int, dict[str, str], bytes, float]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, n: int, status: int = 500, headers: dict[str, str] | None = None, body: bytes = b"",
             hang: float = 0.0) -> None:
        """The next `n` requests (of the routes that call `scripted`) get `status`; with
        `hang`, the answer comes after that many seconds (past the client's timeout)."""
        for _ in range(n):
            self._failures.append((status, headers or {}, body, hang))

    async def scripted(self) -> web.Response | None:
        if not self._failures:
            return None
        status, headers, body, hang = self._failures.popleft()
        if hang:
            await asyncio.sleep(hang)
        return web.Response(status=status, headers=headers, body=body)

    def start(self) -> Fake:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(sock, ready), daemon=True, name=type(self).__name__)
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop = None

    async def _shutdown(self) -> None:
        await self._runner.cleanup()
        rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in rest:  # answers still hanging (a test's lost answers)
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, sock: socket.socket, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def startup() -> None:
            app = web.Application(middlewares=[self._log], client_max_size=20 * 1024 * 1024)
            self.routes(app)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()

        self._loop.run_until_complete(startup())
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    @web.middleware
    async def _log(self, request: web.Request, handler) -> web.StreamResponse:
        multipart = request.content_type.startswith("multipart/")  # read by the route (request.post())
        body = b"" if multipart else await request.read()
        self.requests.append(Logged(method=request.method, path=request.path_qs, body=body,
                                    headers={k.lower(): v for k, v in request.headers.items()}))
        return await handler(request)


# --- a webhook receiver --------------------------------------------------------------------------

@dataclass
class Received:
    id: str
    type: str
    timestamp: str
    data: dict[str, Any]
    at: float


class WebhookReceiver(Fake):
    """POST /hook: every delivery verified with `standardwebhooks` (a bad signature or a stale
    timestamp is answered 400 and kept in `rejected`)."""

    def __init__(self, secret: str = SECRET, delay: float = 0.0) -> None:
        super().__init__()
        self.verifier = Webhook(secret)
        self.received: list[Received] = []
        self.rejected: list[str] = []
        self.delay = delay
        self.answer_id = False  # answer {"id": "remote-<record>"} like a platform's API
        self.lose_answers = 0  # the next n deliveries arrive, but their answer comes too late
        self.lose_for = 5.0
        self.each = None  # called with each verified delivery (a test's clock moves on)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/moved", self._moved)

    async def _moved(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": self.url("/hook")})

    async def _hook(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        scripted = await self.scripted()
        if scripted is not None:
            return scripted
        body = await request.read()
        try:
            payload = self.verifier.verify(body, dict(request.headers))
        except Exception as exc:  # standardwebhooks.WebhookVerificationError
            self.rejected.append(str(exc))
            return web.Response(status=400, text="bad signature")
        self.received.append(Received(request.headers["webhook-id"], payload["type"], payload["timestamp"],
                                      payload["data"], time.time()))
        if self.each is not None:
            self.each(self.received[-1])
        if self.lose_answers:
            self.lose_answers -= 1
            await asyncio.sleep(self.lose_for)
        if self.answer_id:
            return web.json_response({"id": f"remote-{payload['data']['id']}"})
        return web.Response(status=204)

    def of(self, record_id: int) -> list[Received]:
        return [r for r in self.received if r.data["id"] == record_id]


# --- Mastodon -------------------------------------------------------------------------------------

class FakeMastodon(Fake):
    def __init__(self, token: str = "mastodon-token", max_characters: int = 500, processing_polls: int = 1) -> None:
        super().__init__()
        self.token = token
        self.max_characters = max_characters
        self.processing_polls = processing_polls  # 206 answers before an upload is ready
        self.statuses: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}  # Idempotency-Key -> status id
        self.deleted: list[str] = []
        self.lose_answers = 0  # the next n statuses are made, but their answer comes too late
        self.lose_for = 2.0
        self._next = 100

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v2/instance", self._instance)
        app.router.add_post("/api/v2/media", self._upload)
        app.router.add_get("/api/v1/media/{id}", self._media)
        app.router.add_post("/api/v1/statuses", self._create)
        app.router.add_put("/api/v1/statuses/{id}", self._edit)
        app.router.add_delete("/api/v1/statuses/{id}", self._delete)

    def _new_id(self) -> str:
        self._next += 1
        return str(self._next)

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "The access token is invalid"}, status=401)
        return None

    async def _instance(self, request: web.Request) -> web.Response:
        return web.json_response({"domain": "social.example", "configuration": {
            "statuses": {"max_characters": self.max_characters, "max_media_attachments": 4,
                         "characters_reserved_per_url": 23},
            "media_attachments": {"supported_mime_types": ["image/jpeg", "image/png"]}}})

    async def _upload(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) or (denied := await self.scripted()):
            return denied
        form = await request.post()
        file = form.get("file")
        if file is None or not hasattr(file, "file"):
            return web.json_response({"error": "Validation failed: File can't be blank"}, status=422)
        media_id = self._new_id()
        self.media[media_id] = {"id": media_id, "description": form.get("description"), "polls": self.processing_polls,
                                "size": len(file.file.read())}
        return web.json_response({"id": media_id, "type": "image", "url": None}, status=202)

    async def _media(self, request: web.Request) -> web.Response:
        media = self.media[request.match_info["id"]]
        if media["polls"] > 0:
            media["polls"] -= 1
            return web.json_response({"id": media["id"], "url": None}, status=206)
        return web.json_response({"id": media["id"], "type": "image", "url": f"{self.url()}/m/{media['id']}.jpg",
                                  "description": media["description"]})

    async def _create(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) or (denied := await self.scripted()):
            return denied
        body = await request.json()
        key = request.headers.get("Idempotency-Key")
        if key and key in self.keys:  # Mastodon answers a repeat with the first status
            return web.json_response(self.statuses[self.keys[key]])
        for media_id in body.get("media_ids") or []:
            if self.media.get(media_id, {}).get("polls", 0) > 0:
                return web.json_response({"error": "Cannot attach files that have not finished processing. "
                                                   "Try again in a moment!"}, status=422)
        if len(_URL_RE.sub("x" * 23, body["status"])) > self.max_characters:
            return web.json_response({"error": "Validation failed: Text character limit of "
                                               f"{self.max_characters} exceeded"}, status=422)
        status_id = self._new_id()
        self.statuses[status_id] = {"id": status_id, "url": f"{self.url()}/@stadt/{status_id}",
                                    "content": body["status"], "visibility": body.get("visibility"),
                                    "language": body.get("language"), "media_ids": body.get("media_ids") or [],
                                    "edits": 0}
        if key:
            self.keys[key] = status_id
        if self.lose_answers:
            self.lose_answers -= 1
            await asyncio.sleep(self.lose_for)
        return web.json_response(self.statuses[status_id])

    async def _edit(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) or (denied := await self.scripted()):
            return denied
        status = self.statuses.get(request.match_info["id"])
        if status is None:
            return web.json_response({"error": "Record not found"}, status=404)
        body = await request.json()
        status.update(content=body["status"], media_ids=body.get("media_ids") or [], edits=status["edits"] + 1)
        return web.json_response(status)

    async def _delete(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) or (denied := await self.scripted()):
            return denied
        status = self.statuses.pop(request.match_info["id"], None)
        if status is None:
            return web.json_response({"error": "Record not found"}, status=404)
        self.deleted.append(status["id"])
        return web.json_response(status)


# --- Telegram -------------------------------------------------------------------------------------

class _TelegramHTML(HTMLParser):
    """Checks a text as Telegram's HTML mode does: allowed tags only, `&` only in entities."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.bad: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in TELEGRAM_TAGS:
            self.bad = f"Unsupported start tag \"{tag}\""

    def handle_endtag(self, tag):
        if tag not in TELEGRAM_TAGS:
            self.bad = f"Unsupported end tag \"{tag}\""

    def handle_data(self, data):
        if "<" in data or ">" in data:
            self.bad = "unescaped < or >"
        self.text.append(data)

    def handle_entityref(self, name):
        if name not in ("lt", "gt", "amp", "quot"):
            self.bad = f"Unsupported entity &{name};"
        self.text.append(unescape(f"&{name};"))

    def handle_charref(self, name):
        self.text.append(unescape(f"&#{name};"))


def telegram_check(html: str) -> tuple[str | None, str]:
    parser = _TelegramHTML()
    parser.feed(html)
    parser.close()
    return parser.bad, "".join(parser.text)


class FakeTelegram(Fake):
    def __init__(self, token: str = "123456:ABC-telegram") -> None:
        super().__init__()
        self.token = token
        self.chats: dict[str, dict[int, dict[str, Any]]] = {}
        self.deleted: list[int] = []
        self.not_deletable: set[int] = set()
        self._next = 10

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/bot{token}/{method}", self._method)

    async def _method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        if (scripted := await self.scripted()) is not None:
            return scripted
        method = request.match_info["method"]
        if request.content_type == "application/json":
            args = await request.json()
        else:
            form = await request.post()
            args = {k: v for k, v in form.items()}
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            return _tg_error(404, "Not Found")
        return handler(args)

    def _chat(self, args) -> dict[int, dict[str, Any]]:
        return self.chats.setdefault(str(args["chat_id"]), {})

    def _checked(self, text: str, limit: int, what: str) -> tuple[web.Response | None, str]:
        bad, visible = telegram_check(text)
        if bad:
            return _tg_error(400, f"Bad Request: can't parse entities: {bad}"), ""
        if len(visible.encode("utf-16-le")) // 2 > limit:
            return _tg_error(400, f"Bad Request: {what} is too long"), ""
        return None, visible

    def _sendMessage(self, args) -> web.Response:
        if args.get("parse_mode") != "HTML":
            return _tg_error(400, "Bad Request: expected HTML parse mode in this test")
        error, visible = self._checked(args["text"], 4096, "message")
        if error:
            return error
        return self._sent(args, {"type": "text", "text": args["text"], "visible": visible})

    def _sendPhoto(self, args) -> web.Response:
        photo = args.get("photo")
        if photo is None or not hasattr(photo, "file"):
            return _tg_error(400, "Bad Request: there is no photo in the request")
        error, visible = self._checked(args.get("caption", ""), 1024, "message caption")
        if error:
            return error
        return self._sent(args, {"type": "photo", "caption": args.get("caption"), "visible": visible,
                                 "photo_bytes": len(photo.file.read())})

    def _sent(self, args, message: dict[str, Any]) -> web.Response:
        self._next += 1
        message.update(message_id=self._next, edits=0)
        self._chat(args)[self._next] = message
        return web.json_response({"ok": True, "result": {"message_id": self._next, "chat": {"id": args["chat_id"]}}})

    def _editMessageText(self, args) -> web.Response:
        message = self._chat(args).get(int(args["message_id"]))
        if message is None:
            return _tg_error(400, "Bad Request: message to edit not found")
        if message["type"] != "text":
            return _tg_error(400, "Bad Request: there is no text in the message to edit")
        error, visible = self._checked(args["text"], 4096, "message")
        if error:
            return error
        if args["text"] == message["text"]:
            return _tg_error(400, "Bad Request: message is not modified: specified new message content and reply "
                                  "markup are exactly the same as a current content and reply markup of the message")
        message.update(text=args["text"], visible=visible, edits=message["edits"] + 1)
        return web.json_response({"ok": True, "result": {"message_id": message["message_id"]}})

    def _editMessageCaption(self, args) -> web.Response:
        message = self._chat(args).get(int(args["message_id"]))
        if message is None:
            return _tg_error(400, "Bad Request: message to edit not found")
        error, visible = self._checked(args["caption"], 1024, "message caption")
        if error:
            return error
        message.update(caption=args["caption"], visible=visible, edits=message["edits"] + 1)
        return web.json_response({"ok": True, "result": {"message_id": message["message_id"]}})

    def _deleteMessage(self, args) -> web.Response:
        message_id = int(args["message_id"])
        if message_id in self.not_deletable:
            return _tg_error(400, "Bad Request: message can't be deleted")
        if self._chat(args).pop(message_id, None) is None:
            return _tg_error(400, "Bad Request: message to delete not found")
        self.deleted.append(message_id)
        return web.json_response({"ok": True, "result": True})

    def messages(self, chat: str) -> list[dict[str, Any]]:
        return list(self.chats.get(chat, {}).values())


def _tg_error(code: int, description: str, **parameters: Any) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)


def telegram_flood(retry_after: int) -> tuple[int, dict[str, str], bytes]:
    """A 429 as Telegram sends it, for `Fake.fail`."""
    body = {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {retry_after}",
            "parameters": {"retry_after": retry_after}}
    return 429, {"Content-Type": "application/json"}, json.dumps(body).encode()


# --- WordPress ------------------------------------------------------------------------------------

class FakeWordPress(Fake):
    def __init__(self, user: str = "hub", app_password: str = "abcd EFGH ijkl MNOP qrst UVWX") -> None:
        super().__init__()
        self.auth = "Basic " + base64.b64encode(f"{user}:{''.join(app_password.split())}".encode()).decode()
        self.posts: dict[int, dict[str, Any]] = {}
        self.media: dict[int, dict[str, Any]] = {}
        self.tags: dict[int, dict[str, Any]] = {1: {"id": 1, "name": "Markt", "slug": "markt"}}
        self._next = 1000

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/wp-json/wp/v2/posts", self._create)
        app.router.add_post("/wp-json/wp/v2/posts/{id}", self._update)
        app.router.add_delete("/wp-json/wp/v2/posts/{id}", self._delete)
        app.router.add_post("/wp-json/wp/v2/media", self._upload)
        app.router.add_post("/wp-json/wp/v2/media/{id}", self._describe)
        app.router.add_get("/wp-json/wp/v2/tags", self._find_tag)
        app.router.add_post("/wp-json/wp/v2/tags", self._make_tag)

    def _id(self) -> int:
        self._next += 1
        return self._next

    def _denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != self.auth:
            return web.json_response({"code": "rest_not_logged_in", "message": "You are not currently logged in.",
                                      "data": {"status": 401}}, status=401)
        return None

    async def _create(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) or (denied := await self.scripted()):
            return denied
        body = await request.json()
        post_id = self._id()
        self.posts[post_id] = {"id": post_id, "link": f"{self.url()}/?p={post_id}", "updates": 0, **body}
        return web.json_response(self.posts[post_id], status=201)

    async def _update(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) or (denied := await self.scripted()):
            return denied
        post = self.posts.get(int(request.match_info["id"]))
        if post is None or post.get("status") == "trash":
            return web.json_response({"code": "rest_post_invalid_id", "message": "Invalid post ID."}, status=404)
        post.update(await request.json())
        post["updates"] += 1
        return web.json_response(post)

    async def _delete(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) or (denied := await self.scripted()):
            return denied
        post = self.posts.get(int(request.match_info["id"]))
        if post is None:
            return web.json_response({"code": "rest_post_invalid_id", "message": "Invalid post ID."}, status=404)
        if request.query.get("force") == "true":
            del self.posts[post["id"]]
            return web.json_response({"deleted": True, "previous": post})
        if post["status"] == "trash":
            return web.json_response({"code": "rest_already_trashed", "message": "The post has already been deleted."},
                                     status=410)
        post["status"] = "trash"
        return web.json_response(post)

    async def _upload(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) or (denied := await self.scripted()):
            return denied
        disposition = request.headers.get("Content-Disposition", "")
        if "filename=" not in disposition:
            return web.json_response({"code": "rest_upload_no_content_disposition",
                                      "message": "No Content-Disposition supplied."}, status=400)
        media_id = self._id()
        self.media[media_id] = {"id": media_id, "bytes": len(await request.read()),
                                "type": request.headers.get("Content-Type"), "alt_text": "",
                                "source_url": f"{self.url()}/wp-content/uploads/{media_id}.jpg"}
        return web.json_response(self.media[media_id], status=201)

    async def _describe(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        media = self.media[int(request.match_info["id"])]
        media.update(await request.json())
        return web.json_response(media)

    async def _find_tag(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        slug = request.query.get("slug")
        return web.json_response([t for t in self.tags.values() if t["slug"] == slug])

    async def _make_tag(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        body = await request.json()
        for tag in self.tags.values():
            if tag["slug"] == body.get("slug") or tag["name"] == body["name"]:
                return web.json_response({"code": "term_exists", "message": "A term with the name provided already "
                                          "exists in this taxonomy.", "data": {"status": 400, "term_id": tag["id"]}},
                                         status=400)
        tag_id = self._id()
        self.tags[tag_id] = {"id": tag_id, "name": body["name"], "slug": body.get("slug") or body["name"].lower()}
        return web.json_response(self.tags[tag_id], status=201)

    def live_posts(self) -> list[dict[str, Any]]:
        return [p for p in self.posts.values() if p.get("status") != "trash"]


# --- a town that publishes -------------------------------------------------------------------------

def jpeg(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (640, 400)) -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


@dataclass
class Entry:
    """One entry of a test feed."""

    guid: str
    title: str
    text: str
    age: timedelta = timedelta(hours=1)  # published this long before the feed's `now`
    image: str | None = None  # a file name on the feed server
    category: str | None = None
    more_images: tuple[str, ...] = ()


def rss(entries: list[Entry], images_base: str, now: datetime | None = None) -> bytes:
    from email.utils import format_datetime
    from xml.sax.saxutils import escape

    now = now or datetime.now(timezone.utc)
    items = []
    for e in entries:
        enclosure = "".join(f'<enclosure url="{images_base}/files/{name}" type="image/jpeg" length="1000"/>'
                            for name in ((e.image,) if e.image else ()) + e.more_images)
        category = f"<category>{escape(e.category)}</category>" if e.category else ""
        items.append(f"<item><title>{escape(e.title)}</title><guid>{e.guid}</guid>"
                     f"<link>https://laden.example/{e.guid}</link><pubDate>{format_datetime(now - e.age)}</pubDate>"
                     f"{category}<description>{escape(e.text)}</description>{enclosure}</item>")
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Laden</title>'
            f"<link>https://laden.example/</link>{''.join(items)}</channel></rss>").encode()


def channel_config(path: Path, feed_url: str, channel: str, *, store_url: str | None = None, lease: str = "5m",
                   publish_tick: str = "30s", allow_private: bool = True, extra_merchants: str = "",
                   total_timeout: float = 10, connector: str = "rss") -> Path:
    """A town of one merchant (`laden`, category einzelhandel) with one feed and one channel
    (`channel`: its YAML lines under `channels:`). Without `allow_private`, only 127.0.0.1
    of the private addresses may be reached (the fakes)."""
    store_url = store_url or f"sqlite:///{path.parent}/hub.db"
    path.write_text(f"""
platform: {{name: Musterstadt erleben, base_url: "https://musterstadt.example"}}
store: {{url: "{store_url}"}}
fetcher: {{allow_private_networks: {str(allow_private).lower()}, allowed_networks: ["127.0.0.1/32"], retries: 0,
           host_spacing: 0, total_timeout: {total_timeout:g}}}
schedule: {{lease: {lease}, publish_tick: {publish_tick}, first_fetches_per_second: 1000}}
merchants:
  - id: laden
    name: Laden am Markt
    category: einzelhandel
    website: https://laden.example
    sources:
      - {{connector: {connector}, id: laden, url: "{feed_url}"}}
{extra_merchants}
channels:
{channel}
""")
    return path


@asynccontextmanager
async def channel_town(path: Path, clock) -> AsyncIterator[Any]:
    from tests.schedtown import town

    async with town(path, clock) as t:
        yield t


async def ingest(t, clock, seconds: float = 1) -> None:
    """Fetch what is due (after `seconds` of fake time), as `hub run` would."""
    clock.advance(seconds)
    await t.fetch_due()


def refetch(t) -> None:
    """Make every source due again (a test changed its feed)."""
    with t.store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE sources SET next_fetch_at = '2000-01-01 00:00:00', etag = NULL, "
                             "last_modified = NULL")


def ledger_rows(store, channel: str) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.exec_driver_sql(
            f"SELECT * FROM ledger WHERE channel_id = '{channel}' ORDER BY id")]


def record_ids(store) -> dict[str, int]:
    """title -> record id (of the records residents may see)."""
    return {r.item.title: r.id for r in store.records.list(limit=1000)}
