"""The review app driven by Streamlit's AppTest against a real store filled by scoring real videos."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from conftest import copy_of
from streamlit.testing.v1 import AppTest

from flashback.store import ResultStore
from ui.data import EventKey, ReviewDB
from ui.state import DB_ENV

APP = str(Path(__file__).resolve().parents[1] / "ui" / "app.py")


@pytest.fixture
def db_copy(filled_store, tmp_path, monkeypatch):
    db = copy_of(filled_store, tmp_path)
    monkeypatch.setenv(DB_ENV, str(db))
    return db


def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def plain(markdown: str) -> str:
    """What a reader sees of Markdown the app escaped (AppTest gives the Markdown source)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def key_of(row: dict) -> tuple:
    """What the Event page hands save_verdict for a queue row: its key and its current end frame."""
    return EventKey.decode(row["key"]), row["end_frame"]


def review_rows(db):
    with duckdb.connect(str(db), read_only=True) as c:
        return c.execute("SELECT verdict, reviewer, note FROM reviews ORDER BY review_id").fetchall()


def test_queue_lists_events_by_peak_with_counts(db_copy):
    rows = ReviewDB(db_copy).events()
    assert len(rows) >= 3
    assert [r["peak_score"] for r in rows] == sorted((r["peak_score"] for r in rows), reverse=True)
    at = app()
    assert at.title[0].value == "Flagged events"
    assert [m.value for m in at.metric] == [str(len(rows)), "0", "0", "0"]
    assert len([b for b in at.button if b.key and b.key.startswith("open-")]) == len(rows)


def test_filters_narrow_the_queue(db_copy):
    data = ReviewDB(db_copy)
    lobby = [r for r in data.events() if "/lobby/" in r["path"]]
    at = app()
    folder = next(f for f in data.facets()["folders"] if f.endswith("lobby"))
    at.multiselect(key="f_folders").set_value([folder]).run()
    assert [m.value for m in at.metric][0] == str(len(lobby))
    at.multiselect(key="f_folders").set_value([]).run()
    at.slider(key="f_score").set_value((0.99, 1.0)).run()
    high = [r for r in data.events() if r["peak_score"] >= 0.99]
    assert int(at.metric[0].value) == len(high)


def test_verdict_is_saved_reloaded_and_edited_with_history(db_copy):
    at = app()
    at.button(key="open-0").click().run()
    assert at.session_state["view"] == "Event"
    first = ReviewDB(db_copy).events()[0]
    assert plain(at.header[0].value).startswith(first["category"])
    at.text_input(key="note").input("two people fighting").run()
    at.button(key="verdict-confirmed").click().run()
    assert "Not saved" in at.error[0].value and not at.success  # no reviewer name yet: refused, nothing written
    assert review_rows(db_copy) == []
    at.text_input(key="reviewer").input("ana").run()
    at.text_input(key="note").input("two people fighting").run()
    at.button(key="verdict-confirmed").click().run()
    assert at.success[0].value == "Saved: Confirmed by ana"
    assert not any("New results" in w.value for w in at.warning)  # our own verdict is not "stale data"
    assert review_rows(db_copy) == [("confirmed", "ana", "two people fighting")]

    again = app()  # a fresh session reads it back from DuckDB
    assert [m.value for m in again.metric][1] == "1"
    again.button(key="open-0").click().run()
    again.toggle(key="auto_next").set_value(False).run()  # stay on this event to see its history
    again.text_input(key="reviewer").input("bo").run()
    again.button(key="verdict-false_alarm").click().run()
    history = ReviewDB(db_copy).history(EventKey.decode(first["key"]))
    assert [(h["verdict"], h["reviewer"]) for h in history] == [("false_alarm", "bo"), ("confirmed", "ana")]
    assert ReviewDB(db_copy).events()[0]["status"] == "false_alarm"
    assert len(again.table[0].value) == 2  # the history table on the page


def test_next_and_previous(db_copy):
    at = app()
    at.button(key="open-0").click().run()
    keys = [r["key"] for r in ReviewDB(db_copy).events()]
    assert at.session_state["event_key"] == keys[0]
    at.button(key="next").click().run()
    assert at.session_state["event_key"] == keys[1]
    at.button(key="prev").click().run()
    assert at.session_state["event_key"] == keys[0]


