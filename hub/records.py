"""Canonical records: one per real thing, merged from the items that describe it (origins).

Field preference, field by field, among the origins that are still live:

- **organiser**: the merchant with the most origins (a club's website and Facebook page
  outvote the town calendar's repost); on a tie, the merchant who posted first.
- **text** (body, summary, language): full text beats teaser, so the longest plain text;
  on a tie the earliest origin.
- **title**: a real title beats one cut from the first words of a post ("…"); then
  structured data (an event or offer given as data) beats prose; then the organiser's;
  then the original beats a share or repost (the earliest published).
- **link**: the organiser's own website beats a social-network permalink.
- **event**: the organiser's own beats a repost's, structured data beats a date read from
  prose, then the most recently changed; missing end or place filled from the others.
- **offer**: the organiser's, then the most recently changed.
- **media**: every image of every origin once, the largest first (sizes known from the
  media store, else as declared): a larger image beats a thumbnail.
- **tags**: all of them, once. **published**: the earliest; **updated**: the latest.

Everything here is pure: the store hands in the origins (`hub.store.records`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

from hub.identity import is_social, says_time_changed
from hub.models import Event, Item, Kind, Media, Offer

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Origin:
    """One item as an origin of a record, and why it is there."""

    item_id: int
    item: Item
    rule: str  # "first" for the origin that founded the record, else the identity rule
    score: float
    matched_item_id: int | None = None
    live: bool = True
    linked_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        i = self.item
        return {"item_id": self.item_id, "source_id": i.source_id, "external_id": i.external_id,
                "merchant_id": i.merchant_id, "url": i.url, "origin_url": i.origin_url, "title": i.title,
                "kind": i.kind.value, "live": self.live, "rule": self.rule, "score": self.score,
                "matched_item_id": self.matched_item_id}


@dataclass(frozen=True)
class Record:
    """A canonical record as residents and the project manager see it."""

    id: int
    item: Item  # the merged fields; source_id/external_id are those of the text origin
    origins: tuple[Origin, ...]
    fields_from: Mapping[str, int]  # field group -> item id it was taken from
    status: str
    status_reason: str | None = None
    label: str | None = None
    sort_at: datetime | None = None
    created_at: datetime | None = None
    changed_at: datetime | None = None
    removed_at: datetime | None = None
    expires_at: datetime | None = None

    @property
    def merged_because(self) -> list[dict[str, Any]]:
        """Why each origin beyond the first joined: rule, score and the origin it matched."""
        return [{"item_id": o.item_id, "rule": o.rule, "score": o.score, "matched_item_id": o.matched_item_id}
                for o in self.origins if o.rule != "first"]


@dataclass(frozen=True)
class Revision:
    id: int
    record_id: int
    at: datetime
    change: str  # merged | updated | origin_gone | removed | restored | split | status
    actor: str  # hub | rule | manager
    item_id: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


def canonical(origins: Sequence[Origin], image_sizes: Mapping[str, tuple[int, int]] | None = None
              ) -> tuple[Item, dict[str, int]]:
    """The merged item of a record and, per field group, the item id it came from.
    Only live origins count; a record whose origins are all gone shows its last state."""
    live = [o for o in origins if o.live] or list(origins)
    organiser = _organiser(live)
    text = max(live, key=lambda o: (len(o.item.content_text), -_order(live, o)))
    title = min(live, key=lambda o: (_derived_title(o.item), not _structured(o.item),
                                     o.item.merchant_id != organiser, _first_seen(o)))
    link = min(live, key=lambda o: (not o.item.url, _is_social(o.item.url), o.item.merchant_id != organiser,
                                    _order(live, o)))
    event, event_from = _event(live, organiser)
    offer_from = _preferred([o for o in live if o.item.offer], organiser)
    media, media_from = _media(live, image_sizes or {})
    item = replace(
        text.item, title=title.item.title, url=link.item.url, merchant_id=organiser,
        event=event, offer=offer_from.item.offer if offer_from else None, media=media,
        kind=kind_of(event, offer_from.item.offer if offer_from else None, text.item.kind),
        tags=tuple(dict.fromkeys(t for o in [text, *live] for t in o.item.tags)),
        summary=text.item.summary or next((o.item.summary for o in live if o.item.summary), ""),
        published=min((o.item.published for o in live if o.item.published), default=None),
        updated=max((o.item.updated or o.item.published for o in live if o.item.updated or o.item.published),
                    default=None))
    chosen = {"text": text.item_id, "title": title.item_id, "url": link.item_id}
    chosen.update({k: v for k, v in (("event", event_from), ("offer", offer_from and offer_from.item_id),
                                      ("media", media_from)) if v is not None})
    return item, chosen


def tag_key(tag: str) -> str:
    """A tag as filters compare it: spaces collapsed, a leading "#" dropped, case folded
    ("#Adventsmarkt" and "adventsmarkt" are one tag). Stored so (hub.store.records)."""
    return " ".join(tag.strip().lstrip("#").split()).casefold()


def kind_of(event: Event | None, offer: Offer | None, kind: Kind) -> Kind:
    """An item with event data is an event, one with offer data an offer, whatever its
    source called it."""
    return Kind.EVENT if event else (Kind.OFFER if offer else kind)


def _order(live: Sequence[Origin], origin: Origin) -> int:
    return live.index(origin)


def _first_seen(o: Origin) -> datetime:
    """The original beats a share or a repost: whoever published first."""
    return o.item.published or o.linked_at or _EPOCH


def _organiser(live: Sequence[Origin]) -> str:
    counts = Counter(o.item.merchant_id for o in live)
    most = max(counts.values())
    return next(o.item.merchant_id for o in live if counts[o.item.merchant_id] == most)


def _derived_title(item: Item) -> bool:
    """Feeds without titles get the first words of the text, cut with "…"."""
    return not item.title or item.title.endswith("…")


def _structured(item: Item) -> bool:
    return item.offer is not None or (item.event is not None and not item.event.detected)


def _is_social(url: str | None) -> bool:
    return bool(url) and is_social((urlsplit(url).hostname or "").removeprefix("www."))


def _changed(o: Origin) -> datetime:
    return o.item.updated or o.item.published or o.linked_at or _EPOCH


def _preferred(candidates: Sequence[Origin], organiser: str) -> Origin | None:
    """The organiser's own, then structured data, then the most recently changed."""
    if not candidates:
        return None
    return max(candidates, key=lambda o: (o.item.merchant_id == organiser, _structured(o.item), _changed(o)))


