"""Subscribing, confirming, changing topics and leaving: the double opt-in, without a web
framework (hub.web.newsletter serves it).

German data protection practice, as the form and these steps follow it:

- The form asks for an address, the newsletter and topics, and shows what the resident
  agrees to (`CONSENT`, versioned: the version is stored with the sign-up). Nothing else is
  recorded: no IP address, no user agent, no cookie.
- A sign-up waits (`pending`) until the confirmation link is followed: the link is signed and
  expires after `CONFIRM_VALID`; the mail goes out at once from the process that served the
  form. Unconfirmed sign-ups are deleted after `FORGET_UNCONFIRMED` (hub.newsletter.upkeep).
- An address already confirmed is never changed through the form (anyone can type any
  address): its owner gets a mail with their own links instead. Every answer of the form
  reads the same, so the form tells nobody who subscribes.
- Against abuse, without a CAPTCHA service: a honeypot field that people do not see, a
  limit of confirmation mails per address, and one for the whole form (`Limits`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parseaddr
from typing import Callable, Iterable, Literal

from hub.config import ChannelConfig, Settings
from hub.errors import ConfigError
from hub.newsletter import mime
from hub.newsletter.digest import SECTION_TITLES, channel_filters
from hub.newsletter.options import newsletter_channel, smtp_of
from hub.newsletter.render import category_title, mail_environment
from hub.newsletter.smtp import MailServer, Unreachable
from hub.newsletter.store import NewsletterStore, Preferences, Subscriber
from hub.newsletter.tokens import CONFIRM, MANAGE, UNSUBSCRIBE, Purpose
from hub.store import Store
from hub.web import formatting

log = logging.getLogger("hub.newsletter")
CONFIRM_VALID = timedelta(hours=72)
FORGET_UNCONFIRMED = timedelta(days=7)
FORM_VERSION = "2026-1"
# What the form says the resident agrees to, by version. A changed wording gets a new version.
CONSENT = {
    "2026-1": ("Ja, ich möchte den Newsletter „{title}“ von {town} mit den gewählten Themen per E-Mail "
               "erhalten. Meine E-Mail-Adresse wird nur dafür verwendet und nicht weitergegeben. Ich "
               "bestätige die Anmeldung über den Link, den ich per E-Mail bekomme; ohne Bestätigung wird "
               "die Adresse nach 7 Tagen gelöscht. Abbestellen kann ich jederzeit über den Link in jeder "
               "E-Mail."),
}
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- what the form offers --------------------------------------------------------------------

@dataclass(frozen=True)
class Choices:
    """The topics a newsletter's form offers: (value, name) pairs; merchants with their
    category's name."""

    kinds: tuple[tuple[str, str], ...]
    categories: tuple[tuple[str, str], ...]
    merchants: tuple[tuple[str, str, str], ...]

    def preferences(self, kinds: Iterable[str], categories: Iterable[str], merchants: Iterable[str]) -> Preferences:
        """The chosen topics, keeping only what the form offers. Everything ticked in a row
        means "all of them", future ones included (stored as nothing chosen)."""
        def pick(chosen: Iterable[str], offered: Iterable[str]) -> tuple[str, ...]:
            offered = list(offered)
            kept = tuple(sorted({c for c in chosen if c in offered}))
            return () if len(kept) == len(offered) else kept
        return Preferences(pick(categories, (v for v, _ in self.categories)),
                           pick(kinds, (v for v, _ in self.kinds)), pick(merchants, (m for m, _, _ in self.merchants)))


def choices(settings: Settings, channel: ChannelConfig, category_title: Callable[[str], str]) -> Choices:
    filters = channel_filters(settings, channel)
    allowed = set(filters.get("merchants") or [m.id for m in settings.merchants])
    merchants = sorted((m for m in settings.merchants if m.id in allowed), key=lambda m: m.name.casefold())
    categories = sorted({m.category for m in merchants if m.category}, key=lambda c: category_title(c).casefold())
    return Choices(tuple((k, SECTION_TITLES[k]) for k in filters["kinds"]),
                   tuple((c, category_title(c)) for c in categories),
                   tuple((m.id, m.name, category_title(m.category) if m.category else "") for m in merchants))


def consent_text(settings: Settings, channel: ChannelConfig, version: str = FORM_VERSION) -> str:
    return CONSENT[version].format(title=channel.options.name, town=settings.platform.name)


def valid_address(text: str) -> str | None:
    """The address, trimmed, if it is one mail can be sent to; else None. A local part in
    plain ASCII (what every server takes); the domain may be internationalized."""
    text = (text or "").strip()
    if len(text) > 254 or text.count("@") != 1:
        return None
    local, domain = text.split("@")
    if not local or len(local) > 64 or not _LOCAL.match(local):
        return None
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        return None
    return text


