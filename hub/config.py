"""The hub's configuration: one YAML file, validated by pydantic models.

Every plugin declares its own options model; the core checks each source and channel block
against its plugin's model. All problems are reported at once, each as `file:line: message`
with a hint (a did-you-mean for a misspelled key, the allowed values for an enum).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, SecretStr,
                      ValidationError, field_validator)

from hub import plugins, yamlsrc
from hub.errors import ConfigError
from hub.cron import check_cron

SLUG = r"^[a-z0-9][a-z0-9_-]*$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """`90s`, `5m`, `2h`, `1d` (or a number of seconds) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"'{value}' is not a duration; write it like 90s, 5m, 2h or 1d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}'; use an IANA name such as Europe/Berlin") from None
    return name


TimeZone = Annotated[str, AfterValidator(_check_timezone)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- Facebook and Instagram (issue 12): the app's settings, once per town ------------------------

GRAPH_URL = "https://graph.facebook.com"
GRAPH_API_VERSION = "v24.0"  # pinned; connectors/graph.py warns when it nears its end of life


def _digits(value: Any) -> Any:
    """An id written without quotes is a YAML number: take it as the text it is."""
    value = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(value, str) and not re.fullmatch(r"[0-9]+", value.strip()):
        raise ValueError("a Facebook or Instagram id has digits only; write it in quotes, like \"104523984512345\"")
    return value.strip() if isinstance(value, str) else value


def _graph_version(value: str) -> str:
    if not re.fullmatch(r"v[0-9]+\.[0-9]+", value):
        raise ValueError(f"write the Graph API version like {GRAPH_API_VERSION}")
    return value


def _graph_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value, re.IGNORECASE):
        raise ValueError(f"write the Graph API address like {GRAPH_URL}")
    return value.rstrip("/")


GraphId = Annotated[str, BeforeValidator(_digits)]
GraphVersion = Annotated[str, AfterValidator(_graph_version)]
GraphUrl = Annotated[str, AfterValidator(_graph_url)]


class FacebookConfig(Strict):
    """`facebook:`, optional. A page token alone reads a page's posts; the app's secret is
    needed for appsecret_proof, the webhook and token exchange."""

    app_id: GraphId | None = None
    app_secret: SecretStr | None = None
    verify_token: SecretStr | None = None  # the webhook subscription handshake
    api_version: GraphVersion = GRAPH_API_VERSION
    graph_url: GraphUrl = GRAPH_URL  # overridable: proxies, tests


class ConfigNote(NamedTuple):
    """A problem (or, with `warning`, something worth a look) that a plugin finds in its
    block once the whole config is known (`settle`). `key`: the option of the block it is
    about; `top`: a path from the top of the file instead, such as ("facebook", "app_secret")."""

    message: str
    key: str | None = None
    top: tuple[str | int, ...] | None = None
    warning: bool = False


class PlatformConfig(Strict):
    name: str = "Unsere Stadt"
    base_url: str = "http://127.0.0.1:8000"
    timezone: TimeZone = "Europe/Berlin"
    language: str = "de"


class StoreConfig(Strict):
    url: str = "sqlite:///data/hub.db"
    # Files the hub keeps besides the database (image cache, keys); relative to the config.
    data_dir: Path = Path("data")


class FetcherConfig(Strict):
    contact_url: str | None = None
    allow_private_networks: bool = False
    # Exceptions to the private-network guard, e.g. an intranet CMS: ["10.1.2.3/32"].
    allowed_networks: list[str] = []
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float = 60.0
    max_body_bytes: int = 10 * 1024 * 1024
    max_in_flight: int = 16
    retries: int = 2
    max_redirects: int = 5
    # Politeness towards one host (by the source URL's host name): requests in flight at
    # once, and seconds between two request starts.
    max_per_host: Annotated[int, Field(ge=1)] = 2
    host_spacing: Annotated[float, Field(ge=0)] = 0.5


class SourceConfig(Strict):
    """The keys every source has; the rest belongs to the connector's own options."""

    connector: str
    id: Annotated[str, Field(pattern=SLUG)] | None = None
    every: Duration | None = None
    language: str | None = None
    options: Any = None  # the connector's validated options, filled in by `load`

    @property
    def fingerprint(self) -> str:
        """A hash of the connector's options, secrets included: it changes when anything the
        source is read with changes (a new token), and tells nothing about the values."""
        return options_fingerprint(self.options)


