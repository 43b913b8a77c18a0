"""The Facebook and Instagram mapping against recorded Graph API responses and their
expected items (tests/data/graph/; `python -m tests.graphcases` rewrites the expected files)."""

from __future__ import annotations

import json

import pytest

from tests import graphcases


@pytest.mark.parametrize("case", graphcases.inputs(), ids=lambda p: p.name)
def test_recorded_graph_response(case):
    expected = json.loads(graphcases.expected_path(case).read_text(encoding="utf-8"))
    assert graphcases.run_case(case) == expected
