"""The one entry point: ``Detector(memory, encoder, settings).score(video)``.

video -> grid samples (decode thread) -> image embeddings (batched) -> segment vectors
-> top-K retrieval -> segment scores -> frame scores -> smoothing -> events.

``score_segment_vectors`` is everything after "segment vectors": a caption-based or any other
front end that produces one vector per time span reuses it unchanged, and so does the live path
(through ``score_views``, the same retrieval and scoring).  It returns what it computed
(``Scored``); each front end makes its ``VideoResult`` whole from that and what it read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..encoders.encoder_registry import file_sha256
from ..encoders.protocols import ImageEncoder, TextEncoder, encode_views
from ..memory.bundle import CaptionTable, MemoryBundle
from ..memory.extras import Extras
from ..memory.retrieval import EXEMPLAR_GATE, MemorySearcher
from ..settings import ScoringSettings, sigma_in_frames
from ..video.cameras import Region, UserText
from ..video.decode import FrameFit, Timeline, VideoInfo, VideoReader
from ..video.sources import VideoSource, is_url
from ..video.timegrid import TimeGrid, pool
from .events import Event, find_events
from .scoring import Segments, frame_scores, score_views, smooth

ProgressFn = Callable[[float, float | None], None]  # (seconds scored, total seconds or None)


@dataclass
class Scored:
    """What scoring computes from segment vectors: all of a result but what it is a result of (and
    the detector's caption table, which a Ray actor need not send back with every video)."""

    duration_s: float
    frame_times: np.ndarray
    raw_scores: np.ndarray  # per frame, before smoothing
    scores: np.ndarray  # per frame, smoothed: the output
    segments: Segments
    events: list[Event]


@dataclass
class VideoResult(Scored):
    """A video's result, made whole in one place (``VideoResult.of``) by each front end: what was
    scored (``Scored``), the table its caption ids index into, and what it is of (source, content
    address, how it was read)."""

    captions: CaptionTable  # the detector's table that ``segments.ids`` index into
    source: str = ""
    video_id: str = ""
    info: VideoInfo | None = None
    n_samples: int = 0
    truncated: bool = False
    note: str = ""
    region: str | None = None  # what of each frame was seen (cameras.Region.describe), None: all of it

    @classmethod
    def of(cls, scored: Scored, captions: CaptionTable, source: str, video_id: str, **about) -> "VideoResult":
        return cls(**{f.name: getattr(scored, f.name) for f in dataclasses.fields(Scored)}, captions=captions,
                   source=source, video_id=video_id, **about)

    @property
    def fps(self) -> float:
        return len(self.frame_times) / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(frozen=True)
class Work:
    """A video to score, and how: the part of each frame that counts, and the cameras it belongs to
    (for camera-specific texts and overlays).  What ``score`` hands to a pool or a cluster."""

    source: VideoSource
    region: Region | None = None
    scope: frozenset = frozenset()
    camera: str | None = None  # the camera file's table it matched (part of the run it is stored under)


def video_id_for(source: VideoSource) -> str:
    """Content address of a file (so a moved or renamed file is still the same video; two
    byte-identical files are one video too).  A URL's id is the hash of the URL as shown (password masked)."""
    if source.is_url:
        return "url-" + hashlib.sha256(str(source).encode()).hexdigest()[:32]  # masked: no hash of a password
    return file_sha256(source.path)


def pool_segments(grid_vectors: np.ndarray, grid: TimeGrid) -> np.ndarray:
    """Segment vectors from all grid embeddings at once (what segment_vectors does while streaming)."""
    n = len(grid_vectors)
    return np.stack([pool(grid_vectors[list(grid.segment_samples(s, n))]) for s in range(grid.n_segments(n))])


class _Prefetch:
    """Run a generator in a thread so decoding overlaps encoding (PyAV releases the GIL)."""

    _DONE = object()

    def __init__(self, gen: Iterator, maxsize: int):
        self._q: queue.Queue = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(gen,), daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, gen: Iterator) -> None:
        try:
            for item in gen:
                if not self._put(item):
                    return
            self._put(self._DONE)
        except BaseException as e:  # handed to the consumer, raised there
            self._put(e)

    def __iter__(self):
        while True:
            item = self._q.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class SampleBatch:
    """Grid samples encoded together: each distinct frame once (``rgb``), and for every sample
    (``idx``, consecutive) the row of ``rgb`` it shows (``take``).

    A source slower than the grid (10 FPS on a 16-per-second grid) puts several samples on one
    frame; the reader hands out the same array for them, so it is encoded once and its vector
    reused.  A batch never refers to another batch's frames, so batches can be encoded anywhere
    (a cluster's actors) and give the same vectors as here.
    """

    idx: np.ndarray  # (n,) sample indices
    take: np.ndarray  # (n,) row of rgb for each sample
    rgb: np.ndarray  # (m, S, S, 3) uint8, or (m, V, S, S, 3) with V views per frame; m <= n

    def rows(self, encoder: ImageEncoder) -> np.ndarray:
        """(n, D) or (n, V, D): every sample's embedding."""
        return encode_views(encoder, self.rgb)[self.take]


