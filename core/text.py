"""Numbers in words for captions: "1 version", "2 versions", "train 57, val 12, test 19".

Pages never put a Python value (a dict, a list, None) into text a person reads: they say it
with these, or leave the part out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

IRREGULAR = {"box": "boxes"}


def plural(count: int, noun: str) -> str:
    """'1 image', '2 images', '0 images'; the last word of `noun` takes the plural."""
    if count == 1:
        return f"{count} {noun}"
    head, _, last = noun.rpartition(" ")
    many = IRREGULAR.get(last, f"{last}s")
    return f"{count} {head} {many}" if head else f"{count} {many}"


def counts(by_name: Mapping[str, int], order: Iterable[str] = ()) -> str:
    """'train 57, val 12, test 19': names in `order` first, then the rest by name."""
    first = [name for name in order if name in by_name]
    rest = sorted(name for name in by_name if name not in first)
    return ", ".join(f"{name} {by_name[name]}" for name in [*first, *rest])


def number(value: float | None, *, digits: int = 3) -> str:
    """A rate or score with `digits` decimals; '-' where there is none."""
    return "-" if value is None else f"{value:.{digits}f}"