def test_export_and_false_alarm_summary(db_copy):
    data = ReviewDB(db_copy)
    rows = data.events()
    data.save_verdict(*key_of(rows[0]), "false_alarm", "ana", "shadow")
    data.save_verdict(*key_of(rows[1]), "confirmed", "ana")
    csv_text = data.export_csv()
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("camera,clock,path,video_id,run_id,start_s") and len(lines) == 3
    assert "false_alarm" in lines[1] + lines[2] and "shadow" in csv_text
    import json

    exported = json.loads(data.export_json())
    assert {e["status"] for e in exported} == {"false_alarm", "confirmed"}
    summary = {s["category"]: s for s in data.false_alarm_summary()}
    cat = rows[0]["category"]
    assert summary[cat]["false_alarms"] >= 1 and summary[cat]["false_alarm_rate"] > 0
    at = app()
    at.radio(key="view").set_value("False alarms & export").run()
    assert not at.exception
    assert [b.label for b in at.get("download_button")] == ["Download CSV", "Download JSON"]


def test_video_page_and_stale_notice(db_copy):
    at = app()
    at.radio(key="view").set_value("Video").run()
    assert not at.exception and plain(at.header[0].value).endswith(".mp4")
    data = ReviewDB(db_copy)
    data.save_verdict(*key_of(data.events()[0]), "unsure", "cy")  # someone else writes
    at.run()
    assert any("New results were stored" in w.value for w in at.warning)


def test_a_video_with_no_events_still_has_its_timeline(db_copy, seed_memory, tiny_encoder, tmp_path):
    from flashback.scoring.pipeline import Detector
    from flashback.settings import ScoringSettings
    from flashback.store import RunRecord
    from flashback.video.synthetic import make_video

    quiet = Detector(seed_memory, tiny_encoder, ScoringSettings(threshold=1.0))
    r = quiet.score(str(make_video(tmp_path / "quiet.mp4", n_frames=45)))
    assert not r.events
    ResultStore(db_copy).save(RunRecord.of(quiet), r)
    at = app()
    at.radio(key="view").set_value("Video").run()
    pick = at.selectbox(key="video_pick")
    label = next(i for i, o in enumerate(pick.options) if "quiet.mp4" in o)
    assert pick.options[label].endswith("· no events")
    pick.set_value(label).run()
    assert not at.exception
    assert plain(at.header[0].value) == "quiet.mp4" and "0 event(s)" in at.caption[0].value
    assert len(at.get("plotly_chart")) == 1


def test_rescoring_keeps_reviews(db_copy, filled_store):
    _, run, results = filled_store
    data = ReviewDB(db_copy)
    first = data.events()[0]
    data.save_verdict(*key_of(first), "confirmed", "ana")
    r = next(x for x in results if x.video_id == first["video_id"])
    ResultStore(db_copy).save(run, r)  # the same video scored again with the same settings
    assert next(e for e in data.events() if e["key"] == first["key"])["status"] == "confirmed"


def test_missing_empty_and_foreign_databases_get_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv(DB_ENV, str(tmp_path / "none.duckdb"))
    at = app()
    assert "no such results database" in plain(at.error[0].value)
    (tmp_path / "notes.duckdb").write_text("not a database")
    monkeypatch.setenv(DB_ENV, str(tmp_path / "notes.duckdb"))
    assert "notes.duckdb" in plain(app().error[0].value)
    with duckdb.connect(str(tmp_path / "other.duckdb")) as c:
        c.execute("CREATE TABLE t (x INT)")
    monkeypatch.setenv(DB_ENV, str(tmp_path / "other.duckdb"))
    assert "not a flashback results database" in plain(app().error[0].value)
    empty = tmp_path / "empty.duckdb"
    ResultStore(empty).initialize()
    monkeypatch.setenv(DB_ENV, str(empty))
    at = app()
    assert "No events match" in at.info[0].value


def test_media_is_only_what_the_store_recorded(db_copy):
    data = ReviewDB(db_copy)
    assert data.media_path("../../etc/passwd") is None
    vid = data.events()[0]["video_id"]
    assert data.media_path(vid).is_file()