def sample_batches(samples: Iterator[tuple[int, np.ndarray]], batch_size: int) -> Iterator[SampleBatch]:
    """Samples in batches of up to ``batch_size`` distinct frames."""
    idx: list[int] = []
    take: list[int] = []
    rgb: list[np.ndarray] = []

    def batch() -> SampleBatch:
        return SampleBatch(np.asarray(idx, np.int64), np.asarray(take, np.int64), np.stack(rgb))

    for i, frame in samples:
        if not rgb or frame is not rgb[-1]:
            if len(rgb) == batch_size:
                yield batch()
                idx, take, rgb = [], [], []
            rgb.append(frame)
        idx.append(i)
        take.append(len(rgb) - 1)
    if idx:
        yield batch()


class SegmentPooler:
    """Segment vectors from grid embeddings that arrive in order, each kept only until no segment
    needs it (a long video never holds all its frames' vectors)."""

    def __init__(self, grid: TimeGrid):
        self.grid = grid
        self._held: dict[int, np.ndarray] = {}
        self._out: list[np.ndarray] = []
        self._next = 0

    def add(self, idx: np.ndarray, rows: np.ndarray) -> None:
        self._held.update(zip(idx.tolist(), rows))
        self._complete(int(idx[-1]) + 1, final=False)

    def finish(self, n_samples: int) -> np.ndarray:
        self._complete(n_samples, final=True)
        return np.asarray(self._out, dtype=np.float32)

    def _complete(self, upto: int, final: bool) -> None:
        grid = self.grid
        while True:
            first = self._next * grid.stride
            last = first + grid.frames_per_segment - 1
            if final:
                if self._next >= grid.n_segments(upto):
                    break
                last = min(last, upto - 1)
            elif last >= upto:
                break
            self._out.append(pool([self._held[i] for i in range(first, last + 1)]))
            self._next += 1
            for i in range(first, min(first + grid.stride, upto)):
                self._held.pop(i, None)


@dataclass(frozen=True)
class DetectorSpec:
    """What a ``Detector`` is made of besides its memory and encoder, as given: what another process
    (a Ray actor) rebuilds the same detector from, with its own copy of the memory and the model."""

    settings: ScoringSettings = ScoringSettings()
    batch_size: int = 32
    texts: tuple[UserText, ...] = ()
    overlays: Extras | None = None
    hwaccel: str | None = None

    def build(self, memory: MemoryBundle, encoder: TextEncoder | ImageEncoder) -> "Detector":
        return Detector(memory, encoder, self.settings, self.batch_size, self.texts, self.overlays, self.hwaccel)


