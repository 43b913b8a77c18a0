"""Templates are compiled once per process, whatever number of apps (hub.web.templating)."""

from __future__ import annotations

import pytest
from jinja2 import Environment, FileSystemLoader

from hub.web.templating import CompiledTemplates

pytestmark = pytest.mark.timeless


def test_environments_of_one_kind_compile_a_template_once_and_an_edited_one_again(tmp_path):
    (tmp_path / "gruss.html").write_text("Hallo {{ name }}")
    shared = CompiledTemplates()
    compiled: list[str] = []

    def environment() -> Environment:
        env = Environment(loader=FileSystemLoader(tmp_path), bytecode_cache=shared)
        compile_ = env.compile
        env.compile = lambda source, name=None, *rest, **kw: compiled.append(name) or compile_(source, name, *rest, **kw)
        return env

    assert environment().get_template("gruss.html").render(name="Anna") == "Hallo Anna"
    assert environment().get_template("gruss.html").render(name="Ben") == "Hallo Ben"
    assert compiled == ["gruss.html"]
    (tmp_path / "gruss.html").write_text("Moin {{ name }}")
    assert environment().get_template("gruss.html").render(name="Cem") == "Moin Cem"
    assert compiled == ["gruss.html", "gruss.html"]