def test_an_event_whose_file_no_longer_decodes_says_so_and_keeps_the_verdict_buttons(db_copy, tmp_path):
    data = ReviewDB(db_copy)
    first = data.events()[0]
    path = Path(first["path"])
    kept = path.read_bytes()
    try:
        path.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x17" * 4000)  # replaced by junk since it was scored
        at = app()
        at.button(key="open-0").click().run()
        assert not at.exception, at.exception
        assert any("cannot be decoded any more" in plain(w.value) for w in at.warning)
        assert {b.key for b in at.button} >= {"verdict-confirmed", "verdict-false_alarm", "verdict-unsure"}
        at.text_input(key="reviewer").input("ana").run()
        at.button(key="verdict-false_alarm").click().run()
        assert review_rows(db_copy) == [("false_alarm", "ana", None)]
    finally:
        path.write_bytes(kept)


def test_an_events_clip_is_its_span_with_context_as_h264(tmp_path):
    import io

    import av

    from flashback.video.media import MAX_CLIP_S, MediaError, clip_span, event_clip
    from flashback.video.synthetic import make_video

    assert clip_span(10.0, 12.0, 11.0, 100.0) == (8.0, 14.0, "")
    assert clip_span(1.0, 99.5, 50.0, 100.0)[:2] == (50.0 - MAX_CLIP_S / 2, 50.0 + MAX_CLIP_S / 2)
    assert clip_span(0.5, 99.5, 95.0, 100.0)[:2] == (100.0 - MAX_CLIP_S, 100.0)  # inside the video
    video = make_video(tmp_path / "cam.avi", n_frames=300, codec="mpeg4")  # 10 s, MPEG-4 Part 2
    clip = event_clip(video, 4.0, 5.0, 4.5, 10.0)
    assert (clip.start_s, clip.end_s) == (2.0, 7.0)
    with av.open(io.BytesIO(clip.data)) as c:
        s = c.streams.video[0]
        times = [f.time for f in c.decode(s)]
        assert s.codec_context.name == "h264" and c.format.name.startswith("mov,mp4")
    assert len(times) == 151 and times[0] == 0.0 and abs(times[-1] - 5.0) < 1e-6  # frames 60..210 of the source
    (tmp_path / "gone.avi").write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(MediaError, match="gone.avi: the recorded video cannot be decoded"):
        event_clip(tmp_path / "gone.avi", 1.0, 2.0, 1.5)


def test_the_queue_shows_thumbnails_and_the_event_page_plays_the_stored_clip(db_copy):
    rows = ReviewDB(db_copy).events()
    at = app()
    images = at.get("image")
    assert len(images) == len(rows) and not [c for c in at.caption if c.value == "no thumbnail"]
    at.button(key="open-0").click().run()
    assert not at.exception, at.exception
    videos = at.get("video")
    assert len(videos) == 1
    assert any(c.value.startswith("stored clip, ") for c in at.caption)
    # a pruned thumbnail and clip: the queue says so, the page cuts a clip from the file instead
    media = db_copy.with_suffix(".media")
    (media / rows[0]["thumb_path"]).unlink()
    (media / rows[0]["clip_path"]).unlink()
    at = app()
    assert len(at.get("image")) == len(rows) - 1 and [c.value for c in at.caption].count("no thumbnail") == 1
    at.button(key="open-0").click().run()
    assert len(at.get("video")) == 1 and not any(c.value.startswith("stored clip, ") for c in at.caption)
    assert any(c.value.startswith("clip ") for c in at.caption)


def test_a_stored_media_path_cannot_leave_the_media_folder(db_copy):
    data = ReviewDB(db_copy)
    row = data.events()[0]
    assert data.stored_media(row["thumb_path"]).is_file()
    assert data.stored_media("../r.duckdb") is None and data.stored_media(str(db_copy)) is None
    assert data.stored_media(None) is None


@pytest.fixture
def tiny_search(monkeypatch):
    import json

    from conftest import TINY_MODEL

    from ui.state import ENCODER_ENV

    monkeypatch.setenv(ENCODER_ENV, json.dumps({"model": TINY_MODEL, "pretrained": "random", "device": "cpu"}))


