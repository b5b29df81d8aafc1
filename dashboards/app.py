"""Dashboard entry point: `streamlit run dashboards/app.py` (what `labeler dashboard` starts).

Until the database holds images, the only page is a first-run page that says what to run.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from pydantic import ValidationError
from sqlalchemy.exc import DatabaseError, OperationalError

from dashboards import data
from db.engine import DatabaseProblem, database_problem
from db.reports.database import DatabaseState, sqlite_file

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
    except DatabaseError as exc:  # corrupt, full, locked or vanished: say so, no traceback
        st.error(database_message(exc, url))


def database_message(exc: DatabaseError, url: str) -> str:
    """What a reader can do about a database error, in words (`labeler` exits 5 or 7)."""
    found = database_problem(exc, db_file=sqlite_file(url))
    if found is not None and found[0] is DatabaseProblem.UNREACHABLE:
        return (
            f"The database server cannot be reached ({found[1]}). Check LABELER_DB_URL and that "
            "the server is up, then reload."
        )
    if found is not None and found[0] is DatabaseProblem.UNUSABLE:
        return (
            f"The database cannot be read: it is damaged or not a database ({found[1]}). "
            "Nothing was changed. Restore it from a backup, or move it aside and run "
            "`labeler init`; `labeler status` says the same."
        )
    if found is not None and found[0] is DatabaseProblem.FULL:
        return "The database cannot be read: its disk is full. Free space, then reload."
    if isinstance(exc, OperationalError):  # locked or vanished mid-read
        return f"The database could not be read just now ({exc.orig}). Reload in a moment."
    raise exc


main()