class ExpiryConfig(Strict):
    """When a merchant's records leave the listings (hub.moderation); null: never."""

    events: Duration | None = timedelta(days=1)  # this long after an event ends (or starts)
    offers: Duration | None = timedelta(days=30)  # after publication, for offers without an end date


# --- the project manager's cockpit (issue 17): users, mail, the activity score -----------------

_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def _check_email(value: str) -> str:
    address = value.strip()
    bare = re.fullmatch(r"[^<>]*<([^<>]+)>\s*", address)  # "Name <address>"
    if not _EMAIL.match(bare.group(1) if bare else address):
        raise ValueError(f"'{value}' is not an e-mail address; write it like info@baeckerei-schmitz.example")
    return address


def _check_argon2(value: str) -> str:
    if not value.startswith("$argon2"):
        raise ValueError("not an argon2 password hash; make one with `hub admin hash-password` and paste it "
                         "in quotes")
    return value


class AdminUser(Strict):
    """Someone who may log in to /admin (hub.web.admin). `admin`: everything; `moderator`:
    source health, the review queue, merchants and statistics, but not the configuration."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")]
    password_hash: Annotated[str, AfterValidator(_check_argon2)]
    role: Literal["admin", "moderator"] = "moderator"


class ActivityWeights(Strict):
    """How much each part counts in the activity score (hub.activity); relative weights."""

    posts: Annotated[float, Field(ge=0)] = 35
    speed: Annotated[float, Field(ge=0)] = 15
    reliability: Annotated[float, Field(ge=0)] = 20
    completeness: Annotated[float, Field(ge=0)] = 20
    channels: Annotated[float, Field(ge=0)] = 10


class ActivityConfig(Strict):
    """The monthly activity score of a merchant, 0-100 (hub.activity documents the formula)."""

    target_posts: Annotated[int, Field(ge=1)] = 8  # posts a month that earn the full posts part
    target_channels: Annotated[int, Field(ge=1)] = 2  # channels (kinds of source) for the full channels part
    fast: Duration = timedelta(hours=1)  # a median delay this short earns the full speed part ...
    slow: Duration = timedelta(days=3)  # ... this long or longer earns none
    weights: ActivityWeights = ActivityWeights()


class AdminConfig(Strict):
    users: list[AdminUser] = []
    quiet_days: Annotated[int, Field(ge=1)] = 30  # a merchant without a post this long gets a reminder
    activity: ActivityConfig = ActivityConfig()

    @field_validator("users")
    @classmethod
    def _unique_users(cls, users: list[AdminUser]) -> list[AdminUser]:
        names = [u.name.casefold() for u in users]
        if twice := next((n for n in names if names.count(n) > 1), None):
            raise ValueError(f"user name '{twice}' is used twice")
        return users


class MailConfig(Strict):
    """`mail:`: the SMTP server the cockpit's reminders (and the newsletter) are sent through (hub.mail)."""

    host: str
    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # default: 587 starttls, 465 tls, 25 none
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_: Annotated[str, AfterValidator(_check_email), Field(alias="from")]
    timeout: Annotated[float, Field(gt=0)] = 20.0  # seconds for connecting and for each answer


class MerchantConfig(Strict):
    id: Annotated[str, Field(pattern=SLUG)]
    name: str
    category: str | None = None
    district: str | None = None  # the Ortsteil, in towns with several: the pages' and feeds' ?district=
    website: str | None = None
    # For the merchant's page (/m/<id>), all optional: a few sentences about it, its address
    # (several lines allowed) and opening hours, as free text or one line per entry.
    about: str | None = None
    address: str | None = None
    opening_hours: str | list[str] | None = None
    language: str | None = None
    sources: list[dict[str, Any]] = []
    # Moderation and content rules (hub.moderation):
    trust: Literal["publish", "review"] = "publish"  # review: new records wait in `hub items --pending`
    label: str | None = None  # shown on every record, e.g. "Anzeige" for commercial content
    block_words: list[str] = []  # a record containing one of these is hidden
    keep_words: list[str] = []  # if given, only records containing one of these are shown
    quota: dict[str, Annotated[int, Field(ge=0)]] = {}  # channel id -> most records per day
    expire: ExpiryConfig = ExpiryConfig()
    # issue 17: where the cockpit's reminders go (never shown to residents)
    contact_email: Annotated[str, AfterValidator(_check_email)] | None = None


