"""One error tree for the hub. Every error a project manager may see has a stable `code`
and a message that says what is wrong and what to do; causes are chained."""

from __future__ import annotations


class HubError(Exception):
    code = "hub_error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def __reduce__(self):
        # Errors cross process boundaries (parsing runs in worker processes); the default
        # pickling would call __init__ with `args` only and lose hint, status, etc.
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type, args: tuple, state: dict) -> HubError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigError(HubError):
    """The configuration is invalid. `problems` holds every problem found, not just the first."""

    code = "config_invalid"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StoreError(HubError):
    code = "store_error"


class ConnectorError(HubError):
    """A source could not be read. Carries the source id once the pipeline knows it."""

    code = "connector_error"
    transient = False  # worth retrying soon?

    def __init__(self, message: str, *, hint: str | None = None, source_id: str | None = None):
        super().__init__(message, hint=hint)
        self.source_id = source_id


class FetchError(ConnectorError):
    """The network fetch failed (DNS, connect, TLS, timeout, HTTP error status)."""

    code = "fetch_failed"

    def __init__(self, message: str, *, hint: str | None = None, transient: bool = False,
                 status: int | None = None, retry_after: float | None = None):
        super().__init__(message, hint=hint)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after


class BlockedAddress(FetchError):
    """The URL resolves to an address the fetcher must not talk to (SSRF guard)."""

    code = "address_blocked"


class TooLarge(FetchError):
    code = "response_too_large"


class NeedsPerson(ConnectorError):
    """A failure no retry can fix. The source is held back (no more fetches) until its
    options in the config change; `hub sources` and `/healthz` say what to do."""

    code = "needs_person"


class TokenInvalid(NeedsPerson):
    """The source's access token is expired, revoked or otherwise invalid: the merchant
    must connect again and the config get the new token."""

    code = "token_invalid"


# Error codes whose source the store holds back until its options change (a new token).
HOLDING = frozenset({NeedsPerson.code, TokenInvalid.code})


class NotModified(ConnectorError):
    """The source answered 304: nothing to parse. Not a failure."""

    code = "not_modified"


class ParseError(ConnectorError):
    code = "parse_failed"


class RenderError(HubError):
    code = "render_failed"


class DeliveryError(HubError):
    """A publisher could not deliver to its channel at all (the items are retried later)."""

    code = "delivery_failed"