class Detector:
    """Scores videos against one memory with one encoder; settings are fixed per detector."""

    def __init__(self, memory: MemoryBundle, encoder: TextEncoder | ImageEncoder,
                 settings: ScoringSettings = ScoringSettings(), batch_size: int = 32, texts: list[UserText] = (),
                 overlays: Extras | None = None, hwaccel: str | None = None):
        """``texts``: what the operator asked at run time (``--alert``/``--ignore``); ``overlays``: the
        exemplars of reviewers' verdicts (``overlays.load_extras``); both searched beside the memory.
        ``hwaccel``: the hardware decoder frames are decoded on (``decode.open_input``), None: software."""
        self.spec = DetectorSpec(settings, batch_size, tuple(texts), overlays, hwaccel)
        self.hwaccel = hwaccel
        memory.require_encoder(encoder.identity)
        self.memory = memory
        self.encoder = encoder
        self.settings = settings.resolved(memory.manifest.alpha, memory.manifest.logit_scale)
        self.grid = TimeGrid.from_settings(self.settings)
        self.batch_size = batch_size
        self.extras = Extras.embed(list(texts), encoder, memory.manifest.template) + (overlays or Extras())
        self.captions = self.extras.table(memory.captions)  # what segment caption ids index into
        # verdict exemplars count for near-duplicates only, on both paths (retrieval.py; measured in
        # benchmarks/overlay_verdicts.py: raw exemplars cost 2-8 AUC points elsewhere, gated ones under 0.4)
        self.searcher = MemorySearcher(memory, self.settings.alpha, self.settings.top_k, self.extras, EXEMPLAR_GATE,
                                       device=str(getattr(encoder, "device", "cpu")), centre=self.settings.centre)

    def allowed(self, scope, n: int) -> np.ndarray | None:
        """Which extra entries ``n`` segments of one camera (``scope``: a name, or several) may retrieve; None: all."""
        if not self.extras.scoped:
            return None
        return np.broadcast_to(self.extras.allowed(scope), (n, len(self.extras)))

    def frame_fit(self, region: Region | None = None, source: str = "") -> FrameFit:
        """What the encoder is shown of each frame of ``source`` (an image encoder only)."""
        return FrameFit(self.settings.frame_fit, self.encoder.image_size, self.encoder.pad_rgb, region, source, self.hwaccel)

    # ------------------------------------------------------------ video front end

    def segment_vectors(
        self, reader: VideoReader, progress: ProgressFn | None = None, grid_sink: list | None = None
    ) -> np.ndarray:
        """Pooled vector of each segment's frames (``timegrid.pool``); every grid frame encoded once.

        ``grid_sink``, when given, receives every grid frame's embedding in order, for callers that
        cache them (evaluation sweeps re-pool them under other settings without re-encoding).
        """
        pooler = SegmentPooler(self.grid)
        total = reader.info.declared_duration_s
        prefetch = _Prefetch(sample_batches(reader.samples(self.grid), self.batch_size), maxsize=2)
        try:
            for batch in prefetch:
                rows = batch.rows(self.encoder)
                pooler.add(batch.idx, rows)
                if grid_sink is not None:
                    grid_sink.extend(rows)
                if progress is not None:
                    progress(self.grid.sample_time(int(batch.idx[-1])), total)
        finally:
            prefetch.close()
        return pooler.finish(reader.timeline.n_samples)

    def score(self, source: VideoSource | str, progress: ProgressFn | None = None,
              video_id: str | None = None, region: Region | None = None, scope=None) -> VideoResult:
        """``region``: the part of each frame the encoder sees (``cameras.Region``); None: all of it.
        ``scope``: the camera(s) it belongs to, for camera-specific texts and overlays."""
        if isinstance(source, str):
            source = VideoSource(source, is_url=is_url(source))
        video_id = video_id or video_id_for(source)
        with VideoReader(source, self.frame_fit(region, str(source))) as reader:
            vectors = self.segment_vectors(reader, progress)
            result = self.video_result(vectors, reader.timeline, reader.info, video_id, region, scope)
        if progress is not None:
            progress(result.duration_s, result.duration_s)
        return result

    def video_result(self, vectors: np.ndarray, tl: Timeline, info: VideoInfo, video_id: str,
                     region: Region | None = None, scope=None) -> VideoResult:
        """A decoded video's result from its segment vectors: the one ending of ``score``, wherever
        the vectors were made (here, or on a cluster's workers: ``flashback.cluster``)."""
        return VideoResult.of(self.video_scored(vectors, tl, scope), self.captions,
                              **self.about(tl, info, video_id, region))

    def video_scored(self, vectors: np.ndarray, tl: Timeline, scope=None) -> Scored:
        """A decoded video's segment vectors scored: what a Ray actor sends back (``cluster.workers``)."""
        spans = self.grid.segment_spans(len(vectors), tl.duration_s)
        return self.score_segment_vectors(vectors, spans, np.asarray(tl.frame_times), tl.duration_s, scope)

    @staticmethod
    def about(tl: Timeline, info: VideoInfo, video_id: str, region: Region | None = None) -> dict:
        """What a decoded video's result is of, as ``VideoResult.of`` takes it."""
        return dict(source=info.source, video_id=video_id, info=info, n_samples=tl.n_samples, truncated=tl.truncated,
                    note=tl.note, region=region.describe() if region is not None else None)

    def score_caption_track(self, track, fps: float, n_frames: int | None = None, vectors: np.ndarray | None = None) -> VideoResult:
        """Captions as the front end: each caption's text vector is one segment's vector."""
        if vectors is None:
            vectors = self.encoder.encode_texts(track.texts)
        n = n_frames if n_frames is not None else max(1, int(round(track.duration_s * fps)))
        frame_times = np.arange(n) / fps
        spans = np.stack([track.starts_s, track.ends_s], axis=1)
        return VideoResult.of(self.score_segment_vectors(vectors, spans, frame_times, n / fps), self.captions,
                              f"{track.source}#{track.video}" if track.source.endswith(".jsonl") else track.source,
                              "captions-" + hashlib.sha256(("\n".join(track.texts) + f"|{track.video}").encode()).hexdigest()[:32],
                              n_samples=len(track.texts))

    def score_grid(self, grid_vectors: np.ndarray, frame_times: np.ndarray, duration_s: float) -> Scored:
        """Score from already-computed grid frame embeddings (a cache), without decoding or encoding."""
        vectors = pool_segments(grid_vectors, self.grid)
        spans = self.grid.segment_spans(len(vectors), duration_s)
        return self.score_segment_vectors(vectors, spans, np.asarray(frame_times), duration_s)

    # ------------------------------------------------------------ shared back end

    def score_segment_vectors(
        self, vectors: np.ndarray, spans: np.ndarray, frame_times: np.ndarray, duration_s: float, scope=None
    ) -> Scored:
        s = self.settings
        segments = score_views(self.searcher, vectors, s.logit_scale, spans, allowed=self.allowed(scope, len(vectors)))
        raw = frame_scores(frame_times, spans, segments.scores)
        fps = len(frame_times) / duration_s if duration_s > 0 else 0.0
        smoothed = smooth(raw, sigma_in_frames(s.smoothing_sigma_s, fps))
        events = find_events(frame_times, duration_s, smoothed, segments, self.captions, s)
        return Scored(duration_s, frame_times, raw, smoothed, segments, events)
