"""False alarms per camera and per category (which camera or part of the memory to fix), and the
export of reviewed events (the Queue page exports whatever its filters show)."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.data import ReviewDB

HEADINGS = {"events": "Events", "reviewed": "Reviewed", "false_alarms": "False alarms", "confirmed": "Confirmed",
            "false_alarm_rate": "False-alarm rate"}


def _table(rows: list[dict], by: str) -> list[dict]:
    """Human column names, and the rate as a percentage ('-' before any review)."""
    return [{by.capitalize(): r[by], **{HEADINGS[k]: r[k] for k in ("events", "reviewed", "false_alarms", "confirmed")},
             HEADINGS["false_alarm_rate"]: "-" if r["false_alarm_rate"] is None else f"{r['false_alarm_rate']:.0%}"}
            for r in rows]


def render(db: ReviewDB) -> None:
    st.title("False alarms")
    by_camera, by_category = db.false_alarm_summary("camera"), db.false_alarm_summary("category")
    if not by_category:
        st.info("No flagged events yet.")
    else:
        st.caption("Cameras and categories whose events reviewers dismiss most often are where to look: a camera's "
                   "scene may need a region or an overlay; a category needs normal captions that describe what was "
                   "mistaken for it.")
        left, right = st.columns(2)
        left.subheader("By camera")
        left.dataframe(_table(by_camera, "camera"), hide_index=True, key="fa-cameras")
        right.subheader("By category")
        right.dataframe(_table(by_category, "category"), hide_index=True, key="fa-table")
    st.title("Export reviewed events")
    reviewed = db.reviewed()
    st.write(f"{len(reviewed)} reviewed event(s); the Queue page exports every event its filters show")
    c = st.columns(2)
    c[0].download_button("Download CSV", db.export_csv(), "reviewed_events.csv", "text/csv", key="export-csv")
    c[1].download_button("Download JSON", db.export_json(), "reviewed_events.json", "application/json", key="export-json")
    st.session_state[state.SNAPSHOT] = db.version()
