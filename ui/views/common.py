"""Small pieces shared by the views: escaping, navigation callbacks, labels, the score timeline plot.

Everything that comes from data (captions, categories, file names, reviewers' names and notes) is
written into Markdown through ``md`` and into Plotly text through ``html.escape``: a memory is a
shareable file, so a caption must never be able to add a link, an image, a form or a script to
the page.  No view passes data through ``unsafe_allow_html``.
"""

from __future__ import annotations

import html
import re

import plotly.graph_objects as go
import streamlit as st

from flashback.errors import masked
from ui import state
from ui.data import VERDICTS

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=\"'^])")


_AUTOLINK = re.compile(r"(?i)(://|\bwww\.|@)")
_WORD_JOINER = "\u2060"  # invisible and unbreakable: "http:\u2060//x" reads as the URL but is no link


def md(value) -> str:
    """Data as literal text inside Markdown: every character Markdown (or Streamlit's extensions
    to it: colours, icons, LaTeX) could read as syntax is backslash-escaped, and the spots where
    GFM would turn bare text into a link (``://``, ``www.``, ``@``) get an invisible word joiner,
    since escaping does not stop that; line breaks become spaces; a URL's password is masked (a
    store written before passwords were masked may still hold one)."""
    text = " ".join(masked(value).splitlines())
    text = _AUTOLINK.sub(lambda m: m.group(1)[0] + _WORD_JOINER + m.group(1)[1:], text)
    return _MD_SPECIAL.sub(r"\\\1", text)


def status_label(status: str) -> str:
    return "Pending" if status == "pending" else VERDICTS.get(status, status)


def open_event(key: str) -> None:
    st.session_state[state.EVENT] = key
    st.session_state[state.VIEW] = "Event"


def open_video(run_id: str, video_id: str) -> None:
    st.session_state[state.VIDEO] = (run_id, video_id)
    st.session_state.pop(state.VIDEO_AT, None)
    st.session_state[state.VIEW] = "Video"


def selected_points(picked) -> list[dict]:
    """The points a click selected on a chart drawn with ``on_select="rerun"`` (Streamlit answers a
    PlotlyState, a dict; anything else, such as a chart run without a session, selected nothing)."""
    return list(picked.get("selection", {}).get("points", [])) if isinstance(picked, dict) else []


def with_gaps(t, score) -> tuple[list, list]:
    """The score line with a break wherever samples are missing (a live feed's lost segments or an
    outage): more than twice the usual step between two points is a gap, not a straight line."""
    t, score = list(map(float, t)), list(map(float, score))
    if len(t) < 3:
        return t, score
    steps = sorted(b - a for a, b in zip(t, t[1:]))
    usual = steps[len(steps) // 2]
    x, y = [t[0]], [score[0]]
    for a, b, s in zip(t, t[1:], score[1:]):
        if usual > 0 and b - a > 2 * usual:
            x.append((a + b) / 2)
            y.append(None)
        x.append(b)
        y.append(s)
    return x, y


def timeline_figure(tl: dict, events: list[dict], highlight: str | None = None) -> go.Figure:
    """The score over the video, the threshold, and a band per event with its category.  The bands
    are given to Plotly in one piece: ``add_vrect`` once per event re-checked every band added
    before it, and on a video with 21 events that took 0.24 s of each 0.56 s triage step here
    (save a verdict, open the next event; 0.32 s since).  ``event_band`` is what ``add_vrect`` drew, shape and label."""
    bands = [event_band(e, e["key"] == highlight) for e in events]
    fig = go.Figure(layout=dict(shapes=[shape for shape, _ in bands], annotations=[label for _, label in bands]))
    x, y = with_gaps(tl["time_s"], tl["score"])
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="score", line=dict(width=1.6), connectgaps=False))
    fig.add_hline(y=tl["threshold"], line_dash="dot", line_color="grey", annotation_text="threshold")
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="seconds", yaxis_title="anomaly score",
                      yaxis_range=[0, 1.02], showlegend=False)
    return fig


def event_band(e: dict, this: bool) -> tuple[dict, dict]:
    """An event's band across the plot's height and its label at the band's top left."""
    shape = dict(type="rect", xref="x", yref="y domain", x0=e["start_s"], x1=e["end_s"], y0=0, y1=1,
                 line=dict(width=0), opacity=0.35 if this else 0.12, fillcolor="crimson" if this else "orange")
    label = dict(text="this event" if this else html.escape(e["category"]), showarrow=False, xref="x", yref="y domain",
                 x=e["start_s"], y=1, xanchor="left", yanchor="top")
    return shape, label
