"""Video page: the whole timeline of any scored video, with its events if it has any; open any of them."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.data import ReviewDB
from ui.views.common import masked, md, open_event, status_label, timeline_figure


def render(db: ReviewDB) -> None:
    target = st.session_state.get(state.VIDEO)
    rows = db.events()
    runs_videos = [(v["run_id"], v["video_id"], v["path"]) for v in db.scored_videos()]
    if not runs_videos:
        st.info("No scored videos yet.")
        return
    flagged = {(r["run_id"], r["video_id"]) for r in rows}
    labels = [f"{masked(p)} (run {r[:8]})" + ("" if (r, v) in flagged else " · no events") for r, v, p in runs_videos]
    idx = next((i for i, (r, v, _) in enumerate(runs_videos) if (r, v) == tuple(target or ())), 0)
    choice = st.selectbox("Video", range(len(labels)), index=idx, format_func=lambda i: labels[i], key="video_pick")
    run_id, video_id, path = runs_videos[choice]
    tl = db.timeline(run_id, video_id)
    events = db.video_events(rows, run_id, video_id)
    st.header(md(path.rsplit("/", 1)[-1]))
    rate = "a live feed" if video_id.startswith("live-") else "unknown frame rate"
    rate = f"{tl['fps']:.1f} FPS" if tl["fps"] else rate
    st.caption(f"{tl['duration_s'] or 0:.1f} s at {rate} · {len(events)} event(s) · threshold {tl['threshold']}")
    fig = timeline_figure(tl, events)
    at = st.session_state.get(state.VIDEO_AT)
    if at is not None and tuple(target or ()) == (run_id, video_id):  # the moment a search found
        fig.add_vline(x=at, line_color="purple", line_dash="dash", annotation_text="search result")
    st.plotly_chart(fig, key="video-timeline", width="stretch")
    for i, e in enumerate(events):
        c = st.columns([3, 2, 2, 1])
        c[0].write(f"{e['start_s']:.1f}–{e['end_s']:.1f} s · peak {e['peak_score']:.2f}")
        c[1].write(md(e["category"]))
        c[2].write(status_label(e["status"]))
        c[3].button("Open", key=f"video-open-{i}", on_click=open_event, args=(e["key"],))
    st.session_state[state.SNAPSHOT] = db.version()
