"""parse_annotation on any JSON: a parsed annotation or StudioFormatError, never another error."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_backend.studio.format import (
    BOXES,
    PATHOLOGY,
    REVIEW,
    StudioAnnotation,
    StudioFormatError,
    parse_annotation,
)

W, H = 640, 480
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**1100), max_value=2**1100)
    | st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False)
    | st.text(max_size=12)
    | st.sampled_from(["BI-RADS 3", "BI-RADS 4A", "Reject", "benign", "4b", "\ud800"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
names = st.sampled_from([BOXES, REVIEW, PATHOLOGY, "other"]) | json_values
keys = ["x", "y", "width", "height", "rotation", "rectanglelabels", "choices"]
values = st.fixed_dictionaries({}, optional={k: json_values for k in keys}) | json_values
regions = (
    st.fixed_dictionaries(
        {"from_name": names, "value": values},
        optional={"original_width": json_values, "original_height": json_values},
    )
    | json_values
)
results = st.lists(regions, max_size=5) | json_values


def _check(result: Any) -> None:
    try:
        parsed = parse_annotation(result, width=W, height=H)
    except StudioFormatError as exc:
        assert str(exc).isascii() and len(str(exc)) < 400
        return
    assert isinstance(parsed, StudioAnnotation)
    for box in parsed.boxes:
        assert all(math.isfinite(v) for v in box.xyxy)
        x0, y0, x1, y1 = box.xyxy
        assert 0 <= x0 <= x1 and 0 <= y0 <= y1


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(results)
def test_any_json_parses_or_raises_studio_format_error(result: Any) -> None:
    _check(result)


@pytest.mark.parametrize(
    "result",
    [
        "BI-RADS 3",  # the reported event: result is a string
        {"from_name": BOXES},
        [1, None, "x"],
        [{"from_name": BOXES, "value": "x"}],
        [{"from_name": BOXES, "value": {"rectanglelabels": "B"}}],  # a one-letter string
        [{"from_name": REVIEW, "value": {"choices": [["Reject"]]}}],  # unhashable choice
        [{"from_name": REVIEW, "value": {"choices": "R"}}],
        [{"from_name": BOXES, "value": {"rectanglelabels": [3], "x": 1, "y": 1}}],
        [{"from_name": BOXES, "value": {"rectanglelabels": ["BI-RADS 3"], "x": True, "y": 1}}],
        [
            {
                "from_name": BOXES,
                "original_width": float("inf"),
                "value": {"rectanglelabels": ["3"], "x": 1, "y": 1, "width": 5, "height": 5},
            }
        ],
        [
            {
                "from_name": BOXES,
                "value": {"rectanglelabels": ["3"], "x": "nan", "y": 1, "width": 5, "height": 5},
            }
        ],
        [{"from_name": BOXES, "value": {"rectanglelabels": [[[[[]]]]] * 1}}],
        [{"from_name": BOXES, "value": {"rectanglelabels": ["\ud800"]}}],
        [
            {
                "from_name": BOXES,
                "value": {"rectanglelabels": ["3"], "x": 10**400, "y": 1, "width": 5, "height": 5},
            }
        ],
    ],
)
def test_hostile_shapes_are_a_format_error(result: Any) -> None:
    with pytest.raises(StudioFormatError):
        parse_annotation(result, width=W, height=H)
