"""Search page: stored footage ranked by a text, a key frame each, and a way to the moment found."""

from __future__ import annotations

import json
import os

import streamlit as st

from flashback.errors import FlashbackError
from flashback.video.media import MediaError, key_frames
from ui import state
from ui.data import ReviewDB
from ui.views.common import masked, md, open_event, open_video


@st.cache_resource(show_spinner="Loading the encoder's text tower…")
def _encoder(db_path: str, spec_json: str):
    """Loaded once per app: the text tower the footage was scored with (``flashback review``'s encoder flags)."""
    from flashback.review.search import query_encoder
    from flashback.store import ResultStore

    return query_encoder(ResultStore(db_path), json.loads(spec_json))


def _spec() -> str:
    from flashback.encoders.encoder_registry import DEFAULT_MODEL, DEFAULT_PRETRAINED

    return os.environ.get(state.ENCODER_ENV) or json.dumps({"model": DEFAULT_MODEL, "pretrained": DEFAULT_PRETRAINED})


def _open_at(run_id: str, video_id: str, t_s: float) -> None:
    open_video(run_id, video_id)
    st.session_state[state.VIDEO_AT] = t_s


def render(db: ReviewDB) -> None:
    st.title("Search footage")
    st.caption("Every stored segment, ranked by how well it matches the words, through the text tower of the "
               "encoder it was scored with; nothing is re-encoded.")
    with st.form("search"):
        c = st.columns([5, 2, 1])
        text = c[0].text_input("Look for", placeholder="a person climbing a fence", key="search_text")
        camera = c[1].selectbox("Camera", ["all cameras", *db.cameras()], format_func=masked, key="search_camera")
        top = c[2].number_input("Results", 1, 200, 12, key="search_top")
        st.form_submit_button("Search")
    if not text.strip():
        return
    try:
        hits = db.search(_encoder(str(db.path), _spec()), text, int(top), None if camera == "all cameras" else camera)
    except FlashbackError as e:
        st.error(md(e))
        return
    if not hits:
        st.info("Nothing stored matches these filters.")
        return
    rows = db.events()
    for i, h in enumerate(hits):
        c = st.columns([2, 5, 1.4])
        path = db.media_path(h.video_id)
        mid = (h.start_s + h.end_s) / 2
        try:
            frames = key_frames(path, [mid]) if path is not None else []
        except MediaError:
            frames = []
        if frames:
            c[0].image(frames[0][1], width="stretch")
        else:
            c[0].caption("no recording" if h.video_id.startswith("live-") else "file not found")
        c[1].write(f"**{i + 1}.** {md(h.camera)} · {md(h.path.rsplit('/', 1)[-1])} · {h.start_s:.1f}–{h.end_s:.1f} s "
                   f"· similarity **{h.similarity:.3f}**")
        c[1].caption(f"{h.when:%Y-%m-%d %H:%M:%S}"
                     + ("" if h.score is None else f" · anomaly score {h.score:.2f}")
                     + (f" · {md(h.caption)}" if h.caption else ""))
        key = db.event_at(rows, h.run_id, h.video_id, mid)
        if key is not None:
            c[2].button("Open event", key=f"hit-event-{i}", on_click=open_event, args=(key,))
        else:
            c[2].button("Open video", key=f"hit-video-{i}", on_click=_open_at, args=(h.run_id, h.video_id, mid))
