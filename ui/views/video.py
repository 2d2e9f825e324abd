"""Video page: the whole timeline of any scored video, with its events if it has any; open any of them."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.data import ReviewDB
from ui.views.common import masked, md, open_event, selected_points, status_label, timeline_figure


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
    picked = st.plotly_chart(fig, key="video-timeline", width="stretch", on_select="rerun", selection_mode="points")
    points = selected_points(picked)
    if points and points[0].get("x") is not None:  # a click on the timeline plays from that moment
        st.session_state[state.VIDEO_AT] = float(points[0]["x"])
    _player(db, video_id, events, tl, st.session_state.get(state.VIDEO_AT) if tuple(target or ()) == (run_id, video_id) else None)
    for i, e in enumerate(events):
        c = st.columns([3, 2, 2, 1, 1])
        c[0].write(f"{md(e['clock'] or '')} · {e['start_s']:.1f}–{e['end_s']:.1f} s · peak {e['peak_score']:.2f}")
        c[1].write(md(e["category"]))
        c[2].write(status_label(e["status"]))
        c[3].button("Play", key=f"video-play-{i}", on_click=_play_at, args=(run_id, video_id, max(0.0, e["start_s"] - 2)))
        c[4].button("Open", key=f"video-open-{i}", on_click=open_event, args=(e["key"],))
    st.session_state[state.SNAPSHOT] = db.version()


PLAYABLE = {".mp4", ".m4v", ".webm", ".mov", ".ogv"}  # what browsers play as they are; anything else is cut as H.264


def _play_at(run_id: str, video_id: str, t: float) -> None:
    st.session_state[state.VIDEO] = (run_id, video_id)
    st.session_state[state.VIDEO_AT] = t


def _player(db: ReviewDB, video_id: str, events: list[dict], tl: dict, at: float | None) -> None:
    """The video from ``at`` (a clicked moment, an event's Play, a search result): a recorded file
    the store names, as it is or cut as H.264 from there; a live feed, its stored clip of the event
    at (or after) that moment."""
    at = float(at or 0.0)
    path = db.media_path(video_id)
    if path is not None:
        st.caption(f"playing from {at:.1f} s (click the timeline to play from another moment)")
        if path.suffix.lower() in PLAYABLE:
            st.video(str(path), start_time=int(at))
            return
        from ui.views.event import _clip

        try:
            clip = _clip(str(path), path.stat().st_mtime_ns, at, at + 20.0, at, tl["duration_s"])
        except Exception as e:  # noqa: BLE001 - a file that no longer decodes: said, the page goes on
            st.warning(f"{md(e)}; the timeline and events are still shown.")
            return
        st.video(clip.data, format="video/mp4")
        return
    clips = [(e, db.stored_media(e["clip_path"])) for e in events]
    clips = [(e, c) for e, c in clips if c is not None]
    chosen = next(((e, c) for e, c in clips if e["end_s"] >= at), clips[-1] if clips else None)
    if chosen is None:
        st.caption("no recording to play: " + ("a live feed keeps clips of its events only" if video_id.startswith("live-")
                                               else "the file the store names is not there any more"))
        return
    e, c = chosen
    st.caption(f"a live feed keeps its events' clips: playing event {e['event']} ({e['clip_start_s']:.1f}–{e['clip_end_s']:.1f} s)")
    st.video(str(c), format="video/mp4")
