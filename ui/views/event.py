"""Event page: timeline, key frames, clip, explanation, and the reviewer's verdict."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from flashback.errors import FlashbackError
from flashback.video.media import MediaError, event_clip, key_frames
from ui import state
from ui.data import VERDICTS, EventKey, ReviewDB
from ui.views.common import md, open_event, open_video, status_label, timeline_figure


def _save(db: ReviewDB, key: EventKey, end_frame: int, verdict: str, next_key: str | None = None) -> None:
    reviewer = st.session_state.get(state.REVIEWER, "")
    try:
        adapted = db.save_verdict(key, end_frame, verdict, reviewer, st.session_state.get("note", ""))
        st.session_state["saved"] = f"Saved: {VERDICTS[verdict]} by {md(reviewer.strip())}"
        st.session_state["adapted"] = adapted
        st.session_state[state.SNAPSHOT] = db.version()  # our own write is not news
        st.session_state["note"] = ""
        if next_key is not None and st.session_state.get(state.AUTO_NEXT, True):
            open_event(next_key)  # triage: the next pending event, without a click
    except FlashbackError as e:
        st.session_state["saved"] = f"Not saved: {md(e)}"


def _undo(db: ReviewDB, key: EventKey) -> None:
    try:
        n = db.undo_adaptation(key)
        st.session_state["saved"] = f"Undone: this event's exemplars left {n} overlay(s); the verdict stays"
    except FlashbackError as e:
        st.session_state["saved"] = f"Not undone: {md(e)}"


def render(db: ReviewDB) -> None:
    queue = db.events()
    if not queue:
        st.info("No flagged events yet.")
        return
    keys = [r["key"] for r in queue]
    current = st.session_state.get(state.EVENT)
    if current not in keys:
        current = keys[0]
        st.session_state[state.EVENT] = current
    i = keys.index(current)
    ev = queue[i]
    key = EventKey.decode(current)

    nav = st.columns([1, 1, 6])
    nav[0].button("← Previous", key="prev", disabled=i == 0, shortcut="p", on_click=open_event, args=(keys[max(0, i - 1)],))
    nav[1].button("Next →", key="next", disabled=i == len(keys) - 1, shortcut="n",
                  on_click=open_event, args=(keys[min(len(keys) - 1, i + 1)],))
    nav[2].caption(f"Event {i + 1} of {len(keys)} · keys: n next, p previous, y confirm, x false alarm, u unsure")

    when = ev["clock"] or f"{ev['start_s']:.1f} s"
    st.header(f"{md(ev['category'])} · {md(ev['camera'])} · {md(when)}")
    st.caption(f"{md(ev['name'])} · {ev['start_s']:.1f}–{ev['end_s']:.1f} s into the "
               + ("feed" if ev["feed"] else "video"))
    _verdict(db, ev, key, next_pending(queue, i))
    st.write(f"Peak score **{ev['peak_score']:.2f}** at {ev['peak_s']:.1f} s · status {status_label(ev['status'])}")
    tl = db.timeline(ev["run_id"], ev["video_id"])
    st.plotly_chart(timeline_figure(tl, db.video_events(queue, ev["run_id"], ev["video_id"]), highlight=current),
                    key="timeline", width="stretch")
    st.button("Whole video", key="to-video", on_click=open_video, args=(ev["run_id"], ev["video_id"]))

    left, right = st.columns([3, 2])
    with left:
        _show_media(db, ev, tl["duration_s"])
    with right:
        st.subheader("Why it was flagged")
        aw, nw = ev["anomalous_weight"], ev["normal_weight"]
        st.write(f"Retrieval weight: anomalous **{aw:.2f}** vs normal **{nw:.2f}**"
                 + (" — close call, the memory is split" if abs(aw - nw) < 0.2 else ""))
        a_col, n_col = st.columns(2)
        for col, label, title in ((a_col, "anomalous", "Anomalous captions"), (n_col, "normal", "Normal captions")):
            col.markdown(f"**{title}**")
            side = [c for c in ev["captions"] if c["label"] == label]
            if not side:
                col.caption("none among the strongest captions")
            for c in side:
                col.markdown(f"- {md(c['text'])}")
                col.caption(f"{md(c['category'])} · sim {c['similarity']:.3f} · weight {c['weight']:.2f}")

    held = db.adaptation(key)
    if held is not None and "problem" in held:
        st.warning(f"{md(held['problem'])}: this camera's verdicts are not used when it is scored")
    elif held is not None:
        c = st.columns([4, 1])
        c[0].caption(f"Learned: {held['exemplars']} exemplar(s) of this event in the overlay of {md(held['camera'])} "
                     f"({VERDICTS.get(held['verdict'], held['verdict'])} by {md(held['reviewer'])})")
        c[1].button("Undo learning", key="undo-adapt", on_click=_undo, args=(db, key))
    history = db.history(key)
    if history:
        st.caption("History (newest first)")
        # st.table renders every cell as Markdown: names and notes go through md like all data
        st.table([{k: md(v) if isinstance(v, str) else v for k, v in h.items()}
                  | {"verdict": VERDICTS[h["verdict"]], "when": h["when"].strftime("%Y-%m-%d %H:%M:%S")} for h in history])
    st.session_state[state.SNAPSHOT] = db.version()


def next_pending(queue: list[dict], i: int) -> str | None:
    """The next event still pending after the i-th (wrapping round), None when none is."""
    order = queue[i + 1:] + queue[:i]
    return next((r["key"] for r in order if r["status"] == "pending"), None)


def _verdict(db: ReviewDB, ev: dict, key: EventKey, next_key: str | None) -> None:
    """The verdict controls, at the top of the page (triage needs no scrolling): reviewer (kept in
    the page's URL, so a bookmark remembers it), note, the three verdicts with their keys."""
    c = st.columns([2, 3, 1.2, 1.2, 1.2], vertical_alignment="bottom")
    c[0].text_input("Reviewer", key=state.REVIEWER, on_change=state.to_url)
    c[1].text_input("Note", key="note")
    for col, (verdict, label), sc in zip(c[2:], VERDICTS.items(), ("y", "x", "u")):
        col.button(label, key=f"verdict-{verdict}", shortcut=sc, on_click=_save, args=(db, key, ev["end_frame"], verdict, next_key),
                   type="primary" if verdict == "confirmed" else "secondary", width="stretch")
    st.toggle("After a verdict, open the next pending event", key=state.AUTO_NEXT)
    if st.session_state.get("saved"):
        said = st.session_state.pop("saved")
        (st.error if said.startswith("Not saved") else st.success)(said)
        if st.session_state.get("adapted"):
            st.caption(md(st.session_state.pop("adapted")))


@st.cache_data(max_entries=16, show_spinner="Cutting the event's clip…")
def _clip(path: str, mtime_ns: int, start_s: float, end_s: float, peak_s: float, duration_s: float | None):
    """One event's clip, cut once per file version (the mtime is in the key)."""
    return event_clip(Path(path), start_s, end_s, peak_s, duration_s)


def _show_media(db: ReviewDB, ev: dict, duration_s: float | None) -> None:
    """The stored clip and key frames from the recording; a clip cut now from the source file when
    the store kept none; or one line saying why there is nothing to show."""
    clip = db.stored_media(ev["clip_path"])
    path = db.media_path(ev["video_id"])
    if path is not None:
        times = [ev["peak_s"] + d for d in (-2, -1, 0, 1, 2) if 0 <= ev["peak_s"] + d <= (duration_s or 0)]
        try:
            frames = key_frames(path, times)
        except MediaError as e:
            st.warning(f"{md(e)}; scores and captions are still shown.")
            frames = []
        if frames:
            cols = st.columns(len(frames))
            for col, (t, img) in zip(cols, frames):
                col.image(img, caption=f"{t:.1f} s", width="stretch")
    if clip is not None:
        st.video(str(clip), format="video/mp4")
        st.caption(f"stored clip, {ev['clip_start_s']:.1f}–{ev['clip_end_s']:.1f} s"
                   + (" of the feed" if ev["video_id"].startswith("live-") else " of the video"))
    elif path is not None:
        _show_clip(path, ev, duration_s)
    elif ev["video_id"].startswith("live-"):
        st.info(f"Live feed {md(ev['path'])}: no clip was stored for this event"
                + (f" ({md(ev['media_note'])})" if ev["media_note"] else "")
                + "; the score timeline and the captions are what the watcher saw.")
    else:
        st.warning(f"The video file is not at {md(ev['path'])} any more; scores and captions are still shown.")


def _show_clip(path: Path, ev: dict, duration_s: float | None) -> None:
    """The event's span as an H.264 MP4 the browser can play, or one line saying why there is none."""
    try:
        clip = _clip(str(path), path.stat().st_mtime_ns, ev["start_s"], ev["end_s"], ev["peak_s"], duration_s)
    except (MediaError, OSError) as e:
        st.warning(f"No clip: {md(e)}")
        return
    st.video(clip.data, format="video/mp4")
    st.caption(f"clip {clip.start_s:.1f}–{clip.end_s:.1f} s of the video" + (f" ({md(clip.note)})" if clip.note else ""))
