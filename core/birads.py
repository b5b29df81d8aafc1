"""The BI-RADS taxonomy: the one place that knows categories, their spellings and their meaning.

Categories follow ACR BI-RADS (ultrasound, 5th edition). BUS-BRA only has plain "4";
BrEaST-Lesions_USG and our readers use the subcategories 4A/4B/4C.
"""

from __future__ import annotations

import math
import numbers
import re
from enum import StrEnum

from core.errors import BadInputError


class UnknownBiradsError(BadInputError, ValueError):  # ValueError: the adapters catch it per row
    """A label that is not one of the categories this product handles."""


class Birads(StrEnum):
    B1 = "1"
    B2 = "2"
    B3 = "3"
    B4 = "4"
    B4A = "4A"
    B4B = "4B"
    B4C = "4C"
    B5 = "5"

    @property
    def coarse(self) -> Birads:
        """4A/4B/4C -> 4; every other category is its own coarse category."""
        return Birads.B4 if is_subcategory_of_4(self) else self

    @property
    def order(self) -> int:
        return ORDER.index(self)


class Pathology(StrEnum):
    BENIGN = "benign"
    MALIGNANT = "malignant"
    NORMAL = "normal"


class Reading(StrEnum):
    """What a category says about malignancy, for screening (binary) metrics."""

    BENIGN = "benign"
    MALIGNANT = "malignant"


ORDER: tuple[Birads, ...] = tuple(Birads)

# Label spaces a model can be trained on (the model config names one of them).
FULL_SPACE = (Birads.B1, Birads.B2, Birads.B3, Birads.B4A, Birads.B4B, Birads.B4C, Birads.B5)
FIVE_WAY_SPACE = (Birads.B1, Birads.B2, Birads.B3, Birads.B4, Birads.B5)
NO_4_SPACE = (Birads.B1, Birads.B2, Birads.B3, Birads.B5)

_PREFIX = re.compile(r"^(BI[\s\-_]*RADS|CATEGORY|CAT\.?)[\s:#\-_]*")
_CODE = re.compile(r"^([1-5])([ABC]?)$")
_OUT_OF_SCOPE = {
    "0": "BI-RADS 0 means the assessment is incomplete",
    "6": "BI-RADS 6 means known biopsy-proven malignancy",
}
_ACCEPTED = "1, 2, 3, 4, 4A, 4B, 4C, 5 (also '4a', 'BI-RADS 4b', integers)"


def parse_birads(value: object) -> Birads:
    """Parse the spellings real sources use: 4, '4', '4a', '4B', 'BI-RADS 4b', 4.0."""
    if isinstance(value, Birads):
        return value
    text = _as_text(value)
    norm = _PREFIX.sub("", text.strip().upper()).replace(" ", "")
    if norm.endswith(".0"):
        norm = norm[:-2]
    match = _CODE.match(norm)
    if match is None or (match.group(2) and match.group(1) != "4"):
        reason = _OUT_OF_SCOPE.get(norm, f"accepted: {_ACCEPTED}")
        raise UnknownBiradsError(f"unknown BI-RADS label {value!r} ({reason})")
    return Birads(match.group(1) + match.group(2))


def _as_text(value: object) -> str:
    if isinstance(value, bool) or value is None:
        raise UnknownBiradsError(f"unknown BI-RADS label {value!r} (accepted: {_ACCEPTED})")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        as_float = float(value)
        if math.isfinite(as_float) and as_float.is_integer():
            return str(int(as_float))
        raise UnknownBiradsError(f"unknown BI-RADS label {value!r} (accepted: {_ACCEPTED})")
    if isinstance(value, str):
        return value
    raise UnknownBiradsError(f"unknown BI-RADS label {value!r} (accepted: {_ACCEPTED})")


def parse_pathology(value: object) -> Pathology:
    text = str(value).strip().lower() if value is not None else ""
    try:
        return Pathology(text)
    except ValueError:
        accepted = ", ".join(p.value for p in Pathology)
        raise ValueError(f"unknown pathology {value!r} (accepted: {accepted})") from None


def is_subcategory_of_4(category: Birads) -> bool:
    return category in (Birads.B4A, Birads.B4B, Birads.B4C)


def reading(category: Birads, *, plain_4: Reading = Reading.MALIGNANT) -> Reading:
    """Benign/malignant reading: 1-3 and 4A benign, 4B/4C/5 malignant.

    Plain 4 (no subcategory, as in BUS-BRA) is ambiguous: 4A leans benign, 4B/4C malignant.
    The caller decides and should state its choice next to any metric it reports.
    """
    if category is Birads.B4:
        return plain_4
    if category in (Birads.B4B, Birads.B4C, Birads.B5):
        return Reading.MALIGNANT
    return Reading.BENIGN