class IncludeRule(Strict):
    kinds: list[Literal["post", "event", "offer"]] = []
    merchants: list[str] = []
    categories: list[str] = []
    tags: list[str] = []


class ChannelConfig(Strict):
    id: Annotated[str, Field(pattern=SLUG)]
    renderer: str
    # Cron expression in platform.timezone ("0 7 * * MON"); none: publish as soon as there is news.
    schedule: Annotated[str, AfterValidator(check_cron)] | None = None
    include: IncludeRule = IncludeRule()
    options: Any = None


class ScheduleConfig(Strict):
    """How `hub run` paces itself (see schedules/). Durations are written like 90s, 5m, 2h, 1d."""

    min_interval: Duration = timedelta(minutes=5)  # adaptive polling never more often than this
    max_interval: Duration = timedelta(hours=24)  # ... and never less often (except on errors)
    max_backoff: Duration = timedelta(days=7)  # longest wait after repeated errors or a Retry-After
    jitter: Annotated[float, Field(ge=0, lt=1)] = 0.1  # each interval varies by up to ±10%
    push_slowdown: Annotated[float, Field(ge=1)] = 12  # poll this many times less while WebSub pushes
    websub: bool = True  # subscribe to the WebSub hubs that feeds advertise
    websub_lease: Duration = timedelta(days=10)  # subscription lease asked of a hub
    tick: Duration = timedelta(seconds=1)  # how often due sources are looked up
    publish_tick: Duration = timedelta(seconds=30)  # how often channels are checked
    batch: Annotated[int, Field(ge=1)] = 500  # most sources in flight per process
    first_fetches_per_second: Annotated[float, Field(gt=0)] = 10  # pace of new sources' first fetches
    lease: Duration = timedelta(minutes=5)  # a crashed process's work is retried after this
    shutdown_grace: Duration = timedelta(seconds=10)  # time in-flight work gets on SIGTERM
    retention: Duration = timedelta(days=90)  # items deleted at the source are forgotten after this


class Settings(Strict):
    platform: PlatformConfig = PlatformConfig()
    store: StoreConfig = StoreConfig()
    fetcher: FetcherConfig = FetcherConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    merchants: list[MerchantConfig] = []
    channels: list[dict[str, Any]] = []
    facebook: FacebookConfig | None = None  # issue 12: the Facebook app, for Facebook and Instagram sources
    admin: AdminConfig = AdminConfig()  # issue 17: who may log in to /admin, the activity score
    mail: MailConfig | None = None  # issue 17: SMTP for reminders and the newsletter
    runtime: Literal["inprocess", "procrastinate"] = "inprocess"  # issue 18 (hub.towns): who runs the tasks
    path: Path | None = None  # the file this came from; relative paths resolve against it
    # Not problems, but worth a look (`file:line: warning: ...`): `hub check` prints them.
    _warnings: tuple[str, ...] = PrivateAttr(())

    @property
    def warnings(self) -> tuple[str, ...]:
        return self._warnings

    @field_validator("merchants")
    @classmethod
    def _unique_merchants(cls, merchants: list[MerchantConfig]) -> list[MerchantConfig]:
        seen = set()
        for m in merchants:
            if m.id in seen:
                raise ValueError(f"merchant id '{m.id}' is used twice")
            seen.add(m.id)
        return merchants

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @property
    def data_dir(self) -> Path:
        return self.base_dir / self.store.data_dir

    def sources(self) -> list[tuple[MerchantConfig, SourceConfig]]:
        """Every source with its merchant, options validated (see `load`)."""
        return [(m, s) for m in self.merchants for s in m.sources]  # type: ignore[misc]

    def channel_list(self) -> list[ChannelConfig]:
        return self.channels  # type: ignore[return-value]

    def merchant(self, merchant_id: str) -> MerchantConfig | None:
        return next((m for m in self.merchants if m.id == merchant_id), None)


