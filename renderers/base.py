"""What a renderer is: it turns records into something a channel shows.

Two kinds: a `FeedRenderer` is pulled (the web app serves what it renders); a publisher
pushes (a webhook, Mastodon, Telegram, WordPress, a file). Push channels work off the
delivery ledger (`hub.store.ledger`, issue 16): for each change of a record the channel
wants, the publish tick calls one of a `RecordPublisher`'s three methods, `create`,
`update` or `delete`, with an `Outgoing` that says which record, which version and which
copy the channel already holds. Each returns a `Receipt` (the channel's own id for its
copy, and whether the channel confirmed), or raises `ChannelError` saying what to do next
(try again later, give up, disable the channel, wait for its rate limit). The hub marks a
delivery sent only after the channel confirmed it, and retries with backoff otherwise.

A publisher says what its channel cannot do (`Capabilities`): one that cannot edit gets a
removal and a new post instead of an update (when it can delete), one that can do neither
gets only new records. Third-party publishers written against the first protocol
(`Publisher.publish(opts, channel, items, client) -> [Delivery]`, new items only) keep
working: the hub gives them the new records, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Annotated, ClassVar, Literal, Mapping, NamedTuple, Protocol, Sequence,
                    TypeVar)

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from hub.errors import DeliveryError, FetchError
from hub.ledger import Pace, parse_quiet
from hub.models import Item

if TYPE_CHECKING:
    from hub.http import Fetcher, Response


class RendererOptions(BaseModel):
    """Base of every renderer's options: unknown keys are configuration errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


O = TypeVar("O", bound=RendererOptions, contravariant=True)


class Rendered(NamedTuple):
    body: bytes
    media_type: str


class FeedRenderer(Protocol[O]):
    """A pull channel: the hub's web app serves what `render` returns."""

    kind: ClassVar[str]
    Options: ClassVar[type[RendererOptions]]

    def render(self, opts: O, items: Sequence[Item]) -> Rendered:
        """Render items, newest first. Pure. Raises RenderError."""
        ...


# --- the options every push channel has ---------------------------------------------------------

def _quiet(value: str | None) -> str | None:
    if value is not None:
        parse_quiet(value)
    return value


class PaceOptions(RendererOptions):
    """`pace: {per_hour: 10, quiet: "22:00-07:00"}`: at most 10 an hour, evenly spread,
    none from 22:00 to 07:00 (platform time); what waits goes out afterwards at the pace."""

    per_hour: Annotated[float, Field(gt=0, le=36000)] | None = None
    quiet: Annotated[str, AfterValidator(_quiet)] | None = None

    def pace(self, timezone: str) -> Pace:
        return Pace(self.per_hour, parse_quiet(self.quiet) if self.quiet else None, timezone)


class PushOptions(RendererOptions):
    """What every push channel may say besides its own options: its pace, and the Jinja2
    text template of its posts (`template:` inline, or `template_file:` a file next to the
    config); without one, the channel's German default (renderers/templates/). A channel
    that sends data rather than text (a webhook, a JSON Lines file) takes no template."""

    pace: PaceOptions = PaceOptions()
    template: str | None = None

    @field_validator("template")
    @classmethod
    def _text_only_where_used(cls, template: str | None) -> str | None:
        if template is not None and not cls.takes_template:
            raise ValueError("this channel sends the record as data, not as a text: leave out template")
        return template

    takes_template: ClassVar[bool] = True


# --- the new contract: the whole life of a record ---------------------------------------------

@dataclass(frozen=True)
class ImageFile:
    body: bytes
    media_type: str  # image/jpeg
    filename: str


class ImageSource(Protocol):
    async def read(self, url: str) -> ImageFile:
        """The hub's cleaned copy of the image at `url` (no EXIF, at most 960 px wide).
        Raises HubError when there is none."""
        ...


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """What a publisher is told about the channel it publishes for."""

    id: str
    platform_name: str
    base_url: str  # the platform's public address, for links back
    timezone: str
    base_dir: Path  # the config file's folder: relative paths in options resolve against it
    language: str = "de"
    images: ImageSource | None = None  # the hub's copies of the records' images, for uploads


