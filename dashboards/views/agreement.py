"""Agreement: Fleiss' kappa per round, pairwise Cohen's kappa, the most disputed images."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboards import charts, data, drawing
from db.agreement import kappa_text
from db.reports.agreement import DisputedImage

ALL_ROUNDS = "all rounds"
DISPUTED_SHOWN = 12


def choose_round(fleiss: list[dict[str, Any]]) -> int | None:
    options: list[int | None] = [None, *(int(row["round"]) for row in fleiss)]
    return st.selectbox(
        "Round",
        options,
        format_func=lambda r: ALL_ROUNDS if r is None else f"round {r}",
        key="agreement_round",
    )


def fleiss_section(fleiss: list[dict[str, Any]]) -> None:
    """Kappas as `labeler sync` prints them: three decimals, or n/a and why (db.agreement)."""
    st.subheader("Fleiss' kappa per round")
    rows = [
        {
            **row,
            "Fleiss' kappa": kappa_text(
                row["Fleiss' kappa"], images=row["images"], readers=row["readers per image"]
            ),
        }
        for row in fleiss
    ]
    st.dataframe(rows, hide_index=True)


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
    rows = [{**p, "kappa": kappa_text(p["kappa"], images=p["images"])} for p in pairs]
    st.dataframe(rows, hide_index=True)


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
