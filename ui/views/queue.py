"""Queue: every flagged event, highest peak first, with filters and counts."""

from __future__ import annotations

from datetime import datetime, time

import streamlit as st

from flashback.errors import FlashbackError
from ui import state
from ui.data import STATUSES, VERDICTS, EventKey, Filters, ReviewDB
from ui.views.common import masked, md, open_event, status_label

PAGE = 50


def filters(db: ReviewDB) -> Filters:
    facets = db.facets()
    sb = st.sidebar
    sb.subheader("Filters")
    f = Filters(
        videos=sb.multiselect("Video", facets["videos"], format_func=masked, key="f_videos"),
        folders=sb.multiselect("Camera", facets["folders"], format_func=masked, key="f_folders"),
        categories=sb.multiselect("Category", facets["categories"], key="f_categories"),
        score_range=sb.slider("Peak score", 0.0, 1.0, (0.0, 1.0), 0.01, key="f_score"),
        statuses=sb.multiselect("Verdict", list(STATUSES), format_func=status_label, key="f_status"),
    )
    lo, hi = facets["scored"]
    if lo is not None and lo.date() != hi.date():
        d = sb.date_input("Scored between", (lo.date(), hi.date()), key="f_dates")
        if isinstance(d, tuple) and len(d) == 2:
            f.scored_between = (datetime.combine(d[0], time.min), datetime.combine(d[1], time.max))
    return f


def _bulk(db: ReviewDB, shown: list[dict]) -> None:
    """One verdict for every ticked event (each saved as if given on its own page)."""
    c = st.columns([2, 1.3, 1.3, 1.3, 4], vertical_alignment="bottom")
    c[0].text_input("Reviewer", key=state.REVIEWER, on_change=state.to_url)
    for col, (verdict, label) in zip(c[1:4], VERDICTS.items()):
        col.button(f"{label}: selected", key=f"bulk-{verdict}", on_click=_mark, args=(db, shown, verdict), width="stretch")


def _mark(db: ReviewDB, shown: list[dict], verdict: str) -> None:
    picked = [r for r in shown if st.session_state.get(f"pick-{r['key']}")]
    reviewer = st.session_state.get(state.REVIEWER, "")
    if not picked:
        st.session_state["bulk_said"] = "Tick the events to mark first."
        return
    try:
        for r in picked:
            db.save_verdict(EventKey.decode(r["key"]), r["end_frame"], verdict, reviewer)
            st.session_state[f"pick-{r['key']}"] = False
    except FlashbackError as e:
        st.session_state["bulk_said"] = f"Not saved: {md(e)}"
        return
    st.session_state["bulk_said"] = f"Saved: {VERDICTS[verdict]} by {md(reviewer.strip())} for {len(picked)} event(s)"
    st.session_state[state.SNAPSHOT] = db.version()


def render(db: ReviewDB) -> None:
    rows = db.events(filters(db))
    counts = db.counts(rows)
    st.title("Flagged events")
    cols = st.columns(4)
    cols[0].metric("Pending", counts["pending"])
    for col, v in zip(cols[1:], VERDICTS):
        col.metric(VERDICTS[v], counts[v])
    if not rows:
        st.info("No events match these filters.")
        return
    st.caption(f"{len(rows)} event(s), highest peak score first")
    _bulk(db, rows[:PAGE])
    if st.session_state.get("bulk_said"):
        said = st.session_state.pop("bulk_said")
        (st.success if said.startswith("Saved") else st.error if said.startswith("Not saved") else st.info)(said)
    for i, r in enumerate(rows[:PAGE]):
        c = st.columns([0.3, 1.3, 4, 1.2, 1.2, 2, 1.4, 1], vertical_alignment="center")
        c, pick = c[1:], c[0]
        pick.checkbox("select", key=f"pick-{r['key']}", label_visibility="collapsed")
        thumb = db.stored_media(r["thumb_path"])
        if thumb is not None:
            c[0].image(str(thumb), width="stretch")
        else:
            c[0].caption("no thumbnail")
        when = r["clock"] or f"{r['start_s']:.1f}–{r['end_s']:.1f} s"
        c[1].write(f"**{md(r['camera'])}** · {md(when)}")
        c[1].caption(f"{md(r['name'])} · {r['start_s']:.1f}–{r['end_s']:.1f} s")
        c[2].write(f"peak **{r['peak_score']:.2f}**")
        c[3].write(md(r["category"]))
        top = next((x["text"] for x in r["captions"] if x["label"] == "anomalous"), "")
        c[4].caption(md(top))
        c[5].write(status_label(r["status"]))
        c[6].button("Review", key=f"open-{i}", on_click=open_event, args=(r["key"],))
    if len(rows) > PAGE:
        st.caption(f"Showing the first {PAGE}; narrow the filters to see the rest.")
    c = st.columns([2, 2, 6])
    c[0].download_button(f"Export these {len(rows)} (CSV)", db.export_csv(rows), "events.csv", "text/csv", key="queue-csv")
    c[1].download_button("Export (JSON)", db.export_json(rows), "events.json", "application/json", key="queue-json")
    st.session_state[state.SNAPSHOT] = db.version()