@dataclass(frozen=True)
class Merchant:
    id: str
    name: str
    category: str | None = None
    district: str | None = None
    website: str | None = None


@dataclass(frozen=True)
class Picture:
    """An image of a record: the original address, the hub's own public copy (absolute), alt text."""

    url: str
    public_url: str
    alt: str | None = None
    width: int | None = None
    height: int | None = None


Event = Literal["created", "updated", "deleted"]


@dataclass(frozen=True)
class Outgoing:
    """One delivery: a version of a record for one channel."""

    id: str  # the delivery id: the same on every attempt (webhook-id, Idempotency-Key)
    event: Event
    record_id: int
    version: int
    occurred_at: datetime  # when the record changed
    item: Item  # the record's merged fields
    link: str  # the record's page on the platform
    merchant: Merchant
    label: str | None = None  # "Anzeige" and the like, shown with the record
    pictures: tuple[Picture, ...] = ()
    remote_id: str | None = None  # the channel's id of its copy (update, delete)
    remote_url: str | None = None
    remote: Mapping[str, Any] = field(default_factory=dict)  # what the publisher kept about its copy
    attempt: int = 1


class Receipt(NamedTuple):
    """What the channel answered. `confirmed` False: it accepted without saying it has it
    (treated as a doubtful outcome, like no answer). `skipped`: nothing was sent on purpose
    (an event the endpoint did not subscribe to); the copy is kept as if it had been."""

    remote_id: str | None
    confirmed: bool = True
    url: str | None = None
    remote: Mapping[str, Any] | None = None  # notes for later updates (media ids, the kind of message)
    skipped: str | None = None


class Preview(NamedTuple):
    """How a delivery would look (`hub publish --dry-run`): the text a person would read and
    the request's payload."""

    text: str
    payload: Any


class Capabilities(NamedTuple):
    update: bool = True  # can edit its copy of a record
    delete: bool = True  # can delete its copy
    # How long the channel recognises a repeated delivery (a stable webhook id, an
    # Idempotency-Key): an attempt with no answer is tried again only within it; None: never.
    dedup: timedelta | None = None
    concurrency: int = 1  # deliveries in flight at once
    rate: tuple[int, timedelta] | None = None  # the channel's own limit: at most n per period


