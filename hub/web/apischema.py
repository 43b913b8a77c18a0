"""The public JSON API's schemas (version 1): what other sites and apps build on.

These are a promise, kept apart from the store's tables and from `Item`/`Record`, so the
hub can change inside without breaking a club's website: fields are only ever added within
v1, never renamed or removed. Times are ISO 8601 with their offset (UTC for publication
and changes; an event in the organiser's zone); links are absolute; images come from the
hub's media route, never from a merchant's or a social network's host.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda moment: moment.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "example": "2026-12-24T19:30:00+01:00"}),
]


class Schema(BaseModel):
    model_config = ConfigDict(frozen=True)


class MerchantRef(Schema):
    id: str = Field(description="Kennung des Teilnehmers (für `merchant=`)")
    name: str
    url: str = Field(description="Seite des Teilnehmers auf der Plattform")


class EventOut(Schema):
    start: Timestamp = Field(description="Beginn, in der Zeitzone des Veranstalters")
    end: Timestamp | None = None
    all_day: bool = Field(description="ganztägig: nur das Datum von `start` zählt")
    timezone: str | None = Field(None, description="IANA-Zeitzone des Veranstalters, z. B. Europe/Berlin")
    location: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    cancelled: bool = Field(description="abgesagt")


class OfferOut(Schema):
    price: str | None = Field(None, description='Preis als Text, wie angegeben: "2.50" oder "ab 9,90"')
    currency: str | None = Field(None, description="ISO 4217, z. B. EUR")
    valid_from: Timestamp | None = None
    valid_until: Timestamp | None = None


class OriginOut(Schema):
    connector: str | None = Field(description="woher: rss, facebook, instagram, website, ical, ...")
    url: str | None = Field(description="der Beitrag dort")


class ItemOut(Schema):
    id: int
    kind: Literal["post", "event", "offer"]
    title: str
    summary: str = Field(description="Zusammenfassung (ohne eine: der Anfang des Textes), reiner Text")
    url: str = Field(description="Seite des Eintrags auf der Plattform (absolut)")
    original_url: str | None = Field(description="der Originalbeitrag (die eigene Website des Veranstalters "
                                                 "vor sozialen Netzen)")
    merchant: MerchantRef
    label: str | None = Field(description='Kennzeichnung, die immer mit angezeigt werden muss, z. B. "Anzeige"')
    published: Timestamp | None
    updated: Timestamp | None = Field(description="letzte Änderung")
    tags: list[str] = Field(description='Schlagwörter, ohne "#"')
    image: str | None = Field(description="Bild über die Plattform (absolut); nie von Dritten geladen")
    image_alt: str | None = Field(description="Alternativtext des Bildes")
    event: EventOut | None = Field(description="bei Veranstaltungen")
    offer: OfferOut | None = Field(description="bei Angeboten")
    origins: list[OriginOut] = Field(description="wo der Eintrag überall erschienen ist")


class ItemDetailOut(ItemOut):
    content_html: str = Field(description="Text als HTML (bereinigt; Bilder über die Plattform)")


class Page(Schema):
    next: str | None = Field(description="URL der nächsten Seite; null auf der letzten")
    next_cursor: str | None = Field(description="`cursor` der nächsten Seite; null auf der letzten")
    limit: int = Field(description="Einträge je Seite, wie angewandt (höchstens 100)")


class ItemPage(Page):
    items: list[ItemOut]


class FeedsOut(Schema):
    atom: str
    rss: str
    json_feed: str
    ical: str


class MerchantOut(Schema):
    id: str
    name: str
    url: str = Field(description="Seite des Teilnehmers auf der Plattform")
    category: str | None
    district: str | None = Field(description="Ortsteil")
    website: str | None
    label: str | None = Field(description='Kennzeichnung seiner Einträge, z. B. "Anzeige"')
    channels: list[str] = Field(description="wo er veröffentlicht: facebook, instagram, rss, website, ical, ...")
    feeds: FeedsOut = Field(description="seine Einträge als Feed und Kalender")


class MerchantPage(Page):
    items: list[MerchantOut]


class Problem(Schema):
    detail: str = Field(description="was nicht stimmt und was zu tun ist")
