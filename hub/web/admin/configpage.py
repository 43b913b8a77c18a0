"""Config with confidence (`/admin/config`, administrators only).

The YAML file stays the source of truth. The page shows the configuration the hub runs with
(secrets masked), and takes a new version, pasted or uploaded, to

- check it: the same `file:line: message` lines as `hub check`, with the file's own name;
- try a changed or added source: fetch and parse it as `hub try-source` does, storing
  nothing (`hub.web.admin.dryrun`);
- apply it: only when it has no problem. The old file is kept next to it (`.bak`), the new
  one written in its place, and the running hub switches to it without a restart
  (`hub.web.admin.reload`). With problems, nothing changes.

Secret values written into the file itself (not `${VAR}` references) are shown masked in
the editor; a masked value sent back stands for the value it had (`unmask`).
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, SecretStr

from hub import config as config_mod
from hub.config import Settings
from hub.errors import ConfigError
import hub.web.admin.reload as reload
from hub.web.admin.core import NO_STORE, Cockpit, Forbidden, User, field
from hub.web.admin.dryrun import try_source

MASK = "••••••"
_SECRET_KEY = re.compile(r"(token|secret|passw|api_?key|private_?key|credential)", re.IGNORECASE)
_SECRET_LINE = re.compile(r"""(?P<key>\b[A-Za-z0-9_-]*(?:token|secret|passw\w*|api_?key|private_?key|credential)"""
                          r"""[A-Za-z0-9_-]*)(?P<sep>\s*:\s*)(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s,}#\n][^,}#\n]*?)"""
                          r"""(?=\s*(?:[,}#\n]|$))""", re.IGNORECASE)
_REFERENCE = re.compile(r"""^["']?\$\{[A-Za-z_][A-Za-z0-9_]*\}["']?$""")
_USERINFO = re.compile(r"(://[^:/@\s]+:)[^@/\s]+@")


@dataclass
class Checked:
    """A proposed config, checked."""

    text: str
    problems: list[str]
    warnings: list[str]
    settings: Settings | None
    changes: list[tuple[str, str]]  # (what, source or merchant id): added / changed / removed


def add(router: APIRouter, cockpit: Cockpit, factory: Callable | None) -> None:
    @router.get("/admin/config")
    def config_page(request: Request, meldung: str = ""):
        user = cockpit.page_user(request, "admin")
        return _page(cockpit, request, user, text=_raw_file(cockpit), message=_applied(meldung))

    @router.post("/admin/config/check")
    async def check(request: Request):
        user = cockpit.page_user(request, "admin")
        checked = await asyncio.to_thread(_checked, cockpit, await _proposed(cockpit, request, user))
        cockpit.admin.log(user.name, "config_check", problems=len(checked.problems))
        return _page(cockpit, request, user, text=checked.text, checked=checked)

    @router.post("/admin/config/dry-run")
    async def dry_run(request: Request):
        user = cockpit.page_user(request, "admin")
        fields = await cockpit.form(request, user)
        checked = await asyncio.to_thread(_checked, cockpit, _text_of(cockpit, fields))
        wanted = field(fields, "quelle")
        result = None
        if checked.settings is not None:
            pair = next(((m, s) for m, s in checked.settings.sources() if s.id == wanted), None)
            if pair is None:
                raise Forbidden(f"Eine Quelle „{wanted}“ gibt es in der geprüften Konfiguration nicht.", status=400)
            result = await try_source(checked.settings, *pair)
            cockpit.admin.log(user.name, "config_dry_run", wanted, items=len(result.items), error=result.error)
        return _page(cockpit, request, user, text=checked.text, checked=checked, dry=result, dry_source=wanted)

    @router.post("/admin/config/apply")
    async def apply(request: Request):
        user = cockpit.page_user(request, "admin")
        path = cockpit.settings.path
        fields = await cockpit.form(request, user)
        checked = await asyncio.to_thread(_checked, cockpit, _text_of(cockpit, fields))
        if checked.problems or checked.settings is None:
            cockpit.admin.log(user.name, "config_refused", problems=checked.problems[:20])
            return _page(cockpit, request, user, text=checked.text, checked=checked, status=422,
                         refused="Die neue Konfiguration hat Fehler; die bisherige gilt weiter.")
        if path is None or factory is None:
            raise Forbidden("Diese Instanz wurde nicht aus einer Konfigurationsdatei gestartet; übernehmen geht hier "
                            "nicht.", status=409)
        _write(path, checked.text)
        try:
            settings = await asyncio.to_thread(config_mod.load, path)  # the running config is the file's
        except ConfigError as exc:  # changed under our feet (an environment variable, a secret file)
            _restore(path)
            checked.problems = list(exc.problems)
            return _page(cockpit, request, user, text=checked.text, checked=checked, status=422,
                         refused="Die neue Konfiguration hat Fehler; die bisherige gilt weiter.")
        await reload.apply(request.app, settings, cockpit.store, factory)
        cockpit.admin.log(user.name, "config_apply", changes=[f"{what} {name}" for what, name in checked.changes])
        return RedirectResponse("/admin/config?meldung=uebernommen", status_code=303, headers=NO_STORE)


def _page(cockpit: Cockpit, request: Request, user: User, *, text: str, status: int = 200, **context: Any):
    return cockpit.render(request, "config.html", user, status_code=status, text=mask(text),
                          loaded=masked_settings(cockpit.settings), path=cockpit.settings.path,
                          **{"checked": None, "dry": None, "dry_source": None, "refused": None, "message": None,
                             **context})


def _applied(code: str) -> str | None:
    return "Die neue Konfiguration ist übernommen; der Hub arbeitet ab jetzt damit." if code == "uebernommen" else None


