"""`hub channels` (issue 16): the push channels and their delivery ledger.

    hub channels [--problems] [-f json]       each channel's state, backlog, last error
    hub channels retry ID [--record N]        send failed and unconfirmed deliveries again
    hub channels mark-sent ID RECORD [--remote-id X] [--url U]
                                              an unconfirmed delivery did arrive (a person checked)
    hub channels enable ID                    lift a disable (HTTP 410) or a pause (refused token)

and the rendered previews of `hub publish --channel ID --dry-run` (`print_previews`).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from hub.cli.common import err, open_store, out, settings_from, when
from hub.config import Settings
from hub.store import Store
from hub.store.ledger import ChannelSummary, LedgerStore
from schedules.publishing import PublishReport, push_channels

channels_app = typer.Typer(help="Push channels (webhook, Mastodon, Telegram, WordPress, files): state, backlog, "
                                "last error; send again, mark as sent, enable.", invoke_without_command=True)
ConfigOpt = Annotated[Optional[Path], typer.Option("-c", "--config", envvar="HUB_CONFIG", help="The YAML config file.")]
ChannelArg = Annotated[str, typer.Argument(help="The channel's id (first column of `hub channels`).")]
STATE_STYLES = {"active": "green", "disabled": "red", "paused": "yellow", "removed": "dim"}


@channels_app.callback()
def channels(ctx: typer.Context, config: ConfigOpt = None,
             problems: Annotated[bool, typer.Option("--problems", help="Also list each channel's failed and "
                                                    "unconfirmed deliveries.")] = False,
             format: Annotated[str, typer.Option("--format", "-f",
                                                 help="table or json (one object per line).")] = "table",
             ) -> None:
    """Each push channel's state (active, disabled by a 410, paused for a refused token),
    its backlog, what failed or waits for a person, and its last error."""
    ctx.obj = config
    if ctx.invoked_subcommand:
        return
    settings, store = _open(config)
    ledger = LedgerStore(store)
    now = datetime.now(timezone.utc)
    configured = {c.id: c for c in push_channels(settings)}
    summaries = [s for s in ledger.summaries(now) if s.channel.id in configured or s.channel.state != "removed"]
    if format == "json":
        for s in summaries:
            row = _as_json(s, settings)
            if problems:
                row["problems"] = ledger.problems(s.channel.id)
            sys.stdout.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
        return
    if not summaries:
        out.print("no push channel in the config (a webhook, mastodon, telegram, wordpress or jsonlines channel)")
        return
    out.print(_table(summaries, settings))
    if problems:
        for s in summaries:
            rows = ledger.problems(s.channel.id)
            if rows:
                out.print(_problems(s.channel.id, rows))


@channels_app.command()
def retry(ctx: typer.Context, channel: ChannelArg, config: ConfigOpt = None,
          record: Annotated[Optional[int], typer.Option("--record", help="Only this record's deliveries.")] = None,
          ) -> None:
    """Send a channel's failed and unconfirmed deliveries again, with a fresh set of attempts
    (for an unconfirmed one: after checking that it did not arrive)."""
    settings, store = _open(config or ctx.obj, channel)
    n = LedgerStore(store).retry(channel, datetime.now(timezone.utc), record)
    out.print(f"{channel}: {n} deliveries will be sent again on the next run (`hub run`, or `hub publish --channel "
              f"{channel}` now)" if n else f"{channel}: nothing failed or unconfirmed"
              + (f" for record {record}" if record is not None else ""))


@channels_app.command("mark-sent")
def mark_sent(ctx: typer.Context, channel: ChannelArg,
              record: Annotated[int, typer.Argument(help="The record's id (`hub channels --problems` lists them).")],
              config: ConfigOpt = None,
              remote_id: Annotated[Optional[str], typer.Option("--remote-id", help="The channel's own id of the "
                                   "post (the status, message or post id), so edits and removals reach it.")] = None,
              url: Annotated[Optional[str], typer.Option("--url", help="Its address on the channel.")] = None,
              ) -> None:
    """An unconfirmed delivery did arrive (you found it on the channel): count it as sent."""
    settings, store = _open(config or ctx.obj, channel)
    if not LedgerStore(store).mark_sent(channel, record, datetime.now(timezone.utc), remote_id, url):
        err.print(f"{channel} has no unconfirmed delivery of record {record}", style="red")
        raise typer.Exit(2)
    hint = "" if remote_id else " (without --remote-id its edits and removals cannot reach that post)"
    out.print(f"{channel}: record {record} marked as sent{hint}")


@channels_app.command()
def enable(ctx: typer.Context, channel: ChannelArg, config: ConfigOpt = None) -> None:
    """Let a disabled or paused channel deliver again (changing its options does that too)."""
    settings, store = _open(config or ctx.obj, channel)
    if LedgerStore(store).enable(channel, datetime.now(timezone.utc)):
        out.print(f"{channel} is active again; what waited goes out on its next run")
    else:
        out.print(f"{channel} was not disabled or paused")


def print_previews(reports: list[PublishReport]) -> None:
    """What a dry run would send, rendered as each channel would show it."""
    for report in reports:
        if report.status == "dry run" and report.error:
            out.print(f"{report.channel_id}: {report.error}", style="yellow")
        for what, preview in report.previews:
            payload = preview.payload
            body: Any = Text(preview.text)
            if payload is not None and not isinstance(payload, str):
                shown = json.dumps(payload, ensure_ascii=False, indent=2, default=str)
                body = Group(Text(preview.text), Text(""), Text("payload:", style="bold"), Syntax(shown, "json",
                                                                                                   word_wrap=True))
            out.print(Panel(body, title=f"{report.channel_id}: {what}", title_align="left"))


# --- helpers ----------------------------------------------------------------------------------

def _open(config: Path | None, channel: str | None = None) -> tuple[Settings, Store]:
    settings = settings_from(config or Path("config.yaml"))
    if channel is not None and channel not in {c.id for c in push_channels(settings)}:
        known = ", ".join(c.id for c in push_channels(settings)) or "none"
        err.print(f"no push channel {channel}; push channels in the config: {known}", style="red")
        raise typer.Exit(2)
    return settings, open_store(settings)


def _pace(settings: Settings, channel_id: str) -> str:
    channel = next((c for c in settings.channel_list() if c.id == channel_id), None)
    pace = getattr(getattr(channel, "options", None), "pace", None)
    if pace is None or (pace.per_hour is None and pace.quiet is None):
        return ""
    parts = [f"{pace.per_hour:g}/h"] if pace.per_hour else []
    return ", ".join(parts + ([f"quiet {pace.quiet}"] if pace.quiet else []))


def _as_json(s: ChannelSummary, settings: Settings) -> dict[str, Any]:
    c = s.channel
    return {"channel": c.id, "renderer": c.renderer, "state": c.state, "state_reason": c.state_reason,
            "due": s.due, "backlog": s.counts.get("pending", 0) + s.counts.get("sending", 0),
            "counts": dict(s.counts), "next_retry_at": s.next_try_at, "hold_until": c.hold_until,
            "next_slot_at": c.next_slot_at, "pace": _pace(settings, c.id) or None, "last_sent_at": c.last_sent_at,
            "last_error": c.last_error, "last_error_at": c.last_error_at}


def _table(summaries: list[ChannelSummary], settings: Settings) -> Table:
    table = Table(title="Channels")
    for name in ("channel", "renderer", "state", "backlog", "sent", "unconfirmed", "failed", "last sent",
                 "next", "last error"):
        table.add_column(name, justify="right" if name in ("backlog", "sent", "unconfirmed", "failed") else "left",
                         overflow="fold")
    for s in summaries:
        c, counts = s.channel, s.counts
        state = Text(c.state, style=STATE_STYLES.get(c.state, ""))
        if c.state_reason and c.state != "active":
            state.append(f"\n{c.state_reason}", style="dim")
        backlog = counts.get("pending", 0) + counts.get("sending", 0)
        waiting = f"{backlog} ({s.due} due)" if backlog != s.due else str(backlog)
        holding = c.hold_until is not None and c.hold_until > datetime.now(timezone.utc)
        notes = [n for n in (_pace(settings, c.id), f"retry at {when(s.next_try_at)}" if s.next_try_at else "",
                             f"waits until {when(c.hold_until)}" if holding else "") if n]
        unconfirmed = Text(str(counts.get("unconfirmed", 0)), style="yellow" if counts.get("unconfirmed") else "")
        failed = Text(str(counts.get("failed", 0)), style="red" if counts.get("failed") else "")
        error = Text(f"{when(c.last_error_at)}: {c.last_error}" if c.last_error else "", style="red")
        table.add_row(c.id, c.renderer, state, waiting, str(counts.get("sent", 0)), unconfirmed, failed,
                      when(c.last_sent_at), "\n".join(notes), error)
    return table


def _problems(channel_id: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{channel_id}: failed and unconfirmed deliveries")
    for name in ("record", "version", "what", "status", "attempts", "last try", "why"):
        table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(str(r["record_id"]), str(r["version"]), "removal" if r["op"] == "withdraw" else "post",
                      r["status"], str(r["attempts"]), when(r["last_try_at"]), r["detail"] or "")
    return table
