"""Agreement: Fleiss' kappa per round, pairwise Cohen's kappa, the most disputed images."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboards import charts, data, drawing
from db.reports.agreement import DisputedImage

ALL_ROUNDS = "all rounds"
DISPUTED_SHOWN = 12
KAPPA_FORMAT = st.column_config.NumberColumn(format="%.3f")


def choose_round(fleiss: list[dict[str, Any]]) -> int | None:
    options: list[int | None] = [None, *(int(row["round"]) for row in fleiss)]
    return st.selectbox(
        "Round",
        options,
        format_func=lambda r: ALL_ROUNDS if r is None else f"round {r}",
        key="agreement_round",
    )


def fleiss_section(fleiss: list[dict[str, Any]]) -> None:
    st.subheader("Fleiss' kappa per round")
    st.dataframe(fleiss, hide_index=True, column_config={"Fleiss' kappa": KAPPA_FORMAT})


def cohen_section(url: str, review_round: int | None) -> None:
    st.subheader("Pairwise Cohen's kappa")
    pairs = data.pairwise_cohen(url, review_round)
    if not pairs:
        st.info("Cohen's kappa needs at least two readers.")
        return
    both_ways = [
        *pairs,
        *({**p, "reader_a": p["reader_b"], "reader_b": p["reader_a"]} for p in pairs),
    ]
    st.altair_chart(charts.kappa_heatmap([p for p in both_ways if p["kappa"] is not None]))
    st.dataframe(pairs, hide_index=True, column_config={"kappa": KAPPA_FORMAT})


def disputed_card(item: DisputedImage) -> None:
    thumb = drawing.thumbnail(data.settings().home, item.png_path)
    if thumb is None:
        st.caption("(PNG not found under LABELER_HOME)")
    else:
        st.image(thumb)
    readings = ", ".join(f"{r.reader}: {r.birads or '-'} ({r.verdict})" for r in item.readings)
    st.caption(f"image {item.image_id} · round {item.review_round} · score {item.score}")
    st.caption(readings)


def disputed_section(url: str, review_round: int | None) -> None:
    st.subheader("Most disputed images")
    items = data.disputed_images(url, review_round, DISPUTED_SHOWN)
    if not items:
        st.info("No disagreement among the readers.")
        return
    st.caption("Score: extra BI-RADS categories plus extra verdicts among an image's readers.")
    st.dataframe(
        [
            {
                "image": i.image_id,
                "round": i.review_round,
                "score": i.score,
                "categories": " / ".join(i.categories),
            }
            for i in items
        ],
        hide_index=True,
    )
    columns = st.columns(4)
    for index, item in enumerate(items):
        with columns[index % len(columns)]:
            disputed_card(item)


def render() -> None:
    url = data.settings().db_url
    st.title("Reader agreement")
    fleiss = data.fleiss_by_round(url)
    if not fleiss:
        st.info("No reviews yet: agreement appears once readers have cross-checked pre-labels.")
        return
    fleiss_section(fleiss)
    review_round = choose_round(fleiss)
    cohen_section(url, review_round)
    disputed_section(url, review_round)


render()
