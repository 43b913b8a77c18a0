"""Sending mail through the town's SMTP server (`mail:` in the config): the cockpit's
reminders now, the newsletter later (unless its channel brings its own `smtp`).

`security`: `starttls` (port 587 by default: plain connection, then STARTTLS, which must
succeed), `tls` (port 465: TLS from the first byte) or `none` (port 25: for a relay on this
machine or in a trusted network only). Every failure becomes a `MailError` whose message
says, in German, what went wrong and what to check; the password never appears in it.

The standard library's smtplib does the talking; `send_async` runs it in a thread.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from dataclasses import dataclass
from typing import Iterable
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid

from hub.config import MailConfig
from hub.errors import HubError

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


class MailError(HubError):
    """A message could not be handed to the SMTP server."""

    code = "mail_failed"


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str  # plain text
    reply_to: str | None = None


class Mailer:
    def __init__(self, config: MailConfig, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.port = config.port or DEFAULT_PORTS[config.security]
        self.tls_context = tls_context or ssl.create_default_context()

    def message(self, mail: Mail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.config.from_
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain=_domain(self.config.from_))
        if mail.reply_to:
            msg["Reply-To"] = mail.reply_to
        msg.set_content(mail.body)
        return msg

    def send(self, mail: Mail) -> str:
        """Hand `mail` to the server; returns its Message-ID. Raises MailError."""
        [result] = self.send_many([mail])
        if isinstance(result, MailError):
            raise result
        return result

    def send_many(self, mails: Iterable[Mail]) -> list[str | MailError]:
        """Send several mails over one connection (a newsletter's batch): for each, its
        Message-ID or the MailError that kept it back. A refused recipient fails its own mail;
        a failed connection or login fails every mail not sent yet."""
        mails = list(mails)
        results: list[str | MailError] = []
        try:
            with self._connect() as smtp:
                if self.config.security == "starttls":
                    self._starttls(smtp)
                if self.config.username:
                    password = self.config.password.get_secret_value() if self.config.password else ""
                    smtp.login(self.config.username, password)
                for mail in mails:
                    results.append(self._one(smtp, mail))
        except Exception as exc:  # the connection: every mail not sent yet fails with it
            error = exc if isinstance(exc, MailError) else self._error(exc)
            results += [error] * (len(mails) - len(results))
        return results

    def _one(self, smtp: smtplib.SMTP, mail: Mail) -> str | MailError:
        msg = self.message(mail)
        try:
            refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            return MailError(f"Der Mailserver {self.where} nimmt keine Nachricht an {mail.to} an: "
                             f"{_said(next(iter(exc.recipients.values()), None))}",
                             hint="die Adresse (contact_email) prüfen")
        except smtplib.SMTPSenderRefused as exc:
            return MailError(f"Der Mailserver {self.where} lehnt den Absender {self.config.from_} ab: "
                             f"{_said((exc.smtp_code, exc.smtp_error))}",
                             hint="mail.from muss eine Adresse sein, für die der Server senden darf")
        except smtplib.SMTPDataError as exc:
            return MailError(f"Der Mailserver {self.where} hat die Nachricht an {mail.to} abgelehnt: "
                             f"{_said((exc.smtp_code, exc.smtp_error))}", hint="den Betreiber des Mailservers fragen")
        if refused:
            return MailError(f"Der Mailserver {self.where} nimmt keine Nachricht an {', '.join(refused)} an",
                             hint="die Adresse prüfen")
        return msg["Message-ID"]

    def _error(self, exc: Exception) -> MailError:
        """A connection's failure, in German, with what to check (never the password)."""
        where, timeout = self.where, self.config.timeout
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return MailError(f"Der Mailserver {where} hat die Anmeldung von „{self.config.username}“ abgelehnt "
                             f"({exc.smtp_code})", hint="mail.username und mail.password prüfen")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return MailError(f"Der Mailserver {where} kann das nicht: {exc}",
                             hint="mail.security prüfen (starttls, tls oder none)")
        if isinstance(exc, (socket.timeout, TimeoutError)) or (
                isinstance(exc, smtplib.SMTPServerDisconnected) and "timed out" in str(exc)):
            return MailError(f"Der Mailserver {where} antwortet nicht innerhalb von {timeout:g} s",
                             hint="mail.host, mail.port und mail.security prüfen; ist der Server erreichbar?")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return MailError(f"Der Mailserver {where} hat die Verbindung unterbrochen: {exc}",
                             hint="mail.security prüfen (tls für Port 465, starttls für Port 587)")
        if isinstance(exc, smtplib.SMTPResponseException):
            return MailError(f"Der Mailserver {where} lehnt ab: {_said((exc.smtp_code, exc.smtp_error))}",
                             hint="später noch einmal versuchen oder den Betreiber des Mailservers fragen")
        if isinstance(exc, ssl.SSLError):
            return MailError(f"Die verschlüsselte Verbindung zum Mailserver {where} ist gescheitert: "
                             f"{exc.reason or exc}",
                             hint="Zertifikat des Servers und mail.security prüfen (tls für Port 465, starttls "
                                  "für Port 587)")
        if isinstance(exc, socket.gaierror):
            return MailError(f"Den Mailserver {self.config.host} gibt es nicht (Name unbekannt)",
                             hint="mail.host auf Tippfehler prüfen")
        if isinstance(exc, ConnectionRefusedError):
            return MailError(f"Der Mailserver {where} lehnt die Verbindung ab",
                             hint="mail.host und mail.port prüfen; läuft der Server?")
        return MailError(f"Senden über {where} fehlgeschlagen: {exc}", hint="mail: in der Konfiguration prüfen")

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.port}"

    async def send_async(self, mail: Mail) -> str:
        return await asyncio.to_thread(self.send, mail)

    def _connect(self) -> smtplib.SMTP:
        timeout = self.config.timeout
        if self.config.security == "tls":
            return smtplib.SMTP_SSL(self.config.host, self.port, timeout=timeout, context=self.tls_context)
        return smtplib.SMTP(self.config.host, self.port, timeout=timeout)

    def _starttls(self, smtp: smtplib.SMTP) -> None:
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            raise MailError(f"Der Mailserver {self.where} bietet kein STARTTLS an; die Nachricht würde unverschlüsselt "
                            "übertragen und wurde nicht gesendet",
                            hint="mail.security: tls (Port 465) versuchen, oder none nur für einen Server auf "
                                 "diesem Rechner")
        smtp.starttls(context=self.tls_context)
        smtp.ehlo()


def _domain(address: str) -> str:
    found = getaddresses([address])
    addr = found[0][1] if found else address
    try:
        return Address(addr_spec=addr).domain or "localhost"
    except (ValueError, IndexError):
        return "localhost"


def _said(answer) -> str:
    if not answer:
        return "ohne Begründung"
    code, text = answer
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return f"{code} {text}".strip()
