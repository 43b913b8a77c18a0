"""A newsletter channel's options (`renderer: newsletter`), and where its mail goes out.

    channels:
      - id: wochenpost
        renderer: newsletter
        schedule: "0 7 * * FRI"              # cron in platform.timezone; none: only `hub publish`
        subject: "Die Woche in Musterstadt"
        from: "Musterstadt erleben <post@musterstadt.example>"
        reply_to: post@musterstadt.example
        smtp: {host: smtp.example, port: 587, security: starttls, username: ..., password: ${SMTP_PASSWORD}}
        rate: 20                              # mails per second at most
        include: {kinds: [event, offer, post]}
        sections: [event, offer, post]        # order of the digest's sections
        max_items: 30

`smtp` and `from` may be left out when the config has a top-level `mail:` block (the cockpit's
SMTP server, hub.config.MailConfig): the newsletter then sends through that one.

The model lives in the core (not in renderers/) because the web form, the sender and the
CLI all need it; `renderers.newsletter` declares it as the plugin's `Options`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from hub.config import ChannelConfig, Settings
from hub.errors import ConfigError

RENDERER = "newsletter"
SECTIONS = ("event", "offer", "post")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def _sender(value: str) -> str:
    """`post@town.example` or `Name <post@town.example>`."""
    value = value.strip()
    bare = re.fullmatch(r"[^<>]*<([^<>]+)>", value)
    if not _ADDRESS.match(bare.group(1).strip() if bare else value):
        raise ValueError(f"'{value}' is not an e-mail address; write it like \"Musterstadt erleben "
                         "<post@musterstadt.example>\" or post@musterstadt.example")
    return value


Sender = Annotated[str, AfterValidator(_sender)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SmtpOptions(_Strict):
    """The SMTP server a newsletter sends through. `none`: a relay on this machine or network
    that takes plain SMTP (localhost:25, a test server)."""

    host: str
    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # default: 587 starttls, 465 tls, 25 none
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    timeout: Annotated[float, Field(gt=0)] = 20.0  # seconds for connecting and for each answer
    # PEM certificates to check the server's with, for a relay with a certificate of its own
    # CA (relative to the config file); default: the system's trusted CAs.
    ca_bundle: Path | None = None


class NewsletterOptions(_Strict):
    subject: str = "Neues aus der Stadt"
    from_: Annotated[Sender | None, Field(alias="from")] = None  # default: mail.from
    reply_to: Sender | None = None
    smtp: SmtpOptions | None = None  # default: the top-level mail: block
    rate: Annotated[float, Field(gt=0)] = 20  # mails per second at most, evenly spaced
    sections: list[Literal["event", "offer", "post"]] = list(SECTIONS)
    max_items: Annotated[int, Field(ge=1, le=200)] = 30  # records in one subscriber's mail at most
    # How the form and the mails name the newsletter (default: the subject) and what it is about.
    title: str | None = None
    description: str | None = None
    imprint_url: str | None = None  # the Impressum linked in every mail; default: fetcher.contact_url

    @field_validator("sections")
    @classmethod
    def _once_each(cls, sections: list[str]) -> list[str]:
        if not sections:
            raise ValueError("name at least one section: event, offer or post")
        if twice := next((s for s in sections if sections.count(s) > 1), None):
            raise ValueError(f"section '{twice}' is named twice")
        return sections

    @property
    def name(self) -> str:
        return self.title or self.subject


@dataclass(frozen=True)
class Smtp:
    """Where and how one newsletter's mail goes out, resolved from the channel and `mail:`."""

    host: str
    port: int
    security: str
    username: str | None
    password: str | None
    timeout: float
    sender: str  # the From header: "Name <address>"
    ca_bundle: Path | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def newsletter_channels(settings: Settings) -> list[ChannelConfig]:
    return [c for c in settings.channel_list() if c.renderer == RENDERER]


def newsletter_channel(settings: Settings, channel_id: str) -> ChannelConfig | None:
    return next((c for c in newsletter_channels(settings) if c.id == channel_id), None)


def smtp_of(settings: Settings, channel: ChannelConfig) -> Smtp:
    """The channel's own `smtp:` and `from:`, else those of the top-level `mail:` block.
    Raises ConfigError saying what to add when neither is there."""
    opts: NewsletterOptions = channel.options
    mail = settings.mail
    server = opts.smtp or mail
    sender = opts.from_ or (mail.from_ if mail else None)
    if server is None or sender is None:
        missing = "an smtp: server" if server is None else "a from: address"
        raise ConfigError([f"newsletter channel '{channel.id}' has no {missing} (hint: give the channel "
                           "`smtp: {host: ..., port: 587, security: starttls}` and `from: \"Name <address>\"`, "
                           "or add a top-level `mail:` block it can use)"])
    password = server.password.get_secret_value() if server.password else None
    ca_bundle = getattr(server, "ca_bundle", None)
    return Smtp(server.host, server.port or DEFAULT_PORTS[server.security], server.security, server.username,
                password, server.timeout, sender, settings.base_dir / ca_bundle if ca_bundle else None)