def test_search_page_ranks_segments_and_opens_the_moment(db_copy, tiny_search):
    at = app()
    at.radio(key="view").set_value("Search").run()
    assert not at.exception, at.exception
    at.text_input(key="search_text").input("a car on fire")
    at.number_input(key="search_top").set_value(5)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    hits = [b for b in at.button if b.key and b.key.startswith("hit-")]
    assert 1 <= len(hits) <= 5 and len(at.get("image")) == len(hits)  # moments, a key frame each
    assert [m.value for m in at.markdown if "similarity" in m.value][0].startswith("**1.**")
    video = next((b for b in hits if b.key.startswith("hit-video-")), None)
    target = video or hits[0]
    target.click().run()
    assert not at.exception, at.exception
    assert at.radio(key="view").value == ("Video" if video else "Event")
    at.radio(key="view").set_value("Search").run()
    at.selectbox(key="search_camera").set_value(next(c for c in at.selectbox(key="search_camera").options if c.endswith("lobby"))).run()
    assert not at.exception, at.exception
    assert all("l1.mp4" in m.value for m in at.markdown if "similarity" in m.value)


def test_search_page_says_why_a_store_cannot_be_searched(db_copy, monkeypatch):
    import json

    from conftest import SMALL_MODEL

    from ui.state import ENCODER_ENV

    monkeypatch.setenv(ENCODER_ENV, json.dumps({"model": SMALL_MODEL, "pretrained": "random", "device": "cpu"}))
    at = app()
    at.radio(key="view").set_value("Search").run()
    at.text_input(key="search_text").input("a fight")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert "no segment was stored with encoder open_clip:fb-test-small" in plain(at.error[0].value)


