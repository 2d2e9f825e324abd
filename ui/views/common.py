"""Small pieces shared by the views: navigation callbacks, labels, the score timeline plot."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from ui import state
from ui.data import VERDICTS


def status_label(status: str) -> str:
    return "Pending" if status == "pending" else VERDICTS.get(status, status)


def open_event(key: str) -> None:
    st.session_state[state.EVENT] = key
    st.session_state[state.VIEW] = "Event"


def open_video(run_id: str, video_id: str) -> None:
    st.session_state[state.VIDEO] = (run_id, video_id)
    st.session_state[state.VIEW] = "Video"


def timeline_figure(tl: dict, events: list[dict], highlight: str | None = None) -> go.Figure:
    fig = go.Figure()
    for e in events:
        this = e["key"] == highlight
        fig.add_vrect(x0=e["start_s"], x1=e["end_s"], line_width=0, opacity=0.35 if this else 0.12,
                      fillcolor="crimson" if this else "orange",
                      annotation_text=("this event" if this else e["category"]), annotation_position="top left")
    fig.add_trace(go.Scatter(x=tl["time_s"], y=tl["score"], mode="lines", name="score", line=dict(width=1.6)))
    fig.add_hline(y=tl["threshold"], line_dash="dot", line_color="grey", annotation_text="threshold")
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="seconds", yaxis_title="anomaly score",
                      yaxis_range=[0, 1.02], showlegend=False)
    return fig
