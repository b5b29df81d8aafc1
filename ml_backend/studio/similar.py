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

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from ml_backend.encoder.index import Match
from ml_backend.studio.format import IMAGE, SIMILAR

TITLE = "Similar confirmed lesions"


def match_dict(match: Match) -> dict[str, Any]:
    """One match as JSON: public ids only (never the patient or lesion key)."""
    row = match.row
    return {
        "rank": match.rank,
        "image_id": row.image_id,
        "dataset": row.dataset,
        "source_id": row.source_id,
        "birads": row.birads.value if row.birads is not None else None,
        "pathology": row.pathology.value if row.pathology is not None else None,
        "distance": round(match.distance, 4),
        "same_lesion": match.same_lesion,
        "label": row.origin.value,
    }


def similar_payload(matches: Sequence[Match], *, encoder_version: str) -> dict[str, Any]:
    return {"encoder_version": encoder_version, "matches": [match_dict(m) for m in matches]}


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


def similar_region(matches: Sequence[Match], *, encoder_version: str) -> dict[str, Any]:
    """A read-only TextArea result for the `similar` control of the label config."""
    return {
        "id": "similar",
        "from_name": SIMILAR,
        "to_name": IMAGE,
        "type": "textarea",
        "readonly": True,
        "value": {"text": [similar_text(matches)]},
        "meta": similar_payload(matches, encoder_version=encoder_version),
    }


def declares_similar(label_config: str | None) -> bool:
    """Whether a project's label config has our `similar` TextArea on the image."""
    if not label_config:
        return False
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError:
        return False
    return any(
        el.get("name") == SIMILAR and el.get("toName") == IMAGE for el in root.iter("TextArea")
    )
