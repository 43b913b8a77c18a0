"""Towns as tenants (issue 18): one deployment serves many towns.

A deployment file lists the towns, each an ordinary town config (platform, merchants,
channels), and names the one database they all live in:

    store: {url: postgresql+psycopg://hub@127.0.0.1/hub}
    runtime: procrastinate
    towns:
      musterstadt: towns/musterstadt.yaml
      beispielheim: towns/beispielheim.yaml

Each town keeps its records apart: on PostgreSQL in its own schema `town_<id>` of the
deployment's database (every connection of its store sets `search_path` to it, so the
store's SQL runs unchanged); on SQLite in its own file `<data_dir>/towns/<id>/hub.db` beside
the deployment's file. A town's other files (image cache, keys) go to `<data_dir>/towns/<id>/`
unless its config names a `store.data_dir` of its own.

A single town config is a deployment of one town, "default", exactly as before: its own
`store.url`, no schema.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field

from hub import config as config_mod
from hub import yamlsrc
from hub.config import Settings, StoreConfig, Strict
from hub.errors import ConfigError
from hub.store import Store

log = logging.getLogger("hub.towns")
Runtime = Literal["inprocess", "procrastinate"]
DEFAULT_TOWN = "default"
# A town id names a PostgreSQL schema (`town_<id>`, at most 63 bytes) and a folder, so it is
# kept to lowercase letters, digits and '_' or '-' ('-' becomes '_' in the schema name).
TOWN_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")


@dataclass(frozen=True)
class Town:
    """One town of a deployment: its id and its ordinary config, whose `store.url` the
    deployment has set (the deployment's database on PostgreSQL, the town's own file on
    SQLite). `schema`: the town's PostgreSQL schema, None for a single town config or SQLite."""

    id: str
    settings: Settings
    schema: str | None = None

    def open_store(self, **kwargs: Any) -> Store:
        """The town's own store (migrated, unless `migrate=False`)."""
        return Store(self.settings.store.url, base_dir=self.settings.base_dir, schema=self.schema, **kwargs)

    @property
    def host(self) -> tuple[str, int | None]:
        """What the web app matches a request's Host header against: the host name of
        `platform.base_url` (lowercase) and its port if the URL names one."""
        return host_of(self.settings.platform.base_url)

    @property
    def digest(self) -> str:
        """A hash of the town's whole config (secrets included, never shown): a running web
        process rebuilds a town whose digest changed."""
        return config_mod.options_fingerprint(self.settings)


@dataclass(frozen=True)
class Deployment:
    """What a deployment file (or a single town config) describes."""

    path: Path
    store_url: str  # the deployment's database (the towns registry; procrastinate's jobs too)
    runtime: Runtime  # "inprocess" (APScheduler, the embedded tier) is the default
    towns: dict[str, Town]

    @property
    def is_single_town(self) -> bool:
        """A plain town config rather than a deployment file (then the town is "default")."""
        return list(self.towns) == [DEFAULT_TOWN] and self.towns[DEFAULT_TOWN].schema is None \
            and self.towns[DEFAULT_TOWN].settings.path == self.path

    def town_for_host(self, host: str, port: int | None = None) -> Town | None:
        return next((t for t in self.towns.values() if host_matches(t.host, host, port)), None)


class FollowsReloads:
    """Something that follows `hub towns reload`: the web's TownsApp and `hub run`'s
    TownsRunner. Each polls the registry's generation (`registry`: a
    hub.store.townregistry.TownRegistry; None: the file as it is, no following) and, when
    it moved, reads the deployment file again and applies it (`_apply`)."""

    path: Path
    registry: Any
    generation: int | None = None
    keeping = "keeping the towns as they are"  # what a broken file means, for the log

    async def refresh(self) -> bool:
        """Check the registry's generation; if it moved, read the deployment file again and
        apply it. True if the towns were looked at again (tests call this to not wait)."""
        if self.registry is None:
            return False
        generation = await asyncio.to_thread(self.registry.generation)
        if generation == self.generation:
            return False
        try:
            deployment = await asyncio.to_thread(load_deployment, self.path)
        except ConfigError as exc:  # edited since the reload: keep what runs
            log.error("towns: the deployment %s has problems now; %s:\n%s", self.path, self.keeping,
                      "\n".join(exc.problems))
            self.generation = generation  # once per generation, not at every poll
            return True
        generation, registered = await self._registered()
        await self._apply(deployment, registered)
        self.generation = generation
        return True

    async def _registered(self) -> tuple[int | None, dict[str, str] | None]:
        """The registry's generation and towns (id -> digest); (None, None) without one."""
        if self.registry is None:
            return None, None

        def read() -> tuple[int, dict[str, str]]:
            generation = self.registry.generation()  # first: a reload in between shows next time
            return generation, {t.id: t.digest for t in self.registry.towns().values()}

        return await asyncio.to_thread(read)

    async def _apply(self, deployment: Deployment, registered: dict[str, str] | None) -> None:
        raise NotImplementedError


class DeploymentConfig(Strict):
    """The deployment file's keys."""

    store: StoreConfig = StoreConfig()
    runtime: Runtime = "inprocess"
    towns: dict[str, str] = Field(default_factory=dict)


def is_deployment_file(path: Path) -> bool:
    """A deployment file has a top-level `towns:` mapping; anything else is a town config."""
    if not path.exists():
        return False
    src = yamlsrc.load(path, env={})  # only the shape matters here; variables are checked later
    return isinstance(src.data, dict) and "towns" in src.data


