"""Config loading: every problem reported at once, as file:line with a hint."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from hub import config
from hub.errors import ConfigError

# Not about the date (the config's validation): left out of make test's second run (--clock-ahead).
pytestmark = pytest.mark.timeless

DATA = Path(__file__).parent / "data" / "config"


def problems_of(text: str, tmp_path: Path, env: dict | None = None) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path, env=env or {})
    return [p.replace(str(path), "config.yaml") for p in info.value.problems]


def test_valid_config_loads_with_plugin_options():
    settings = config.load(DATA / "valid.yaml", env={})
    ids = [s.id for _, s in settings.sources()]
    assert ids == ["laden-rss", "laden-atom", "laden-jsonfeed", "verein-feed"]
    first = settings.sources()[0][1]
    assert first.every == timedelta(minutes=30)
    assert first.options.url == "https://laden.example/feed.xml"
    assert settings.channel_list()[0].options.page_size == 30
    assert settings.base_dir == DATA


def test_three_mistakes_give_three_located_errors():
    with pytest.raises(ConfigError) as info:
        config.load(DATA / "three_errors.yaml", env={})
    prefix = f"{DATA / 'three_errors.yaml'}:"
    assert [p.split(" ", 1)[0] for p in info.value.problems] == [f"{prefix}5:", f"{prefix}11:", f"{prefix}13:"]
    typo, wrong_type, missing_var = info.value.problems[1], info.value.problems[0], info.value.problems[2]
    assert "did you mean 'url'?" in typo
    assert "max_in_flight" in wrong_type and "integer" in wrong_type
    assert "LADEN_FEED_PATH" in missing_var and "export" in missing_var


def test_environment_variables_and_secret_files(tmp_path):
    (tmp_path / "contact.txt").write_text("https://stadt.example/kontakt\n")
    path = tmp_path / "config.yaml"
    path.write_text('platform: {name: "${TOWN}"}\nfetcher:\n  contact_url_file: contact.txt\n'
                    'store: {url: "${DB:-sqlite:///data/x.db}"}\n')
    settings = config.load(path, env={"TOWN": "Beispielstadt"})
    assert settings.platform.name == "Beispielstadt"
    assert settings.fetcher.contact_url == "https://stadt.example/kontakt"
    assert settings.store.url == "sqlite:///data/x.db"


def test_unknown_connector_lists_the_allowed_ones(tmp_path):
    problems = problems_of("merchants:\n  - id: a\n    name: A\n    sources:\n      - {connector: rsss, url: x}\n", tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("config.yaml:5: unknown connector 'rsss'; did you mean 'rss'?")
    allowed = problems[0].split("(allowed: ", 1)[1].rstrip(")").split(", ")
    assert allowed == sorted(allowed) and {"atom", "facebook", "feed", "ical", "instagram", "jsonfeed", "rss"} <= set(allowed)


def test_enum_error_names_the_allowed_values(tmp_path):
    problems = problems_of("channels:\n  - id: news\n    renderer: platform\n    include: {kinds: [events]}\n", tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("config.yaml:4:")
    assert "'post', 'event' or 'offer'" in problems[0]


def test_missing_secret_file_and_bad_yaml(tmp_path):
    problems = problems_of("fetcher:\n  contact_url_file: /nonexistent/secret\n", tmp_path)
    assert problems[0].startswith("config.yaml:2: cannot read secret file /nonexistent/secret")
    problems = problems_of("platform: {name: [unclosed\n", tmp_path)
    assert problems[0].startswith("config.yaml:") and "invalid YAML" in problems[0]


def test_duplicate_ids_and_bad_values(tmp_path):
    text = """\
platform: {timezone: Europe/Musterstadt}
merchants:
  - id: Laden Eins
    name: X
  - id: b
    name: B
    sources:
      - {connector: rss, url: "ftp://b.example/feed", every: soon}
      - {connector: rss, url: "https://b.example/2"}
      - {connector: rss, url: "https://b.example/3", id: b-rss}
"""
    problems = problems_of(text, tmp_path)
    joined = "\n".join(problems)
    assert "config.yaml:1:" in joined and "unknown time zone" in joined
    assert "config.yaml:3:" in joined and "'Laden Eins' is not a valid id" in joined
    assert "config.yaml:8:" in joined and "https://" in joined and "duration" in joined
    assert "config.yaml:10:" in joined and "'b-rss' is used twice" in joined


def test_missing_file_has_a_hint(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "nope.yaml")
    assert "copy config.example.yaml" in info.value.problems[0]


@given(st.integers(min_value=1, max_value=10_000), st.sampled_from(["s", "m", "h", "d"]))
def test_durations(n, unit):
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * n
    assert config.parse_duration(f"{n}{unit}") == timedelta(seconds=seconds)


def test_example_config_is_valid():
    root = Path(__file__).parent.parent
    settings = config.load(root / "config.example.yaml", env={})
    assert len(settings.merchants) >= 8


@pytest.mark.parametrize("text", ["platform: {name: [unclosed\n", "a: 1\n\tb: 2\n", "a: b: c\n", "- x\ny: 1\n"])
def test_libyaml_and_pure_python_say_the_same_about_broken_yaml(text, tmp_path, monkeypatch):
    """libyaml reads configs (fast); what it refuses is read again in pure Python, so a
    mistake is reported with the same words and line on every machine."""
    from hub import yamlsrc
    path = tmp_path / "config.yaml"
    path.write_text(text)
    fast = yamlsrc.load(path, env={})
    monkeypatch.setattr(yamlsrc, "_FAST", None)
    pure = yamlsrc.load(path, env={})
    assert fast.problems == pure.problems and len(fast.problems) == 1


def test_libyaml_and_pure_python_read_the_example_alike(monkeypatch):
    from hub import yamlsrc
    path = Path(__file__).parent.parent / "config.example.yaml"
    fast = yamlsrc.load(path, env={})
    monkeypatch.setattr(yamlsrc, "_FAST", None)
    pure = yamlsrc.load(path, env={})
    assert (fast.data, fast.lines) == (pure.data, pure.lines) and len(fast.lines) > 100
