"""Similar confirmed lesions in a prediction: machine-readable matches and the reader's text.

Label Studio keeps only a prediction's `result` list, so the matches travel in two forms:
- `similar_payload`: ids, categories and distances under the prediction's `similar` key, for
  API callers (Label Studio drops that key);
- `similar_region`: a read-only TextArea result ("Similar confirmed lesions: #123 BI-RADS 4A
  malignant d=0.12; ...") that readers see, with the same matches in its `meta`, so they also
  reach Label Studio's exports.
Label Studio refuses a whole prediction whose result names a control its project lacks, so the
region is only added for a label config that declares the TextArea (`declares_similar`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from label_studio_sdk.label_interface.control_tags import TextAreaTag

from ml_backend.encoder.index import Match
from ml_backend.studio.format import label_interface
from ml_backend.studio.schema import (
    IMAGE,
    SIMILAR,
    SimilarMatch,
    SimilarPayload,
    TextAreaRegion,
    TextValue,
)

TITLE = "Similar confirmed lesions"


def similar_match(match: Match) -> SimilarMatch:
    """One match as sent: public ids only (never the patient or lesion key)."""
    row = match.row
    return SimilarMatch(
        rank=match.rank,
        image_id=row.image_id,
        dataset=row.dataset,
        source_id=row.source_id,
        birads=row.birads.value if row.birads is not None else None,
        pathology=row.pathology.value if row.pathology is not None else None,
        distance=round(match.distance, 4),
        same_lesion=match.same_lesion,
        label=row.origin.value,
    )


def similar_payload(matches: Sequence[Match], *, encoder_version: str) -> SimilarPayload:
    return SimilarPayload(
        encoder_version=encoder_version, matches=[similar_match(m) for m in matches]
    )


def similar_text(matches: Sequence[Match]) -> str:
    """One line a reader can scan: image id, category, pathology, distance per match."""
    if not matches:
        return f"{TITLE}: none indexed yet."
    parts = []
    for m in matches:
        name = f"#{m.row.image_id}" + (f" {m.row.source_id}" if m.row.source_id else "")
        if m.same_lesion:
            name += " (same lesion, other view)"
        birads = f"BI-RADS {m.row.birads.value}" if m.row.birads is not None else "BI-RADS ?"
        pathology = f" {m.row.pathology.value}" if m.row.pathology is not None else ""
        parts.append(f"{name} {birads}{pathology} d={m.distance:.3f}")
    return f"{TITLE}: " + "; ".join(parts)


def similar_region(matches: Sequence[Match], *, encoder_version: str) -> TextAreaRegion:
    """A read-only TextArea result for the `similar` control of the label config."""
    return TextAreaRegion(
        value=TextValue(text=[similar_text(matches)]),
        meta=similar_payload(matches, encoder_version=encoder_version),
    )


def declares_similar(label_config: str | None) -> bool:
    """Whether a project's label config has our `similar` TextArea on the image.

    The config comes from the caller: one declaring a DTD or entities is not parsed at all.
    """
    if not label_config or "<!doctype" in label_config.lower():
        return False
    return _declares(label_config)


@lru_cache(maxsize=16)  # Label Studio sends its project's config with every /predict
def _declares(label_config: str) -> bool:
    try:
        control = label_interface(label_config).get_control(SIMILAR)  # type: ignore[no-untyped-call]
    except Exception:  # not XML, or no such control: Label Studio's parser raises its own kinds
        return False
    return isinstance(control, TextAreaTag) and IMAGE in (control.to_name or [])
