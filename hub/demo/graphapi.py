"""A fake Graph API (Facebook pages, Instagram professional accounts) on loopback: for the
tests, the Facebook benchmark and a demo town that runs offline.

It serves in-memory fixtures in the documented JSON shapes (connector-facts 1.12 and 2):

    GET /{version}/{page_id}/published_posts   (also /feed, /posts)  paged, newest first
    GET /{version}/{ig_user_id}/media                                paged, newest first
    GET /{version}/{page_id}_{post_id}, /{version}/{media_id}        one entry
    GET /{version}/{page_id}?fields=instagram_business_account       the page, its IG account
    GET /{version}/me/accounts                                       a user token's pages
    GET /{version}/debug_token, /{version}/oauth/access_token        token helpers
    POST /{version}/{app_id}/subscriptions                           the app's webhook (checks the callback)
    POST /{version}/{page_id}/subscribed_apps                        a page's webhook fields
    GET /cdn/...                                                     the images (fbcdn-like)
    GET /_fake/calls                                                 requests per object (not Meta's)
    POST /_fake/pages/{page_id}/posts                                a merchant posts (not Meta's): the
                                                                     webhook delivery follows, signed

What it does as Meta does: `limit` (25, at most 100) and `after` cursors; `paging.next`
embeds the access_token, and is absent on the last page; posts can be withheld (`withhold`),
which makes short pages mid-list; only the asked `fields` are returned; a wrong token is
error 190; usage headers (`X-App-Usage`, `X-Page-Usage`, `X-Business-Use-Case-Usage`) as
set with `usage`; errors injected per object or token with `fail` (any code and subcode,
with Meta's body and HTTP status); appsecret_proof checked when `app_secret` is set (and
required with `require_proof`). Image URLs look like fbcdn's: signed (`oh`) with an expiry
(`oe`, hex Unix time) `cdn_lifetime` after the response; the CDN answers 403 "URL signature
expired" once that passed on the server's clock (`advance` moves it), so the hub's
refresh of expired images can be tested. `debug_token` says what `token(...)` set. The
webhook: an app subscription is made only after the callback passed the handshake, and
`notify(page, post, verb)` (or a post made through `/_fake/pages/...`) delivers a thin
`feed` notification to it, signed with the app secret, if the page subscribed too.

In a test:

    with FakeGraph() as graph:
        page = graph.add_page("104523984512345", token="EAAB-schmitz", name="Bäckerei Schmitz")
        page.post("Frische Erdbeeren ab 8 Uhr! #markt", age=timedelta(hours=2), photos=[graph.photo()])
        url = graph.graph_url            # for `graph_url:` in the config

Standalone (a demo town offline; fixtures as JSON, see `load_fixtures`):

    python -m hub.demo.graphapi --port 8790 --fixtures hub/demo/musterstadt/facebook.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import hmac
import io
import itertools
import json
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, NamedTuple
from urllib.parse import urlencode

from aiohttp import ClientSession, web

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
_CDN_PREFIX = "cdn:"  # an image placeholder in fixtures, signed when served
_CDN_KEY = b"fake-cdn-signing-key"
_ids = itertools.count(812300000000001)


class Failure(NamedTuple):
    code: int
    subcode: int | None
    status: int
    message: str
    regain_minutes: float | None


@dataclass
class Image:
    name: str
    width: int
    height: int
    path: Path | None = None  # a real picture to serve; else one is drawn


@dataclass
class FakePage:
    id: str
    token: str
    name: str
    graph: FakeGraph = field(repr=False)
    posts: list[dict] = field(default_factory=list)  # newest first
    instagram: FakeInstagram | None = None
    subscribed: set[str] = field(default_factory=set)  # the app's fields this page delivers (subscribed_apps)

    def post(self, message: str | None = None, *, age: timedelta = timedelta(0), post_id: str | None = None,
             photos: list[str] = (), album: list[str] = (), share: tuple[str, str, str] | None = None,
             event: tuple[str, str] | None = None, video: str | None = None, story: str | None = None,
             place: dict | None = None, hidden: bool = False, published: bool = True,
             updated_age: timedelta | None = None, status_type: str | None = None) -> dict:
        """Add a post `age` ago, shaped as Graph returns it; returns it (tests may edit it:
        changes show on the next read). `photos`/`album` are `photo()` references; `share`
        is (url, title, description); `event` is (url, title)."""
        created = self.graph.now() - age
        updated = self.graph.now() - (updated_age if updated_age is not None else age)
        pid = post_id or f"{self.id}_{next(_ids)}"
        post: dict[str, Any] = {"id": pid, "created_time": _graph_time(created), "updated_time": _graph_time(updated),
                                "permalink_url": f"https://www.facebook.com/{self.id}/posts/{pid.split('_')[-1]}",
                                "is_hidden": hidden, "is_published": published, "is_expired": False,
                                "from": {"id": self.id, "name": self.name}}
        if message is not None:
            post["message"] = message
        if story is not None:
            post["story"] = story
        if place is not None:
            post["place"] = place
        attachments = self._attachments(pid, list(photos), list(album), share, event, video)
        if attachments:
            post["attachments"] = {"data": attachments}
        pictures = [a["media"]["image"]["src"] for a in attachments if "media" in a]
        if pictures:
            post["full_picture"] = pictures[0]
        post["status_type"] = status_type or ("created_event" if event else "shared_story" if share else
                                              "added_video" if video else "added_photos" if photos or album
                                              else "mobile_status_update")
        self.posts.append(post)
        self.posts.sort(key=lambda p: p["created_time"], reverse=True)
        return post

    def _attachments(self, pid: str, photos: list[str], album: list[str], share, event, video) -> list[dict]:
        out = []
        for ref in photos:
            out.append({"media_type": "photo", "type": "photo", "target": {"id": str(next(_ids))},
                        "url": f"https://www.facebook.com/photo.php?fbid={next(_ids)}", "media": self.graph.media(ref)})
        if album:
            subs = [{"media_type": "photo", "type": "photo", "target": {"id": str(next(_ids))},
                     "media": self.graph.media(ref)} for ref in album]
            out.append({"media_type": "album", "type": "album", "target": {"id": pid.split("_")[-1]},
                        "title": "Fotos", "media": self.graph.media(album[0]), "subattachments": {"data": subs}})
        if share:
            url, title, description = share
            shim = "https://l.facebook.com/l.php?" + urlencode({"u": url, "h": "AT0fake"})
            out.append({"media_type": "link", "type": "share", "title": title, "description": description,
                        "url": shim, "unshimmed_url": url})
        if event:
            url, title = event
            out.append({"media_type": "event", "type": "event", "title": title, "url": url,
                        "target": {"id": url.rstrip("/").rsplit("/", 1)[-1], "url": url}})
        if video:
            out.append({"media_type": "video", "type": "video_inline", "media": self.graph.media(video),
                        "url": f"https://www.facebook.com/{self.id}/videos/{next(_ids)}"})
        return out

    def remove(self, post: dict) -> None:
        self.posts.remove(post)


@dataclass
class FakeInstagram:
    id: str
    token: str
    username: str
    graph: FakeGraph = field(repr=False)
    media: list[dict] = field(default_factory=list)

    def medium(self, caption: str | None = None, *, age: timedelta = timedelta(0), kind: str = "IMAGE",
               picture: str | None = None, children: list[tuple[str, str]] = (), media_id: str | None = None,
               product: str = "FEED") -> dict:
        """Add a medium: IMAGE (`picture`), VIDEO (`picture` is its thumbnail) or
        CAROUSEL_ALBUM (`children`: (kind, picture) pairs)."""
        mid = media_id or str(next(_ids))
        medium: dict[str, Any] = {"id": mid, "media_type": kind, "media_product_type": product,
                                  "permalink": f"https://www.instagram.com/p/{_shortcode(mid)}/",
                                  "timestamp": _graph_time(self.graph.now() - age), "username": self.username}
        if caption is not None:
            medium["caption"] = caption
        if kind == "VIDEO":
            medium["media_url"] = f"https://video.cdninstagram.example/{mid}.mp4"
            medium["thumbnail_url"] = picture or self.graph.photo()
        elif kind == "IMAGE":
            medium["media_url"] = picture or self.graph.photo()
        if children:
            data = []
            for child_kind, ref in children:
                child = {"id": str(next(_ids)), "media_type": child_kind}
                if child_kind == "VIDEO":
                    child.update(media_url=f"https://video.cdninstagram.example/{child['id']}.mp4", thumbnail_url=ref)
                else:
                    child["media_url"] = ref
                data.append(child)
            medium["children"] = {"data": data}
            medium["media_url"] = data[0].get("media_url")
        self.media.append(medium)
        self.media.sort(key=lambda m: m["timestamp"], reverse=True)
        return medium


class FakeGraph:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, cdn_lifetime: timedelta = timedelta(days=3),
                 app_id: str | None = None, app_secret: str | None = None, require_proof: bool = False) -> None:
        self.host = host
        self.cdn_lifetime = cdn_lifetime
        self.app_id = app_id
        self.app_secret = app_secret
        self.require_proof = require_proof
        self.pages: dict[str, FakePage] = {}
        self.instagram: dict[str, FakeInstagram] = {}
        self.users: dict[str, list[str]] = {}  # user token -> page ids it manages
        self.token_info: dict[str, dict[str, Any]] = {}  # token -> what debug_token says otherwise (`token`)
        self.withheld: set[str] = set()  # entries left out of lists (privacy filtering)
        self.images: dict[str, Image] = {}
        self.calls: Counter[str] = Counter()  # object id -> requests about it
        self.requests: list[str] = []  # paths with their query, the access_token blanked out
        self.time_offset = timedelta(0)
        self._failures: dict[str, list[tuple[Failure, int | None]]] = {}
        self._usage: dict[str, dict[str, str]] = {}
        self._jpegs: dict[str, bytes] = {}
        self.picture_dir = Path.cwd()  # where `/_fake/pages/{id}/posts` finds a `photo` (the fixtures' folder)
        self.subscription: dict[str, str] | None = None  # the app's webhook: callback_url, fields, verify_token
        self.deliveries: list[tuple[int, bytes]] = []  # webhook deliveries sent: (status, body)
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- fixtures -------------------------------------------------------------------------

    def now(self) -> datetime:
        """The server's clock (real time plus `time_offset`)."""
        return datetime.now(UTC) + self.time_offset

    def advance(self, delta: timedelta) -> None:
        """Move the server's clock on: image URLs handed out before may expire."""
        self.time_offset += delta

    def add_page(self, page_id: str, token: str, name: str = "Testseite") -> FakePage:
        page = self.pages[page_id] = FakePage(page_id, token, name, self)
        return page

    def add_instagram(self, ig_user_id: str, token: str, username: str = "laden", page: FakePage | None = None
                      ) -> FakeInstagram:
        account = self.instagram[ig_user_id] = FakeInstagram(ig_user_id, token, username, self)
        if page is not None:
            page.instagram = account
        return account

    def photo(self, name: str | None = None, width: int = 720, height: int = 720) -> str:
        """An image on the fake CDN: a reference for `post(photos=...)`, signed when served."""
        name = name or f"{next(_ids)}_n.jpg"
        self.images[name] = Image(name, width, height)
        return _CDN_PREFIX + name

    def photo_file(self, path: Path) -> str:
        """A real picture on the fake CDN (the demo town's), by its file."""
        from PIL import Image as Pillow  # only pictures from files need their size read

        with Pillow.open(path) as picture:
            width, height = picture.size
        name = f"{next(_ids)}_{path.stem}_n.jpg"
        self.images[name] = Image(name, width, height, path)
        return _CDN_PREFIX + name

    def token(self, token: str, *, valid: bool = True, expires_in: timedelta | None = None,
              data_access_in: timedelta | None = timedelta(days=90), scopes: list[str] | None = None,
              kind: str | None = None, profile_id: str | None = None) -> None:
        """What `debug_token` says about `token` from now on (default: a valid page token
        that never expires, data access for 90 days, every scope the hub asks for)."""
        info: dict[str, Any] = {"is_valid": valid,
                                "expires_at": int((self.now() + expires_in).timestamp()) if expires_in else 0,
                                "data_access_expires_at": int((self.now() + data_access_in).timestamp())
                                if data_access_in else 0}
        if scopes is not None:
            info["scopes"] = list(scopes)
        if kind is not None:
            info["type"] = kind
        if profile_id is not None:
            info["profile_id"] = profile_id
        if not valid:
            info["error"] = {"code": 190, "subcode": 460, "message": "The session has been invalidated because "
                                                                     "the user changed their password."}
        self.token_info[token] = info

    def media(self, ref: str) -> dict:
        image = self.images[ref.removeprefix(_CDN_PREFIX)]
        return {"image": {"src": ref, "width": image.width, "height": image.height}}

    def fail(self, object_id: str | None = None, *, token: str | None = None, code: int, subcode: int | None = None,
             status: int = 400, message: str | None = None, times: int | None = None,
             regain_minutes: float | None = None) -> None:
        """Answer requests about `object_id` (or with `token`) with this error, `times` times
        (None: until `recover`)."""
        failure = Failure(code, subcode, status, message or _MESSAGES.get(code, "An unknown error occurred"),
                          regain_minutes)
        self._failures.setdefault(object_id or f"token:{token}", []).append((failure, times))

    def recover(self, object_id: str | None = None, *, token: str | None = None) -> None:
        self._failures.pop(object_id or f"token:{token}", None)

    def usage(self, object_id: str, *, app: float | None = None, page: float | None = None,
              buc: float | None = None, regain_minutes: float = 0) -> None:
        """Send these usage percentages with every answer about `object_id`."""
        headers = {}
        if app is not None:
            headers["X-App-Usage"] = json.dumps({"call_count": app, "total_time": app / 2, "total_cputime": app / 2})
        if page is not None:
            headers["X-Page-Usage"] = json.dumps({"call_count": page, "total_cputime": page / 2,
                                                  "total_time": page / 2})
        if buc is not None:
            headers["X-Business-Use-Case-Usage"] = json.dumps({object_id: [{
                "type": "pages", "call_count": buc, "total_cputime": buc / 3, "total_time": buc / 3,
                "estimated_time_to_regain_access": regain_minutes}]})
        self._usage[object_id] = headers

    def withhold(self, entry: dict) -> None:
        """Leave this entry out of lists, as Meta's privacy filtering does (short pages)."""
        self.withheld.add(entry["id"])

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeGraph:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._port = sock.getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(sock, ready), daemon=True,
                                        name=f"fakegraph-{self._port}")
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop = self._thread = None

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def graph_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    def _serve(self, sock: socket.socket, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._startup(sock))
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _startup(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_get("/cdn/{path:.+}", self._cdn)
        app.router.add_get("/_fake/calls", self._stats)
        app.router.add_post("/_fake/pages/{page}/posts", self._new_post)
        app.router.add_post("/{version}/{object}/subscriptions", self._subscribe_app)
        app.router.add_post("/{version}/{object}/subscribed_apps", self._subscribe_page)
        app.router.add_get("/{version}/oauth/access_token", self._oauth)
        app.router.add_get("/{version}/debug_token", self._debug_token)
        app.router.add_get("/{version}/me/accounts", self._accounts)
        app.router.add_get("/{version}/{object}/{edge}", self._edge)
        app.router.add_get("/{version}/{object}", self._object)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    # --- routes -----------------------------------------------------------------------------

    async def _edge(self, request: web.Request) -> web.Response:
        object_id, edge = request.match_info["object"], request.match_info["edge"]
        self._log(request, object_id)
        if edge in ("published_posts", "feed", "posts") and object_id in self.pages:
            owner, entries, when = self.pages[object_id], self.pages[object_id].posts, "created_time"
        elif edge == "media" and object_id in self.instagram:
            owner, entries, when = self.instagram[object_id], self.instagram[object_id].media, "timestamp"
        else:
            return _error(400, 100, 33, f"Unsupported get request. Object with ID '{object_id}' does not exist, "
                                        "cannot be loaded due to missing permissions, or does not support this operation")
        refused = self._refusal(request, object_id, owner.token)
        if refused is not None:
            return refused
        return self._answer(object_id, self._list(request, object_id, edge, entries, when))

    async def _object(self, request: web.Request) -> web.Response:
        object_id = request.match_info["object"]
        self._log(request, object_id)
        page_id = object_id.split("_", 1)[0]
        if "_" in object_id and page_id in self.pages:
            owner = self.pages[page_id]
            found = next((p for p in owner.posts if p["id"] == object_id), None)
        elif object_id in self.pages:
            owner = self.pages[object_id]
            found = {"id": owner.id, "name": owner.name}
            if owner.instagram is not None:
                found["instagram_business_account"] = {"id": owner.instagram.id}
        else:
            owner = next((a for a in self.instagram.values() if any(m["id"] == object_id for m in a.media)), None)
            found = next((m for m in owner.media if m["id"] == object_id), None) if owner else None
        scope = page_id if owner is None else owner.id
        refused = self._refusal(request, scope, owner.token if owner else None)
        if refused is not None:
            return refused
        if found is None:
            return _error(400, 100, 33, f"Unsupported get request. Object with ID '{object_id}' does not exist, "
                                        "cannot be loaded due to missing permissions, or does not support this operation")
        return self._answer(scope, self._render(_only(found, request.query.get("fields"))))

    async def _accounts(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        self._log(request, "me")
        refused = self._refusal(request, "me", token if token in self.users else None)
        if refused is not None:
            return refused
        pages = [self.pages[p] for p in self.users[token] if p in self.pages]
        data = [{"id": p.id, "name": p.name, "access_token": p.token, "tasks": ["CREATE_CONTENT", "MANAGE"]}
                for p in pages]
        return web.json_response({"data": data, "paging": {"cursors": {"before": "QVFI", "after": "QVFI"}}})

    async def _debug_token(self, request: web.Request) -> web.Response:
        self._log(request, "debug_token")
        if request.query.get("access_token") != f"{self.app_id}|{self.app_secret}":
            return _error(400, 190, None, "Invalid OAuth access token signature.")
        token = request.query.get("input_token", "")
        page = next((p for p in self.pages.values() if p.token == token), None)
        valid = page is not None or token in self.users
        data = {"app_id": self.app_id, "type": "PAGE" if page else "USER", "is_valid": valid,
                "expires_at": 0, "data_access_expires_at": int((self.now() + timedelta(days=90)).timestamp()),
                "scopes": list(SCOPES)}
        if page is not None:
            data["profile_id"] = page.id
        data.update(self.token_info.get(token, {}))
        return web.json_response({"data": data})

    async def _oauth(self, request: web.Request) -> web.Response:
        self._log(request, "oauth")
        q = request.query
        if (q.get("client_id"), q.get("client_secret")) != (self.app_id, self.app_secret):
            return _error(400, 1, None, "Error validating client secret.")
        short = q.get("fb_exchange_token", "")
        if short not in self.users:
            return _error(400, 190, 463, "Error validating access token: Session has expired.")
        long_lived = f"{short}-long"
        self.users[long_lived] = self.users[short]
        return web.json_response({"access_token": long_lived, "token_type": "bearer", "expires_in": 5183944})

    async def _cdn(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        expiry, signature = request.query.get("oe", ""), request.query.get("oh", "").removeprefix("00_")
        if not hmac.compare_digest(signature, _sign(path, expiry)):
            return web.Response(status=403, text="Bad URL hash")
        if int(expiry or "0", 16) < self.now().timestamp():
            return web.Response(status=403, text="URL signature expired")
        image = self.images.get(path.rsplit("/", 1)[-1])
        if image is None:
            raise web.HTTPNotFound()
        return web.Response(body=self._jpeg(image), content_type="image/jpeg")

    async def _subscribe_app(self, request: web.Request) -> web.Response:
        """POST /{app-id}/subscriptions: Meta checks the callback at once (the handshake), and
        subscribes only if it answers with the challenge."""
        form = await request.post()
        self._log(request, "subscriptions")
        if request.match_info["object"] != self.app_id or form.get("access_token") != f"{self.app_id}|{self.app_secret}":
            return _error(400, 190, None, "Invalid OAuth access token signature.")
        if form.get("object") != "page" or not form.get("callback_url") or not form.get("verify_token"):
            return _error(400, 100, None, "(#100) object, callback_url and verify_token are required")
        challenge = str(int.from_bytes(hashlib.sha256(str(self.now()).encode()).digest()[:4], "big"))
        query = {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": form["verify_token"]}
        try:
            async with ClientSession() as session, session.get(form["callback_url"], params=query) as answer:
                status, text = answer.status, await answer.text()
        except OSError as exc:
            return _error(400, 2200, None, f"(#2200) Callback verification failed: {exc}")
        if status != 200 or text != challenge:
            return _error(400, 2200, None, "(#2200) Callback verification failed with the following errors: "
                                           f"HTTP Status Code = {status}; HTTP Message = {text[:80]}")
        self.subscription = {k: str(form[k]) for k in ("callback_url", "fields", "verify_token") if k in form}
        return web.json_response({"success": True})

    async def _subscribe_page(self, request: web.Request) -> web.Response:
        """POST /{page-id}/subscribed_apps: the page delivers these fields to the app."""
        form = await request.post()
        page = self.pages.get(request.match_info["object"])
        self._log(request, "subscribed_apps")
        if page is None:
            return _error(400, 100, 33, "Unsupported post request.")
        refused = self._refusal(_FormRequest(request, form), page.id, page.token)
        if refused is not None:
            return refused
        page.subscribed = set(str(form.get("subscribed_fields") or "").split(",")) - {""}
        return web.json_response({"success": True})

    async def _new_post(self, request: web.Request) -> web.Response:
        """POST /_fake/pages/{id}/posts (not Meta's): a merchant posts `message` (with a
        `photo` from the demo's pictures, optional); the page's webhook delivery follows."""
        form = await request.post()
        page = self.pages.get(request.match_info["page"])
        if page is None:
            raise web.HTTPNotFound()
        picture = (self.picture_dir / str(form.get("photo") or "")).resolve()
        if form.get("photo") and not (picture.is_file() and picture.is_relative_to(self.picture_dir.resolve())):
            raise web.HTTPBadRequest(text=f"no picture {form['photo']} below {self.picture_dir}")
        photo = self.photo_file(picture) if form.get("photo") else None
        post = page.post(str(form.get("message") or ""), photos=[photo] if photo else [])
        status = await self._deliver(page, {"item": "photo" if photo else "status", "verb": "add",
                                            "post_id": post["id"], "published": 1,
                                            "created_time": int(self.now().timestamp()),
                                            "from": {"id": page.id, "name": page.name},
                                            "message": post.get("message", "")})
        return web.json_response({"id": post["id"], "delivered": status})

    def notify(self, page: FakePage, post: dict, verb: str = "add", item: str = "status") -> int | None:
        """Deliver a `feed` change of `post` to the app's webhook, as Meta does, signed with
        the app secret (from a test's thread); the callback's HTTP status, None if the page
        or the app is not subscribed."""
        value = {"item": item, "verb": verb, "post_id": post["id"], "published": 1,
                 "created_time": int(self.now().timestamp()), "from": {"id": page.id, "name": page.name}}
        return asyncio.run_coroutine_threadsafe(self._deliver(page, value), self._loop).result()

    async def _deliver(self, page: FakePage, value: dict) -> int | None:
        sub = self.subscription
        if sub is None or "feed" not in sub.get("fields", "").split(",") or "feed" not in page.subscribed:
            return None
        body = json.dumps({"object": "page", "entry": [{"id": page.id, "time": int(self.now().timestamp()),
                                                         "changes": [{"field": "feed", "value": value}]}]},
                          ensure_ascii=False).encode()
        signature = "sha256=" + hmac.new((self.app_secret or "").encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        try:
            async with ClientSession() as session, session.post(sub["callback_url"], data=body,
                                                                headers=headers) as answer:
                self.deliveries.append((answer.status, body))
                return answer.status
        except OSError:
            self.deliveries.append((0, body))  # Meta retries for a while, then drops it
            return 0

    async def _stats(self, request: web.Request) -> web.Response:
        """Requests per object so far (for a benchmark in another process); not Meta's."""
        return web.json_response({"calls": dict(self.calls), "requests": len(self.requests)})

    # --- answering --------------------------------------------------------------------------

    def _log(self, request: web.Request, object_id: str) -> None:
        self.calls[object_id] += 1
        query = {k: ("[token]" if k in ("access_token", "input_token", "fb_exchange_token", "client_secret",
                                         "appsecret_proof") else v) for k, v in request.query.items()}
        self.requests.append(f"{request.path}?{urlencode(query)}")

    def _refusal(self, request: web.Request, object_id: str, token: str | None) -> web.Response | None:
        """An injected failure, a wrong token or a missing appsecret_proof, in Meta's words."""
        given = request.query.get("access_token", "")
        for key in (object_id, f"token:{given}"):
            queue = self._failures.get(key)
            if queue:
                failure, times = queue[0]
                if times is not None:
                    queue[0] = (failure, times - 1)
                    if times - 1 <= 0:
                        queue.pop(0)
                headers = {}
                if failure.regain_minutes is not None:
                    headers["X-Business-Use-Case-Usage"] = json.dumps({object_id: [{
                        "type": "pages", "call_count": 100, "total_cputime": 40, "total_time": 40,
                        "estimated_time_to_regain_access": failure.regain_minutes}]})
                return _error(failure.status, failure.code, failure.subcode, failure.message, headers)
        if token is None or not hmac.compare_digest(given, token):
            return _error(400, 190, None, "Invalid OAuth access token - Cannot parse access token")
        proof = request.query.get("appsecret_proof")
        if self.app_secret and (proof or self.require_proof):
            wanted = hmac.new(self.app_secret.encode(), given.encode(), hashlib.sha256).hexdigest()
            if not proof or not hmac.compare_digest(proof, wanted):
                return _error(400, 100, None, "Invalid appsecret_proof provided in the API argument")
        return None

    def _list(self, request: web.Request, object_id: str, edge: str, entries: list[dict], when: str) -> dict:
        """One page of an edge: `limit` entries from the cursor on, less the withheld ones;
        `next` (with the token in it) only if entries remain."""
        q = request.query
        limit = min(MAX_LIMIT, max(1, int(q.get("limit") or DEFAULT_LIMIT)))
        since, until = _unix(q.get("since")), _unix(q.get("until"))
        chosen = [e for e in entries if (since is None or _parse(e[when]) >= since)
                  and (until is None or _parse(e[when]) <= until)]
        start = _position(chosen, q.get("after"))
        window = chosen[start:start + limit]
        expiry = self._expiry()
        body: dict[str, Any] = {"data": [self._render(_only(e, q.get("fields")), expiry) for e in window
                                         if e["id"] not in self.withheld]}
        if window:
            cursors = {"before": _cursor(window[0]["id"]), "after": _cursor(window[-1]["id"])}
            body["paging"] = {"cursors": cursors}
            if start + limit < len(chosen):
                query = {k: v for k, v in q.items() if k not in ("after", "before")}
                body["paging"]["next"] = (f"{self.graph_url}{request.path}?"
                                          + urlencode({**query, "after": cursors["after"]}))
        return body

    def _answer(self, object_id: str, body: dict) -> web.Response:
        return web.Response(text=json.dumps(body, ensure_ascii=False), content_type="application/json",
                            headers=self._usage.get(object_id, {}))

    def _render(self, value: Any, expiry: str | None = None) -> Any:
        """Image placeholders as signed, expiring CDN URLs (fresh on every answer)."""
        expiry = expiry or self._expiry()
        if isinstance(value, str):
            return self.cdn_url(value.removeprefix(_CDN_PREFIX), expiry) if value.startswith(_CDN_PREFIX) else value
        if isinstance(value, dict):
            return {k: v if isinstance(v, (bool, int, float)) or v is None else self._render(v, expiry)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(v, expiry) for v in value]
        return value

    def _expiry(self) -> str:
        return format(int((self.now() + self.cdn_lifetime).timestamp()), "X")

    def cdn_url(self, name: str, expiry: str | None = None) -> str:
        """A signed URL of an image, valid for `cdn_lifetime` from the server's now."""
        path = f"v/t39.30808-6/{name}"
        expiry = expiry or self._expiry()
        return (f"{self.graph_url}/cdn/{path}?stp=dst-jpg_s720x720&_nc_sid=127cfc&_nc_ohc=fake"
                f"&oh=00_{_sign(path, expiry)}&oe={expiry}")

    def _jpeg(self, image: Image) -> bytes:
        if image.name not in self._jpegs and image.path is not None:
            self._jpegs[image.name] = image.path.read_bytes()
        if image.name not in self._jpegs:
            from PIL import Image as Pillow  # only the CDN route draws

            digest = hashlib.sha256(image.name.encode()).digest()
            picture = Pillow.new("RGB", (image.width, image.height), tuple(digest[:3]))
            out = io.BytesIO()
            picture.save(out, "JPEG", quality=70)
            self._jpegs[image.name] = out.getvalue()
        return self._jpegs[image.name]


SCOPES = ("pages_show_list", "pages_read_engagement", "pages_manage_metadata", "instagram_basic")  # debug_token's default
_MESSAGES = {
    1: "An unknown error occurred", 2: "An unexpected error has occurred. Please retry your request later.",
    4: "(#4) Application request limit reached", 10: "(#10) This endpoint requires the 'pages_read_engagement' "
    "permission or the 'Page Public Content Access' feature.", 17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached", 100: "(#100) Invalid parameter",
    190: "Error validating access token: Session has expired on Friday, 06-Jun-25 10:00:00 PDT.",
    200: "(#200) Requires pages_read_user_content permission to manage the object",
    368: "The action attempted has been deemed abusive or is otherwise disallowed",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80001: "(#80001) There have been too many calls to this Page account. Wait a bit and try again.",
}


class _FormRequest:
    """A POST request seen through `_refusal`, which reads the token from `query`."""

    def __init__(self, request: web.Request, form: Any) -> None:
        self.query = {**request.query, **form}
        self.path = request.path


def _error(status: int, code: int, subcode: int | None, message: str, headers: dict | None = None) -> web.Response:
    error: dict[str, Any] = {"message": message, "type": "OAuthException" if code in (190, 102) else "GraphMethodException",
                             "code": code, "fbtrace_id": base64.b32encode(hashlib.sha1(message.encode()).digest())[:11]
                             .decode()}
    if subcode is not None:
        error["error_subcode"] = subcode
    if code in (1, 2):
        error["is_transient"] = True
    return web.Response(status=status, text=json.dumps({"error": error}), content_type="application/json",
                        headers=headers or {})


def _only(entry: dict, fields: str | None) -> dict:
    """The entry with only the top-level fields asked for (and its id), as Meta answers."""
    wanted = _wanted(fields or "id,message,created_time,caption,timestamp,name")
    return {k: v for k, v in entry.items() if k in wanted}


@functools.lru_cache(maxsize=64)
def _wanted(fields: str) -> frozenset[str]:
    return frozenset({"id"} | {name.split("{", 1)[0].split(".", 1)[0] for name in _top_level(fields)})


def _top_level(fields: str) -> list[str]:
    names, depth, current = [], 0, ""
    for char in fields:
        if char == "," and depth == 0:
            names.append(current.strip())
            current = ""
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        current += char
    return names + [current.strip()] if current.strip() else names


def _cursor(entry_id: str) -> str:
    return base64.urlsafe_b64encode(entry_id.encode()).decode().rstrip("=")


def _position(entries: list[dict], after: str | None) -> int:
    if not after:
        return 0
    try:
        wanted = base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return len(entries)
    ids = [e["id"] for e in entries]
    return ids.index(wanted) + 1 if wanted in ids else len(entries)


def _sign(path: str, expiry: str) -> str:
    return hmac.new(_CDN_KEY, f"{path}|{expiry}".encode(), hashlib.sha256).hexdigest()[:24]


def _graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _parse(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()


def _unix(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _shortcode(media_id: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha1(media_id.encode()).digest())[:11].decode()


# --- fixtures from JSON, for running it standalone ------------------------------------------------

_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")


def age(text: str) -> timedelta:
    """ "2d 3h" -> timedelta(days=2, hours=3)."""
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    return sum((timedelta(**{units[u]: float(n)}) for n, u in _AGE.findall(text)), timedelta(0))


def load_fixtures(graph: FakeGraph, path: Path) -> None:
    """Pages, their posts and Instagram accounts from a JSON file:

        {"app": {"id": "1234567890", "secret": "..."},
         "pages": [{"id": "104523984512345", "name": "Bäckerei Schmitz", "token": "EAAB-demo",
                    "posts": [{"message": "...", "age": "2h", "photos": [[720, 540], "img/brot.jpg"],
                               "album": [[720, 720], ...], "share": ["https://...", "Titel", "Beschreibung"],
                               "event": ["https://...", "Titel"], "video": "img/film.jpg",
                               "place": {"name": "...", "location": {...}}, "hidden": false}],
                    "instagram": {"id": "17841400000000000", "username": "baeckerei",
                                  "media": [{"caption": "...", "age": "1d", "kind": "IMAGE", "picture": "img/x.jpg",
                                             "children": ["IMAGE", ["IMAGE", "img/y.jpg"]]}]}}],
         "users": {"EAAB-user": ["104523984512345"]},
         "tokens": {"EAAB-demo": {"expires_in": "30d", "scopes": ["pages_show_list"]}}}

    A picture is a size ([width, height]: one is drawn) or a file relative to the fixtures
    (served as it is). Ages are relative to the moment the server starts, so a demo never
    ages. Instead of an `age`, an entry may say when it was made (`"created":
    "2026-11-21T10:42:00+01:00"`) in a file that names its demo anchor, as the demo town's
    feeds do (`"_hub_demo": {"dates_relative_to": ...}` near the top, see hub/demo_dates.py):
    its times and the German dates in its texts then move to the day the server starts, in
    step with the feeds. `post_id` and `media_id` fix an entry's id. `tokens` changes what
    debug_token says about a token (see `FakeGraph.token`)."""
    from hub.demo_dates import redate_at  # the demo town's dates, moved to today

    now = graph.now()
    data = json.loads(redate_at(path.read_bytes(), now).decode("utf-8"))
    graph.picture_dir = path.parent

    def ago(entry: dict) -> timedelta:
        if entry.get("created"):
            return max(timedelta(0), now - datetime.fromisoformat(entry["created"]))
        return age(entry.get("age", "0h"))
    graph.app_id = (data.get("app") or {}).get("id", graph.app_id)
    graph.app_secret = (data.get("app") or {}).get("secret", graph.app_secret)

    def picture(ref: Any) -> str:
        return graph.photo_file(path.parent / ref) if isinstance(ref, str) else graph.photo(None, *ref)

    for raw in data.get("pages", []):
        page = graph.add_page(str(raw["id"]), raw["token"], raw.get("name", "Seite"))
        for p in raw.get("posts", []):
            page.post(p.get("message"), age=ago(p), post_id=p.get("post_id"), story=p.get("story"),
                      place=p.get("place"), photos=[picture(ref) for ref in p.get("photos", [])],
                      album=[picture(ref) for ref in p.get("album", [])],
                      share=tuple(p["share"]) if p.get("share") else None,
                      event=tuple(p["event"]) if p.get("event") else None,
                      video=picture(p["video"]) if p.get("video") else None,
                      hidden=p.get("hidden", False), published=p.get("published", True))
        if ig := raw.get("instagram"):
            account = graph.add_instagram(str(ig["id"]), ig.get("token", raw["token"]), ig.get("username", "laden"), page)
            for m in ig.get("media", []):
                children = [(c, graph.photo()) if isinstance(c, str) else (c[0], picture(c[1]))
                            for c in m.get("children", [])]
                account.medium(m.get("caption"), age=ago(m), media_id=m.get("media_id"),
                               kind=m.get("kind", "IMAGE"),
                               picture=picture(m["picture"]) if m.get("picture") else None, children=children)
    for token, pages in (data.get("users") or {}).items():
        graph.users[token] = [str(p) for p in pages]
    for token, info in (data.get("tokens") or {}).items():
        graph.token(token, expires_in=age(info["expires_in"]) if info.get("expires_in") else None,
                    scopes=info.get("scopes"), valid=info.get("valid", True))


def main(argv: list[str] | None = None, wait: Callable[[], None] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake Graph API on loopback, serving JSON fixtures.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--fixtures", type=Path, help="a JSON file (see load_fixtures)")
    args = parser.parse_args(argv)
    graph = FakeGraph(args.host, args.port)
    if args.fixtures:
        load_fixtures(graph, args.fixtures)
    with graph:
        print(f"fake Graph API at {graph.graph_url} ({len(graph.pages)} pages, {len(graph.instagram)} Instagram "
              "accounts); Ctrl-C ends it", flush=True)
        try:
            (wait or threading.Event().wait)()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
