"""Similar lesions: an image's lesion crop beside its nine most similar confirmed lesions.

Reads the active encoder's index (`labeler encoder index`), where the matches are already
ranked; images are named by database id and public source id, never by patient or lesion key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from dashboards import data, neighbours
from dashboards.neighbours import NeighbourTable
from db.lesion_boxes import CropSource

COLUMNS = 3
NO_ENCODER = (
    "No lesion encoder is active yet, so there is nothing to compare. Train one "
    "(`labeler encoder train`), promote it, then build its index: `labeler encoder index`."
)


def load_table() -> NeighbourTable | None:
    """The active encoder's index, or a message saying what to run (None)."""
    settings = data.settings()
    encoder = data.active_model(settings.db_url, neighbours.ENCODER_KIND)
    if encoder is None:
        st.info(NO_ENCODER)
        return None
    path = neighbours.index_file(settings.home, encoder)
    if not path.is_file():
        st.info(f"Encoder {encoder} has no similar-lesion index yet: run `labeler encoder index`.")
        return None
    try:
        return data.neighbour_table(str(path), path.stat().st_mtime_ns)
    except (neighbours.UnreadableIndex, OSError, KeyError, ValueError) as exc:
        st.warning(f"The index of {encoder} could not be read ({exc}); rebuild it.")
        return None


def name(image_id: int, sources: dict[int, CropSource]) -> str:
    source = sources.get(image_id)
    return f"{image_id} · {source.source_id}" if source and source.source_id else str(image_id)


def describe(table: NeighbourTable, row: int) -> str:
    pathology = table.pathology[row] or "pathology unknown"
    return f"BI-RADS {table.birads[row] or '?'} · {pathology}"


def crop(table: NeighbourTable, row: int, sources: dict[int, CropSource], home: Path) -> Any:
    source = sources.get(table.image_id[row])
    image = neighbours.lesion_crop(home, source.png_path, table.box[row]) if source else None
    return image if image is not None else neighbours.blank()


def grid_records(
    table: NeighbourTable, row: int, sources: dict[int, CropSource]
) -> list[dict[str, Any]]:
    return [
        {
            "rank": rank,
            "image": table.image_id[n.row],
            "source id": sources[s].source_id if (s := table.image_id[n.row]) in sources else None,
            "BI-RADS": table.birads[n.row] or None,
            "pathology": table.pathology[n.row] or None,
            "distance": round(n.distance, 4),
            "same lesion": n.same_lesion,
            "label": table.origin[n.row],
        }
        for rank, n in enumerate(table.neighbours[row], start=1)
    ]


def show(table: NeighbourTable, row: int, sources: dict[int, CropSource], home: Path) -> None:
    left, right = st.columns([1, 3])
    with left:
        st.subheader("Query")
        box = "confirmed box" if table.origin[row] != "predicted" else "pre-label's top box"
        caption = f"image {name(table.image_id[row], sources)} · {describe(table, row)} · {box}"
        st.image(crop(table, row, sources, home), caption=caption)
    with right:
        st.subheader("Most similar confirmed lesions")
        cells = st.columns(COLUMNS)
        for rank, n in enumerate(table.neighbours[row], start=1):
            same = " · same lesion" if n.same_lesion else ""
            caption = (
                f"{rank}. image {name(table.image_id[n.row], sources)} · "
                f"{describe(table, n.row)} · d={n.distance:.4f}{same}"
            )
            with cells[(rank - 1) % COLUMNS]:
                st.image(crop(table, n.row, sources, home), caption=caption)
    if table.neighbours[row]:
        st.dataframe(grid_records(table, row, sources), hide_index=True)
    else:
        st.info("No other confirmed lesion is indexed yet.")


def render() -> None:
    st.title("Similar lesions")
    table = load_table()
    if table is None:
        return
    settings = data.settings()
    built = f" · index built {table.built_at[:16].replace('T', ' ')} UTC" if table.built_at else ""
    st.caption(f"Encoder {table.encoder_version}{built}")
    rows = table.query_rows()
    ids = tuple(rows)
    listed = data.crop_sources(settings.db_url, ids)
    image_id = st.selectbox(
        "Image", ids, format_func=lambda i: name(i, listed), key="similar_image"
    )
    if image_id is None:
        st.info("The index holds no image.")
        return
    row = rows[image_id]
    shown = {table.image_id[row], *(table.image_id[n.row] for n in table.neighbours[row])}
    show(table, row, data.crop_sources(settings.db_url, tuple(sorted(shown))), settings.home)


render()