async def _proposed(cockpit: Cockpit, request: Request, user: User) -> str:
    return _text_of(cockpit, await cockpit.form(request, user))


def _text_of(cockpit: Cockpit, fields: dict) -> str:
    """The proposed YAML: an uploaded file wins over the pasted text; masked secrets restored."""
    uploaded = fields.get("datei")
    text = uploaded if isinstance(uploaded, str) and uploaded.strip() else str(fields.get("yaml") or "")
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise Forbidden("Bitte eine Konfiguration einfügen oder eine Datei hochladen.", status=400)
    return unmask(text, _raw_file(cockpit))


def _checked(cockpit: Cockpit, text: str) -> Checked:
    """Check `text` as the config file would be checked (`hub check`), in the config's folder
    (relative paths resolve as they will), under the file's own name in the messages."""
    path = cockpit.settings.path
    folder = path.parent if path else cockpit.settings.base_dir
    name = str(path) if path else "config.yaml"
    handle, temp = tempfile.mkstemp(prefix=".cockpit-check-", suffix=".yaml", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            settings = config_mod.load(temp)
        except ConfigError as exc:
            return Checked(text, [p.replace(temp, name) for p in exc.problems], [], None, [])
        settings = settings.model_copy(update={"path": path})
        return Checked(text, [], [w.replace(temp, name) for w in settings.warnings], settings,
                       changes(cockpit.settings, settings))
    finally:
        os.unlink(temp)


def changes(old: Settings, new: Settings) -> list[tuple[str, str]]:
    """What a new config changes: merchants and sources added, changed or removed."""
    found = []
    old_m, new_m = {m.id: m for m in old.merchants}, {m.id: m for m in new.merchants}
    found += [("Teilnehmer neu", i) for i in new_m if i not in old_m]
    found += [("Teilnehmer entfernt", i) for i in old_m if i not in new_m]
    old_s, new_s = {s.id: s for _, s in old.sources()}, {s.id: s for _, s in new.sources()}
    found += [("Quelle neu", i) for i in new_s if i not in old_s]
    found += [("Quelle geändert", i) for i in new_s if i in old_s and
              (new_s[i].fingerprint, new_s[i].connector, new_s[i].every) != (old_s[i].fingerprint, old_s[i].connector, old_s[i].every)]
    found += [("Quelle entfernt", i) for i in old_s if i not in new_s]
    return found


def _write(path: Path, text: str) -> None:
    """Keep the old file as `<name>.bak`, then put the new one in place atomically."""
    if path.exists():
        backup = path.with_name(path.name + ".bak")
        backup.write_bytes(path.read_bytes())
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(text)
    if path.exists():
        os.chmod(temp, path.stat().st_mode & 0o777)
    os.replace(temp, path)


def _restore(path: Path) -> None:
    backup = path.with_name(path.name + ".bak")
    if backup.exists():
        os.replace(backup, path)


def _raw_file(cockpit: Cockpit) -> str:
    path = cockpit.settings.path
    try:
        return path.read_text(encoding="utf-8") if path else ""
    except OSError:
        return ""




# --- secrets --------------------------------------------------------------------------------------

def mask(text: str) -> str:
    """`text` with the values of secret keys replaced by MASK (references to the environment,
    `${VAR}`, stay: they hold no secret)."""
    def hide(m: re.Match) -> str:
        value = m.group("value")
        if _REFERENCE.match(value) or value in ('""', "''", "null", "~"):
            return m.group(0)
        return f'{m.group("key")}{m.group("sep")}"{MASK}"'

    return _SECRET_LINE.sub(hide, text)


def unmask(text: str, original: str) -> str:
    """`text` with each masked value put back: the n-th masked value of a key is the n-th
    value of that key in `original`. Raises Forbidden if one has no original."""
    values: dict[str, list[str]] = {}
    for m in _SECRET_LINE.finditer(original):
        values.setdefault(m.group("key"), []).append(m.group("value"))
    used: dict[str, int] = {}

    def restore(m: re.Match) -> str:
        if m.group("value").strip("\"'") != MASK:
            return m.group(0)
        key = m.group("key")
        n = used[key] = used.get(key, -1) + 1
        if n >= len(values.get(key, [])):
            raise Forbidden(f"Der verdeckte Wert von „{key}“ lässt sich keinem bisherigen zuordnen; bitte den Wert "
                            "(oder besser ${VARIABLE}) neu eintragen.", status=400)
        return f"{key}{m.group('sep')}{values[key][n]}"

    return _SECRET_LINE.sub(restore, text)


def masked_settings(settings: Settings) -> str:
    """The running configuration as YAML, secrets masked."""
    data = _plain(settings)
    data.pop("path", None)
    # libyaml's emitter when PyYAML has it: the same text, ~3x faster (a town of 2,000 merchants: 1.4 s -> 0.4 s)
    return yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=True,
                     sort_keys=False, default_flow_style=False, width=100)


def _plain(value: Any, key: str = "") -> Any:
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        fields = {name: getattr(value, name) for name in type(value).model_fields}
        aliases = {n: f.alias or n for n, f in type(value).model_fields.items()}
        return {aliases[k]: _plain(v, k) for k, v in fields.items() if v is not None and k != "fingerprint"}
    if isinstance(value, dict):
        return {str(k): _plain(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if isinstance(value, str):
        if _SECRET_KEY.search(key) and value:
            return MASK
        return _USERINFO.sub(rf"\1{MASK}@", value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _duration(value: timedelta) -> str:
    """As the config writes durations: 90s, 5m, 2h, 1d."""
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
