"""Clips of live events: the packet ring (key frames, reconnects, memory bound) and a real loopback
MPEG-TS feed whose incident becomes a stored clip that starts before the event was reported."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import av
import duckdb
import numpy as np
import pytest
from conftest import free_port
from PIL import Image
from streams import FFMPEG, serve

from flashback.live.feeds import FeedSpec
from flashback.live.packets import PacketRing, StreamInfo
from flashback.live.sinks import Closed, JsonLinesSink, LiveStoreSink, Sinks
from flashback.live.sinks.media import LiveMediaSink
from flashback.live.watcher import WatchConfig, Watcher
from flashback.settings import PRESETS
from flashback.store import ResultStore, RunRecord
from flashback.video.synthetic import frame_image, make_video

INFO = StreamInfo("h264", None, Fraction(1, 90000), 1)


def push(ring: PacketRing, t: float, key: bool, info: StreamInfo = INFO, size: int = 10) -> None:
    p = av.Packet(bytes([int(t * 10) % 256]) * size)
    p.pts = p.dts = int(t * 90000)
    p.is_keyframe = key
    ring.push(t, p, info)


def times(ring: PacketRing) -> list[float]:
    return [h.t_s for h in ring._ring]


def test_the_ring_keeps_its_span_from_a_key_frame():
    ring = PacketRing(keep_s=2.0)
    for i in range(100):  # 10 packets a second, a key frame every second
        push(ring, i / 10, key=i % 10 == 0)
    held = times(ring)
    assert held[0] == 7.0 and held[-1] == 9.9  # 9.9 - 2 = 7.9: the key frame at or before it is 7.0
    done = []
    ring.start("e", from_s=8.5)  # from the key frame at 8.0
    for i in range(100, 160):
        push(ring, i / 10, key=i % 10 == 0)
        if i == 120:
            ring.stop("e", until_s=13.0, on_done=lambda packets, note: done.append(([h.t_s for h in packets], note)))
    [(recorded, note)] = done
    assert recorded[0] == 8.0 and recorded[-1] == 13.0 and note == ""
    assert np.allclose(np.diff(recorded), 0.1)  # nothing missing in between


def test_a_reconnect_ends_a_recording_and_memory_is_bounded():
    ring = PacketRing(keep_s=5.0, max_bytes=1000)
    done = []
    for i in range(30):
        push(ring, i / 10, key=i % 10 == 0)
    ring.start("e", 0.5)
    ring.stop("e", until_s=99.0, on_done=lambda packets, note: done.append((len(packets), note)))
    push(ring, 3.0, key=True, info=dataclasses.replace(INFO, epoch=2))  # the feed came back: a new stream
    assert done == [(30, "the feed dropped during the clip")]
    for i in range(31, 400):
        push(ring, i / 10, key=i % 50 == 0, size=50)
    assert ring._bytes <= 1000 + 50 and len(ring._ring) <= 21


def test_a_reconnect_while_the_event_is_open_still_hands_its_recording_over():
    """The recording used to be dropped when the feed reconnected before the event closed: that event
    then got no clip, no event_media row and no log line; and an event the ring never started on
    was silent too."""
    ring = PacketRing(keep_s=5.0)
    done = []
    for i in range(30):
        push(ring, i / 10, key=i % 10 == 0)
    ring.start("e", 0.5)
    push(ring, 3.0, key=True, info=dataclasses.replace(INFO, epoch=2))  # reconnected while "e" is still open
    for i in range(31, 60):
        push(ring, i / 10, key=i % 10 == 0, info=dataclasses.replace(INFO, epoch=2))
    assert done == []
    ring.stop("e", until_s=99.0, on_done=lambda packets, note: done.append((len(packets), note)))
    assert done == [(30, "the feed dropped during the clip")]  # the old stream's packets, at once
    ring.stop("never-started", until_s=99.0, on_done=lambda packets, note: done.append((len(packets), note)))
    assert done[-1] == (0, "no packets were recorded for it")


def test_every_event_is_in_the_clips_index_with_the_reason_it_has_no_clip(filled_store, tmp_path):
    import csv

    from conftest import copy_of, flashback_here

    db = copy_of(filled_store, tmp_path)
    with duckdb.connect(str(db)) as c:
        n = c.execute("SELECT count(*) FROM events").fetchone()[0]
        gone = c.execute("SELECT clip_path FROM event_media WHERE clip_path IS NOT NULL LIMIT 1").fetchone()[0]
        c.execute("DELETE FROM event_media WHERE clip_path <> ?", [gone])  # those events have no media row at all
    (db.with_suffix(".media") / gone).unlink()  # and this one's file is gone
    p = flashback_here("clips", "--db", db, "--out", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    index = list(csv.DictReader(open(tmp_path / "out" / "index.csv")))
    assert len(index) == n > 1 and all(r["clip"] == "" for r in index)
    reasons = sorted({r["no_clip_because"] for r in index})
    assert reasons == ["its clip file is gone (pruned, or removed by hand)",
                       "no media was recorded for it (scored with --no-media, or before clips were kept)"]
    assert f"{n} event(s) have no clip" in p.stderr


@pytest.mark.slow
@pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg (Debian package; .ci/run installs it)")
def test_a_live_incident_gets_a_clip_that_starts_before_it_was_reported(tmp_path, scene_memory, tiny_encoder):
    video = make_video(tmp_path / "cam.mp4", n_frames=420, fps=30, size=(96, 64),
                       scene_of=lambda i: 5 if 180 <= i < 270 else 0, options={"g": "30"})  # incident 6-9 s
    port = free_port()
    server = serve(video, port)
    store = ResultStore(tmp_path / "live.duckdb")
    settings = dataclasses.replace(PRESETS["fast"], smoothing_sigma_s=0.25)
    events = tmp_path / "events.jsonl"
    sinks = [JsonLinesSink(events)]
    w = Watcher(scene_memory, tiny_encoder, settings, [FeedSpec("dock", f"http://127.0.0.1:{port}/feed")], sinks,
                WatchConfig(duration_s=20.0, clips=True))
    store_sink = LiveStoreSink(store, RunRecord.of(w.detector))
    media = LiveMediaSink(store.media_dir, store_sink.run.run_id, sinks)
    sinks += [store_sink, media]
    try:
        w.run()
    finally:
        server.kill()
    assert Sinks(sinks).close() == [Closed()] * 3  # the clips first, then the store's last rows, the JSON lines last
    with duckdb.connect(str(store.path), read_only=True) as c:
        [(start_s, end_s, peak_s)] = c.execute("SELECT start_s, end_s, peak_s FROM events").fetchall()
        [m] = c.execute("SELECT clip_path, clip_start_s, clip_end_s, thumb_path, thumb_s, note FROM event_media").fetchall()
    clip, clip_start, clip_end, thumb, thumb_s, note = m
    assert note is None
    # reported open at least min_event_s after it began, yet its clip starts before it began
    assert clip_start <= start_s - 1.0 and clip_end >= end_s + 1.5
    with av.open(str(store.media_dir / clip)) as c:
        s = c.streams.video[0]
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(s)]
        assert s.codec_context.name == "h264"
    assert frames[-1][0] - frames[0][0] >= clip_end - clip_start - 0.5
    # the clip holds the incident, and calm before it: scene 5's background, then scene 0's
    scene = {k: frame_image(0, 96, 64, k)[-1, -1].astype(int) for k in (0, 5)}  # the background, away from the square

    def which(rgb):  # the scene whose background is nearest the frame's median colour
        return min(scene, key=lambda k: np.abs(np.median(rgb.reshape(-1, 3), axis=0) - scene[k]).sum())

    seen = [which(rgb) for _, rgb in frames]
    assert seen[0] == 0 and 5 in seen
    first = frames[seen.index(5)][0]  # the clip's times line up with the feed's: the incident starts where the event does
    assert abs(clip_start + first - start_s) < 0.75
    assert abs(thumb_s - peak_s) < 0.5 and which(np.asarray(Image.open(store.media_dir / thumb).convert("RGB"))) == 5
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert [x["type"] for x in lines if x["type"].startswith("event")] == ["event_opened", "event_closed", "event_media"]
    media_line = next(x for x in lines if x["type"] == "event_media")
    assert (media_line["clip"], media_line["thumbnail"], media_line["event_key"]) == (clip, thumb, "dock/0")
