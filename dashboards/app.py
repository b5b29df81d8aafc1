"""Dashboard entry point: `streamlit run dashboards/app.py` (what `labeler dashboard` starts).

Until the database holds images, the only page is a first-run page that says what to run.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from dashboards import data
from db.reports import DatabaseState

VIEWS = Path(__file__).resolve().parent / "views"
PAGES = (
    ("progress.py", "Progress", ":material/timeline:"),
    ("agreement.py", "Agreement", ":material/groups:"),
    ("models.py", "Models", ":material/account_tree:"),
    ("evaluation.py", "Evaluation", ":material/grid_on:"),
    ("images.py", "Images", ":material/image_search:"),
    ("similar.py", "Similar lesions", ":material/compare:"),
)


def pages(state: DatabaseState) -> list[st.Page]:
    if state is not DatabaseState.READY:
        return [st.Page(VIEWS / "first_run.py", title="Get started", icon=":material/flag:")]
    return [st.Page(VIEWS / name, title=title, icon=icon) for name, title, icon in PAGES]


def main() -> None:
    st.set_page_config(
        page_title="BI-RADS labeler", page_icon=":material/monitoring:", layout="wide"
    )
    try:
        url = data.settings().db_url
    except ValidationError as exc:
        st.error(f"The LABELER_* settings are invalid, so there is no database to read:\n\n{exc}")
        return
    try:
        status = data.database_status(url)
        st.navigation(pages(status.state)).run()
    except OperationalError as exc:  # locked or vanished mid-read: say so, no traceback
        st.error(f"The database could not be read just now ({exc.orig}). Reload in a moment.")


main()
