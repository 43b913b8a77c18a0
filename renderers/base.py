"""What a renderer is: it turns items into something a channel shows.

Two kinds: a `FeedRenderer` is pulled (the web app serves what it renders); a `Publisher`
pushes (newsletter, webhook, a file). The hub calls a publisher's `publish` from the
publish tick or `hub publish`, with only the items the delivery ledger says the channel has
not had yet, and records each returned `Delivery`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, NamedTuple, Protocol, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict

from hub.models import Item

if TYPE_CHECKING:
    from hub.http import Fetcher


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


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """What a publisher is told about the channel it publishes for."""

    id: str
    platform_name: str
    base_url: str  # the platform's public address, for links back
    timezone: str
    base_dir: Path  # the config file's folder: relative paths in options resolve against it


class Delivery(NamedTuple):
    """What happened to one item. `item_key` is `item_key(item)`."""

    item_key: str
    status: Literal["sent", "skipped", "failed"]
    detail: str = ""


def item_key(item: Item) -> str:
    """An item's key in a `Delivery`: its source and the id the source gave it."""
    return f"{item.source_id}\x1f{item.external_id}"


class Publisher(Protocol[O]):
    """A push channel: newsletter, webhook, a file, a social network."""

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
            later run, as are "failed" ones (up to a limit). "sent" and "skipped" are final.
        Raises:
            DeliveryError: nothing could be sent at all (every item is retried later).
        """
        ...