# --- limits ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """How many confirmation mails the form sends: per address (at most `per_address` a
    day, at least `address_gap` apart) and altogether (`overall` per `overall_window`)."""

    per_address: int = 3
    address_gap: timedelta = timedelta(minutes=10)
    overall: int = 60
    overall_window: timedelta = timedelta(minutes=10)


class Throttle:
    """The form's limits, in memory: addresses are kept only as salted hashes (the salt is
    made per process), for a day at most."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._salt = secrets.token_bytes(16)
        self._all: deque[float] = deque()
        self._by_address: dict[bytes, deque[float]] = defaultdict(deque)

    def form_open(self) -> bool:
        """Whether the form takes another sign-up at all right now."""
        now = self.clock()
        _trim(self._all, now - self.limits.overall_window.total_seconds())
        return len(self._all) < self.limits.overall

    def address_open(self, email: str) -> bool:
        """Whether another confirmation mail may go to this address now."""
        now = self.clock()
        sent = self._by_address.get(self._key(email))
        if not sent:
            return True
        _trim(sent, now - 86400)
        return len(sent) < self.limits.per_address and (
            not sent or now - sent[-1] >= self.limits.address_gap.total_seconds())

    def sent(self, email: str) -> None:
        """A confirmation mail went to `email`."""
        now = self.clock()
        self._by_address[self._key(email)].append(now)
        if len(self._by_address) > 10_000:  # forget addresses whose day is over
            for key in [k for k, v in self._by_address.items() if not v or v[-1] < now - 86400]:
                del self._by_address[key]

    def tried(self) -> None:
        """A valid sign-up came in (it counts towards the form's limit, mail or not)."""
        self._all.append(self.clock())

    def _key(self, email: str) -> bytes:
        return hashlib.blake2b(email.strip().casefold().encode(), key=self._salt, digest_size=16).digest()


def _trim(times: deque[float], before: float) -> None:
    while times and times[0] < before:
        times.popleft()


# --- the steps -------------------------------------------------------------------------------

Result = Literal["sent", "quiet", "busy", "failed", "invalid"]


@dataclass(frozen=True)
class Answer:
    """What the form did. `sent` and `quiet` (nothing sent: a bot, or the address had its
    mails for now) read the same to the resident; `busy`: the overall limit; `failed`: the
    mail could not be sent; `invalid`: `problem` says what to fix."""

    result: Result
    problem: str | None = None
    channel: ChannelConfig | None = None


@dataclass(frozen=True)
class Link:
    """What a link in a mail leads to: `state` is ok | expired | gone | invalid."""

    state: str
    subscriber: Subscriber | None = None
    changed: bool = False