def _event(live: Sequence[Origin], organiser: str):
    best = _preferred([o for o in live if o.item.event], organiser)
    if best is None:
        return None, None
    best = _newer_time(live, best) or best
    event = best.item.event
    assert event is not None
    for o in live:  # fill what the chosen one leaves open from an origin with the same start
        other = o.item.event
        if other is not None and other.start == event.start:
            event = replace(event, end=event.end or other.end, location=event.location or other.location)
            if event.latitude is None and other.latitude is not None:
                event = replace(event, latitude=other.latitude, longitude=other.longitude)
    return event, best.item_id


def _newer_time(live: Sequence[Origin], chosen: Origin) -> Origin | None:
    """A later notice of the same merchant that the event's time changed ("Achtung, neue
    Uhrzeit: … beginnt erst um 15:30 Uhr"), which beats even a calendar entry's start: the
    calendar may not have been updated yet."""
    start, merchant = chosen.item.event.start, chosen.item.merchant_id
    notices = [o for o in live if o.item.event and o.item.event.start != start and o.item.merchant_id == merchant
               and _changed(o) > _changed(chosen) and says_time_changed(o.item.title, o.item.content_text)]
    return max(notices, key=_changed, default=None)


def _media(live: Sequence[Origin], sizes: Mapping[str, tuple[int, int]]) -> tuple[tuple[Media, ...], int | None]:
    seen: dict[str, tuple[Media, int]] = {}
    for o in live:
        for m in o.item.media:
            seen.setdefault(m.url, (m, o.item_id))
    ranked = sorted(seen.values(), key=lambda mo: (mo[0].type != "image", -_area(mo[0], sizes)))
    return tuple(m for m, _ in ranked), (ranked[0][1] if ranked else None)


def _area(m: Media, sizes: Mapping[str, tuple[int, int]]) -> int:
    width, height = sizes.get(m.url) or (m.width or 0, m.height or 0)
    return width * height


# --- revisions -----------------------------------------------------------------------------

SNAPSHOT_FIELDS = ("kind", "title", "summary", "url", "merchant_id", "event_start", "event_end",
                   "event_location", "event_cancelled", "offer_price", "offer_valid_until", "image", "text")
HASHED_FIELDS = frozenset({"summary", "text"})  # kept as hashes: a revision says they changed, not how


def snapshot(item: Item) -> dict[str, Any]:
    """The small fields of a canonical item, for the revision diff; summary and body as hashes
    (a million records' summaries would double the size of the records table)."""
    e, o = item.event, item.offer
    fields = {
        "kind": item.kind.value, "title": item.title, "summary": _digest(item.summary), "url": item.url,
        "merchant_id": item.merchant_id,
        "event_start": e.start.isoformat() if e else None, "event_end": e.end.isoformat() if e and e.end else None,
        "event_location": e.location if e else None, "event_cancelled": e.cancelled if e else None,
        "offer_price": o.price if o else None,
        "offer_valid_until": o.valid_until.isoformat() if o and o.valid_until else None,
        "image": item.media[0].url if item.media else None, "text": _digest(item.content_text),
    }
    return {k: v for k, v in fields.items() if v is not None and v is not False}  # absent means empty: a smaller row


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """field -> [old, new] for every field that changed."""
    return {k: [old.get(k), new.get(k)] for k in SNAPSHOT_FIELDS if old.get(k) != new.get(k)}
