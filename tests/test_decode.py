"""Real files through PyAV: codecs, sizes, frame rates, variable frame rate and broken inputs."""

from __future__ import annotations

import numpy as np
import pytest

from flashback.errors import InputError
from flashback.settings import ScoringSettings
from flashback.video.decode import FrameFit, VideoReader
from flashback.video.sources import VideoSource, expand_inputs
from flashback.video.synthetic import make_audio_only, make_video, make_zero_frame, truncate
from flashback.video.timegrid import TimeGrid

GRID = TimeGrid.from_settings(ScoringSettings())


def read(path, size=32, grid=GRID, fit="pad"):
    with VideoReader(VideoSource(str(path)), FrameFit(fit, size)) as r:
        samples = list(r.samples(grid))
        return r, samples


@pytest.mark.parametrize(
    "name,codec,fps,size,n",
    [
        ("h264.mp4", "libx264", 30, (96, 64), 60),
        ("vp9.webm", "libvpx-vp9", 25, (160, 120), 50),
        ("mpeg4.avi", "mpeg4", 25, (64, 96), 40),  # portrait
        ("hevc.mkv", "libx265", 30, (130, 74), 45),  # sizes that are not multiples of 16
        ("mjpeg.mov", "mjpeg", 30, (320, 240), 31),
    ],
)
def test_codecs_sizes_and_rates(tmp_path, name, codec, fps, size, n):
    pix = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    path = make_video(tmp_path / name, n_frames=n, fps=fps, size=size, codec=codec, pix_fmt=pix)
    r, samples = read(path)
    tl = r.timeline
    assert len(tl.frame_times) == n
    assert tl.fps == pytest.approx(fps, rel=1e-3)
    assert tl.duration_s == pytest.approx(n / fps, abs=1e-3)
    assert [i for i, _ in samples] == list(range(GRID.n_samples(n / fps)))
    assert all(a.shape == (32, 32, 3) and a.dtype == np.uint8 for _, a in samples)
    assert (r.info.width, r.info.height) == size
    assert not tl.truncated


def test_variable_frame_rate_picks_the_frame_on_screen(tmp_path):
    """Each frame is a flat grey level; every grid time must see the last frame shown before it."""
    times = [0.0, 0.05, 0.30, 0.32, 0.70, 1.10, 1.15, 1.60, 1.62, 2.0]
    levels = [10, 40, 70, 100, 130, 160, 190, 220, 250, 25]
    path = tmp_path / "vfr.mkv"
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"crf": "0"}
        for t, g in zip(times, levels):
            f = av.VideoFrame.from_ndarray(np.full((64, 64, 3), g, np.uint8), format="rgb24")
            f.pts, f.time_base = int(t * 1000), Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    r, samples = read(path)
    np.testing.assert_allclose(r.timeline.frame_times, times, atol=1e-3)
    for i, rgb in samples:
        t = GRID.sample_time(i)
        shown = max(k for k, ft in enumerate(times) if ft <= t)
        assert abs(float(rgb.mean()) - levels[shown]) < 4, (i, t, shown)


def test_resize_happens_in_decode_to_the_encoder_size(tmp_path):
    path = make_video(tmp_path / "wide.mp4", n_frames=8, size=(640, 360))
    _, samples = read(path, size=224)
    assert samples[0][1].shape == (224, 224, 3)


def test_truncated_file_is_scored_up_to_the_last_good_frame(tmp_path):
    full = make_video(tmp_path / "full.mkv", n_frames=300, codec="mpeg4")
    cut = truncate(full, tmp_path / "cut.mkv", keep=0.5)
    r, samples = read(cut)
    tl = r.timeline
    assert tl.truncated and "declared 10.00 s" in tl.note
    assert 3.0 < tl.duration_s < 7.0
    assert len(samples) == GRID.n_samples(tl.duration_s)


