"""What a renderer is: it turns items into something a channel shows."""

from __future__ import annotations

from typing import ClassVar, NamedTuple, Protocol, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict

from hub.models import Item


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
