"""For the newsletter tests: a real SMTP server on loopback (aiosmtpd) and a small town with
subscribers and records in a real store.

    with SmtpSink(reject={"weg@example.org": 550}) as sink:
        town = Town(tmp_path, sink.port)
        ...
        sink.messages  # every mail the server accepted, parsed

The sink runs aiosmtpd's Controller (its own thread and event loop), so the hub's sender
talks to it over real sockets, exactly as to the town's mail relay.
"""

from __future__ import annotations

import email
import secrets
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller

from hub import config, stats
from hub.models import Event, FetchState, Item, Kind, Media, Offer, Parsed
from hub.moderation import rules_from
from hub.newsletter.store import NewsletterStore, Preferences
from hub.newsletter.tables import SUBSCRIBERS
from hub.pipeline import source_specs
from hub.store import FetchOutcome, Store

BASE = "https://musterstadt.example"
MERCHANTS = [("baeckerei", "Bäckerei Schmitz", "gastronomie", None),
             ("modehaus", "Modehaus Becker", "einzelhandel", "Anzeige"),  # commercial: labelled as on the platform
             ("musikverein", "Musikverein Harmonie", "verein", None),
             ("rathaus", "Stadtverwaltung", "verwaltung", None)]


@dataclass(frozen=True)
class Received:
    sender: str
    recipient: str
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        code = self.sink.reject.get(address.lower())
        if code:
            status, why = ("5.1.1", "unknown") if code >= 500 else ("4.2.1", "busy")
            return f"{code} {status} <{address}>: mailbox {why}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.sink.lock:
            for rcpt in envelope.rcpt_tos:
                self.sink.messages.append(Received(envelope.mail_from, rcpt, envelope.original_content))
            self.sink.connections.add(session.peer)
            self.sink.encrypted.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 Message accepted for delivery"


class SmtpSink:
    """`tls`: "starttls" (required before MAIL) or "tls" (implicit) with `certificate`, a
    (cert.pem, key.pem) pair (`self_signed`)."""

    def __init__(self, reject: dict[str, int] | None = None, port: int | None = None, *, tls: str = "none",
                 certificate: tuple[Path, Path] | None = None) -> None:
        self.reject = {k.lower(): v for k, v in (reject or {}).items()}
        self.messages: list[Received] = []
        self.connections: set = set()  # the client (address, port) of every connection that sent mail
        self.encrypted: list[bool] = []
        self.lock = threading.Lock()
        self.port = port or free_port()
        options: dict = {}
        if tls != "none":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*map(str, certificate))
            options = {"ssl_context": context} if tls == "tls" else {"tls_context": context, "require_starttls": True}
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, decode_data=False,
                                      **options)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if m.recipient == address]

    def recipients(self) -> list[str]:
        with self.lock:
            return [m.recipient for m in self.messages]


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (openssl), for the TLS tests: (cert.pem, key.pem)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, smtp_port: int, *, schedule: str | None = None, rate: float = 1000,
                 extra: str = "", db: str | None = None, include: str = "{kinds: [event, offer, post]}",
                 sections: str = "[event, offer, post]", max_items: int = 30, lease: str = "5m",
                 smtp: str = "security: none") -> Path:
    lines = ["platform: {name: Musterstadt erleben, base_url: '%s', timezone: Europe/Berlin}" % BASE,
             f"store: {{url: '{db or f'sqlite:///{folder}/hub.db'}'}}",
             f"schedule: {{lease: {lease}}}",
             "fetcher: {contact_url: 'https://www.musterstadt.example/impressum'}", "merchants:"]
    for mid, name, category, label in MERCHANTS:
        lines += [f"  - id: {mid}", f"    name: {name}", f"    category: {category}"]
        if label:
            lines.append(f"    label: {label}")
        lines += ["    sources:", f"      - {{connector: rss, id: {mid}, url: 'https://{mid}.example/feed'}}"]
    lines += ["channels:", "  - {id: platform, renderer: platform}",
              "  - id: wochenpost", "    renderer: newsletter",
              '    subject: "Die Woche in Musterstadt"',
              '    from: "Musterstadt erleben <post@musterstadt.example>"',
              "    reply_to: post@musterstadt.example",
              f"    smtp: {{host: 127.0.0.1, port: {smtp_port}, {smtp}}}",
              f"    rate: {rate:g}", f"    include: {include}", f"    sections: {sections}",
              f"    max_items: {max_items}"]
    if schedule:
        lines.append(f'    schedule: "{schedule}"')
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


class Town:
    """The config, a store with the moderation rules of the config, and helpers to add
    records and subscribers."""

    def __init__(self, folder: Path, smtp_port: int, **config_options) -> None:
        self.path = write_config(folder, smtp_port, **config_options)
        self.settings = config.load(self.path, env={})
        self.store = Store(self.settings.store.url, base_dir=self.settings.base_dir)
        self.store.sync_sources(source_specs(self.settings))
        self.store.records.configure(rules_from(self.settings))
        self.letters = NewsletterStore(self.store)
        self.channel = next(c for c in self.settings.channel_list() if c.id == "wochenpost")
        self._n = 0

    def close(self) -> None:
        stats.flush(self.store)  # the cockpit's delivery counts, before the database goes
        self.store.close()

    def add(self, merchant: str, title: str, *, at: datetime, kind: Kind = Kind.POST, start: datetime | None = None,
            end: datetime | None = None, price: str | None = None, image: bool = False) -> None:
        """A record first seen at `at` (published then, or for events at least a day before)."""
        self._n += 1
        event = Event(start=start, end=end, timezone="Europe/Berlin", location="Stadthalle") if start else None
        offer = Offer(price=price, currency="EUR", valid_until=at + timedelta(days=10)) if price else None
        media = (Media(url=f"https://{merchant}.example/{self._n}.jpg", width=800, height=600),) if image else ()
        item = Item(source_id=merchant, external_id=f"{merchant}-{self._n}", merchant_id=merchant, title=title,
                    summary=f"{title}: alles Weitere auf der Seite.", content_html=f"<p>{title}</p>",
                    content_text=f"{title} " + "Text " * 20, url=f"https://{merchant}.example/{self._n}",
                    kind=kind, published=at - timedelta(hours=1), event=event, offer=offer, media=media)
        self.store.apply([FetchOutcome(merchant, at, "ok", parsed=Parsed((item,), complete=False),
                                       state=FetchState())])

    def subscribe(self, address: str, prefs: Preferences = Preferences(), *, at: datetime | None = None,
                  confirmed: bool = True) -> int:
        at = at or datetime.now(timezone.utc)
        signed = self.letters.sign_up("wochenpost", address, prefs, "2026-1", at)
        if confirmed:
            self.letters.confirm(signed.subscriber.id, signed.subscriber.nonce, at)
        return signed.subscriber.id

    def subscribe_many(self, addresses: list[str], prefs: list[Preferences] | None = None) -> None:
        """Confirmed subscribers in one transaction (thousands, for the crash test and the
        benchmark), as the form and the confirmation link would leave them."""
        now = datetime.now(timezone.utc)
        rows = [{**(prefs[i] if prefs else Preferences()).to_row(), "channel_id": "wochenpost", "email": address,
                 "email_key": address.casefold(), "status": "confirmed", "nonce": secrets.token_urlsafe(6),
                 "form_version": "2026-1", "created_at": now, "confirmed_at": now, "bounces": 0, "updated_at": now}
                for i, address in enumerate(addresses)]
        with self.store.engine.begin() as conn:
            conn.execute(SUBSCRIBERS.insert(), rows)