@pytest.mark.parametrize(
    "maker,problem",
    [
        (lambda p: make_zero_frame(p / "zero.avi"), "no decodable video frames"),
        (lambda p: make_audio_only(p / "audio.mka"), "no video stream (found: audio)"),
        (lambda p: (p / "text.mp4").write_text("hello") and p / "text.mp4", "not a readable video"),
        (lambda p: (p / "empty.mp4").write_bytes(b"") or p / "empty.mp4", "empty file"),
        (lambda p: truncate(make_video(p / "m.mp4", n_frames=90), p / "cut.mp4"), "not a readable video"),
        (lambda p: p / "missing.mp4", "no such file"),
    ],
)
def test_bad_inputs_get_one_clear_line(tmp_path, maker, problem):
    path = maker(tmp_path)
    with pytest.raises(InputError) as e:
        read(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and problem in msg and "\n" not in msg


def test_absurd_resolution_is_refused(tmp_path):
    """A Y4M header is plain text, so a 20000x2 stream costs 60 KB to make."""
    w, h = 20000, 2
    path = tmp_path / "huge.y4m"
    frame = b"FRAME\n" + bytes(w * h * 3 // 2)
    path.write_bytes(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n".encode() + frame * 3)
    with pytest.raises(InputError, match=r"absurd resolution 20000x2"):
        read(path)


def test_folders_expand_recursively_by_extension(tmp_path):
    (tmp_path / "cam1" / "day2").mkdir(parents=True)
    a = make_video(tmp_path / "cam1" / "a.mp4", n_frames=2)
    b = make_video(tmp_path / "cam1" / "day2" / "b.MKV", n_frames=2)
    (tmp_path / "cam1" / "notes.txt").write_text("x")
    exp = expand_inputs([str(tmp_path), str(tmp_path / "nope.mp4"), "rtsp://127.0.0.1:8554/cam"])
    assert [s.location for s in exp.sources] == [str(a), str(b), "rtsp://127.0.0.1:8554/cam"]
    assert exp.sources[-1].is_url
    assert exp.problems == [f"{tmp_path / 'nope.mp4'}: no such file or folder"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no video files" in expand_inputs([str(empty)]).problems[0]


@pytest.mark.slow
def test_http_url_is_opened_by_pyav(tmp_path, seed_memory, tiny_encoder):
    """A URL goes to FFmpeg untouched: serve a real file over HTTP on loopback and score it."""
    import functools
    import http.server
    import threading

    from flashback.scoring.pipeline import Detector

    make_video(tmp_path / "cam.mp4", n_frames=45)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cam.mp4"
        result = Detector(seed_memory, tiny_encoder).score(url)
        missing = f"http://127.0.0.1:{server.server_address[1]}/nope.mp4"
        with pytest.raises(InputError, match="nope.mp4: not a readable video"):
            Detector(seed_memory, tiny_encoder).score(missing)
    finally:
        server.shutdown()
    assert len(result.frame_times) == 45 and result.video_id.startswith("url-")


# ---------------------------------------------------------------- what the encoder is shown


def edge_marked(path, size=(128, 96)):
    """A 4:3 video: grey, with a red band along the left edge and a blue band along the right one."""
    import av

    w, h = size
    img = np.full((h, w, 3), 128, np.uint8)
    img[:, : w // 10] = (255, 0, 0)
    img[:, -(w // 10):] = (0, 0, 255)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv444p"
        s.options = {"crf": "0"}
        for _ in range(10):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def colour_share(rgb, colour) -> float:
    return float(np.mean(np.all(np.abs(rgb.astype(int) - colour) < 40, axis=-1)))


def test_the_default_fit_shows_the_encoder_the_whole_frame(tmp_path):
    """An incident at the edge of a 4:3 camera must reach the encoder: crop loses both side bands,
    pad (the default) and squash keep them, tiles put each band in its own view."""
    video = edge_marked(tmp_path / "edges.mp4")
    fits = {}
    for fit in ("crop", "pad", "squash", "tiles"):
        r, samples = read(video, size=48, fit=fit)
        fits[fit] = samples[0][1]
        assert r.views == (2 if fit == "tiles" else 1)
    assert colour_share(fits["crop"], (255, 0, 0)) == 0 and colour_share(fits["crop"], (0, 0, 255)) == 0
    for fit in ("pad", "squash"):
        assert fits[fit].shape == (48, 48, 3)
        assert colour_share(fits[fit], (255, 0, 0)) > 0.05 and colour_share(fits[fit], (0, 0, 255)) > 0.05
    left, right = fits["tiles"]
    assert fits["tiles"].shape == (2, 48, 48, 3)
    assert colour_share(left, (255, 0, 0)) > 0.05 and colour_share(right, (0, 0, 255)) > 0.05
    # pad: the bars above and below the picture are the fill colour, not picture
    padded = FrameFit("pad", 48, (10, 20, 30))
    with VideoReader(VideoSource(str(video)), padded) as r:
        _, first = next(iter(r.samples(GRID)))
    assert (first[0] == (10, 20, 30)).all() and (first[-1] == (10, 20, 30)).all() and (first[24, 24] != (10, 20, 30)).any()
    from flashback.settings import ScoringSettings as S

    assert S().frame_fit == "pad"


def test_a_display_rotation_is_applied(tmp_path):
    """A phone records landscape pixels and a 90-degree display matrix: the encoder must see it upright."""
    import av

    coded = np.full((48, 64, 3), 20, np.uint8)
    coded[:, :32] = 230  # the left half of the stored pixels is bright
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv444p"
        s.options = {"crf": "0"}
        s.set_display_rotation(90)  # counter-clockwise, as FFmpeg's display matrix says
        for _ in range(5):
            for p in s.encode(av.VideoFrame.from_ndarray(coded, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    _, samples = read(path, size=32, fit="squash")
    rgb = samples[0][1].mean(axis=-1)
    # turned 90 degrees counter-clockwise, the stored left half is now the bottom half
    assert rgb[20:].mean() > 180 and rgb[:12].mean() < 60
    assert abs(rgb[:, :16].mean() - rgb[:, 16:].mean()) < 20


def test_an_anamorphic_cameras_sample_aspect_ratio_is_applied(tmp_path):
    """480x360 stored with SAR 4:3 is shown 640x360: fitted as 4:3 it was squashed (issue 27)."""
    from fractions import Fraction

    import av

    def write(path, size, sar):
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=10)
            s.width, s.height, s.pix_fmt = *size, "yuv420p"
            s.codec_context.sample_aspect_ratio = sar
            for _ in range(5):
                for p in s.encode(av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 200, np.uint8), format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        return path

    fill = (10, 20, 30)
    for path, picture_rows in ((write(tmp_path / "ana.mp4", (480, 360), Fraction(4, 3)), 126),  # 224 * 360 / 640
                               (write(tmp_path / "square.mp4", (480, 360), Fraction(1, 1)), 168)):  # 224 * 360 / 480
        with VideoReader(VideoSource(str(path)), FrameFit("pad", 224, fill)) as r:
            _, first = next(iter(r.samples(GRID)))
        assert 224 - (first == fill).all(axis=(1, 2)).sum() == picture_rows, path.name
    with VideoReader(VideoSource(str(tmp_path / "ana.mp4")), FrameFit("tiles", 224, fill)) as r:
        assert r.views == 2 and r.fit.sar == 4 / 3  # tiles count over the displayed 640x360
