"""Many files, or one long one, on one machine: decoding in worker processes (``pool``), one
encoder here fed batches drawn from every video in flight, retrieval and scoring as a local run.

A video is either one job (read sequentially) or, when it is a large share of the work, several
``spans`` decoded at once.  A span that cannot reproduce the sequential read (``Unsplittable``)
sends its video back as one job: results never depend on how a file was cut.  Grid embeddings
are pooled into segments in sample order (``SegmentPooler``) and the video ends exactly as
``Detector.score`` ends it (``Detector.video_result``), so frame scores are a local run's.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..encoders.protocols import encode_views
from ..errors import FlashbackError, InputError
from ..scoring.pipeline import Detector, SampleBatch, SegmentPooler, Work
from ..scoring.schedule import ResultSink
from ..video.decode import VideoReader, hardware_for
from ..video.spans import Span, Unsplittable, plan_spans, stitch
from .pool import DecodeJob, DecodePool, Msg

ENCODE_BATCH = 256  # frames per encoder call, drawn from every video in flight


@dataclass
class _Video:
    work: Work
    keys: set = field(default_factory=set)  # the jobs whose messages count
    video_id: str | None = None
    info: object = None
    spans: list = field(default_factory=list)  # empty: one job, read sequentially
    ends: dict = field(default_factory=dict)  # part -> Timeline or SpanEnd
    rows: dict = field(default_factory=dict)  # sample -> embedding, until the pooler takes it
    pooler: SegmentPooler | None = None
    fed: int = 0  # samples the pooler has taken
    waiting: int = 0  # batches not yet encoded
    received: int = 0  # samples encoded, in any order (what the bar shows)
    tail_row: np.ndarray | None = None  # the embedding of a split video's last frame

    @property
    def parts(self) -> int:
        return max(1, len(self.spans))

    def reset(self, pooler: SegmentPooler, spans: list) -> None:
        self.spans = spans
        self.ends, self.rows, self.fed, self.waiting, self.received, self.pooler = {}, {}, 0, 0, 0, pooler
        self.tail_row = None


@dataclass
class PoolReport:
    videos: int = 0
    failed: int = 0
    split: int = 0  # videos decoded in spans
    resequenced: int = 0  # split videos read again sequentially (a span could not be exact)
    frames: int = 0
    wall_s: float = 0.0
    encode_s: float = 0.0

    def line(self, workers: int) -> str:
        fps = self.frames / self.wall_s if self.wall_s > 0 else 0.0
        split = f", {self.split} decoded in spans" if self.split else ""
        split += f" ({self.resequenced} read again sequentially)" if self.resequenced else ""
        return (f"{workers} decoding worker(s): {self.videos} video(s) scored, {self.failed} failed{split}; "
                f"{self.frames:,} frames in {self.wall_s:.1f} s = {fps:,.0f} video FPS; encoder busy {self.encode_s:.1f} s")


class PoolScorer:
    """Scores ``Work`` with ``detector`` (its encoder here), decoding in ``workers`` processes."""

    def __init__(self, detector: Detector, workers: int, encode_batch: int = ENCODE_BATCH):
        self.detector = detector
        self.pool = DecodePool(workers)
        self.encode_batch = max(encode_batch, detector.batch_size)
        self._key = 0
        self._videos: dict[int, _Video] = {}  # job key -> its video
        self._pending: list[tuple[_Video, SampleBatch]] = []
        self.report = PoolReport()
        self._hwaccel = detector.hwaccel

    def close(self) -> None:
        self.pool.close()

    # ------------------------------------------------------------ planning

    def _submit(self, video: _Video, span: Span | None, fit) -> None:
        self._key += 1
        video.keys.add(self._key)
        self._videos[self._key] = video
        d = self.detector
        first = span.part == 0 if span is not None else video.video_id is None  # hashed once per video
        self.pool.submit(DecodeJob(self._key, video.work.source, fit, d.grid, d.batch_size, span, hash=first))

    def _plan(self, video: _Video, share: float) -> None:
        """Spans for a file that is a large share of the work (by bytes), else one job."""
        d, src = self.detector, video.work.source
        fit = dataclasses.replace(d.frame_fit(video.work.region, str(src)), hwaccel=self._hwaccel)
        parts = min(self.pool.workers, int(round(share * self.pool.workers)))
        spans = []
        if parts >= 2:
            try:
                with VideoReader(src, fit) as reader:
                    spans = plan_spans(reader, d.grid, parts)
            except InputError:
                spans = []  # the worker opens it again and reports the error as the one reason
        video.reset(SegmentPooler(d.grid), spans)
        if spans:
            self.report.split += 1
        for span in spans or [None]:
            self._submit(video, span, fit)

    # ------------------------------------------------------------ the loop

    def run(self, work: Sequence[Work], sink: ResultSink) -> bool:
        """Every item of ``work`` to ``sink`` (a ``scoring.schedule.Scheduler``), scored or failed, in
        the order they finish; True if Ctrl-C stopped it."""
        start = time.perf_counter()
        sizes = [w.source.path.stat().st_size if not w.source.is_url and w.source.path.is_file() else 0 for w in work]
        self._hwaccel = hardware_for(self._hwaccel, [str(w.source) for w in work if not w.source.is_url])
        total = max(sum(sizes), 1)
        self._sink = sink
        try:
            for w, size in zip(work, sizes):
                self._plan(_Video(w), size / total)
            while self.pool.busy or self._pending:
                got = self.pool.receive(0.0 if self._pending else 0.5)
                for job, kind, payload in got:
                    self._handle(job, kind, payload)
                if self._pending and (not got or sum(len(b.rgb) for _, b in self._pending) >= self.encode_batch):
                    self._encode()
            return False
        except KeyboardInterrupt:
            return True
        finally:
            self.report.wall_s = time.perf_counter() - start
            self.close()

    def _handle(self, job: DecodeJob, kind: Msg, payload) -> None:
        video = self._videos.get(job.key)
        if video is None or job.key not in video.keys:
            return  # a job of a video that failed, or was sent back to be read sequentially
        match kind:
            case Msg.ID:
                video.video_id = payload
            case Msg.INFO:
                video.info = payload
            case Msg.BATCH:
                video.waiting += 1
                self._pending.append((video, payload))
            case Msg.END:
                video.ends[job.span.part if job.span else 0] = payload
                self._finish_if_done(video)
            case Msg.UNSPLITTABLE:
                self._resequence(video)
            case Msg.ERROR:
                self._fail(video, payload)
            case Msg.BUG:
                sys.stderr.write(payload)  # the worker's traceback, as a bug in this process would show it
                self._fail(video, f"{video.work.source}: internal error while decoding (a bug in flashback): "
                                  f"{payload.strip().splitlines()[-1]}")
            case Msg.DIED:
                self._fail(video, f"{video.work.source}: its decoding worker died (exit code {payload})")

    def _drop(self, video: _Video) -> None:
        """Nothing more of this video's jobs counts: their later messages and unencoded batches are dropped."""
        video.keys.clear()
        self._pending = [(v, b) for v, b in self._pending if v is not video]

    def _fail(self, video: _Video, reason: str) -> None:
        self._drop(video)
        self.report.failed += 1
        self._sink.failure(video.work, reason)

    def _resequence(self, video: _Video) -> None:
        """A span could not be exact: the whole video again, as one job."""
        self._drop(video)
        self.report.resequenced += 1
        self._plan(video, 0.0)  # a share of nothing: one job

    def _encode(self) -> None:
        t0 = time.perf_counter()
        pending, self._pending = self._pending, []
        rows = encode_views(self.detector.encoder, np.concatenate([b.rgb for _, b in pending]))
        self.report.encode_s += time.perf_counter() - t0
        at = 0
        for video, batch in pending:
            m = len(batch.rgb)
            if m > int(batch.take.max()) + 1:  # a row no sample takes: the last frame of a video in spans
                video.tail_row = rows[at + m - 1]
            self._add(video, batch.idx, rows[at : at + m][batch.take])
            at += m
            video.waiting -= 1
        for video in {id(v): v for v, _ in pending}.values():
            self._finish_if_done(video)

    def _add(self, video: _Video, idx: np.ndarray, rows: np.ndarray) -> None:
        """Rows in any order in, the pooler fed in sample order."""
        video.rows.update(zip(idx.tolist(), rows))
        video.received += len(idx)
        run = []
        while video.fed in video.rows:
            run.append(video.rows.pop(video.fed))
            video.fed += 1
        if run:
            video.pooler.add(np.arange(video.fed - len(run), video.fed), np.stack(run))
        total = video.info.declared_duration_s if video.info is not None else None
        self._sink.seconds(video.work, min(video.received * self.detector.grid.step_s, total or np.inf), total)

    def _finish_if_done(self, video: _Video) -> None:
        if not video.keys or len(video.ends) < video.parts or video.waiting:
            return
        d = self.detector
        try:
            if not video.spans:
                tl = video.ends[0]
            else:
                ends = [video.ends[k] for k in range(video.parts)]
                tl, extra = stitch(ends, d.grid, video.info, video.spans[-1].first)
                if extra:
                    tail = video.tail_row[None] if video.tail_row is not None else encode_views(d.encoder, ends[-1].tail[None])
                    self._add(video, np.arange(tl.n_samples - extra, tl.n_samples), np.repeat(tail, extra, axis=0))
            result = d.video_result(video.pooler.finish(tl.n_samples), tl, video.info, video.video_id,
                                    video.work.region, video.work.scope)
        except Unsplittable:
            self._resequence(video)
            return
        except FlashbackError as e:
            self._fail(video, str(e))
            return
        except Exception as e:  # noqa: BLE001 - as Guard does locally: a bug on one video does not end the run
            traceback.print_exc()
            self._fail(video, f"{video.work.source}: internal error (a bug in flashback): {type(e).__name__}: {e}")
            return
        video.keys.clear()
        self.report.videos += 1
        self.report.frames += len(result.frame_times)
        if self._sink.claim(video.work, result.video_id):
            self._sink.result(video.work, result)

