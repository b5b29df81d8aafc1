"""Image browser: an image with its reference, predicted and reader boxes, by category and status.

Images are named by their database id only: never a patient key or a source file name.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from core.text import plural
from dashboards import data, drawing, prelabels
from db.reports.images import BoxSet, ImageDetail, ImageListing, categories_in_order
from db.reports.progress import ImageStatus

NO_REFERENCE = "no reference"
MAX_CHOICES = 1000


def filtered(listing: ImageListing) -> list[int]:
    """Ids passing the sidebar filters: reference category, status, dataset (empty: all)."""
    categories: list[str | None] = [*categories_in_order(listing.birads)]
    if None in listing.birads:
        categories.append(None)
    present = set(listing.status)
    with st.sidebar:
        birads = st.multiselect(
            "BI-RADS (reference)",
            categories,
            format_func=lambda c: NO_REFERENCE if c is None else c,
            key="f_birads",
        )
        status = st.multiselect("Status", [s for s in ImageStatus if s in present], key="f_status")
        datasets = st.multiselect("Dataset", sorted(set(listing.dataset)), key="f_ds")
    return listing.matching(birads=birads, status=status, dataset=datasets)


def boxes_records(box_sets: list[BoxSet]) -> list[dict[str, Any]]:
    """One row per drawn box; `label` is what is written by it on the image."""
    return [
        {
            "source": s.source,
            "by": s.name,
            "label": drawing.label(s, box),
            "image BI-RADS": s.birads,
            "box BI-RADS": box.birads.value if box.birads is not None else None,
            "score": box.score,
            "P(malignant)": box.malignancy,
            "x0": box.xyxy[0],
            "y0": box.xyxy[1],
            "x1": box.xyxy[2],
            "y1": box.xyxy[3],
            "detail": s.detail,
        }
        for s in box_sets
        for box in s.boxes
    ]


def prelabel(detail: ImageDetail, column: DeltaGenerator) -> list[BoxSet]:
    """One model version's pre-label (newest first) as readers were shown it; the boxes they
    were not shown only behind the toggle."""
    models = [s for s in detail.box_sets if s.source == prelabels.MODEL]
    if not models:
        return []
    names = [m.name for m in models]
    version = column.selectbox("pre-label of", names, key=f"model_{detail.image_id}")
    raw = column.toggle("all model boxes (raw)", value=False, key="raw_boxes")
    chosen = next(m for m in models if m.name == version)
    shown_by = prelabels.rule(data.settings())
    shown, hidden = prelabels.split(chosen, shown_by)
    st.caption(
        f"Pre-label of {version}: BI-RADS {shown.birads}, from the "
        f"{plural(len(shown.boxes), 'box')} shown to readers ({prelabels.rule_text(shown_by)})"
        + (
            f"; {plural(len(hidden.boxes), 'more box')} with the toggle."
            if hidden.boxes and not raw
            else "."
        )
    )
    return [shown, hidden] if raw else [shown]


def chosen_sets(detail: ImageDetail) -> list[BoxSet]:
    """Reference, the pre-label and the chosen readers."""
    refs = [s for s in detail.box_sets if s.source == "reference"]
    readers = [s for s in detail.box_sets if s.source == "reader"]
    left, middle, right = st.columns(3)
    shown = refs if left.checkbox("reference boxes", value=True, key="show_ref") else []
    shown += prelabel(detail, middle)
    reader_names = sorted({r.name for r in readers})
    picked = right.multiselect(  # keyed per image: another image starts with all its readers
        "readers", reader_names, default=reader_names, key=f"readers_{detail.image_id}"
    )
    return shown + [r for r in readers if r.name in picked]


def show(detail: ImageDetail) -> None:
    sets = chosen_sets(detail)
    home = data.settings().home
    image, found = drawing.load(home, detail.png_path, size=(detail.width, detail.height))
    caption = f"image {detail.image_id} · {detail.dataset} · {detail.split}"
    if not found:
        caption += " · PNG not found under LABELER_HOME: boxes on a blank canvas"
    st.image(drawing.draw(image, sets), caption=caption)
    st.caption(
        "green: reference · orange: pre-label as readers saw it (category, score) · "
        "light orange: boxes readers were not shown · other colours: readers"
    )
    records = boxes_records(sets)
    if records:
        st.dataframe(records, hide_index=True)
    else:
        st.info("No boxes from the chosen sources.")


def render() -> None:
    url = data.settings().db_url
    st.title("Image browser")
    matches = filtered(data.image_listing(url))
    st.caption(
        f"{plural(len(matches), 'image')} {'matches' if len(matches) == 1 else 'match'} "
        "the filters."
    )
    if not matches:
        return
    ids = matches[:MAX_CHOICES]
    if len(matches) > MAX_CHOICES:
        st.caption(f"The first {MAX_CHOICES} are listed; narrow the filters to reach the rest.")
    image_id = st.selectbox("Image", ids, key="image_id")
    detail = data.image_detail(url, image_id) if image_id is not None else None
    if detail is None:
        st.warning("That image is gone; reload the page.")
        return
    show(detail)


render()
