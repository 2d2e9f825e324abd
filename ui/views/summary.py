"""False alarms per category (which part of the memory to fix) and the export of reviewed events."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.data import ReviewDB


def render(db: ReviewDB) -> None:
    st.title("False alarms by category")
    summary = db.false_alarm_summary()
    if not summary:
        st.info("No flagged events yet.")
    else:
        st.caption("Categories whose events reviewers dismiss most often are where the memory needs work: "
                   "add normal captions that describe what was mistaken for them.")
        st.dataframe(summary, hide_index=True, key="fa-table")
    st.title("Export reviewed events")
    reviewed = db.reviewed()
    st.write(f"{len(reviewed)} reviewed event(s)")
    c = st.columns(2)
    c[0].download_button("Download CSV", db.export_csv(), "reviewed_events.csv", "text/csv", key="export-csv")
    c[1].download_button("Download JSON", db.export_json(), "reviewed_events.json", "application/json", key="export-json")
    st.session_state[state.SNAPSHOT] = db.version()
