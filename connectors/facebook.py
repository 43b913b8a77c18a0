"""The Facebook page connector (`connector: facebook`): a page's own posts through the Graph
API (`/{page_id}/published_posts`), read with a page token the merchant granted.

    - {connector: facebook, page_id: "104523984512345", access_token: ${FB_TOKEN_SCHMITZ}}

Syncing, errors, usage and tokens: connectors/social.py and connectors/graph.py. This
module maps one post to an `Item` (`post_to_item`, pure):

- the message as text with its links (unshimmed, tracking removed) and hashtags (which
  become tags); a title from its first sentence when the post has none (posts never do);
- a shared link as a paragraph linking to its real target (`unshimmed_url`); a
  `created_event` post links to its event (Page events cannot be read through the API);
- every photo of an album (subattachments, at any depth) as media with its size, a video's
  picture, else `full_picture`; the permalink as the item's URL; the post's `place` as a
  line "Ort: ..." (which the event detection reads as the place of an announced event);
- hidden, unpublished and expired posts are not for residents: no item.
"""

from __future__ import annotations

import html
from typing import Any, ClassVar

from connectors.social import (GraphOptions, GraphSource, add_media, derive_title, fallback_title, hashtags,
                               link, link_target, make_item, paragraph, parse_time, text_html)
from hub.config import GraphId
from hub.models import Item, Media, SourceRef

_ATTACHMENT = ("media_type,type,title,description,url,unshimmed_url,target{id,url},"
               "media{image{src,width,height}}")
FIELDS = ("id,message,story,created_time,updated_time,permalink_url,full_picture,status_type,is_hidden,"
          "is_published,is_expired,place{name,location{street,zip,city,country}},"
          f"attachments{{{_ATTACHMENT},subattachments{{{_ATTACHMENT}}}}}")
_FALLBACK_TITLES = {"added_photos": ("Neue Fotos", "New photos"), "added_video": ("Neues Video", "New video"),
                    "created_event": ("Neue Veranstaltung", "New event")}


class FacebookOptions(GraphOptions):
    page_id: GraphId

    @property
    def object_id(self) -> str:
        return self.page_id


class FacebookConnector(GraphSource):
    kind: ClassVar[str] = "facebook"
    Options: ClassVar[type[GraphOptions]] = FacebookOptions
    edge: ClassVar[str] = "published_posts"
    fields: ClassVar[str] = FIELDS
    permission: ClassVar[str] = "pages_read_engagement"
    noun: ClassVar[str] = "Seite"
    scopes: ClassVar[tuple[str, ...]] = ("pages_show_list", "pages_read_engagement")
    push_scopes: ClassVar[tuple[str, ...]] = ("pages_manage_metadata",)  # the page's webhook subscription

    def token_owner(self, opts: GraphOptions) -> str | None:
        return opts.object_id

    def to_item(self, raw: dict[str, Any], source: SourceRef, origin: str) -> Item | None:
        return post_to_item(raw, source, origin)


def post_to_item(post: dict[str, Any], source: SourceRef, origin: str) -> Item | None:
    """One Graph post as an Item; None for a post residents must not see."""
    if post.get("is_hidden") is True or post.get("is_published") is False or post.get("is_expired") is True:
        return None
    message = str(post.get("message") or "").strip()
    attachments = [a for a in _data(post.get("attachments")) if isinstance(a, dict)]
    extra_html, extra_text, linked_title = _links(attachments)
    story = str(post.get("story") or "").strip()
    text = "\n\n".join(filter(None, [message or story, *extra_text]))
    place_line = _place(post.get("place"))
    body = text_html(message or story) + "".join(extra_html)
    if place_line:
        body += paragraph(html.escape(place_line, quote=False))
        text = f"{text}\n\n{place_line}" if text else place_line
    title = derive_title(message) or linked_title or derive_title(story) or \
        fallback_title(source.language, *_FALLBACK_TITLES.get(str(post.get("status_type")), ("Beitrag", "Post")))
    post_id = str(post["id"])
    url = post.get("permalink_url") or f"https://www.facebook.com/{post_id}"
    return make_item(post, source, origin, text=text, html_body=body, title=title, url=url,
                     media=_media(post, attachments), tags=hashtags(message), published=parse_time(post.get("created_time")),
                     updated=parse_time(post.get("updated_time")), lead=message or story)


def _data(value: Any) -> list:
    data = value.get("data") if isinstance(value, dict) else None
    return data if isinstance(data, list) else []


def _links(attachments: list[dict]) -> tuple[list[str], list[str], str]:
    """Paragraphs for shared links and events (HTML, and as text), and the best title a
    link gives."""
    html_parts, text_parts, title = [], [], ""
    for att in attachments:
        kind = str(att.get("type") or "")
        target = link_target(att.get("unshimmed_url") or att.get("url") or (att.get("target") or {}).get("url"))
        if target is None or kind not in ("share", "event") and att.get("media_type") != "link":
            continue
        label = " ".join(str(att.get("title") or "").split()) or target
        description = " ".join(str(att.get("description") or "").split())
        if kind == "event":
            html_parts.append(paragraph("Veranstaltung: ", link(target, label)))
            text_parts.append(f"Veranstaltung: {label} {target}")
        else:
            tail = f" – {html.escape(description, quote=False)}" if description else ""
            html_parts.append(paragraph(link(target, label), tail))
            text_parts.append(" ".join(filter(None, [label, description, target])))
        title = title or (label if label != target else "")
    return html_parts, text_parts, title


def _media(post: dict[str, Any], attachments: list[dict]) -> list[Media]:
    """Every photo (albums at any depth), a video's or a link's picture; else full_picture."""
    found: dict[str, Media] = {}

    def walk(att: dict, depth: int = 0) -> None:
        for sub in _data(att.get("subattachments")) if depth < 5 else ():  # an album's photos, then its cover
            if isinstance(sub, dict):
                walk(sub, depth + 1)
        image = (att.get("media") or {}).get("image") if isinstance(att.get("media"), dict) else None
        if isinstance(image, dict):
            add_media(found, image.get("src"), width=image.get("width"), height=image.get("height"),
                      alt=att.get("description") if att.get("type") == "photo" else None)

    for att in attachments:
        walk(att)
    if not found:
        add_media(found, post.get("full_picture"))
    return list(found.values())


def _place(place: Any) -> str | None:
    """ "Ort: Marktplatz, Hauptstraße 1, 12345 Musterstadt" from a post's place."""
    if not isinstance(place, dict) or not place.get("name"):
        return None
    where = place.get("location") if isinstance(place.get("location"), dict) else {}
    town = " ".join(filter(None, [str(where.get("zip") or ""), str(where.get("city") or "")]))
    parts = [str(place["name"]).strip(), str(where.get("street") or "").strip(), town.strip()]
    return "Ort: " + ", ".join(dict.fromkeys(p for p in parts if p))
