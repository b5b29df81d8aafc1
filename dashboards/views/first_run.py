"""First-run page: shown instead of the dashboard until the database holds images."""

from __future__ import annotations

import streamlit as st
from sqlalchemy.engine import make_url

from dashboards import data
from db.reports.database import DatabaseState, DatabaseStatus

IMPORT = "labeler import PATH --dataset busbra   # or breast-lesions-usg, or folder"

STEPS: dict[DatabaseState, tuple[str, str]] = {
    DatabaseState.MISSING: (
        "There is no database yet.",
        f"labeler demo        # database + the bundled sample\n# or: labeler init && {IMPORT}",
    ),
    DatabaseState.UNINITIALISED: (
        "The database exists but has no schema yet.",
        f"labeler init\n{IMPORT}\n# or: labeler demo",
    ),
    DatabaseState.OUTDATED: (
        "The database schema is not the one this code reads.",
        "labeler db upgrade",
    ),
    DatabaseState.EMPTY: (
        "The database is ready but holds no images yet.",
        f"labeler demo        # the bundled sample\n# or: {IMPORT}",
    ),
}


def describe(status: DatabaseStatus) -> str:
    if status.state is DatabaseState.OUTDATED:
        return f"It is at revision {status.revision}; this code expects {status.head}."
    return ""


def render() -> None:
    url = data.settings().db_url
    status = data.database_status(url)
    st.title("BI-RADS labeler")
    headline, commands = STEPS.get(status.state, ("The database is ready.", ""))
    st.subheader(headline)
    st.write(
        f"Database: `{make_url(url).render_as_string(hide_password=True)}`. {describe(status)}"
    )
    st.write("Run this from the repository root, then reload this page:")
    st.code(commands, language="bash")
    st.caption(
        "Next steps once images are in: `labeler train`, `labeler evaluate`, `labeler predict`. "
        "The dashboard only reads the database; it never creates or migrates it."
    )


render()