def load_deployment(path: str | Path, env: dict[str, str] | None = None) -> Deployment:
    """Read a deployment file or a single town config. Raises ConfigError listing every
    problem as `file:line: message` (a town file's problems with its own file and line)."""
    path = Path(path)
    if not is_deployment_file(path):
        settings = config_mod.load(path, env)
        town = Town(DEFAULT_TOWN, settings)
        return Deployment(path=path, store_url=settings.store.url, runtime=settings.runtime,
                          towns={DEFAULT_TOWN: town})
    src = yamlsrc.load(path, env)
    problems = list(src.problems)
    deployment = config_mod._validate(DeploymentConfig, dict(src.data), (), src, problems)
    if deployment is None:
        raise ConfigError(sorted(problems, key=config_mod._line_number))
    base_dir = path.resolve().parent  # town folders must not depend on where the town file is
    store_url = _deployment_url(deployment.store.url, base_dir)
    if deployment.runtime == "procrastinate" and not store_url.startswith("postgresql"):
        problems.append(src.error(("runtime",), "runtime 'procrastinate' needs a PostgreSQL store "
                                  "(hint: set store.url to postgresql+psycopg://user@host/db, or runtime: inprocess)"))
    if not deployment.towns:
        problems.append(src.error(("towns",), "the deployment lists no towns "
                                  "(hint: towns: {musterstadt: towns/musterstadt.yaml})"))
    data_dir = base_dir / deployment.store.data_dir
    towns: dict[str, Town] = {}
    for town_id, town_path in deployment.towns.items():
        town = _load_town(town_id, town_path, src, problems, base_dir, store_url, data_dir, env)
        if town is not None:
            towns[town_id] = town
    problems += _clashes(towns, src)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))  # a town's own problems follow its line
    return Deployment(path=path, store_url=store_url, runtime=deployment.runtime, towns=towns)


def schema_name(town_id: str) -> str:
    return "town_" + town_id.replace("-", "_")


def host_of(base_url: str) -> tuple[str, int | None]:
    parts = urlsplit(base_url)
    return (parts.hostname or "").lower(), parts.port


def host_matches(town_host: tuple[str, int | None], host: str, port: int | None) -> bool:
    """A request for `host[:port]` belongs to a town whose base_url has that host name and,
    if the base_url names a port, that port."""
    name, town_port = town_host
    return name == host.lower() and (town_port is None or town_port == port)


def _deployment_url(url: str, base_dir: Path) -> str:
    """A relative SQLite path is relative to the deployment file, as in a town config."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:" and not Path(url[len(prefix):]).is_absolute():
        return prefix + str(base_dir / url[len(prefix):])
    return url


def _load_town(town_id: str, town_path: str, src: yamlsrc.Located, problems: list[str], base_dir: Path,
               store_url: str, data_dir: Path, env: dict[str, str] | None) -> Town | None:
    where = ("towns", town_id)
    if not TOWN_ID.match(town_id):
        problems.append(src.error(where, f"'{town_id}' is not a valid town id; use lowercase letters, digits, "
                                  "'-' and '_', at most 50 (like musterstadt)"))
        return None
    if town_id == DEFAULT_TOWN:
        problems.append(src.error(where, "'default' names the town of a single town config; "
                                  "give this town its own id"))
        return None
    file = Path(town_path)
    file = file if file.is_absolute() else base_dir / file
    if not file.exists():
        problems.append(src.error(where, f"town '{town_id}': config file {file} not found "
                                  "(hint: the path is relative to the deployment file)"))
        return None
    try:
        settings = config_mod.load(file, env)
    except ConfigError as exc:
        problems.append(src.error(where, f"town '{town_id}': {len(exc.problems)} problem(s) in {file}, listed below"))
        problems.extend(exc.problems)
        return None
    own = yamlsrc.load(file, env={})
    if "url" in settings.store.model_fields_set:
        problems.append(own.error(("store", "url"), f"town '{town_id}': the deployment sets the store "
                                  f"(hint: remove store.url here; {src.path} names the database of all towns)"))
        return None
    town_dir = data_dir / "towns" / town_id
    if store_url.startswith("sqlite"):
        url, schema = f"sqlite:///{town_dir / 'hub.db'}", None
    else:
        url, schema = store_url, schema_name(town_id)
    folder = settings.store.data_dir if "data_dir" in settings.store.model_fields_set else town_dir
    store = settings.store.model_copy(update={"url": url, "data_dir": folder})
    return Town(town_id, _with_store(settings, store), schema)


def _with_store(settings: Settings, store: StoreConfig) -> Settings:
    result = settings.model_copy(update={"store": store})
    result._warnings = settings.warnings  # a private attribute: model_copy keeps it, but be explicit
    return result


def _clashes(towns: dict[str, Town], src: yamlsrc.Located) -> list[str]:
    """Two towns on one host (the web app could not tell them apart), or whose schema names
    collide ('a-b' and 'a_b')."""
    problems = []
    seen_hosts: dict[str, Town] = {}
    seen_schemas: dict[str, str] = {}
    for town in towns.values():
        name, port = town.host
        other = seen_hosts.get(name)
        if other is not None and (port is None or other.host[1] is None or port == other.host[1]):
            problems.append(src.error(("towns", town.id), f"towns '{other.id}' and '{town.id}' have the same host "
                                      f"{name} in platform.base_url (hint: give each town its own host name)"))
        seen_hosts.setdefault(name, town)
        schema = schema_name(town.id)
        if schema in seen_schemas:
            problems.append(src.error(("towns", town.id), f"town ids '{seen_schemas[schema]}' and '{town.id}' "
                                      "differ only in '-' and '_' (hint: rename one)"))
        seen_schemas[schema] = town.id
    return problems