class RecordPublisher(Protocol[O]):
    """A push channel that follows a record through its life."""

    kind: ClassVar[str]
    Options: ClassVar[type[RendererOptions]]
    capabilities: ClassVar[Capabilities]

    def preview(self, opts: O, channel: ChannelRef, out: Outgoing) -> Preview:
        """How `out` would look on the channel. Pure: no network."""
        ...

    async def create(self, opts: O, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        """Post the record.

        Args:
            opts: the channel's validated options.
            channel: which channel, where the platform lives, the record's images.
            out: the delivery; `out.id` is the same on every attempt.
            client: the hub's one hardened HTTP client (`Fetcher.send`: no redirects, SSRF guard).
        Returns:
            the channel's id for its copy, and whether it confirmed.
        Raises:
            ChannelError: what went wrong and what the hub should do about it.
        """
        ...

    async def update(self, opts: O, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        """Edit the copy `out.remote_id` to show the record's new version (same Raises)."""
        ...

    async def delete(self, opts: O, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        """Remove the copy `out.remote_id` (the record was removed, hidden, or no longer
        matches the channel's rules). A copy already gone counts as removed."""
        ...


class ChannelError(DeliveryError):
    """A delivery did not go through.

    `retry_after`: seconds the channel asked to wait; `permanent`: trying again cannot help
    (the channel rejected the content); `maybe_sent`: the request went out and no answer came,
    so the channel may have it; `stop`: the whole channel must wait ("wait": its rate limit,
    for `retry_after`), is gone for good ("disable": 410) or needs a person ("pause": the
    token was refused) until its options change or `hub channels enable`."""

    def __init__(self, message: str, *, hint: str | None = None, retry_after: float | None = None,
                 permanent: bool = False, maybe_sent: bool = False,
                 stop: Literal["wait", "disable", "pause"] | None = None, status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after
        self.permanent = permanent
        self.maybe_sent = maybe_sent
        self.stop = stop
        self.status = status


def network_error(exc: FetchError, what: str) -> ChannelError:
    """A request that got no answer: whether it may have arrived decides what comes next
    (`Fetcher.send` says). An address the SSRF guard refuses pauses the channel: only a
    person can change it."""
    if exc.code == "address_blocked":
        return ChannelError(f"{what}: {exc.message}", hint=exc.hint, stop="pause")
    return ChannelError(f"{what}: {exc.message}", hint=exc.hint, maybe_sent=bool(getattr(exc, "maybe_sent", True)))


def status_error(response: Response, what: str, detail: str = "") -> ChannelError:
    """An HTTP answer other than 2xx, mapped as Standard Webhooks and the channels' APIs
    advise: 3xx is a failure (never followed), 408/429/5xx are tried again (honouring
    Retry-After), 401/403 pause the channel, 410 disables it, other 4xx are permanent."""
    status = response.status
    retry_after = retry_after_of(response)
    said = f" ({detail})" if detail else ""
    if 300 <= status < 400:
        return ChannelError(f"{what}: HTTP {status} redirect to {response.headers.get('location', '?')}{said}",
                            hint="redirects are not followed: put the final address in the config", status=status)
    if status == 410:
        return ChannelError(f"{what}: HTTP 410 Gone{said}", stop="disable", status=status,
                            hint="the endpoint says it is gone for good; the channel is disabled until its options "
                                 "change or `hub channels enable`")
    if status in (401, 403):
        return ChannelError(f"{what}: HTTP {status}: access refused{said}", stop="pause", status=status,
                            hint="check the token or password in the config; the channel is paused until its "
                                 "options change or `hub channels enable`")
    if status == 429:
        return ChannelError(f"{what}: HTTP 429: too many requests{said}", stop="wait", status=status,
                            retry_after=retry_after if retry_after is not None else 60.0,
                            hint="the channel's rate limit; the hub waits as long as it asks")
    if status == 408 or status >= 500:
        return ChannelError(f"{what}: HTTP {status}{said}", retry_after=retry_after, status=status,
                            hint="usually temporary; the hub tries again later")
    return ChannelError(f"{what}: HTTP {status}{said}", permanent=True, status=status,
                        hint="the channel rejected the delivery; it is not tried again")


def retry_after_of(response: Response) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), if the answer has one."""
    value = (response.headers.get("retry-after") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


# --- the first contract: new items only (kept for third-party publishers) -----------------------

class Delivery(NamedTuple):
    """What happened to one item. `item_key` is `item_key(item)`."""

    item_key: str
    status: Literal["sent", "skipped", "failed"]
    detail: str = ""


def item_key(item: Item) -> str:
    """An item's key in a `Delivery`: its source and the id the source gave it."""
    return f"{item.source_id}\x1f{item.external_id}"


class Publisher(Protocol[O]):
    """A push channel of the first protocol: it gets new records only, as items."""

    kind: ClassVar[str]
    Options: ClassVar[type[RendererOptions]]

    async def publish(self, opts: O, channel: ChannelRef, items: Sequence[Item],
                      client: Fetcher) -> list[Delivery]:
        """Send items the channel has not had yet, oldest first.

        Args:
            opts: the channel's validated options.
            channel: which channel this is, and where the platform lives.
            items: only items not yet delivered to this channel (the ledger decides).
            client: the hub's one hardened HTTP client, for publishers that call out.
        Returns:
            one Delivery per item; an item without one counts as failed and is retried on a
            later run, as are "failed" ones. "sent" and "skipped" are final.
        Raises:
            DeliveryError: nothing could be sent at all (every item is retried later).
        """
        ...


def is_record_publisher(plugin: Any) -> bool:
    return all(callable(getattr(plugin, name, None)) for name in ("create", "update", "delete"))


def is_publisher(plugin: Any) -> bool:
    """A push channel of either contract (pull channels and the newsletter are neither)."""
    return is_record_publisher(plugin) or callable(getattr(plugin, "publish", None))


def capabilities_of(plugin: Any) -> Capabilities:
    found = getattr(plugin, "capabilities", None)
    if isinstance(found, Capabilities):
        return found
    return Capabilities(update=False, delete=False)  # the first contract: new items only
