from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.birads import (
    FIVE_WAY_SPACE,
    FULL_SPACE,
    NO_4_SPACE,
    Birads,
    Reading,
    UnknownBiradsError,
    is_subcategory_of_4,
    parse_birads,
    parse_pathology,
    reading,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (4, Birads.B4),
        ("4", Birads.B4),
        ("4a", Birads.B4A),
        ("4B", Birads.B4B),
        ("BI-RADS 4b", Birads.B4B),
        ("BIRADS4c", Birads.B4C),
        ("bi-rads: 5", Birads.B5),
        ("Category 3", Birads.B3),
        (" 2 ", Birads.B2),
        (np.int64(1), Birads.B1),
        (4.0, Birads.B4),
        ("4.0", Birads.B4),
        (Birads.B4A, Birads.B4A),
    ],
)
def test_parses_the_forms_real_sources_use(raw: object, expected: Birads) -> None:
    assert parse_birads(raw) is expected


@pytest.mark.parametrize("raw", ["4d", "7", 7, "3a", "", "benign", 4.5, True, None, float("nan")])
def test_unknown_labels_raise_an_error_naming_the_value(raw: object) -> None:
    with pytest.raises(UnknownBiradsError) as info:
        parse_birads(raw)
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize(("raw", "why"), [("0", "incomplete"), (6, "biopsy-proven")])
def test_out_of_scope_categories_say_why(raw: object, why: str) -> None:
    with pytest.raises(UnknownBiradsError, match=why):
        parse_birads(raw)


@given(
    category=st.sampled_from(list(Birads)),
    prefix=st.sampled_from(["", "BI-RADS ", "bi-rads", "BIRADS ", "Birads: ", "cat "]),
    lower=st.booleans(),
)
def test_every_category_round_trips_through_its_spellings(
    category: Birads, prefix: str, lower: bool
) -> None:
    text = prefix + (category.value.lower() if lower else category.value)
    assert parse_birads(text) is category


def test_subcategories_of_4_and_coarse() -> None:
    assert [c for c in Birads if is_subcategory_of_4(c)] == [Birads.B4A, Birads.B4B, Birads.B4C]
    assert {c.coarse for c in FULL_SPACE} == set(FIVE_WAY_SPACE)
    assert Birads.B4.coarse is Birads.B4 and Birads.B5.coarse is Birads.B5
    assert Birads.B4 not in NO_4_SPACE and all(not is_subcategory_of_4(c) for c in NO_4_SPACE)


def test_benign_malignant_reading() -> None:
    benign = [c for c in Birads if c is not Birads.B4 and reading(c) is Reading.BENIGN]
    assert benign == [Birads.B1, Birads.B2, Birads.B3, Birads.B4A]
    assert reading(Birads.B4) is Reading.MALIGNANT
    assert reading(Birads.B4, plain_4=Reading.BENIGN) is Reading.BENIGN
    assert reading(Birads.B4B) is Reading.MALIGNANT and reading(Birads.B5) is Reading.MALIGNANT


def test_pathology_parsing() -> None:
    assert parse_pathology(" Malignant ").value == "malignant"
    with pytest.raises(ValueError, match="'cancerous'"):
        parse_pathology("cancerous")
