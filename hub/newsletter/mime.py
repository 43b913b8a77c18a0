"""Newsletter messages as bytes: multipart/alternative, the plain text first and the HTML
last (the part a client prefers), both UTF-8 in quoted-printable.

The headers a bulk sender owes its readers and their mailbox providers:

- `Message-ID` made from (channel, edition slot, subscriber): a mail sent again after a crash
  carries the same id, so clients that dedupe by it show it once;
- `List-Id` (RFC 2919), `List-Unsubscribe` with the https link and `List-Unsubscribe-Post:
  List-Unsubscribe=One-Click` (RFC 8058): one click in the client ends the subscription;
- `Auto-Submitted: auto-generated` (RFC 3834) with `Precedence: bulk` and
  `X-Auto-Response-Suppress`, so vacation responders stay quiet.

Built by hand rather than with `email.message.EmailMessage`, which takes ~5 ms per message;
these take well under one. The header values that are the same for every recipient are
encoded once per edition (`Envelope`). Tests parse the result with the `email` package.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Iterable, Mapping

@dataclass(frozen=True)
class Envelope:
    """What every mail of one edition has in common, already encoded."""

    sender: str  # the bare address (SMTP MAIL FROM)
    headers: bytes  # From, Subject, Reply-To, List-Id, Auto-Submitted, ...
    id_prefix: str  # Message-ID: <{id_prefix}.{subscriber}@{domain}>
    domain: str


def envelope(sender: str, subject: str, reply_to: str | None, list_name: str, channel_id: str,
             slot: datetime) -> Envelope:
    name, address = parseaddr(sender)
    domain = address.rpartition("@")[2].lower() or "localhost"
    lines = [("From", formataddr((name, address), charset="utf-8") if name else address),
             ("Subject", _encoded(subject, "Subject"))]
    if reply_to:
        reply_name, reply_address = parseaddr(reply_to)
        lines.append(("Reply-To", formataddr((reply_name, reply_address), charset="utf-8")))
    lines += [("List-Id", f"{_encoded(list_name, 'List-Id')} <{channel_id}.{domain}>"),
              ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
              ("Auto-Submitted", "auto-generated"), ("Precedence", "bulk"),
              ("X-Auto-Response-Suppress", "OOF, AutoReply"), ("MIME-Version", "1.0")]
    headers = "".join(f"{k}: {v}\r\n" for k, v in lines).encode("ascii")
    return Envelope(address, headers, f"{channel_id}.{slot:%Y%m%d%H%M}", domain)


def newsletter(env: Envelope, recipient: str, subscriber_id: int, unsubscribe_url: str, text: bytes, html: bytes,
               now: datetime) -> bytes:
    """One subscriber's mail; `text` and `html` are already quoted-printable (`quoted`,
    `Fillable.fill`)."""
    boundary = f"=_hub.{env.id_prefix}.{subscriber_id}"  # "=_" never occurs in quoted-printable
    head = (f"To: {smtp_address(recipient)}\r\nDate: {format_datetime(now)}\r\n"
            f"Message-ID: {message_id(env, subscriber_id)}\r\nList-Unsubscribe: <{unsubscribe_url}>\r\n"
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n').encode("ascii")
    return b"".join((env.headers, head, _part(boundary, "plain", text), _part(boundary, "html", html),
                     f"--{boundary}--\r\n".encode()))


def message_id(env: Envelope, subscriber_id: int) -> str:
    return f"<{env.id_prefix}.{subscriber_id}@{env.domain}>"


def _part(boundary: str, subtype: str, encoded: bytes) -> bytes:
    return (f"--{boundary}\r\nContent-Type: text/{subtype}; charset=\"utf-8\"\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode() + encoded + b"\r\n"


def quoted(body: str) -> bytes:
    """`body` in quoted-printable (UTF-8), with CRLF line ends. Line ends go to the encoder
    as LF: str/bytes replace, since a regex over 50 KB costs more than the encoding."""
    plain = body.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(plain, istext=True).replace(b"\n", b"\r\n")


class Fillable:
    """A body in quoted-printable with places (`names`, markers in the text) left for short
    ASCII values, the subscriber's own links: encoded once per distinct mail, filled in per
    recipient. Each value goes between soft line breaks ("=" CRLF), which decoders remove,
    so the pieces join without any line growing past 76 characters."""

    def __init__(self, body: str, names: Iterable[str]) -> None:
        pieces = re.split("(" + "|".join(map(re.escape, names)) + ")", body)
        self.fixed = [_room_for_a_break(quoted(piece)) for piece in pieces[0::2]]
        self.names = pieces[1::2]

    def fill(self, values: Mapping[str, str]) -> bytes:
        out = [self.fixed[0]]
        for name, fixed in zip(self.names, self.fixed[1:]):
            out += (_SOFT, _ascii(values[name]), _SOFT, fixed)
        return b"".join(out)


_SOFT = b"=\r\n"
_LINE = 75  # quoted-printable lines are at most 76 characters, the soft break's "=" included


def _room_for_a_break(encoded: bytes) -> bytes:
    """`encoded` with its last line short enough for a soft break's "=" after it."""
    head, newline, last = encoded.rpartition(b"\r\n")
    if len(last) <= _LINE:
        return encoded
    return head + newline + _wrapped(last)


def _ascii(value: str) -> bytes:
    """A short ASCII value (a link) in quoted-printable: "=" escaped, soft-wrapped."""
    return _wrapped(value.encode("ascii").replace(b"=", b"=3D"))


def _wrapped(encoded: bytes) -> bytes:
    """One encoded line cut into lines of at most _LINE characters plus "=", never inside an
    =XX escape."""
    lines = []
    while len(encoded) > _LINE:
        cut = _LINE
        while b"=" in encoded[cut - 2:cut]:  # an escape starts at cut-1 or cut-2: cut before it
            cut -= 1
        lines.append(encoded[:cut])
        encoded = encoded[cut:]
    return _SOFT.join([*lines, encoded])


def plain(sender: str, recipient: str, subject: str, text: str, now: datetime, domain_id: str) -> EmailMessage:
    """A short personal text mail (the confirmation), through the `email` package."""
    message = EmailMessage()
    name, address = parseaddr(sender)
    message["From"] = Address(name, addr_spec=address) if name else address
    message["To"] = smtp_address(recipient)
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = f"<{domain_id}@{address.rpartition('@')[2] or 'localhost'}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    return message


def smtp_address(address: str) -> str:
    """The address as SMTP carries it: an internationalized domain in its ASCII form."""
    local, _, domain = address.strip().rpartition("@")
    try:
        domain.encode("ascii")
    except UnicodeEncodeError:
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


def _encoded(value: str, name: str) -> str:
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        return Header(value, "utf-8", header_name=name).encode()
    return value
