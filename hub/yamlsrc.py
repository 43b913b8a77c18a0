"""Load YAML while remembering where every value came from, so config errors can say
`file:line`. Also expands `${VAR}` from the environment and reads `*_file` secrets."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class Located:
    """The loaded data plus the line of every path in it (1-based)."""

    data: Any
    path: Path
    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def line_of(self, loc: Loc) -> int:
        """The line of `loc`, or of its nearest ancestor that has one."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def error(self, loc: Loc, message: str) -> str:
        return f"{self.path}:{self.line_of(loc)}: {message}"


def load(path: Path, env: dict[str, str] | None = None) -> Located:
    """Parse `path`. Syntax errors, missing variables and unreadable secret files are
    collected in `problems` (each as `file:line: message`) instead of raised."""
    env = dict(os.environ) if env is None else env
    text = path.read_text(encoding="utf-8")
    located = Located(data=None, path=path)
    try:
        node = _compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        located.problems.append(f"{path}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}")
        return located
    if node is None:
        located.data = {}
        return located
    located.data = _build(node, (), located, env)
    return located


def _compose(text: str) -> yaml.Node | None:
    """The YAML node tree of `text`: by libyaml where PyYAML has it (about 7x faster: a
    town of 50,000 sources is read in seconds, not minutes), else in pure Python. A
    document libyaml refuses is parsed again in pure Python, so errors read the same
    wherever the hub runs."""
    if _FAST is not None:
        try:
            return yaml.compose(text, Loader=_FAST)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


_FAST = getattr(yaml, "CSafeLoader", None)


def _build(node: yaml.Node, loc: Loc, out: Located, env: dict[str, str]) -> Any:
    out.lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(_scalar(key_node))
            if key in result:
                out.problems.append(f"{out.path}:{key_node.start_mark.line + 1}: key '{key}' appears twice")
            if key.endswith("_file") and isinstance(value_node, yaml.ScalarNode):
                key, value = _read_secret(key, value_node, loc, out, env)
                out.lines[loc + (key,)] = key_node.start_mark.line + 1
                result[key] = value
                continue
            result[key] = _build(value_node, loc + (key,), out, env)
            out.lines[loc + (key,)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(child, loc + (i,), out, env) for i, child in enumerate(node.value)]
    value = _scalar(node)
    if isinstance(value, str) and "$" in value:
        value = _expand(value, node.start_mark.line + 1, out, env)
    return value


_CONSTRUCTOR = yaml.SafeLoader("")


def _scalar(node: yaml.Node) -> Any:
    """A scalar with YAML's implicit typing (ints, bools, dates); strings stay strings."""
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    return _CONSTRUCTOR.construct_object(node, deep=True)


def _expand(value: str, line: int, out: Located, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        out.problems.append(
            f"{out.path}:{line}: environment variable {name} is not set "
            f"(hint: export {name}=... before starting the hub, or write ${{{name}:-default}})")
        return ""

    return _VAR.sub(replace, value)


def _read_secret(key: str, node: yaml.ScalarNode, loc: Loc, out: Located,
                 env: dict[str, str]) -> tuple[str, str]:
    """`access_token_file: /run/secrets/x` becomes `access_token: <file content>`."""
    line = node.start_mark.line + 1
    target = key[: -len("_file")]
    raw = _expand(str(node.value), line, out, env)
    secret_path = Path(raw)
    if not secret_path.is_absolute():
        secret_path = out.path.parent / secret_path
    try:
        return target, secret_path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        out.problems.append(f"{out.path}:{line}: cannot read secret file {secret_path} for '{target}': "
                            f"{exc.strerror} (hint: check the path and that the hub may read it)")
        return target, ""
