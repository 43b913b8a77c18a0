"""The JSON Lines channel: appends every change of a record to a file, one JSON object a line.

An archive of what the hub published, and the simplest integration there is: a static site
generator, a mail merge or a small script reads the file (`tail -f`, `jq`). The file is only
ever appended to: an edit and a removal are lines of their own. Each line is

    {"channel": ..., "published_at": ..., "event": "created" | "updated" | "deleted",
     "id": "<delivery id>", "record": 123, "version": 456, "url": "<the record's page>",
     "item": {...}}

with the record's fields as `Item.to_dict()` (for "deleted": as they were last). A line is
written before the ledger marks its delivery sent, so after a crash in between the same line
may come twice: with the same `id`, which a reader keeps once.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Sequence

from hub.ledger import FOREVER
from renderers.base import (Capabilities, ChannelError, ChannelRef, Outgoing, Preview, PushOptions, Receipt,
                            RendererOptions)

if TYPE_CHECKING:
    from hub.http import Fetcher


class JsonLinesOptions(PushOptions):
    takes_template: ClassVar[bool] = False
    path: Path  # the file to append to; relative to the config file's folder


class JsonLinesPublisher:
    kind: ClassVar[str] = "jsonlines"
    Options: ClassVar[type[RendererOptions]] = JsonLinesOptions
    # A repeat carries the delivery's id; the file keeps every line.
    capabilities: ClassVar[Capabilities] = Capabilities(dedup=FOREVER)

    def preview(self, opts: JsonLinesOptions, channel: ChannelRef, out: Outgoing) -> Preview:
        line = _line(channel, out, datetime.now(timezone.utc).isoformat())
        return Preview(line.rstrip("\n"), json.loads(line))

    async def create(self, opts: JsonLinesOptions, channel: ChannelRef, out: Outgoing, client: Fetcher) -> Receipt:
        return (await self.send_many(opts, channel, [out], client))[0]

    update = create
    delete = create

    async def send_many(self, opts: JsonLinesOptions, channel: ChannelRef, outs: Sequence[Outgoing],
                        client: Fetcher) -> list[Receipt | ChannelError]:
        """All of a run's lines with one write and one fsync."""
        path = opts.path if opts.path.is_absolute() else channel.base_dir / opts.path
        now = datetime.now(timezone.utc).isoformat()
        try:
            await asyncio.to_thread(_append, path, "".join(_line(channel, out, now) for out in outs))
        except OSError as exc:
            error = ChannelError(f"cannot append to {path}: {exc}",
                                 hint="check the channel's path and that the hub may write there")
            return [error] * len(outs)
        return [Receipt(str(out.record_id)) for out in outs]


def _line(channel: ChannelRef, out: Outgoing, now: str) -> str:
    return json.dumps({"channel": channel.id, "published_at": now, "event": out.event, "id": out.id,
                       "record": out.record_id, "version": out.version, "url": out.link,
                       "item": out.item.to_dict()}, ensure_ascii=False) + "\n"


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())  # "sent" is recorded next; the lines must be on disk first

