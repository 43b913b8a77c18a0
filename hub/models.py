"""Domain value types that cross every boundary of the hub.

Everything here is frozen and free of I/O. Connectors produce `Item`s, the store keeps
them, renderers and the web app read them. Native payloads (feedparser dicts, Graph API
JSON) never leave `connectors/`; table rows never leave `hub/store/`.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, NamedTuple


class Kind(str, Enum):
    """What an item is about; decides where residents see it."""

    POST = "post"
    EVENT = "event"
    OFFER = "offer"


@dataclass(frozen=True, slots=True)
class Media:
    url: str
    type: str = "image"  # image | video | audio | file
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None
    alt: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """When and where an event happens. Times are timezone-aware; `timezone` is the IANA
    name the organiser used, so an all-day event or a local time survives a UTC round trip."""

    start: datetime
    end: datetime | None = None
    timezone: str | None = None
    all_day: bool = False
    location: str | None = None
    cancelled: bool = False
    # Where the place is, in WGS 84 degrees, when the source says so (schema.org geo, iCal GEO).
    latitude: float | None = None
    longitude: float | None = None
    # Read from a post's prose by hub.normalize rather than given as data; structured data
    # wins when a record's origins disagree (hub.records).
    detected: bool = False


@dataclass(frozen=True, slots=True)
class Offer:
    price: str | None = None  # decimal as text: "2.50"; text keeps "ab 9,90" style prices exact
    currency: str | None = None  # ISO 4217
    valid_from: datetime | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One normalized post, event or offer, as one source saw it.

    `content_html` is already sanitized (see `hub.sanitize`); `content_text` is its plain
    text, for search and newsletters. All datetimes are timezone-aware UTC, except inside
    `event`, which keeps the organiser's zone.
    """

    source_id: str
    external_id: str
    merchant_id: str
    title: str = ""
    summary: str = ""
    content_html: str = ""
    content_text: str = ""
    url: str | None = None
    kind: Kind = Kind.POST
    media: tuple[Media, ...] = ()
    tags: tuple[str, ...] = ()
    language: str | None = None
    published: datetime | None = None
    updated: datetime | None = None
    event: Event | None = None
    offer: Offer | None = None
    origin_url: str | None = None  # where the item was read from (the feed, the page)
    # Memo of `content_hash`: computed once (in the parse worker) and pickled along with the item.
    _hash: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.source_id, self.external_id)

    @property
    def content_hash(self) -> str:
        """Hash of everything a resident would see; stable across re-fetches. Leaves out
        the ids, `updated`, `origin_url` and `content_text` (derived from `content_html`).
        Built by hand rather than via `asdict`: it runs for every entry of every fetch."""
        if self._hash is None:
            # Hashed as one string: the same digest as one update per part and separator.
            data = ("\x1f".join(self._hashed_parts()) + "\x1f").encode()
            object.__setattr__(self, "_hash", hashlib.blake2b(data, digest_size=16).hexdigest())
        return self._hash  # type: ignore[return-value]

    def _hashed_parts(self) -> list[str]:
        parts = [self.kind.value, self.title, self.summary, self.content_html, self.url or "",
                 self.language or "", _iso(self.published)]
        parts += [f"m:{stable_media_url(m.url)}|{m.type}|{m.mime_type}|{m.width}|{m.height}|{m.alt}"
                  for m in self.media]
        parts += [f"t:{tag}" for tag in self.tags]
        if self.event:
            e = self.event
            parts.append(f"e:{_iso(e.start)}|{_iso(e.end)}|{e.timezone}|{e.all_day}|{e.location}|{e.cancelled}")
            if e.latitude is not None and e.longitude is not None:  # a part of its own: older hashes stay valid
                parts.append(f"g:{e.latitude:.6f},{e.longitude:.6f}")
        if self.offer:
            o = self.offer
            parts.append(f"o:{o.price}|{o.currency}|{_iso(o.valid_from)}|{_iso(o.valid_until)}")
        return parts

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO 8601 strings)."""
        data = _jsonable(asdict(self))
        del data["_hash"]
        return data

    def evolve(self, **changes: Any) -> Item:
        return replace(self, **changes)


def stable_media_url(url: str) -> str:
    """A media URL as far as "has it changed" goes. Facebook's and Instagram's CDN sign their
    image URLs (`oh`, and `oe`, the expiry) and sign them anew now and then: an image with a
    fresh signature (or from another of their hosts) is the same image, so a re-read post is
    no change (the image was stored at ingest under the URL first seen; hub.refresh reads a
    post again if that URL expired before it was)."""
    if "oe=" not in url or "oh=" not in url:
        return url
    address = url.split("?", 1)[0]
    return "/" + address.split("/", 3)[3] if address.count("/") >= 3 else address  # the path: CDN hosts vary too


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class FetchState(NamedTuple):
    """Caching state of one source. Opaque to the core: the store keeps it, the connector
    reads it on the next fetch. Saved only after a successful parse."""

    etag: str | None = None
    last_modified: str | None = None
    cursor: str | None = None
    # Why the source is held back (the message of an error a retry cannot fix, such as an
    # invalid token), until its options change; None when it is not. Filled in by the store.
    # A connector that raises holding errors (hub.errors.HOLDING) raises it again without
    # asking the network; the others never see it set.
    hold: str | None = None


class Retrieved(NamedTuple):
    """What a connector's `retrieve` hands to its `parse`."""

    payload: bytes
    state: FetchState
    url: str  # the final URL after redirects: the base for relative links
    content_type: str = ""
    fresh_until: datetime | None = None  # from Retry-After / Cache-Control / Expires
    websub: tuple[str, str] | None = None  # (hub, topic) from the response's Link header