def test_every_event_says_its_camera_and_clock_time(db_copy, seed_memory, tiny_encoder, tmp_path):
    """Rows said a file name (a live feed's source!) and seconds since the start; now the camera
    (a feed's name, a file's camera-file table or folder) and the wall-clock time, marked where it is
    only the file's time."""
    from datetime import datetime, timedelta, timezone

    import av
    import numpy as np

    from flashback.live.causal import EventUpdate
    from flashback.live.feeds import parse_feed
    from flashback.live.sinks import FeedSession, LiveStoreSink
    from flashback.scoring.events import Event
    from flashback.scoring.pipeline import Detector
    from flashback.scoring.scoring import Explanation
    from flashback.settings import ScoringSettings
    from flashback.store import RunRecord

    rows = ReviewDB(db_copy).events()
    assert {r["camera"].rsplit("/", 1)[-1] for r in rows} == {"gate", "lobby"}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(file time\)", r["clock"]) for r in rows)

    # a recording whose container says when it began (a camera's own clock)
    tagged = tmp_path / "dock" / "tagged.mp4"
    tagged.parent.mkdir()
    with av.open(str(tagged), "w") as c:
        c.metadata["creation_time"] = "2026-01-02T03:04:05.000000Z"
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(90):
            img = np.full((48, 64, 3), 40 if i < 45 else 220, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    det = Detector(seed_memory, tiny_encoder, ScoringSettings(threshold=0.0, min_event_s=0.5))
    result = det.score(str(tagged))
    store = ResultStore(db_copy)
    store.save(RunRecord.of(det), result)
    # and a live feed, named dock2, whose source is a file called old.avi
    sink = LiveStoreSink(store, RunRecord({"x": 1}, "mem", "/mem", "enc", "t"))
    started = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    old = tmp_path / "old.avi"
    old.write_bytes(b"")
    session = FeedSession(parse_feed(f"dock2={old}", 0), "live-dock2-1", started)
    sink.start(session)
    sink.event(session, EventUpdate("opened", "dock2", Event(0, 10.0, 12.0, 20, 24, 0.9, 22, 11.0,
                                                               Explanation("Fighting", 0.9, 0.1, [])), "uid"))
    sink.close()
    rows = {r["video_id"]: r for r in ReviewDB(db_copy).events()}
    local = lambda t: t.astimezone().replace(tzinfo=None)  # noqa: E731 - the store keeps local wall time
    container = rows[result.video_id]
    expected = local(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) + timedelta(seconds=container["start_s"])
    assert container["camera"].endswith("/dock") and container["clock"] == expected.strftime("%Y-%m-%d %H:%M:%S")
    live = rows["live-dock2-1"]
    assert live["camera"] == "dock2" and live["name"] == "dock2"
    assert live["clock"] == (local(started) + timedelta(seconds=10)).strftime("%Y-%m-%d %H:%M:%S")
    at = app()
    assert any("dock2" in plain(m.value) and live["clock"] in plain(m.value) for m in at.markdown)


def test_triage_opens_the_next_pending_event_and_links_name_what_they_show(db_copy):
    """The verdict controls come first on the Event page; a verdict opens the next pending event; the
    URL names the page, the event and the reviewer, so a link opens that event in a fresh session."""
    at = app()
    rows = ReviewDB(db_copy).events()
    at.button(key="open-0").click().run()
    assert at.query_params["view"] == "Event" and at.query_params["event"] == rows[0]["key"]
    page = [type(e).__name__ for e in at.main]
    assert page.index("Header") < page.index("TextInput") < page.index("UnknownElement")  # verdict controls, then the timeline
    at.text_input(key="reviewer").input("ana").run()
    at.button(key="verdict-false_alarm").click().run()
    assert not at.exception and at.success[0].value == "Saved: False alarm by ana"
    assert at.session_state["event_key"] == rows[1]["key"] and at.query_params["event"] == rows[1]["key"]
    assert at.query_params["reviewer"] == "ana"

    linked = AppTest.from_file(APP, default_timeout=60)  # a colleague opens the link
    linked.query_params["view"] = "Event"
    linked.query_params["event"] = rows[2]["key"]
    linked.query_params["reviewer"] = "bo"
    linked.run()
    assert not linked.exception
    assert linked.session_state["event_key"] == rows[2]["key"] and linked.text_input(key="reviewer").value == "bo"
    assert rows[2]["camera"].rsplit("/", 1)[-1] in plain(linked.header[0].value)


def test_the_queue_gives_many_events_one_verdict(db_copy):
    at = app()
    rows = ReviewDB(db_copy).events()
    at.text_input(key="reviewer").input("ana").run()
    for r in rows[:3]:
        at.checkbox(key=f"pick-{r['key']}").check().run()
    at.button(key="bulk-false_alarm").click().run()
    assert not at.exception and at.success[0].value == "Saved: False alarm by ana for 3 event(s)"
    assert [r["status"] for r in ReviewDB(db_copy).events()].count("false_alarm") == 3
    assert not any(at.checkbox(key=f"pick-{r['key']}").value for r in rows[:3])  # cleared for the next batch


def test_the_feeds_page_says_which_camera_is_not_covered(tmp_path, monkeypatch):
    from datetime import datetime, timezone

    from flashback.live.feeds import parse_feed
    from flashback.live.sinks import FeedSession, LiveStoreSink
    from flashback.store import RunRecord

    video = tmp_path / "cam.mp4"
    video.write_bytes(b"")
    store = ResultStore(tmp_path / "live.duckdb")
    sink = LiveStoreSink(store, RunRecord({"x": 1}, "mem", "/mem", "enc", "t"))
    now = datetime.now(timezone.utc)
    base = {"segments_scored": 100, "segments_lost": 0, "frames_decoded": 3000, "samples_encoded": 400,
            "samples_dropped": 0, "reconnects": 0, "latency_p50_s": 0.3, "latency_p95_s": 0.5, "latency_max_s": 0.7}
    for name, window in (("gate", {"window_drop_share": 0.02, "window_latency_p95_s": 0.5, "latency_budget_s": 1.0,
                                   "keeping_up": True}),
                         ("dock", {"window_drop_share": 0.7, "window_latency_p95_s": 3.8, "latency_budget_s": 1.0,
                                   "keeping_up": False})):
        session = FeedSession(parse_feed(f"{name}={video}", 0), f"live-{name}-1", now)
        sink.start(session)
        stats = {**base, "samples_dropped": 0 if name == "gate" else 900}
        sink.feed_stats(session, {**stats, **window}, active=True)
    sink.close()
    monkeypatch.setenv(DB_ENV, str(store.path))
    at = app()
    at.radio(key="view").set_value("Feeds").run()
    assert not at.exception, at.exception
    alarm = plain(at.error[0].value)
    assert alarm.startswith("Not covered as configured: dock.") and "gate" not in alarm
    shown = " ".join(plain(e.value) for e in at.error)
    assert "dropped 70% now, 69% overall" in shown and "p95 latency 3.80 s (budget 1.00 s)" in shown
    assert any("dropped 2% now, 0% overall" in plain(m.value) for m in at.markdown)


def test_the_day_view_puts_every_camera_on_one_timeline(db_copy):
    import json as _json

    at = app()
    at.radio(key="view").set_value("Day").run()
    assert not at.exception, at.exception
    rows = ReviewDB(db_copy).events()
    spec = _json.loads(at.get("plotly_chart")[0].proto.spec)
    keys = [k for trace in spec["data"] for k in trace["customdata"]]
    assert sorted(keys) == sorted(r["key"] for r in rows)  # every event of the day is a mark that opens it
    assert {y for trace in spec["data"] for y in trace["y"]} == {r["camera"] for r in rows}
    assert [t["name"] for t in spec["data"]] == ["Pending"]


def test_a_live_feeds_gaps_are_drawn_as_gaps():
    from ui.views.common import with_gaps

    x, y = with_gaps([0.5, 1.0, 1.5, 2.0, 6.0, 6.5], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert y == [0.1, 0.2, 0.3, 0.4, None, 0.5, 0.6] and x[4] == 4.0  # the outage between 2.0 and 6.0 is a break
    assert with_gaps([0.5, 1.0, 1.5], [0.1, 0.2, 0.3]) == ([0.5, 1.0, 1.5], [0.1, 0.2, 0.3])


def test_the_video_page_plays_the_recording_from_a_chosen_moment(db_copy):
    at = app()
    rows = ReviewDB(db_copy).events()
    ev = max(rows, key=lambda r: r["start_s"])
    at.session_state["video_key"] = (ev["run_id"], ev["video_id"])
    at.radio(key="view").set_value("Video").run()
    assert not at.exception, at.exception
    assert at.get("video")[0].proto.start_time == 0  # the recording itself, from its start
    events = ReviewDB.video_events(rows, ev["run_id"], ev["video_id"])
    at.button(key=f"video-play-{events.index(ev)}").click().run()
    assert not at.exception, at.exception
    assert at.get("video")[0].proto.start_time == int(max(0.0, ev["start_s"] - 2))  # an event's Play: from just before it
    assert at.session_state["video_at"] == max(0.0, ev["start_s"] - 2)


def test_the_timeline_draws_each_event_as_plotlys_add_vrect_did():
    """The bands are handed to Plotly in one piece (``add_vrect`` per event re-checked every earlier
    band: most of the Event page's time on a busy video); what is drawn must not change."""
    import html

    import plotly.graph_objects as go

    from ui.views.common import timeline_figure

    events = [{"key": "a", "start_s": 1.0, "end_s": 2.5, "category": "Fighting"},
              {"key": "b", "start_s": 4.0, "end_s": 6.0, "category": "<b>Arson</b>"}]
    tl = {"time_s": [0.0, 1.0, 2.0, 7.0], "score": [0.1, 0.8, 0.2, 0.3], "threshold": 0.5}
    ours = timeline_figure(tl, events, highlight="a").to_dict()["layout"]
    before = go.Figure()
    for e in events:
        this = e["key"] == "a"
        before.add_vrect(x0=e["start_s"], x1=e["end_s"], line_width=0, opacity=0.35 if this else 0.12,
                         fillcolor="crimson" if this else "orange",
                         annotation_text="this event" if this else html.escape(e["category"]), annotation_position="top left")
    before.add_hline(y=0.5, line_dash="dot", line_color="grey", annotation_text="threshold")
    want = before.to_dict()["layout"]
    assert ours["shapes"] == want["shapes"] and ours["annotations"] == want["annotations"]
