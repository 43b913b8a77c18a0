"""The Instagram connector (`connector: instagram`): a professional account's posts through the
Graph API (`/{ig_user_id}/media`), with the token of the Facebook page it is linked to.

    - {connector: instagram, ig_user_id: "17841400000000000", access_token: ${FB_TOKEN_SCHMITZ}}

Personal accounts cannot be read: Meta shut the Basic Display API down on 2024-12-04. A
merchant switches the account to a professional one (business or creator) and links it to
the Facebook page in the Instagram app; its id is then the page's
`instagram_business_account` (`GET /{page_id}?fields=instagram_business_account`).

Syncing, errors, usage and tokens are those of connectors/social.py and connectors/graph.py.
`media_to_item` (pure) maps one medium: the caption as text (links, hashtags as tags, a title
from its first sentence), the permalink as the URL, a photo as media, a video as its
thumbnail, every picture of a carousel (a video child by its thumbnail). Media without a
URL (Meta leaves it out for copyright-flagged media) are skipped.
"""

from __future__ import annotations

from typing import Any, ClassVar

from connectors.social import (GraphOptions, GraphSource, add_media, derive_title, fallback_title, hashtags,
                               make_item, parse_time, text_html)
from hub.config import GraphId
from hub.models import Item, Media, SourceRef

FIELDS = ("id,caption,media_type,media_product_type,media_url,thumbnail_url,permalink,timestamp,"
          "children{media_type,media_url,thumbnail_url}")
_FALLBACK_TITLES = {"IMAGE": ("Neues Foto", "New photo"), "VIDEO": ("Neues Video", "New video"),
                    "CAROUSEL_ALBUM": ("Neue Fotos", "New photos")}


class InstagramOptions(GraphOptions):
    ig_user_id: GraphId

    @property
    def object_id(self) -> str:
        return self.ig_user_id


class InstagramConnector(GraphSource):
    kind: ClassVar[str] = "instagram"
    Options: ClassVar[type[GraphOptions]] = InstagramOptions
    edge: ClassVar[str] = "media"
    fields: ClassVar[str] = FIELDS
    permission: ClassVar[str] = "instagram_basic"
    noun: ClassVar[str] = "Instagram-Konto"
    # Through the linked Facebook page (Facebook Login); Meta has no webhook for new media.
    scopes: ClassVar[tuple[str, ...]] = ("instagram_basic", "pages_show_list", "pages_read_engagement")

    def to_item(self, raw: dict[str, Any], source: SourceRef, origin: str) -> Item | None:
        return media_to_item(raw, source, origin)


def media_to_item(medium: dict[str, Any], source: SourceRef, origin: str) -> Item | None:
    """One Instagram medium as an Item; None for a story (never meant to last)."""
    if medium.get("media_product_type") == "STORY":
        return None
    caption = str(medium.get("caption") or "").strip()
    kind = str(medium.get("media_type") or "IMAGE")
    title = derive_title(caption) or fallback_title(source.language, *_FALLBACK_TITLES.get(kind, ("Beitrag", "Post")))
    return make_item(medium, source, origin, text=caption, html_body=text_html(caption), title=title,
                     url=medium.get("permalink"), media=_pictures(medium), tags=hashtags(caption),
                     published=parse_time(medium.get("timestamp")))


def _pictures(medium: dict[str, Any]) -> list[Media]:
    found: dict[str, Media] = {}
    children = medium.get("children", {}).get("data") if isinstance(medium.get("children"), dict) else None
    for child in children if isinstance(children, list) else ():
        if isinstance(child, dict):
            add_media(found, _picture_of(child))
    if not found:
        add_media(found, _picture_of(medium))
    return list(found.values())


def _picture_of(medium: dict[str, Any]) -> Any:
    """A photo's URL, a video's thumbnail (residents see a picture; the permalink plays it)."""
    if medium.get("media_type") == "VIDEO":
        return medium.get("thumbnail_url")
    return medium.get("media_url")
