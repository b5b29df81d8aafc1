"""Every page, on the seeded database and on one with a single thing of each kind: text is
written for a person (no Python dict, list or None; "1 version", never "1 versions") and every
axis of counts has whole-number ticks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from tests.dashboards.helpers import charts, encodings, page_texts
from tests.dashboards.seed import Plan

PAGES = ("progress", "agreement", "models", "evaluation", "images", "similar")
RAW = re.compile(r"\bNone\b|\bnan\b|\{'|\['|\{\}|\[\]")
NOUNS = "images|versions|datasets|events|readers|labels|reviews|days|boxes"
WRONG_PLURAL = re.compile(rf"(?<![\d.,])\b1 (?:[\w-]+ )?(?:{NOUNS})\b")
COUNT_FIELDS = {"images", "reviews", "labels", "training images"}


@pytest.fixture(params=["plan", "single"])
def database(
    request: pytest.FixtureRequest, settings: object, sessions: sessionmaker[Session]
) -> Plan:
    fixture = "seeded" if request.param == "plan" else "seeded_single"
    plan: Plan = request.getfixturevalue(fixture)
    return plan


def problems(at: AppTest) -> list[str]:
    texts = page_texts(at)
    raw = [t for t in texts if RAW.search(t)]
    plurals = [t for t in texts if WRONG_PLURAL.search(t)]
    axes = [
        f"{channel['field']}: {channel.get('axis')}"
        for spec, _ in charts(at)
        for channel in encodings(json.loads(spec))
        if channel.get("field") in COUNT_FIELDS
        and channel.get("type") == "quantitative"
        and (channel.get("axis") or {}).get("tickMinStep") != 1
    ]
    return raw + plurals + axes


@pytest.mark.parametrize("page", PAGES)
def test_text_is_written_for_a_person(
    database: Plan, page: str, open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page(page)
    assert len(page_texts(at)) >= 2  # the page rendered something to read
    assert problems(at) == []


def test_one_of_each_is_said_in_the_singular(
    seeded_single: Plan, open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page("progress")
    assert "1 image in 1 dataset (train 1)." in [c.value for c in at.caption]
    at = open_page("models")
    assert any(c.value.endswith(" · 1 version") for c in at.caption)
    assert "\\n1 image" in at.get("graphviz_chart")[0].proto.spec  # trained on one image
    at = open_page("images")
    assert "1 image matches the filters." in [c.value for c in at.caption]
