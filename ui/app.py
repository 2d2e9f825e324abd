"""Flashback review app: ``flashback review --db results.duckdb`` (Streamlit).

Pages only render; queries live in ui/data.py and state keys in ui/state.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `ui` importable under `streamlit run`

from ui import state  # noqa: E402
from ui.data import ReviewDB  # noqa: E402
from ui.views import day, event, feeds, queue, search, summary, video  # noqa: E402
from ui.views.common import md  # noqa: E402

st.set_page_config(page_title="Flashback review", layout="wide")
db = ReviewDB.from_env()
problem = db.problem()
if problem:
    st.title("Flashback review")
    st.error(md(problem))
    st.stop()


@st.fragment(run_every=10)
def staleness() -> None:
    """Polls the store; says so when scorings or verdicts arrived after this view was drawn."""
    seen = st.session_state.get(state.SNAPSHOT)
    try:
        now = db.version()
    except Exception:
        st.caption("Database busy (a scoring run is writing); will retry.")
        return
    if seen is not None and now != seen:
        st.warning("New results were stored since this view was drawn.")
        if st.button("Reload", key="reload"):
            st.rerun()
    else:
        st.caption(f"Database: {md(db.path)}")


state.from_url()
with st.sidebar:
    st.radio("View", state.VIEWS, key=state.VIEW)
    staleness()

{"Queue": queue.render, "Day": day.render, "Event": event.render, "Video": video.render, "Search": search.render, "Feeds": feeds.render,
 "False alarms & export": summary.render}[st.session_state[state.VIEW]](db)
state.to_url()
