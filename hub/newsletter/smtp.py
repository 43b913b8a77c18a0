"""Talking to the SMTP server (aiosmtplib lives only here): one connection, reused for a
whole edition, STARTTLS, implicit TLS or none (a local relay), a steady pace.

Each mail's answer is classified:

- 2xx: accepted, the ledger may say "sent";
- 5xx for the recipient (RCPT or DATA): a permanent rejection of that address;
- 4xx: a temporary one, tried again later;
- a dropped connection is re-opened once; a server that cannot be reached at all, or that
  refuses our sender, raises `Unreachable`: the edition stops and is retried later.

Replies are stored and logged without the addresses they may quote.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Literal

import aiosmtplib

from hub.errors import DeliveryError
from hub.newsletter.options import Smtp

_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")


class Unreachable(DeliveryError):
    """The SMTP server cannot be reached or will not take our mail at all."""

    code = "smtp_unreachable"


@dataclass(frozen=True)
class Outcome:
    status: Literal["sent", "deferred", "failed"]
    detail: str = ""

    @property
    def permanent(self) -> bool:
        return self.status == "failed"


class MailServer:
    """`async with MailServer(smtp) as server: await server.send(...)`."""

    def __init__(self, smtp: Smtp) -> None:
        self.smtp = smtp
        self._client: aiosmtplib.SMTP | None = None

    async def __aenter__(self) -> MailServer:
        await self._connect()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()

    async def send(self, sender: str, recipient: str, message: bytes) -> Outcome:
        """Hand one mail to the server."""
        for attempt in (1, 2):
            if self._client is None or not self._client.is_connected:
                await self._connect()
            try:
                await self._transaction(sender, recipient, message)
                return Outcome("sent")
            except aiosmtplib.SMTPSenderRefused as exc:
                raise Unreachable(f"the SMTP server {self.smtp.where} refuses the sender {sender}: "
                                  f"{exc.code} {redact(exc.message)}",
                                  hint="check the newsletter's from: address and the server's relay rules") from exc
            except aiosmtplib.SMTPResponseException as exc:  # DATA refused, 421 closing, ...
                if exc.code == 421:
                    await self.close()
                return _judged(exc.code, exc.message)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError) as exc:
                await self.close()
                if attempt == 2:  # it was re-opened and dropped again: the mail may or may not be there
                    raise Unreachable(f"the SMTP server {self.smtp.where} dropped the connection: {exc}") from exc
            except aiosmtplib.SMTPException as exc:  # anything else: the conversation itself failed
                await self.close()
                raise Unreachable(f"the SMTP server {self.smtp.where} failed: {redact(str(exc))}") from exc
        raise AssertionError("unreachable")

    async def _transaction(self, sender: str, recipient: str, message: bytes) -> None:
        """MAIL, RCPT, DATA (RSET after a refusal). What `sendmail` does for one recipient,
        without its second pass over the message to measure it: ours has CRLF line ends
        already, so its length is its SIZE."""
        client = self._client
        assert client is not None
        options = [f"size={len(message)}"] if client.supports_extension("size") else []
        try:
            await client.mail(sender, options=options)
            await client.rcpt(recipient)
            await client.data(message)
        except aiosmtplib.SMTPResponseException:
            try:
                await client.rset()
            except (aiosmtplib.SMTPException, ConnectionError):
                pass  # the next mail reconnects if it must
            raise

    async def _connect(self) -> None:
        s = self.smtp
        client = aiosmtplib.SMTP(hostname=s.host, port=s.port, timeout=s.timeout, use_tls=s.security == "tls",
                                 start_tls=s.security == "starttls",
                                 cert_bundle=str(s.ca_bundle) if s.ca_bundle else None)
        try:
            await client.connect()
            if s.username:
                await client.login(s.username, s.password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise Unreachable(f"the SMTP server {s.where} refused the login of {s.username}: {exc.code}",
                              hint="check smtp.username and smtp.password") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise Unreachable(f"cannot reach the SMTP server {s.where} ({s.security}): {exc}",
                              hint="is the server running and are host, port and security right?") from exc
        self._client = client


class Pace:
    """At most `rate` mails a second, evenly spaced: no bursts, no catching up after a pause."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next: float | None = None

    async def wait(self) -> None:
        now = time.monotonic()
        due = self._next if self._next is not None else now
        if due > now:
            await asyncio.sleep(due - now)
        self._next = max(due, now) + self.interval


def _judged(code: int, message: str) -> Outcome:
    detail = f"{code} {redact(message)}"
    return Outcome("failed" if 500 <= code < 600 else "deferred", detail)


def redact(text: str) -> str:
    """A server's reply without the addresses it quotes (it is logged and stored)."""
    return _ADDRESS.sub("<Adresse>", text or "")
