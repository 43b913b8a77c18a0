"""What search engines and link previews read from a page (issue 14): schema.org JSON-LD
for a record (an Event with its place and offer, an Offer, or a NewsArticle) and for a
merchant, and the text of a `<script type="application/ld+json">` block.

Pure: the caller gives absolute URLs (the canonical page, images on the hub's media route),
so nothing here points to a third party except the merchant's own pages it links to.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Sequence

from markupsafe import Markup

from hub.models import Event, Offer
from hub.records import Record

SCHEMA = "https://schema.org"
HEADLINE_MAX = 110  # what Google shows of an article's headline


def script_json(data: Any) -> Markup:
    """JSON for a `<script type="application/ld+json">` block: `<`, `>` and `&` escaped as
    JSON escapes, so no text a merchant wrote can close the block (JSON parsers read them
    back unchanged)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def organization(name: str, url: str | None = None, **more: Any) -> dict[str, Any]:
    return _clean({"@type": "Organization", "name": name, "url": url, **more})


def for_record(record: Record, *, url: str, images: Sequence[str], organiser: dict[str, Any],
               publisher: dict[str, Any], fallback_place: dict[str, Any] | None = None) -> dict[str, Any]:
    """schema.org for one record: Event (with location and offers), Offer, or NewsArticle.

    Args:
        url: the record's canonical page.
        images: absolute image URLs on the hub.
        organiser: the merchant as an Organization.
        publisher: the platform as an Organization.
        fallback_place: a Place for an event whose source named none (the merchant's address).
    """
    item = record.item
    title = item.title or item.summary[:HEADLINE_MAX] or url
    common = {"url": url, "description": item.summary or None, "image": list(images) or None}
    if item.event is not None:
        return _clean({"@context": SCHEMA, "@type": "Event", "name": title, **common,
                       **_event(item.event, fallback_place), "organizer": organiser,
                       "offers": _offer(item.offer, url) if item.offer else None})
    if item.offer is not None:
        return _clean({"@context": SCHEMA, **_offer(item.offer, url), "name": title, **common, "seller": organiser})
    published = item.published or record.created_at
    return _clean({"@context": SCHEMA, "@type": "NewsArticle", "headline": _headline(title), **common,
                   "mainEntityOfPage": url,
                   "datePublished": _iso(published),
                   "dateModified": _iso(max(filter(None, (published, item.updated, record.changed_at)), default=None)),
                   "author": organiser, "publisher": publisher, "inLanguage": item.language,
                   "keywords": ", ".join(t.lstrip("#") for t in item.tags) or None})


def _event(event: Event, fallback_place: dict[str, Any] | None) -> dict[str, Any]:
    place = None
    if event.location:
        place = {"@type": "Place", "name": event.location, "address": event.location}
        if event.latitude is not None and event.longitude is not None:
            place["geo"] = {"@type": "GeoCoordinates", "latitude": event.latitude, "longitude": event.longitude}
    return {"startDate": _when(event.start, event.all_day),
            "endDate": _when(event.end, event.all_day) if event.end else None,
            "eventStatus": f"{SCHEMA}/Event{'Cancelled' if event.cancelled else 'Scheduled'}",
            "eventAttendanceMode": f"{SCHEMA}/OfflineEventAttendanceMode",
            "location": place or fallback_place}


def _offer(offer: Offer, url: str) -> dict[str, Any]:
    price = _decimal(offer.price)
    return _clean({"@type": "Offer", "url": url, "price": price, "priceCurrency": offer.currency if price else None,
                   "validFrom": _iso(offer.valid_from), "validThrough": _iso(offer.valid_until),
                   # a price that is no plain number ("ab 9,90 €") is said in words
                   "priceSpecification": None if price or not offer.price else
                   {"@type": "PriceSpecification", "description": offer.price}})


def _decimal(text: str | None) -> str | None:
    try:
        return str(Decimal(text.strip())) if text and text.strip() else None
    except InvalidOperation:
        return None


def _headline(title: str) -> str:
    return title if len(title) <= HEADLINE_MAX else title[:HEADLINE_MAX - 1].rstrip() + "…"


def _when(moment: datetime | None, all_day: bool) -> str | None:
    if moment is None:
        return None
    return moment.date().isoformat() if all_day else moment.isoformat()


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    """Without the keys that have no value (schema.org reads a missing key as unknown)."""
    return {k: v for k, v in data.items() if v is not None and v != "" and v != []}
