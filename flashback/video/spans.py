"""One long file decoded as several time spans at once, with the samples of a sequential read.

A sequential read (``VideoReader.samples``) gives grid sample i the frame on screen at its time:
the last frame whose time, counted from the first frame, is <= the sample's.  A span reproduces
exactly that for the samples ``first .. stop-1``: it seeks to a key frame at or before the
span's first sample time (further back when the seek lands late), decodes from there, and
delivers the samples it owns and the frame times in ``[begin_s, end_s)``.  Spans partition both,
so their concatenation is the sequential read; ``stitch`` checks that it is.

Whatever could make a span differ from the sequential read (a frame without a timestamp, a
timestamp going backwards, a decode error, a key frame that cannot be found, a stream that ends
early) raises ``Unsplittable``, and the caller reads the file sequentially instead: parallel
when it is provably the same, never "nearly the same".
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import numpy as np

from .decode import SampleClock, Timeline, VideoInfo, VideoReader, fallback_step
from .timegrid import TimeGrid

MIN_SPAN_S = 60.0  # a span pays up to a key-frame interval of extra decoding: keep spans long beside it
SEEK_BACK_S = (0.0, 2.0, 10.0, 60.0)  # how far before its start a span seeks, try after try


class Unsplittable(Exception):
    """This file cannot be split without risking a difference from the sequential read."""


@dataclass(frozen=True)
class Span:
    """Samples ``first .. stop-1`` (``stop`` None: to the end) of a video whose first frame is at ``t0``
    seconds of its stream; frame times in [``begin_s``, ``end_s``) counted from that frame."""

    part: int
    first: int
    stop: int | None
    t0: float
    begin_s: float
    end_s: float | None


@dataclass
class SpanEnd:
    """What a span found: its frame times, the samples it gave, and for the last span the last frame
    (the samples after the last frame, up to the duration only the whole file knows, show it)."""

    frame_times: list[float] = field(default_factory=list)
    n_samples: int = 0
    tail: np.ndarray | None = None


def plan_spans(reader: VideoReader, grid: TimeGrid, most: int) -> list[Span]:
    """Up to ``most`` spans of at least ``MIN_SPAN_S`` seconds; none when the file is short, a URL,
    declares no duration, or its first frame has no timestamp (it is then read sequentially)."""
    declared = reader.info.declared_duration_s
    if most < 2 or reader.source.is_url or not declared or declared < 2 * MIN_SPAN_S:
        return []
    n = min(most, int(declared // MIN_SPAN_S))
    try:
        first = next(reader.frames(), None)
    except av.FFmpegError:
        return []  # the worker reads it sequentially, and reports what is wrong with it
    if first is None or first.time is None:
        return []
    t0 = float(first.time)
    total = grid.n_samples(declared)
    cuts = [round(k * total / n) for k in range(n)]
    return [Span(k, cuts[k], cuts[k + 1] if k + 1 < n else None, t0,
                 grid.sample_time(cuts[k]) if k else -math.inf, grid.sample_time(cuts[k + 1]) if k + 1 < n else None)
            for k in range(n)]


def span_samples(reader: VideoReader, grid: TimeGrid, span: Span, end: SpanEnd) -> Iterator[tuple[int, np.ndarray]]:
    """(sample index, encoder input) for the span's samples; ``end`` is filled in as it goes."""
    for back in SEEK_BACK_S:
        if span.part == 0:
            frames = reader.frames()
        else:
            _seek(reader, span.t0 + max(0.0, span.begin_s - back))
            frames = _from_key_frame(reader.frames())
        started = False
        try:
            for item in _span(reader, grid, span, frames, end):
                started = True
                yield item
            return
        except _LateSeek:
            if span.part == 0:
                raise Unsplittable("a first frame other than the one planned with") from None
            if started:
                raise Unsplittable("a seek landed after its span's start") from None
    raise Unsplittable(f"no key frame within {SEEK_BACK_S[-1]:.0f} s before {span.begin_s:.1f} s")


class _LateSeek(Exception):
    pass


def _seek(reader: VideoReader, seconds: float) -> None:
    try:
        reader.seek(seconds)
    except av.FFmpegError as e:
        raise Unsplittable(f"cannot seek ({e})") from None


def _from_key_frame(frames: Iterator) -> Iterator:
    """Frames from the first key frame on (a decoder may hand out broken leading frames before it)."""
    seen = False
    for f in frames:
        seen = seen or f.key_frame
        if seen:
            yield f


def _span(reader: VideoReader, grid: TimeGrid, span: Span, frames: Iterator, end: SpanEnd) -> Iterator[tuple[int, np.ndarray]]:
    end.frame_times, end.n_samples = [], 0
    clock = SampleClock(grid, reader.encoder_input, span.first, span.stop)
    last = -math.inf
    try:
        for frame in frames:
            if frame.time is None:
                raise Unsplittable("a frame without a timestamp")
            rel = float(frame.time) - span.t0
            if clock.frame is None and (rel > span.begin_s if span.part else rel != 0.0):
                raise _LateSeek()  # part 0: a first frame other than the plan's
            if rel <= last:
                raise Unsplittable("timestamps that go backwards")
            last = rel
            if clock.frame is not None:
                yield from clock.until(rel)
                end.n_samples = clock.next - span.first
            if span.end_s is not None and rel >= span.end_s:
                if span.stop is not None and clock.next < span.stop:
                    raise Unsplittable("a span that gave fewer samples than planned")
                return
            clock.now(frame)
            if rel >= span.begin_s:
                end.frame_times.append(rel)
    except av.FFmpegError as e:
        raise Unsplittable(f"a decode error ({e})") from None
    if span.end_s is not None or clock.frame is None or not end.frame_times:
        raise Unsplittable("the stream ended before its last span")
    end.tail = reader.encoder_input(clock.frame)


def stitch(ends: list[SpanEnd], grid: TimeGrid, info: VideoInfo, first_of_last: int) -> tuple[Timeline, int]:
    """The sequential read's timeline from the spans' ends (in part order), and how many samples
    past the last span's show its last frame."""
    times = [t for e in ends for t in e.frame_times]
    if any(b <= a for a, b in zip(times, times[1:])):
        raise Unsplittable("frame times that do not join up")
    tl = Timeline(frame_times=times)
    limit = tl.close(fallback_step(info), grid)
    emitted = first_of_last + ends[-1].n_samples
    n = emitted
    while grid.sample_time(n) < limit:
        n += 1
    tl.n_samples = n
    tl.check_declared(info.declared_duration_s)
    return tl, n - emitted