@dataclass(frozen=True, slots=True)
class Parsed:
    """A connector's parse result: the items plus what went wrong without being fatal."""

    items: tuple[Item, ...]
    warnings: tuple[str, ...] = ()
    # True when the payload is the source's whole current window (a feed), so an entry
    # missing from inside that window was deleted by the merchant.
    complete: bool = True
    ttl_seconds: int | None = None  # the feed's own <ttl>, a lower bound for polling
    websub: tuple[str, str] | None = None  # (hub, topic): the WebSub hub that pushes this source
    # External ids the source says are deleted (a re-read entry that no longer exists, a
    # "remove" push): tombstoned whether or not the payload is complete.
    gone: tuple[str, ...] = ()
    # The payload was read live from the source (an API, never a cached copy): an entry that
    # had been deleted and is there again is back (a Facebook post hidden, then shown again).
    revive: bool = False


@dataclass(frozen=True, slots=True)
class SourceRef:
    """What a connector is told about the source it reads for."""

    id: str
    merchant_id: str
    language: str | None = None
    timezone: str = "Europe/Berlin"


TOKEN_WARN_BEFORE = timedelta(days=14)  # a token (or its data access) ending this soon is a warning


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """How a source's access token stands, as the platform that issued it says (Facebook's
    `debug_token`): a connector's optional `check_token(opts, fetcher) -> TokenCheck`. Holds
    facts about the token, never the token itself; `warning(now)` judges them on a day."""

    checked_at: datetime
    valid: bool
    expires_at: datetime | None = None  # None: never
    data_access_expires_at: datetime | None = None  # None: never, or not said
    scopes: tuple[str, ...] = ()  # what the token may do
    missing: tuple[str, ...] = ()  # what the source needs and the token may not do
    kind: str | None = None  # "PAGE", "USER", ...
    problems: tuple[str, ...] = ()  # what else is wrong, in words (the token is for another page, ...)

    def warnings(self, now: datetime) -> list[str]:
        """What the project manager should know, each with what to do; [] when all is well."""
        if not self.valid:
            return ["Facebook-Zugang ungültig (laut Token-Prüfung vom "
                    f"{self.checked_at.date().isoformat()}): der Händler muss die Seite neu verbinden, dann "
                    "mit `hub facebook pages` ein neues Seiten-Token erzeugen", *self.problems]
        found = []
        if self.expires_at is not None and self.expires_at - now <= TOKEN_WARN_BEFORE:
            found.append(f"Zugangs-Token {_ends(self.expires_at, now)}: ein neues Seiten-Token erzeugen "
                         "(`hub facebook pages`) und access_token ersetzen")
        if self.data_access_expires_at is not None and self.data_access_expires_at - now <= TOKEN_WARN_BEFORE:
            found.append(f"Datenzugriff der App {_ends(self.data_access_expires_at, now)}: der Händler meldet "
                         "sich einmal über die App bei Facebook an")
        if self.missing:
            found.append(f"Berechtigung fehlt: {', '.join(self.missing)}: der Händler verbindet die Seite neu "
                         "und erlaubt sie")
        return found + list(self.problems)

    def as_json(self) -> dict[str, Any]:
        return {k: _iso(v) if isinstance(v, datetime) else list(v) if isinstance(v, tuple) else v
                for k, v in ((f, getattr(self, f)) for f in self.__slots__)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenCheck:
        def moment(key: str) -> datetime | None:
            return datetime.fromisoformat(data[key]) if data.get(key) else None

        return cls(checked_at=moment("checked_at"), valid=bool(data.get("valid")), expires_at=moment("expires_at"),
                   data_access_expires_at=moment("data_access_expires_at"), scopes=tuple(data.get("scopes") or ()),
                   missing=tuple(data.get("missing") or ()), kind=data.get("kind"),
                   problems=tuple(data.get("problems") or ()))


def _ends(when: datetime, now: datetime) -> str:
    day = when.date().isoformat()
    if when <= now:
        return f"ist am {day} abgelaufen"
    days = -((now - when) // timedelta(days=1))  # whole days, rounded up: 4.9 days left are 5
    return f"läuft am {day} ab ({'heute' if days == 0 else 'morgen' if days == 1 else f'in {days} Tagen'})"
