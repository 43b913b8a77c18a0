"""The CPU side of ingest: what runs for every payload, in the parse worker processes."""

from __future__ import annotations

from hub import plugins
from hub.models import Parsed, Retrieved, SourceRef
from hub.normalize import normalize_parsed


def parse_payload(connector: str, options, ref: SourceRef, got: Retrieved) -> Parsed:
    """A connector's pure parse step; module-level so worker processes can run it.
    Content hashes are computed here too, so a worker, not the writer, pays for them."""
    parsed = plugins.connector(connector)().parse(options, ref, got)
    parsed = normalize_parsed(parsed, ref.timezone)  # issue 4: language, links, events in prose
    for item in parsed.items:
        item.content_hash
    return parsed
