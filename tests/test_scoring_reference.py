"""The scoring path against an independent, straightforward numpy computation on the same vectors.

The reference does everything the slow, obvious way: the full similarity matrix, alpha applied to
every anomalous column, a full sort, softmax, weighted mean, and for each frame a loop over all
segments to find the ones covering it.  Agreement to 1e-6 checks the two-index top-K merge, the
weights, the alpha effect and the overlap averaging.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flashback.memory.bundle import BundleSpec, CaptionTable, load_bundle, write_bundle
from flashback.scoring.pipeline import Detector
from flashback.settings import PRESETS, ScoringSettings
from flashback.video.cameras import UserText
from flashback.video.timegrid import TimeGrid

DIM = 32  # the tiny test encoder's; the bundle is written under its identity, vectors given directly


def unit(rng, n, d=DIM):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def memory(tmp_path_factory, tiny_encoder):
    rng = np.random.default_rng(0)
    n_norm, n_anom = 70, 50
    captions = CaptionTable(
        texts=[f"normal {i}" for i in range(n_norm)] + [f"anomalous {i}" for i in range(n_anom)],
        anomalous=[False] * n_norm + [True] * n_anom,
        categories=["Normal"] * n_norm + [f"Cat{i % 4}" for i in range(n_anom)],
        provenance=["test"] * (n_norm + n_anom),
    )
    out = tmp_path_factory.mktemp("ref") / "bundle"
    write_bundle(out, captions, unit(rng, n_norm + n_anom), BundleSpec(tiny_encoder.identity, alpha=0.9, template="none", logit_scale=100.0))
    return load_bundle(out)


def vectors_of(memory) -> np.ndarray:
    """Read the stored vectors back out of the two Flat indexes, in caption-id order."""
    parts = [memory.indexes[label].reconstruct_n(0, memory.indexes[label].ntotal) for label in ("normal", "anomalous")]
    return np.concatenate(parts)


def reference(queries, mem_vecs, anomalous, alpha, k, lam):
    sims = queries.astype(np.float64) @ mem_vecs.astype(np.float64).T
    sims[:, anomalous] *= alpha
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    s = np.take_along_axis(sims, top, axis=1)
    w = np.exp(lam * (s - s.max(axis=1, keepdims=True)))
    w /= w.sum(axis=1, keepdims=True)
    return top, s, w, (w * anomalous[top]).sum(axis=1)


def reference_frames(frame_times, spans, seg_scores):
    out = []
    for t in frame_times:
        covering = [seg_scores[j] for j, (a, b) in enumerate(spans) if a <= t < b]
        if not covering:  # past the last segment's end
            covering = [seg_scores[-1]]
        out.append(np.mean(covering))
    return np.array(out)


@pytest.mark.parametrize("alpha,k", [(1.0, 10), (0.9, 10), (0.7, 5), (1.2, 1), (0.95, 200)])
def test_segment_scores_match_reference(memory, alpha, k, tiny_encoder):
    rng = np.random.default_rng(1)
    queries = unit(rng, 40)
    settings = ScoringSettings(alpha=alpha, top_k=k, smoothing_sigma_s=0.0)
    det = Detector(memory, tiny_encoder, settings)
    grid = TimeGrid.from_settings(det.settings)
    spans = grid.segment_spans(len(queries), duration_s=20.7)
    frame_times = np.sort(rng.uniform(0, 20.7, 500))
    result = det.score_segment_vectors(queries, spans, frame_times, 20.7)

    kk = min(k, len(memory.captions))
    top, s, w, scores = reference(queries, vectors_of(memory), memory.captions.anomalous, alpha, kk, 100.0)
    seg = result.segments
    # same top-K sets (order can differ only between exact ties, which random vectors do not have)
    assert [set(r) for r in seg.ids] == [set(r) for r in top]
    np.testing.assert_allclose(seg.sims, s, atol=1e-6)
    np.testing.assert_allclose(seg.weights, w, atol=1e-6)
    np.testing.assert_allclose(seg.scores, scores, atol=1e-6)
    np.testing.assert_allclose(result.raw_scores, reference_frames(frame_times, spans, scores), atol=1e-6)
    np.testing.assert_array_equal(result.scores, result.raw_scores)  # sigma 0: no smoothing


def test_centred_search_is_the_reference_on_centred_vectors(memory, tiny_encoder):
    """``centre``: queries, captions and run-time texts less the mean of the memory's vectors, unit
    length again, then the same rule; the captions preset turns it on, the video presets leave it off."""
    rng = np.random.default_rng(3)
    queries = unit(rng, 40)
    texts = [UserText("a person climbs over the fence", True), UserText("a dog runs in the yard", False)]
    det = Detector(memory, tiny_encoder, ScoringSettings(alpha=0.9, smoothing_sigma_s=0.0, centre=True), texts=texts)
    spans = TimeGrid.from_settings(det.settings).segment_spans(len(queries), duration_s=20.7)
    frame_times = np.sort(rng.uniform(0, 20.7, 500))
    result = det.score_segment_vectors(queries, spans, frame_times, 20.7)

    stored = vectors_of(memory)
    mean = stored.mean(0)
    centred = lambda v: (v - mean) / np.linalg.norm(v - mean, axis=1, keepdims=True)  # noqa: E731
    everything = np.concatenate([stored, det.extras.vectors])  # extra entries' ids follow the memory's
    anomalous = np.concatenate([memory.captions.anomalous, [True, False]])
    top, s, _, scores = reference(centred(queries), centred(everything), anomalous, 0.9, 10, 100.0)
    assert [set(r) for r in result.segments.ids] == [set(r) for r in top]
    assert (top >= len(memory.captions)).any()  # the run-time texts were in the race
    np.testing.assert_allclose(result.segments.sims, s, atol=1e-5)
    np.testing.assert_allclose(result.segments.scores, scores, atol=1e-5)
    plain = Detector(memory, tiny_encoder, ScoringSettings(alpha=0.9, smoothing_sigma_s=0.0), texts=texts)
    assert np.abs(plain.score_segment_vectors(queries, spans, frame_times, 20.7).segments.scores - scores).max() > 0.01
    assert not any(p.centre for p in PRESETS.values())  # opt-in everywhere: its gain did not clear the noise


def test_alpha_changes_which_captions_are_retrieved(memory, tiny_encoder):
    """Lower alpha pushes anomalous captions out of the top-K: the count of anomalous hits drops."""
    rng = np.random.default_rng(2)
    queries = unit(rng, 200)
    counts = []
    for alpha in (1.0, 0.9, 0.7):
        det = Detector(memory, tiny_encoder, ScoringSettings(alpha=alpha, smoothing_sigma_s=0))
        r = det.searcher.search(queries)
        counts.append(int(r.anomalous.sum()))
        top, *_ = reference(queries, vectors_of(memory), memory.captions.anomalous, alpha, 10, 100.0)
        assert int(memory.captions.anomalous[top].sum()) == counts[-1]
    assert counts[0] > counts[1] > counts[2]


def test_memory_alpha_and_logit_scale_are_the_defaults(memory, tiny_encoder):
    det = Detector(memory, tiny_encoder, ScoringSettings())
    assert det.settings.alpha == pytest.approx(0.9)
    assert det.settings.logit_scale == pytest.approx(100.0)


def test_smoothing_is_scipy_gaussian_in_seconds(memory, tiny_encoder):
    from scipy.ndimage import gaussian_filter1d

    rng = np.random.default_rng(3)
    queries = unit(rng, 19)
    det = Detector(memory, tiny_encoder, ScoringSettings(smoothing_sigma_s=0.4))
    grid = TimeGrid.from_settings(det.settings)
    frame_times = np.arange(300) / 30.0  # 10 s at 30 FPS
    spans = grid.segment_spans(len(queries), 10.0)
    r = det.score_segment_vectors(queries, spans, frame_times, 10.0)
    expected = gaussian_filter1d(r.raw_scores, sigma=0.4 * 30, mode="nearest")
    np.testing.assert_allclose(r.scores, expected, atol=1e-9)


def test_video_segments_are_means_of_grid_frames_each_encoded_once(seed_memory, tiny_encoder, tmp_path):
    """Stream assembly vs. the obvious way: encode every grid frame, average each segment's frames."""
    from flashback.video.decode import VideoReader
    from flashback.video.sources import VideoSource
    from flashback.video.synthetic import make_video

    video = make_video(tmp_path / "v.mp4", n_frames=113, fps=30, scene_of=lambda i: i // 20)
    det = Detector(seed_memory, tiny_encoder, ScoringSettings(), batch_size=7)
    grid = det.grid
    before = tiny_encoder.images_encoded
    with VideoReader(VideoSource(str(video)), det.frame_fit()) as reader:
        streamed = det.segment_vectors(reader)
        n_samples = reader.timeline.n_samples
    assert tiny_encoder.images_encoded - before == n_samples  # every grid frame encoded once
    assert n_samples == grid.n_samples(113 / 30)

    with VideoReader(VideoSource(str(video)), det.frame_fit()) as reader:
        frames = np.stack([rgb for _, rgb in reader.samples(grid)])
    emb = tiny_encoder.encode_images(frames)
    ref = []
    for s in range(grid.n_segments(len(frames))):
        m = emb[list(grid.segment_samples(s, len(frames)))].mean(axis=0)
        ref.append(m / np.linalg.norm(m))
    np.testing.assert_allclose(streamed, np.array(ref), atol=1e-5)
    assert len(streamed) == 7  # 3.77 s: segments start at 0, 0.5, ... 3.0 s


def test_encoder_mismatch_is_refused_naming_both(memory, tiny_encoder, tmp_path):
    from flashback.encoders.encoder import ClipEncoder
    from flashback.encoders.encoder_registry import EncoderSpec
    from flashback.errors import EncoderMismatchError

    other_weights = ClipEncoder(EncoderSpec(model=tiny_encoder.spec.model, pretrained="random", seed=1), device="cpu", backend="torch")
    with pytest.raises(EncoderMismatchError) as e:
        Detector(memory, other_weights)
    msg = str(e.value)
    assert tiny_encoder.identity.key in msg and other_weights.identity.key in msg and str(memory.path) in msg


def test_tiles_score_each_view_and_keep_the_highest(memory, tiny_encoder):
    """With several views per segment (the tiles frame fit), each view is scored on its own and the
    segment takes the view with the highest score, captions and all."""
    from flashback.scoring.scoring import score_views

    rng = np.random.default_rng(4)
    det = Detector(memory, tiny_encoder, ScoringSettings(smoothing_sigma_s=0.0))
    views = unit(rng, 24).reshape(12, 2, DIM)
    spans = np.stack([np.arange(12) * 0.5, np.arange(12) * 0.5 + 1.0], axis=1)
    both = score_views(det.searcher, views, 100.0, spans)
    alone = [score_views(det.searcher, views[:, v], 100.0, spans) for v in (0, 1)]
    best = np.argmax(np.stack([a.scores for a in alone]), axis=0)
    np.testing.assert_allclose(both.scores, np.maximum(alone[0].scores, alone[1].scores))
    for s, v in enumerate(best):
        np.testing.assert_array_equal(both.ids[s], alone[v].ids[s])
    assert set(best) == {0, 1}  # both views won somewhere: the test exercises the choice


def test_each_segments_dominant_category_is_its_own_explanations(seed_memory, tiny_encoder, tmp_path):
    """The store's per-segment category (computed without building explanations) is explain()'s."""
    from flashback.video.synthetic import make_video

    r = Detector(seed_memory, tiny_encoder, ScoringSettings()).score(
        str(make_video(tmp_path / "v.mp4", n_frames=300, scene_of=lambda i: i // 30)))
    seg = r.segments
    expected = [seg.take([s]).explain(seed_memory.captions).dominant_category for s in range(len(seg))]
    assert seg.dominant_categories(seed_memory.captions) == expected
    assert len(set(expected)) > 1  # more than one category, so the comparison means something


# ---------------------------------------------------------------- step 3 of the spec, from its text alone

SPEC = Path(__file__).resolve().parents[1] / "docs" / "scoring.md"


def test_the_spec_states_the_numbers_the_code_uses():
    """docs/scoring.md step 3 is what a reader reproduces the encoder's input from: the numbers it
    states (fill, scaler, tile limit, rotation sign) must be the code's."""
    import inspect

    from open_clip.constants import OPENAI_DATASET_MEAN

    from flashback.video.decode import MAX_TILES, displayed_rgb

    text = " ".join(SPEC.read_text().split())
    fill = tuple(int(round(255 * m)) for m in OPENAI_DATASET_MEAN)
    assert f"RGB ({fill[0]}, {fill[1]}, {fill[2]})" in text and str(tuple(OPENAI_DATASET_MEAN)) in text
    assert inspect.signature(displayed_rgb).parameters["interpolation"].default == "BICUBIC"
    assert 'interpolation="BICUBIC"' in text and "SWS_BICUBIC" in text
    assert f"min({MAX_TILES}," in text and "counter-clockwise" in text and "sample aspect ratio" in text


def _spec_input(frame, mode: str, size: int, fill, sar: float) -> np.ndarray:
    """Step 3 as the spec words it, written without flashback: displayed size, one swscale call on
    the stored picture, then the quarter turns; pad/crop/tiles geometry with its stated rounding."""
    import math

    k = round(frame.rotation / 90) % 4
    w, h = (round(frame.width * sar) if sar != 1 else frame.width), frame.height
    if k % 2:
        w, h = h, w

    def scaled(nw, nh):
        cw, ch = (nh, nw) if k % 2 else (nw, nh)
        return np.rot90(frame.reformat(width=cw, height=ch, format="rgb24", interpolation="BICUBIC").to_ndarray(), k)

    if mode == "pad":
        nw, nh = max(1, min(size, round(w * size / max(w, h)))), max(1, min(size, round(h * size / max(w, h))))
        out = np.empty((size, size, 3), np.uint8)
        out[:] = fill
        top, left = (size - nh) // 2, (size - nw) // 2
        out[top:top + nh, left:left + nw] = scaled(nw, nh)
        return out
    nw, nh = max(size, round(w * size / min(w, h))), max(size, round(h * size / min(w, h)))
    img = scaled(nw, nh)
    if mode == "crop":
        return img[(nh - size) // 2:(nh - size) // 2 + size, (nw - size) // 2:(nw - size) // 2 + size]
    n = max(1, min(8, math.ceil(max(w, h) / min(w, h) - 0.001)))
    offsets = np.round(np.linspace(0, max(nw, nh) - size, n)).astype(int)
    return np.stack([img[:, o:o + size] if nw >= nh else img[o:o + size, :] for o in offsets])


@pytest.mark.parametrize("rotation", [0, 90, -90])
@pytest.mark.parametrize("mode", ["pad", "crop", "tiles"])
def test_the_spec_reproduces_the_encoder_input_exactly(tmp_path, rotation, mode):
    """An anamorphic (SAR 4:3), rotated, BT.709 full-range stream: the spec's rules give the very bytes."""
    from fractions import Fraction

    import av

    from flashback.video.decode import FrameFit, VideoReader
    from flashback.video.sources import VideoSource

    rng = np.random.default_rng(rotation % 360)
    path = tmp_path / f"odd-{rotation}.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 90, 62, "yuvj420p"
        s.codec_context.sample_aspect_ratio = Fraction(4, 3)
        s.codec_context.colorspace = 1  # BT.709
        if rotation:
            s.set_display_rotation(rotation)
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (62, 90, 3), dtype=np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    fill = (123, 117, 104)
    fit = FrameFit(mode, 32, fill)
    with VideoReader(VideoSource(str(path)), fit) as r, av.open(str(path)) as c:
        ours = r.encoder_input(next(r.frames()))
        theirs = _spec_input(next(c.decode(c.streams.video[0])), mode, 32, fill, 4 / 3)
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)
