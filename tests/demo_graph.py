"""The demo town's fake Graph API (the bakery's Facebook page and Instagram account), as
`make run` starts it, for tests that run the hub on config.example.yaml."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hub.demo.graphapi import FakeGraph, load_fixtures

FIXTURES = Path(__file__).resolve().parents[1] / "hub" / "demo" / "musterstadt" / "facebook.json"


@contextmanager
def demo_graph() -> Iterator[dict[str, str]]:
    """Serve the demo fixtures on a free loopback port; yields the environment that points
    config.example.yaml at it."""
    graph = FakeGraph()
    load_fixtures(graph, FIXTURES)
    with graph:
        yield {"HUB_DEMO_GRAPH_URL": graph.graph_url}
