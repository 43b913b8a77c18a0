"""Connector and renderer registries.

Built-in plugins are listed here explicitly; third-party packages add their own through the
entry-point groups `hub.connectors` and `hub.renderers` (see README, "Writing a plugin").
Plugins are imported on first use, so a broken optional plugin cannot stop the hub from
starting when no source uses it.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

BUILTIN_CONNECTORS = {
    "feed": "connectors.feed:FeedConnector",
    "rss": "connectors.feed:FeedConnector",
    "atom": "connectors.feed:FeedConnector",
    "jsonfeed": "connectors.feed:FeedConnector",
    "facebook": "connectors.facebook:FacebookConnector",
    "instagram": "connectors.instagram:InstagramConnector",
}

BUILTIN_RENDERERS = {
    "platform": "renderers.platform:PlatformRenderer",
    "jsonlines": "renderers.jsonlines:JsonLinesPublisher",
}


@cache
def _table(group: str) -> dict[str, str]:
    builtin = BUILTIN_CONNECTORS if group == "hub.connectors" else BUILTIN_RENDERERS
    found = {ep.name: ep.value for ep in entry_points(group=group)}
    return {**found, **builtin}  # a third party cannot silently replace a built-in


def names(group: str) -> list[str]:
    return sorted(_table(group))


@cache
def load(group: str, name: str) -> Any:
    """The plugin class registered as `name`; KeyError if there is none."""
    module_name, _, attr = _table(group)[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def connector(name: str) -> Any:
    return load("hub.connectors", name)


def renderer(name: str) -> Any:
    return load("hub.renderers", name)
