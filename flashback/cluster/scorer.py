"""The driver of a cluster run: videos out to decoding tasks, batches to encoder actors, results
back to the one writer of the store.

Each video in flight has a driver thread that only waits on Ray (the work happens on the workers).
Rows are written by the caller, on the main thread, one transaction per video and keyed by (run,
video) as in a local run, so a video scored twice (a retry, or a re-run) replaces its rows rather
than adding to them.  A video whose worker dies (a killed process, a lost node) is started again;
if its own decoding worker dies twice (or it loses a shared actor or node three times) it is
reported as failed, with the reason.  Ctrl-C cancels every task of the job and returns; what was
stored stays stored.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import ray
from ray.exceptions import RayActorError, RayError, RayTaskError, TaskCancelledError, WorkerCrashedError

from ..encoders.backends import Runtime
from ..encoders.encoder_registry import EncoderSpec
from ..errors import ClusterError, FlashbackError, first_line, one_line
from ..scoring.pipeline import Detector, VideoResult, Work
from ..scoring.schedule import ResultSink
from ..store import RunRecord
from ..video.sources import VideoSource
from .connect import ActorPlan, Cluster, task_failure
from .workers import VideoEncoder, bundle_files, decode_batches

log = logging.getLogger(__name__)

MAX_DEATHS = 2  # a video whose own decoding worker dies twice is reported, not retried forever
MAX_LOSSES = 3  # nor one that loses a shared actor or node three times
WINDOW = 4  # batches of one video being encoded at once
BACKLOG = 8  # batches of one video decoded but not yet handed to an actor
ACTOR_START_S = 300.0
SETTLE_S = 20.0  # after a cancel, how long the videos' driver threads get to leave their Ray calls
REPLACE_TRIES = 3  # a replacement actor that dies before it starts (placed on the dying node) is tried again


@dataclass
class Timings:
    """Seconds per stage, summed over workers (decode, encode) or on the driver (store)."""

    decode_s: float = 0.0
    encode_s: float = 0.0
    score_s: float = 0.0
    store_s: float = 0.0

    def __add__(self, other: "Timings") -> "Timings":
        return Timings(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass
class ClusterReport:
    videos: int = 0
    failed: int = 0
    retried: int = 0
    actors_replaced: int = 0
    frames: int = 0
    video_s: float = 0.0
    wall_s: float = 0.0
    timings: Timings = field(default_factory=Timings)

    def line(self) -> str:
        fps = self.frames / self.wall_s if self.wall_s > 0 else 0.0
        t = self.timings
        retried = f", {self.retried} retried after a worker died" if self.retried else ""
        retried += f", {self.actors_replaced} encoder actor(s) replaced" if self.actors_replaced else ""
        return (f"cluster: {self.videos} video(s) scored, {self.failed} failed{retried}; {self.frames:,} frames "
                f"({self.video_s:,.0f} s of video) in {self.wall_s:.1f} s = {fps:,.0f} video FPS; worker time: "
                f"decode {t.decode_s:.1f} s, encode {t.encode_s:.1f} s, score {t.score_s:.1f} s; store {t.store_s:.1f} s")


class _Crash(Exception):
    """A worker, actor or node died under a video: worth another attempt.  ``own``: the video's own
    decoding worker (which the video itself may have killed) rather than something it shared."""

    def __init__(self, reason: str, own: bool):
        super().__init__(reason)
        self.own = own


class _NotStarted(ClusterError):
    """An encoder actor died before it answered (not a wrong identity: that is a plain ClusterError)."""


class ClusterScorer:
    def __init__(self, cluster: Cluster, detector: Detector, spec: EncoderSpec, runtime: Runtime = Runtime(),
                 actors: int | None = None, gpus_per_actor: float = 1.0):
        """``detector`` is the driver's own: every actor rebuilds it from its ``spec`` (run-time texts
        and overlays included) and must reproduce its run."""
        self.detector = detector
        self.run_id = RunRecord.of(detector).run_id
        plan = ActorPlan.for_cluster(cluster, actors, gpus_per_actor, cpus_per=4, reserve_cpu=False)
        self.decode_slots = int(cluster.cpus - plan.cpus)
        if self.decode_slots < 1:
            raise ClusterError(f"{cluster.describe()}: {plan.n} encoder actor(s) take {plan.cpus} CPU(s), "
                               "leaving none for decoding; add a node or ask for fewer --actors")
        self._memory = ray.put(bundle_files(detector.memory.path))  # sent once through the object store
        self._make = lambda: VideoEncoder.options(**plan.options, scheduling_strategy="SPREAD").remote(
            spec, plan.device, runtime, self._memory, dataclasses.replace(detector.spec, hwaccel=None))
        self.actors = [self._make() for _ in range(plan.n)]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.placement = self._check_actors(self.actors, cluster.describe())
        self._turn = 0
        self._running: set = set()
        self._seconds: dict[VideoSource, float] = {}
        self.report = ClusterReport()  # of the last run
        self.replaced = 0
        self.in_flight = self.decode_slots  # Ray holds no CPU for the actors: the driver keeps them free

    def _check_actors(self, actors: list, where: str) -> list[dict]:
        try:
            ids = ray.get([a.identity.remote() for a in actors], timeout=ACTOR_START_S)
        except ray.exceptions.GetTimeoutError:
            raise ClusterError(f"{where}: the encoder actors did not start within {ACTOR_START_S:.0f} s "
                               "(not enough free CPUs/GPUs?)") from None
        except RayError as e:
            raise _NotStarted(f"{where}: an encoder actor failed to start ({first_line(e)})") from None
        for i in ids:
            if i.get("error"):
                raise ClusterError(f"encoder actor on {i['host']}: {i['error']}")
            if i["run_id"] != self.run_id:
                raise ClusterError(f"encoder actor on {i['host']} would score as run {i['run_id']}, the driver as "
                                   f"{self.run_id}: its flashback, encoder weights or settings differ from the driver's")
        return ids

    def _replace(self, actor_id: str | None) -> None:
        """An actor died (its process killed, its node lost): start another in its place.
        (Ray could restart it itself, but only with its constructor's arguments, the memory among
        them, pinned in the object store, where a lost node may take them.)  SPREAD may place the
        replacement on the node that is dying, before Ray has seen it go: one that dies before it
        answers is replaced again, up to REPLACE_TRIES times, a second longer apart each time."""
        for attempt in range(1, REPLACE_TRIES + 1):
            with self._lock:
                dead = [k for k, a in enumerate(self.actors) if a._actor_id.hex() == actor_id]
                if not dead or self._stop.is_set():
                    return
                self.actors[dead[0]] = fresh = self._make()
            try:
                self._check_actors([fresh], "a replacement encoder actor")
            except _NotStarted:
                if attempt == REPLACE_TRIES:
                    raise
                actor_id = fresh._actor_id.hex()
                time.sleep(attempt)
            else:
                with self._lock:
                    self.replaced += 1
                return

    def _actor(self):
        with self._lock:
            self._turn += 1
            return self.actors[self._turn % len(self.actors)]

    # ---------------------------------------------------------------- one video, on a driver thread

    def _attempt(self, job: Work, progress: Callable[[], None]) -> tuple[VideoResult, Timings]:
        d, t = self.detector, Timings()
        # the decoder pauses once BACKLOG batches wait unread, and the driver stops reading while WINDOW
        # batches are being encoded: a long video never piles its frames up in the object store
        gen = decode_batches.options(name=f"flashback-decode {job.source.name}", scheduling_strategy="SPREAD",
                                     _generator_backpressure_num_objects=BACKLOG).remote(
            job.source, d.frame_fit(job.region, str(job.source)), d.grid, d.batch_size, 1)
        with self._lock:  # cancel() either finds it here or, having set _stop first, is seen below
            self._running.add(gen)
            stopping = self._stop.is_set()
        try:
            if stopping:
                _drop(gen)
                raise TaskCancelledError()
            video_id = ray.get(next(gen))
            parts, marks, costs = [], [], []
            held = None

            def settle(keep: int) -> None:
                """Wait until at most ``keep`` of this video's batches are still being encoded."""
                nonlocal marks
                while len(marks) > keep:
                    ready, marks = ray.wait(marks, num_returns=len(marks) - keep)
                    with self._lock:
                        self._seconds[job.source] = max([self._seconds.get(job.source, 0.0), *ray.get(ready)])
                    progress()

            for ref in gen:
                if self._stop.is_set():
                    raise TaskCancelledError()
                if held is not None:
                    mark, rows, cost = self._actor().encode.options(num_returns=3).remote(held)
                    parts.append(rows)
                    marks.append(mark)
                    costs.append(cost)
                    settle(WINDOW)
                held = ref
            end = ray.get(held)
            settle(0)
            t0 = time.perf_counter()
            scored = ray.get(self._actor().score.remote(parts, end, job.scope))
            t.score_s = time.perf_counter() - t0
            t.decode_s, t.encode_s = end.decode_s, sum(ray.get(costs))
            return VideoResult.of(scored, d.captions, **d.about(end.timeline, end.info, video_id, job.region)), t
        except RayTaskError as e:
            _drop(gen)
            what, ours = task_failure(e)
            raise FlashbackError(what if ours else f"{job.source}: internal error on a worker ({what})") from None
        except TaskCancelledError:
            raise
        except RayError as e:
            _drop(gen)  # its decoding task, if still alive, would wait for a reader that has gone
            if isinstance(e, RayActorError):
                try:
                    self._replace(e.actor_id)
                except _NotStarted as why:  # the video is still retried: its next actor is replaced again
                    log.warning("%s", why)
            raise _Crash(first_line(e), own=isinstance(e, WorkerCrashedError)) from None
        finally:
            with self._lock:
                self._running.discard(gen)

    # ---------------------------------------------------------------- the run, on the main thread

    def run(self, jobs: Sequence[Work], sink: ResultSink) -> bool:
        """Score ``jobs`` into ``sink`` (a ``scoring.schedule.Scheduler``; its ``seconds`` is called
        from the videos' driver threads); True if Ctrl-C stopped the run.  ``report`` says how it went."""
        self.report = report = ClusterReport()
        todo, attempts = list(reversed(jobs)), {}
        done: queue.Queue = queue.Queue()
        active = 0
        start = time.perf_counter()

        def tick(job: Work) -> None:
            with self._lock:
                seconds = self._seconds.get(job.source, 0.0)
            sink.seconds(job, seconds, None)

        threads: list[threading.Thread] = []

        def launch(job: Work) -> None:
            def work() -> None:
                try:
                    done.put((job, self._attempt(job, lambda: tick(job)), None))
                except BaseException as e:  # noqa: BLE001 - handed to the main thread
                    done.put((job, None, e))

            threads.append(threading.Thread(target=work, daemon=True, name=f"flashback-{job.source.name}"))
            threads[-1].start()

        try:
            while todo or active:
                while todo and active < self.in_flight:
                    launch(todo.pop())
                    active += 1
                try:
                    job, outcome, error = done.get(timeout=0.5)
                except queue.Empty:
                    continue
                active -= 1
                if isinstance(error, _Crash):
                    key = (job, error.own)
                    attempts[key] = deaths = attempts.get(key, 0) + 1
                if isinstance(error, _Crash) and deaths < (MAX_DEATHS if error.own else MAX_LOSSES):
                    report.retried += 1
                    with self._lock:
                        self._seconds.pop(job.source, None)
                    todo.append(job)  # next to start
                elif error is not None:
                    report.failed += 1
                    what = "its worker died" if isinstance(error, _Crash) and error.own else "lost a worker it shared"
                    reason = (f"{job.source}: {what} {deaths} times ({error}); not retried again"
                              if isinstance(error, _Crash) else str(error) if isinstance(error, FlashbackError)
                              else f"{job.source}: internal error ({type(error).__name__}: {one_line(error)})")
                    sink.failure(job, reason)
                else:
                    result, t = outcome
                    t0 = time.perf_counter()
                    if sink.claim(job, result.video_id):
                        sink.result(job, result)
                    t.store_s = time.perf_counter() - t0
                    report.videos += 1
                    report.frames += len(result.frame_times)
                    report.video_s += result.duration_s
                    report.timings += t
        except KeyboardInterrupt:
            self.cancel()
            _settle(threads)
            interrupted = True
        else:
            interrupted = False
        report.wall_s, report.actors_replaced = time.perf_counter() - start, self.replaced
        return interrupted

    def cancel(self) -> None:
        """Stop every task of this job now (Ctrl-C): decoding tasks are cancelled, actors killed."""
        self._stop.set()
        with self._lock:
            running = list(self._running)
        for gen in running:
            _drop(gen)
        for a in self.actors:
            try:
                ray.kill(a)
            except RayError:
                pass


def _settle(threads: list[threading.Thread]) -> None:
    """Wait, up to SETTLE_S, for the videos' driver threads to see the cancel: the caller shuts Ray
    down next, and a thread still inside a Ray call then makes Ray's core end the process (exit 1,
    "accesses the Ray's worker after it is shutdown"), with no summary and no export.  Seen in CI
    under load after SIGTERM.  A second Ctrl-C stops the wait."""
    deadline = time.monotonic() + SETTLE_S
    try:
        for th in threads:
            th.join(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass


def _drop(gen) -> None:
    """Cancel a video's decoding task (best effort: it may have ended, or died with its node)."""
    try:
        ray.cancel(gen, force=True)
    except (RayError, TypeError, ValueError):
        pass
