"""Pixel xyxy <-> Label Studio percent: round trips, clipping, no rotation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_backend.studio.boxes import PercentRect, to_percent, to_pixels


@st.composite
def image_and_box(draw: st.DrawFn) -> tuple[int, int, tuple[float, float, float, float]]:
    width, height = draw(st.integers(16, 4000)), draw(st.integers(16, 4000))
    x0 = draw(st.floats(0, width, allow_nan=False, allow_subnormal=False))
    y0 = draw(st.floats(0, height, allow_nan=False, allow_subnormal=False))
    x1 = draw(st.floats(x0, width, allow_nan=False, allow_subnormal=False))
    y1 = draw(st.floats(y0, height, allow_nan=False, allow_subnormal=False))
    return width, height, (x0, y0, x1, y1)


@given(image_and_box())
def test_pixels_to_percent_and_back_is_the_identity(
    case: tuple[int, int, tuple[float, float, float, float]],
) -> None:
    width, height, box = case
    rect = to_percent(box, width=width, height=height)
    assert rect["rotation"] == 0.0
    assert 0 <= rect["x"] <= 100 and 0 <= rect["y"] <= 100
    assert rect["x"] + rect["width"] <= 100 + 1e-9 and rect["y"] + rect["height"] <= 100 + 1e-9
    back = to_pixels(rect, width=width, height=height)
    assert back == pytest.approx(box, abs=1e-6 * max(width, height))


@given(
    st.floats(-500, 1500, allow_nan=False, allow_subnormal=False),
    st.floats(-500, 1500, allow_nan=False, allow_subnormal=False),
    st.floats(0, 2000, allow_nan=False, allow_subnormal=False),
    st.floats(0, 2000, allow_nan=False, allow_subnormal=False),
)
def test_boxes_outside_the_image_are_clipped(x: float, y: float, w: float, h: float) -> None:
    rect = to_percent((x, y, x + w, y + h), width=640, height=480)
    for key in ("x", "y", "width", "height"):
        assert 0 <= rect[key] <= 100


def test_known_values_and_rotation_refused() -> None:
    rect = to_percent((64, 48, 320, 240), width=640, height=480)
    assert (rect["x"], rect["y"], rect["width"], rect["height"]) == (10.0, 10.0, 40.0, 40.0)
    rotated = PercentRect(x=10, y=10, width=40, height=40, rotation=15)
    with pytest.raises(ValueError, match="rotation=15"):
        to_pixels(rotated, width=640, height=480)
