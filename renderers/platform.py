"""The town platform channel: the resident-facing web pages served by `hub.web`.

It has no push step; its options decide what the pages show."""

from __future__ import annotations

from typing import ClassVar

from renderers.base import RendererOptions


class PlatformOptions(RendererOptions):
    page_size: int = 30


class PlatformRenderer:
    kind: ClassVar[str] = "platform"
    Options: ClassVar[type[RendererOptions]] = PlatformOptions