class Desk:
    def __init__(self, settings: Settings, store: Store, *, limits: Limits = Limits(),
                 now: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.letters = NewsletterStore(store)
        self.throttle = Throttle(limits)
        self.now = now
        self.base = settings.platform.base_url.rstrip("/")
        self._mails = mail_environment()

    async def sign_up(self, channel_id: str, email: str, preferences: Preferences, *, honeypot: str = "") -> Answer:
        channel = newsletter_channel(self.settings, channel_id)
        if channel is None:
            return Answer("invalid", "Bitte wählen Sie einen Newsletter aus.")
        address = valid_address(email)
        if address is None:
            return Answer("invalid", "Bitte geben Sie eine gültige E-Mail-Adresse an, etwa name@beispiel.de.", channel)
        if honeypot.strip():
            log.info("newsletter form: the hidden field was filled in (a bot?): nothing sent")
            return Answer("quiet", channel=channel)
        if not self.throttle.form_open():
            log.warning("newsletter form: more than %d sign-ups in %s; the form pauses",
                        self.throttle.limits.overall, self.throttle.limits.overall_window)
            return Answer("busy", channel=channel)
        self.throttle.tried()
        signed = await asyncio.to_thread(self.letters.sign_up, channel.id, address, preferences, FORM_VERSION,
                                         self.now())
        if not self.throttle.address_open(address):
            return Answer("quiet", channel=channel)
        try:
            await self._send(channel, signed.subscriber, "already" if signed.state == "confirmed" else "confirm")
        except (Unreachable, ConfigError) as exc:
            log.error("newsletter %s: the confirmation mail could not be sent: %s", channel.id, exc)
            return Answer("failed", channel=channel)
        self.throttle.sent(address)
        if signed.state != "confirmed":
            await asyncio.to_thread(self.letters.confirmation_sent, signed.subscriber.id, self.now())
        return Answer("sent", channel=channel)

    def confirm(self, token: str) -> Link:
        found = self._follow(token, CONFIRM)
        if found.state != "ok" or found.subscriber is None:
            return found
        subscriber, changed = self.letters.confirm(found.subscriber.id, found.subscriber.nonce, self.now())
        if subscriber is None:
            return Link("gone")
        return Link("ok", subscriber, changed)

    def managed(self, token: str) -> Link:
        return self._follow(token, MANAGE)

    def save(self, token: str, preferences: Preferences) -> Link:
        found = self._follow(token, MANAGE)
        if found.subscriber is not None and self.letters.set_preferences(found.subscriber.id, found.subscriber.nonce,
                                                                         preferences, self.now()):
            return Link("ok", self.letters.subscriber(found.subscriber.id, found.subscriber.nonce), True)
        return found if found.state != "ok" else Link("gone")

    def leaving(self, token: str) -> Link:
        """What the unsubscribe page shows (nothing changes on GET)."""
        return self._follow(token, UNSUBSCRIBE)

    def unsubscribe(self, token: str) -> Link:
        """RFC 8058: no login, no confirmation. An ended subscription answers the same."""
        claim = self.letters.signer().read(token, UNSUBSCRIBE, self.now())
        if claim is None:
            return Link("invalid")
        ended = self.letters.unsubscribe(claim.subscriber_id, claim.nonce)
        if ended:
            log.info("newsletter: subscriber %d unsubscribed", claim.subscriber_id)
        return Link("ok", changed=ended)

    def links(self, subscriber: Subscriber, *, absolute: bool = True) -> dict[str, str]:
        """The subscriber's own links: `manage` (topics) and `unsubscribe`; paths within the
        site with `absolute` false."""
        signer = self.letters.signer()
        base = self.base if absolute else ""
        manage, leave = (signer.make(p, subscriber.id, subscriber.nonce) for p in (MANAGE, UNSUBSCRIBE))
        return {"manage": f"{base}/newsletter/preferences/{manage}",
                "unsubscribe": f"{base}/newsletter/unsubscribe/{leave}"}

    def _follow(self, token: str, purpose: Purpose) -> Link:
        claim = self.letters.signer().read(token, purpose, self.now())
        if claim is None:
            return Link("invalid")
        if claim.expired:
            return Link("expired")
        subscriber = self.letters.subscriber(claim.subscriber_id, claim.nonce)
        return Link("ok", subscriber) if subscriber else Link("gone")

    async def _send(self, channel: ChannelConfig, subscriber: Subscriber, template: str) -> None:
        smtp = smtp_of(self.settings, channel)
        now = self.now()
        until = now + CONFIRM_VALID
        token = (await asyncio.to_thread(self.letters.signer)).make(CONFIRM, subscriber.id, subscriber.nonce, until)
        context = {"title": channel.options.name, "town": self.settings.platform.name,
                   "platform_url": self.base + "/", "confirm_url": f"{self.base}/newsletter/confirm/{token}",
                   "valid_until": formatting.date_time(until, zone=self.settings.platform.timezone),
                   "choice": describe(subscriber.preferences, self.settings, category_title),
                   "forget_days": FORGET_UNCONFIRMED.days}
        links = self.links(subscriber)
        context.update(manage_url=links["manage"], unsubscribe_url=links["unsubscribe"])
        text = self._mails.get_template(f"{template}.txt").render(context)
        subject = (f"Bitte bestätigen: Newsletter „{channel.options.name}“" if template == "confirm"
                   else f"Ihr Newsletter „{channel.options.name}“")
        message = mime.plain(smtp.sender, subscriber.email, subject, text, now,
                             f"{template}.{subscriber.id}.{secrets.token_hex(6)}")
        async with MailServer(smtp) as server:
            outcome = await server.send(message_sender(smtp.sender), mime.smtp_address(subscriber.email),
                                        message.as_bytes())
        if outcome.status != "sent":
            raise Unreachable(f"the SMTP server {smtp.where} did not take the mail: {outcome.detail}")


def message_sender(sender: str) -> str:
    """The bare address of a From header (the SMTP envelope's sender)."""
    return parseaddr(sender)[1]


def describe(preferences: Preferences, settings: Settings, category_title: Callable[[str], str]) -> str:
    """The chosen topics in words, for the confirmation mail: "Veranstaltungen; von Vereine, Bäckerei Schmitz"."""
    names = {m.id: m.name for m in settings.merchants}
    parts = []
    if preferences.kinds:
        parts.append(", ".join(SECTION_TITLES.get(k, k) for k in preferences.kinds))
    if preferences.categories or preferences.merchants:
        parts.append("von " + ", ".join([*map(category_title, preferences.categories),
                                         *(names.get(m, m) for m in preferences.merchants)]))
    return "; ".join(parts) or "alle Themen"
