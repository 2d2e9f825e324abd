"""Day: every camera on one timeline for a chosen day, each event a mark coloured by its verdict;
clicking a mark opens the event (Frigate's review timeline, for this store)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import plotly.graph_objects as go
import streamlit as st

from flashback.video.clock import wall_time
from ui import state
from ui.data import ReviewDB
from ui.views.common import open_event, selected_points, status_label

COLOURS = {"pending": "#f59e0b", "confirmed": "#dc2626", "false_alarm": "#16a34a", "unsure": "#6b7280"}


def render(db: ReviewDB) -> None:
    st.title("Day view")
    rows = [r for r in db.events() if r["started_at"] is not None]
    if not rows:
        st.info("No event with a known clock time yet (stores written before clock times were kept have none).")
        return
    moments = {r["key"]: wall_time(r["started_at"], r["start_s"]) for r in rows}
    days = sorted({t.date() for t in moments.values()})
    day: date = st.date_input("Day", value=days[-1], min_value=days[0], max_value=days[-1], key="day_pick")
    shown = [r for r in rows if moments[r["key"]].date() == day]
    st.caption(f"{len(shown)} event(s) on {day:%A %d %B %Y} across {len({r['camera'] for r in shown})} camera(s); "
               "click a mark to open it")
    if not shown:
        return
    fig = go.Figure()
    for status, colour in COLOURS.items():
        mine = [r for r in shown if r["status"] == status]
        if not mine:
            continue
        fig.add_trace(go.Scatter(
            x=[moments[r["key"]] for r in mine], y=[r["camera"] for r in mine], mode="markers", name=status_label(status),
            marker=dict(size=[8 + 14 * float(r["peak_score"]) for r in mine], color=colour, line=dict(width=1, color="white")),
            customdata=[r["key"] for r in mine],
            hovertext=[f"{r['clock']} · {r['category']} · peak {r['peak_score']:.2f}" for r in mine], hoverinfo="text"))
    start = datetime.combine(day, time.min)
    fig.update_layout(height=120 + 40 * len({r["camera"] for r in shown}), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(range=[start, start + timedelta(days=1)], title="time of day"), legend_orientation="h")
    picked = st.plotly_chart(fig, key="day-chart", on_select="rerun", selection_mode="points", width="stretch")
    points = selected_points(picked)
    if points:
        key = points[0].get("customdata")
        if key in moments:
            open_event(key)
            st.rerun()
    st.session_state[state.SNAPSHOT] = db.version()
