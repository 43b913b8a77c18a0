"""Channel schedules: cron in the platform's time zone, right across both DST changes."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from hub import config
from hub.errors import ConfigError
from hub.cron import check_cron, next_run

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc


def runs(expr: str, start: datetime, n: int) -> list[datetime]:
    out, at = [], start
    for _ in range(n):
        at = next_run(expr, at, "Europe/Berlin")
        out.append(at)
    return out


def test_monday_seven_oclock_is_seven_in_berlin_all_year():
    # 2026: summer time starts Sun 29 March, ends Sun 25 October.
    got = runs("0 7 * * MON", datetime(2026, 3, 20, tzinfo=UTC), 3)
    assert [d.astimezone(BERLIN).strftime("%a %d.%m. %H:%M") for d in got] == \
        ["Mon 23.03. 07:00", "Mon 30.03. 07:00", "Mon 06.04. 07:00"]
    assert [d.hour for d in got] == [6, 5, 5]  # UTC: winter +1, summer +2
    autumn = runs("0 7 * * MON", datetime(2026, 10, 20, tzinfo=UTC), 2)
    assert [(d.day, d.hour) for d in autumn] == [(26, 6), (2, 6)]


def test_spring_forward_a_missing_time_runs_an_hour_later_once():
    got = runs("30 2 * * *", datetime(2026, 3, 27, 12, tzinfo=UTC), 3)
    local = [d.astimezone(BERLIN).strftime("%d. %H:%M %Z") for d in got]
    assert local == ["28. 02:30 CET", "29. 03:30 CEST", "30. 02:30 CEST"]


def test_fall_back_a_repeated_time_runs_once():
    got = runs("30 2 * * *", datetime(2026, 10, 24, 12, tzinfo=UTC), 3)
    local = [d.astimezone(BERLIN).strftime("%d. %H:%M %Z") for d in got]
    assert local == ["25. 02:30 CEST", "26. 02:30 CET", "27. 02:30 CET"]


def test_hourly_runs_stay_an_hour_apart_across_both_changes():
    for start in (datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 10, 24, 23, tzinfo=UTC)):
        got = runs("0 * * * *", start, 6)
        gaps = {(b - a).total_seconds() for a, b in zip(got, got[1:])}
        assert gaps <= {3600.0, 7200.0}  # fall back skips the repeated hour's second pass
        assert all(d.minute == 0 for d in got)


def test_next_run_is_strictly_later():
    at = datetime(2026, 6, 1, 5, 0, tzinfo=UTC)  # exactly 07:00 Berlin on a Monday
    assert next_run("0 7 * * MON", at, "Europe/Berlin") == datetime(2026, 6, 8, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize("expr", ["0 7 * * MON", "*/15 6-20 * * 1-5", "@daily", "0 0 1 * *"])
def test_good_expressions_pass(expr):
    assert check_cron(expr) == expr


@pytest.mark.parametrize("expr, why", [("0 7 * *", "five fields"), ("61 * * * *", "not a valid"),
                                       ("* * * * * *", "five fields"), ("jeden Montag", "five fields")])
def test_bad_expressions_say_how_to_write_one(expr, why):
    with pytest.raises(ValueError, match=why):
        check_cron(expr)


def test_a_bad_schedule_in_the_config_is_reported_at_its_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("platform: {name: Teststadt}\n"
                    "channels:\n"
                    "  - id: wochenpost\n"
                    "    renderer: jsonlines\n"
                    "    path: out.jsonl\n"
                    "    schedule: '0 7 * MON'\n")
    with pytest.raises(ConfigError) as info:
        config.load(path, env={})
    [problem] = info.value.problems
    assert problem.startswith(f"{path}:6: 'schedule': a schedule has five fields, this one has 4")
    assert "0 7 * * MON" in problem
