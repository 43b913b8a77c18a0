"""The WordPress channel (`renderer: wordpress`): a post per record on the town's WordPress
site, through its REST API (`/wp-json/wp/v2/`) with an application password.

    channels:
      - id: stadtseite
        renderer: wordpress
        base_url: https://www.musterstadt.example
        username: hub
        app_password: "${WP_APP_PASSWORD}"     # Users > Profile > Application Passwords (spaces allowed)
        status: publish                         # or draft: a person publishes in WordPress
        categories: {event: 12, offer: 14, verein: 7}   # kind or merchant category -> category id
        include: {kinds: [event, offer]}

The post's title is the record's; its content the channel's template (German default:
renderers/templates/wordpress.html.j2): for an event, when and where first, then the text,
then who posted it with links to the original and to the platform. The record's first image
is uploaded to `/wp-json/wp/v2/media` (the hub's own copy, with its alt text) and becomes the
featured image; the record's tags become WordPress tags (found by their slug or created), its
kind and its merchant's category the categories the map names. An edit updates the post
(`POST /posts/{id}`; the image uploaded again only when it changed), a removal moves it to the
trash (`DELETE /posts/{id}`; `force_delete: true` deletes it for good). 401 and 403 pause the
channel; WordPress cannot tell a repeated request, so one whose answer was lost is left for
a person to check.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from datetime import timezone
from json import loads
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import AfterValidator, SecretStr

from hub.errors import FetchError, HubError
from hub.http import Response
from renderers.base import (Capabilities, ChannelError, ChannelRef, Outgoing, Preview, PushOptions, Receipt,
                            RendererOptions, network_error, status_error)
from renderers.text import check_template, context, default_template, render

if TYPE_CHECKING:
    from hub.http import Fetcher

TEMPLATE = "wordpress.html.j2"


def _base_url(value: str) -> str:
    if not value.lower().startswith(("https://", "http://")):
        raise ValueError("write the site's address like https://www.musterstadt.example")
    return value.rstrip("/").removesuffix("/wp-json")


class WordPressOptions(PushOptions):
    base_url: Annotated[str, AfterValidator(_base_url)]
    username: str
    app_password: SecretStr
    status: Literal["publish", "draft", "pending"] = "publish"
    categories: dict[str, int] = {}  # a record's kind (post, event, offer) or its merchant's category -> id
    tags: bool = True  # the record's tags as WordPress tags
    force_delete: bool = False  # a removal deletes for good instead of moving the post to the trash
    template: Annotated[str, AfterValidator(lambda v: check_template(v, html=True))] | None = None


class WordPressPublisher:
    kind: ClassVar[str] = "wordpress"
    Options: ClassVar[type[RendererOptions]] = WordPressOptions
    capabilities: ClassVar[Capabilities] = Capabilities()

    def preview(self, opts: WordPressOptions, channel: ChannelRef, out: Outgoing) -> Preview:
        post = self._post(opts, channel, out, tags=[f"<{t}>" for t in out.item.tags] if opts.tags else [])
        if out.pictures:
            post["featured_media"] = f"<{out.pictures[0].public_url}>"
        return Preview(post["content"], post)

    async def create(self, opts: WordPressOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        media = await self._featured(opts, channel, out, client, None)
        post = self._post(opts, channel, out, tags=await self._tags(opts, out, client))
        if media:
            post["featured_media"] = media["id"]
        found = _json(await self._call(client, opts, "POST", "/wp/v2/posts", "create the post", json=post))
        return Receipt(str(found["id"]), url=found.get("link"), remote={"media": media})

    async def update(self, opts: WordPressOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        media = await self._featured(opts, channel, out, client, out.remote.get("media"))
        post = self._post(opts, channel, out, tags=await self._tags(opts, out, client))
        post["featured_media"] = media["id"] if media else 0
        try:
            answer = await self._call(client, opts, "POST", f"/wp/v2/posts/{out.remote_id}", "update the post",
                                      json=post)
        except ChannelError as exc:
            if exc.status not in (404, 410):
                raise
            return await self.create(opts, channel, out, client)  # deleted in WordPress by hand: post it anew
        found = _json(answer)
        return Receipt(str(found.get("id") or out.remote_id), url=found.get("link") or out.remote_url,
                       remote={"media": media})

    async def delete(self, opts: WordPressOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        path = f"/wp/v2/posts/{out.remote_id}" + ("?force=true" if opts.force_delete else "")
        try:
            await self._call(client, opts, "DELETE", path, "delete the post")
        except ChannelError as exc:
            if exc.status not in (404, 410):  # gone already (or in the trash: 410 "already trashed")
                raise
        return Receipt(out.remote_id)

    # --- the post -----------------------------------------------------------------------------

    def _post(self, opts: WordPressOptions, channel: ChannelRef, out: Outgoing, tags: list) -> dict[str, Any]:
        item = out.item
        content = render(opts.template or default_template(TEMPLATE), context(out, channel), html=True)
        post: dict[str, Any] = {"title": item.title, "content": content, "excerpt": item.summary,
                                "status": opts.status, "categories": self._categories(opts, out)}
        if opts.tags:
            post["tags"] = tags
        if item.published is not None:
            post["date_gmt"] = item.published.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return post

    @staticmethod
    def _categories(opts: WordPressOptions, out: Outgoing) -> list[int]:
        keys = [out.item.kind.value, out.merchant.category]
        return sorted({opts.categories[k] for k in keys if k is not None and k in opts.categories})

    async def _tags(self, opts: WordPressOptions, out: Outgoing, client: Fetcher) -> list[int]:
        """The ids of the record's tags in WordPress, each found by its slug or created."""
        if not opts.tags:
            return []
        ids = []
        for name in dict.fromkeys(t.strip().lstrip("#") for t in out.item.tags if t.strip().lstrip("#")):
            slug = _slug(name)
            found = loads((await self._call(client, opts, "GET", f"/wp/v2/tags?slug={quote(slug)}",
                                            "look up a tag")).body or b"[]")
            if isinstance(found, list) and found:
                ids.append(int(found[0]["id"]))
                continue
            try:
                made = _json(await self._call(client, opts, "POST", "/wp/v2/tags", "create a tag",
                                              json={"name": name, "slug": slug}))
                ids.append(int(made["id"]))
            except ChannelError as exc:  # made meanwhile by someone else: WordPress names its id
                term = getattr(exc, "term_id", None)
                if term is None:
                    raise
                ids.append(int(term))
        return ids

    async def _featured(self, opts: WordPressOptions, channel: ChannelRef, out: Outgoing, client: Fetcher,
                        earlier: Any) -> dict[str, Any] | None:
        """{url, id} of the post's featured image: the one uploaded before if the record's
        first image is the same, else uploaded now (None: no image, or no copy of it)."""
        if not out.pictures:
            return None
        picture = out.pictures[0]
        if isinstance(earlier, dict) and earlier.get("url") == picture.url:
            return earlier
        if channel.images is None:
            return None
        try:
            image = await channel.images.read(picture.url)
        except HubError:
            return None
        answer = await self._call(client, opts, "POST", "/wp/v2/media", "upload the image", content=image.body,
                                  headers={"Content-Type": image.media_type,
                                           "Content-Disposition": f'attachment; filename="{image.filename}"'})
        media_id = int(_json(answer)["id"])
        alt = picture.alt or out.item.title
        await self._call(client, opts, "POST", f"/wp/v2/media/{media_id}", "describe the image",
                         json={"alt_text": alt, "caption": out.merchant.name})
        return {"url": picture.url, "id": media_id}

    # --- the API --------------------------------------------------------------------------

    async def _call(self, client: Fetcher, opts: WordPressOptions, method: str, path: str, what: str, *,
                    json: Any = None, content: bytes | None = None, headers: dict[str, str] | None = None) -> Response:
        password = "".join(opts.app_password.get_secret_value().split())  # shown with spaces in WordPress
        auth = base64.b64encode(f"{opts.username}:{password}".encode()).decode()
        try:
            answer = await client.send(method, f"{opts.base_url}/wp-json{path}", json=json, content=content,
                                       headers={"Authorization": f"Basic {auth}", **(headers or {})}, timeout=30)
        except FetchError as exc:
            raise network_error(exc, f"WordPress ({what})") from exc
        if 200 <= answer.status < 300:
            return answer
        said = _said(answer)
        error = status_error(answer, f"WordPress ({what})", said.get("message", ""))
        if said.get("code") == "term_exists":
            error.term_id = (said.get("data") or {}).get("term_id")
        if answer.status in (401, 403):
            error.hint = ("check username and app_password (an application password, not the login password; "
                          "some servers drop the Authorization header); the channel is paused until they change")
        raise error


def _json(answer: Response) -> dict[str, Any]:
    try:
        found = loads(answer.body or b"{}")
    except ValueError:
        raise ChannelError(f"WordPress answered HTTP {answer.status} with something that is not JSON",
                           maybe_sent=True) from None
    return found if isinstance(found, dict) else {}


def _said(answer: Response) -> dict[str, Any]:
    try:
        return _json(answer)
    except ChannelError:
        return {}


def _slug(name: str) -> str:
    """A tag's slug as WordPress makes it: lower case, ASCII, words joined by '-'."""
    for umlaut, spelled in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue"), ("ß", "ss")):
        name = name.replace(umlaut, spelled)  # as WordPress spells them for a German site
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-") or "tag"
