"""`hub newsletter ...` (issue 15): the subscribers of the town's newsletters.

    hub newsletter subscribers [--channel ID]   counts per newsletter: confirmed, waiting, disabled
    hub newsletter erase EMAIL                  every trace of an address, from every newsletter
    hub newsletter export [--channel ID] [-o F] confirmed subscribers as CSV, with their consent

and the newsletter part of `hub publish --channel ID [--dry-run]` (`publish_newsletters`).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from hub.cli.common import ConfigOpt, err, open_store, out, settings_from
from hub.config import Settings
from hub.newsletter.job import NewsletterJob
from hub.newsletter.options import newsletter_channel, newsletter_channels
from hub.newsletter.store import NewsletterStore
from hub.newsletter.render import category_title
from hub.newsletter.subscribe import CONSENT, describe
from hub.store import Store
from schedules.publishing import PublishReport
from schedules.scheduler import process_owner

newsletter_app = typer.Typer(help="The newsletters' subscribers: counts, erasure, export.", no_args_is_help=True)
ChannelOpt = Annotated[Optional[str], typer.Option("--channel", help="Only this newsletter (channel id).")]
STATES = ("confirmed", "pending", "disabled")


@newsletter_app.command("subscribers")
def subscribers(config: ConfigOpt = Path("config.yaml"), channel: ChannelOpt = None,
                format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table") -> None:
    """How many subscribe to each newsletter: confirmed, waiting for confirmation, disabled
    (mail to them was rejected three times in a row)."""
    settings = settings_from(config)
    ids = _channel_ids(settings, channel)
    letters = NewsletterStore(open_store(settings))
    counts = letters.counts()
    rows = [{"channel": cid, **{s: counts.get(cid, {}).get(s, 0) for s in STATES}} for cid in ids]
    if format == "json":
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return
    table = Table(title="Newsletter subscribers")
    for name in ("newsletter", "confirmed", "waiting for confirmation", "disabled (bounced)", "last edition"):
        table.add_column(name, justify="left" if name in ("newsletter", "last edition") else "right")
    for row in rows:
        table.add_row(row["channel"], str(row["confirmed"]), str(row["pending"]), str(row["disabled"]),
                      _last_edition(letters, row["channel"]))
    out.print(table)


@newsletter_app.command("erase")
def erase(email: Annotated[str, typer.Argument(help="The address to remove.")],
          config: ConfigOpt = Path("config.yaml")) -> None:
    """Remove every trace of an address (GDPR Art. 17): its subscriptions to every newsletter
    and the record of which editions went to it."""
    settings = settings_from(config)
    removed = NewsletterStore(open_store(settings)).erase(email)
    if removed:
        out.print(f"erased {email}: {removed} subscription(s) and their delivery records are gone")
    else:
        out.print(f"{email} is not in any newsletter (nothing to erase)")


@newsletter_app.command("export")
def export(config: ConfigOpt = Path("config.yaml"), channel: ChannelOpt = None,
           output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file "
                                                          "(readable by its owner only) instead of stdout.")] = None,
           ) -> None:
    """The confirmed subscribers as CSV for the town's records: address, newsletter, topics,
    when they signed up and confirmed, and the wording they agreed to."""
    settings = settings_from(config)
    _channel_ids(settings, channel)
    letters = NewsletterStore(open_store(settings))
    if output is None:
        n = _write_csv(sys.stdout, settings, letters, channel)
    else:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            n = _write_csv(file, settings, letters, channel)
        err.print(f"wrote {n} confirmed subscriber(s) to {output}")


def _write_csv(file, settings: Settings, letters: NewsletterStore, channel: str | None) -> int:
    writer = csv.writer(file)
    writer.writerow(["email", "newsletter", "signed_up_at", "confirmed_at", "form_version", "consent_text",
                     "kinds", "categories", "merchants", "topics"])
    n = 0
    for sub in letters.confirmed(channel):
        config = newsletter_channel(settings, sub.channel_id)
        consent = CONSENT.get(sub.form_version, "")
        if config is not None:
            consent = consent.format(title=config.options.name, town=settings.platform.name)
        p = sub.preferences
        writer.writerow([sub.email, sub.channel_id, _iso(sub.created_at), _iso(sub.confirmed_at), sub.form_version,
                         consent, " ".join(p.kinds), " ".join(p.categories), " ".join(p.merchants),
                         describe(p, settings, category_title)])
        n += 1
    return n


def publish_newsletters(settings: Settings, store: Store, names: list[str] | None, dry_run: bool
                        ) -> list[PublishReport]:
    """`hub publish` for newsletter channels. Sending happens only for newsletters named with
    --channel (an edition to everyone is never a side effect of a plain `hub publish`); a
    dry run without --channel looks at all of them."""
    chosen = [c for c in newsletter_channels(settings) if (c.id in names if names else dry_run)]
    if not chosen:
        return []
    job = NewsletterJob(settings, store, owner=process_owner())
    if dry_run:
        return [_dry_run(job, settings, c) for c in chosen]
    return asyncio.run(_send_all(job, [c.id for c in chosen]))


def _dry_run(job: NewsletterJob, settings: Settings, channel) -> PublishReport:
    draft, paths = job.dry_run(channel, settings.data_dir / "newsletter")
    if not paths:
        why = "nothing new" if not draft.new else "nothing for the sample subscriber's topics"
        out.print(f"{channel.id}: no edition would be made now ({why} since {draft.since:%Y-%m-%d %H:%M} UTC); "
                  "no file written")
        return PublishReport(channel.id, "dry run")
    out.print(f"{channel.id}: wrote the next edition ({draft.new} new records, {draft.upcoming} upcoming events) "
              f"for a sample subscriber with {draft.sample} to {paths[0]} (a mail) and {paths[1]} (open it in "
              "a browser); nothing was sent")
    titles = [line for line in draft.mail.text.splitlines() if line.startswith("* ")]
    return PublishReport(channel.id, "dry run", titles=[t[2:] for t in titles])


async def _send_all(job: NewsletterJob, channel_ids: list[str]) -> list[PublishReport]:
    status = {"sent": "published", "sending": "published", "busy": "busy", "failed": "failed"}
    found = []
    for channel_id in channel_ids:
        reports = await job.publish_now(channel_id)
        found += [PublishReport(r.channel_id, status[r.status], r.counts["sent"], r.counts["skipped"],
                                r.counts["failed"], r.error or _left(r)) for r in reports]
        if not reports:
            found.append(PublishReport(channel_id, "nothing new"))
    return found


def _left(report) -> str | None:
    deferred = report.counts["deferred"]
    parts = [f"edition {report.edition_id}"]
    if deferred:
        parts.append(f"{deferred} temporarily rejected, tried again later")
    if report.resent:
        parts.append(f"{report.resent} in flight at an earlier stop, sent again")
    return "; ".join(parts)


def _channel_ids(settings: Settings, channel: str | None) -> list[str]:
    ids = [c.id for c in newsletter_channels(settings)]
    if channel and channel not in ids:
        err.print(f"no newsletter channel '{channel}'; newsletters in the config: {', '.join(ids) or 'none'}",
                  style="yellow")
        raise typer.Exit(2)
    return [channel] if channel else ids


def _last_edition(letters: NewsletterStore, channel_id: str) -> str:
    edition = letters.last_edition(channel_id)
    if edition is None:
        return "–"
    progress = letters.progress(edition.id)
    when = edition.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
    return (f"#{edition.id} {when}: {edition.status}, {progress['sent']} of {edition.recipients} sent"
            + (f", {progress.open} open" if progress.open else ""))


def _iso(value) -> str:
    return value.isoformat(timespec="seconds") if value else ""
