"""Feeds: each live feed's health at a glance (up or down, last update, drops and latency against its
budget, outages), red where the machine is not keeping up with it."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.data import ReviewDB
from ui.views.common import md


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def _s(x) -> str:
    return "-" if x is None else f"{x:.2f} s"


def render(db: ReviewDB) -> None:
    st.title("Feeds")
    feeds = db.feeds()
    if not feeds:
        st.info("No live feed has been watched into this store (flashback watch --db ...).")
        return
    over = [f for f in feeds if f["over_budget"] or f["state"] == "down"]
    if over:
        st.error("Not covered as configured: " + ", ".join(md(f["feed"]) for f in over)
                 + ". Dropped samples are moments nobody scored: watch fewer feeds, use the fast preset or bf16, or a GPU.")
    for f in feeds:
        c = st.columns([2, 1.2, 2.2, 1.6, 2.2, 1.2], vertical_alignment="center")
        icon = {"up": ":green[●]", "down": ":red[●]", "stopped": ":gray[●]"}[f["state"]]
        c[0].markdown(f"{icon} **{md(f['feed'])}**")
        c[1].write(f["state"])
        c[2].caption(f"updated {f['updated_at']:%Y-%m-%d %H:%M:%S}")
        drops = f"dropped {_pct(f['window_drop_share'])} now, {_pct(f['drop_share'])} overall"
        (c[3].error if f["over_budget"] else c[3].write)(drops)
        latency = f"p95 latency {_s(f['window_latency_p95_s'])} (budget {_s(f['latency_budget_s'])})"
        (c[4].error if f["over_budget"] else c[4].write)(latency)
        c[5].write(f"{f['outages']} outage(s)")
    st.session_state[state.SNAPSHOT] = db.version()