def options_fingerprint(options: Any) -> str:
    """sha256 of an options model (its private attributes and revealed secrets included)."""
    data = _revealed(options)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _revealed(value: Any) -> Any:
    if isinstance(value, BaseModel):
        private = {f"_{k.lstrip('_')}": v for k, v in (value.__pydantic_private__ or {}).items()}
        return _revealed({**{k: getattr(value, k) for k in type(value).model_fields}, **private})
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _revealed(dataclasses.asdict(value))
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {str(k): _revealed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_revealed(v) for v in value]
    return value


def load(path: str | Path, env: dict[str, str] | None = None, *, today: date | None = None) -> Settings:
    """Read and validate a config file. Raises ConfigError listing every problem; what is
    only worth a look is in `Settings.warnings` (`today`: the day they are judged on)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError([f"{path}: config file not found "
                           "(hint: copy config.example.yaml to config.yaml, or pass -c FILE)"])
    src = yamlsrc.load(path, env)
    problems = list(src.problems)
    if not isinstance(src.data, dict):
        if src.data is not None:
            problems.append(src.error((), "the config must be a mapping of sections (platform, merchants, ...)"))
        raise ConfigError(problems)
    settings = _validate(Settings, {**src.data, "path": path}, (), src, problems)
    # Plugin blocks are checked even when the rest failed, so one run shows every problem.
    warnings: list[str] = []
    sources = _plugin_sources(src.data.get("merchants"), src, problems,
                              _Settling(settings, today or date.today(), warnings))
    channels = _plugin_channels(src.data.get("channels"), src, problems)
    if problems:
        raise ConfigError(sorted(problems, key=_line_number))
    merchants = [m.model_copy(update={"sources": sources[i]}) for i, m in enumerate(settings.merchants)]
    result = settings.model_copy(update={"merchants": merchants, "channels": channels})
    result._warnings = tuple(sorted(dict.fromkeys(warnings), key=_line_number))
    return result


class _Settling(NamedTuple):
    """What a plugin's `settle` hook gets besides its options: the town-wide settings (None
    if they are invalid: then no hook runs), the day, and where warnings go."""

    settings: Settings | None
    today: date
    warnings: list[str]


def _settle(source: SourceConfig, loc: tuple, src: yamlsrc.Located, problems: list[str],
            settling: _Settling) -> SourceConfig:
    """Let the connector complete its options from the town-wide settings (the `facebook:`
    block) and check what only the whole config can tell: `settle(options, settings, today)
    -> (options, [ConfigNote])`, an optional classmethod of a connector."""
    settle = getattr(plugins.connector(source.connector), "settle", None)
    if settle is None or settling.settings is None:
        return source
    options, notes = settle(source.options, settling.settings, settling.today)
    for note in notes:
        where = note.top if note.top is not None else loc + ((note.key,) if note.key else ())
        text = src.error(where, ("warning: " if note.warning else "") + note.message)
        (settling.warnings if note.warning else problems).append(text)
    return source.model_copy(update={"options": options})


def _line_number(problem: str) -> int:
    match = re.match(r"^.*?:(\d+): ", problem)
    return int(match.group(1)) if match else 0


def _plugin_sources(raw_merchants: Any, src: yamlsrc.Located, problems: list[str],
                    settling: _Settling) -> list[list[SourceConfig]]:
    """Each merchant's sources, checked against their connector's options model."""
    result: list[list[SourceConfig]] = []
    taken: set[str] = set()
    for mi, merchant in enumerate(raw_merchants if isinstance(raw_merchants, list) else []):
        merchant = merchant if isinstance(merchant, dict) else {}
        merchant_id = str(merchant.get("id", f"merchant{mi}"))
        sources = []
        raw_sources = merchant.get("sources") or []
        for si, raw in enumerate(raw_sources if isinstance(raw_sources, list) else []):
            loc = ("merchants", mi, "sources", si)
            source = _plugin_block(SourceConfig, "connector", "hub.connectors", raw, loc, src, problems)
            if source is None:
                continue
            source_id = source.id or _default_source_id(merchant_id, source.connector, taken)
            if source_id in taken:
                problems.append(src.error(loc + ("id",), f"source id '{source_id}' is used twice "
                                          "(hint: give each source a unique `id:`)"))
            taken.add(source_id)
            sources.append(_settle(source.model_copy(update={"id": source_id}), loc, src, problems, settling))
        result.append(sources)
    return result


def _plugin_channels(raw_channels: Any, src: yamlsrc.Located, problems: list[str]) -> list[ChannelConfig]:
    channels = []
    for ci, raw in enumerate(raw_channels if isinstance(raw_channels, list) else []):
        channel = _plugin_block(ChannelConfig, "renderer", "hub.renderers", raw, ("channels", ci), src, problems)
        if channel is not None:
            channels.append(channel)
    return channels


def _default_source_id(merchant_id: str, connector: str, taken: set[str]) -> str:
    base = f"{merchant_id}-{connector}"
    n, candidate = 2, base
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def _plugin_block(model: type[Strict], kind_key: str, group: str, raw: Any, loc: tuple,
                  src: yamlsrc.Located, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(src.error(loc, "expected a mapping such as {connector: rss, url: ...}"))
        return None
    kind = raw.get(kind_key)
    if kind is None:
        problems.append(src.error(loc, f"missing '{kind_key}' (allowed: {', '.join(plugins.names(group))})"))
        return None
    if kind not in plugins.names(group):
        problems.append(src.error(loc + (kind_key,), f"unknown {kind_key} '{kind}'"
                                  f"{_did_you_mean(str(kind), plugins.names(group))} "
                                  f"(allowed: {', '.join(plugins.names(group))})"))
        return None
    try:
        plugin = plugins.load(group, kind)
    except Exception as exc:  # a broken third-party plugin is a config problem, not a crash
        problems.append(src.error(loc + (kind_key,), f"{kind_key} '{kind}' cannot be loaded: {exc!r}"))
        return None
    own = set(model.model_fields) - {"options"}
    common = {k: v for k, v in raw.items() if k in own}
    specific = {k: v for k, v in raw.items() if k not in own}
    options = _validate(plugin.Options, specific, loc, src, problems, also_allowed=own)
    block = _validate(model, common, loc, src, problems)
    if block is None or options is None:
        return None
    return block.model_copy(update={"options": options})


def _validate(model: type[BaseModel], data: dict, loc: tuple, src: yamlsrc.Located,
              problems: list[str], also_allowed: set[str] = frozenset()) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in _without_echoes(exc.errors()):
            err_loc = loc + tuple(err["loc"])
            problems.append(src.error(err_loc, _describe(err, model, also_allowed)))
        return None


def _without_echoes(errors: list[dict]) -> list[dict]:
    """A misspelled required key shows up twice, as unknown and as missing; the
    did-you-mean of the unknown key says it all, so the missing one is dropped."""
    unknown = {(tuple(e["loc"][:-1]), str(e["loc"][-1])) for e in errors if e["type"] == "extra_forbidden"}

    def echoed(e: dict) -> bool:
        parent, name = tuple(e["loc"][:-1]), str(e["loc"][-1])
        return e["type"] == "missing" and any(
            p == parent and difflib.get_close_matches(name, [k], cutoff=0.6) for p, k in unknown)

    return [e for e in errors if not echoed(e)]


def _describe(err: dict, model: type[BaseModel], also_allowed: set[str]) -> str:
    where = ".".join(str(p) for p in err["loc"]) or model.__name__
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        allowed = _fields_at(model, err["loc"][:-1]) | set(also_allowed)
        return f"unknown key '{key}'{_did_you_mean(key, sorted(allowed))}"
    if err["type"] == "missing":
        return f"missing required key '{where}'"
    if err["type"] == "string_pattern_mismatch":
        return (f"'{where}': {err['input']!r} is not a valid id; use lowercase letters, digits, '-' and '_' "
                "(like baeckerei-schmitz)")
    if err["type"] == "literal_error":
        return f"'{where}': {err['msg'].lower()}, got {err['input']!r}"
    message = err["msg"].removeprefix("Value error, ")
    return f"'{where}': {message}, got {err['input']!r}" if "input" in err else f"'{where}': {message}"


def _fields_at(model: type[BaseModel], loc: tuple) -> set[str]:
    """The field names of the (nested) model at `loc`, for did-you-mean hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return set()
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        current = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if current is None:
            return set()
    return set(getattr(current, "model_fields", {})) - {"path", "options"}


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
