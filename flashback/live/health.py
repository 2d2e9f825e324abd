"""Whether a watch keeps up, said where the operator looks.

A machine too slow for its feeds sheds samples (``watcher._round``) rather than fall behind; that
keeps latency bounded but loses coverage, and nobody reads counters in JSON lines.  So: at start
the encoder is timed on this machine and the feeds' need compared with it (a warning when they do
not fit); while running each feed's drop share and p95 latency over the last stats window are
checked, a rate-limited warning says what to do, and a line says when it keeps up again; at exit
one line per feed sums it up.  The same window figures reach the sinks (MQTT's ``<feed>/health``,
Home Assistant sensors) through ``feed_stats``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..encoders.protocols import ImageEncoder, encode_views

DROP_WARN = 0.2  # a window in which a feed lost more than this share of its samples is overload
SAY_EVERY_S = 60.0  # while it lasts, a feed's warning this often at most
ADVICE = ("watch fewer feeds, use --preset fast, OpenVINO on a CPU (pip install 'flashback[cpu]'; --backend auto "
          "picks it), or a GPU (--device cuda)")


@dataclass(frozen=True)
class Capacity:
    images_per_s: float  # the encoder, measured here
    needed_per_s: float  # every feed's grid samples (one view each)

    @property
    def feeds_that_fit(self) -> float:
        per_feed = self.needed_per_s
        return self.images_per_s / per_feed if per_feed else float("inf")

    def line(self, n_feeds: int) -> str:
        fit = self.images_per_s / (self.needed_per_s / n_feeds)
        return (f"encoder measured at {self.images_per_s:.0f} images/s here; {n_feeds} feed(s) need "
                f"{self.needed_per_s:.0f}/s, so about {fit:.1f} feed(s) fit")


def measure_capacity(encoder: ImageEncoder, samples_per_s: float, n_feeds: int, batch: int = 8) -> Capacity:
    """Encode a small batch twice (the first call warms the model up) and time the second."""
    x = np.full((batch, encoder.image_size, encoder.image_size, 3), 128, np.uint8)
    encode_views(encoder, x)
    t = time.perf_counter()
    encode_views(encoder, x)
    rate = batch / max(time.perf_counter() - t, 1e-6)
    return Capacity(rate, samples_per_s * n_feeds)


class FeedHealth:
    """One feed's window figures (since the last check) and the warnings they call for."""

    def __init__(self, name: str, budget_s: float):
        self.name, self.budget_s = name, budget_s
        self._last = (0, 0, 0)  # samples encoded, samples dropped, segments scored at the last check
        self._said_at = -float("inf")
        self.overloaded = False

    def window(self, stats: dict, latencies: deque) -> dict:
        """Drop share and p95 latency since the last call; ``keeping_up`` unless one is over its limit."""
        encoded, dropped, scored = stats["samples_encoded"], stats["samples_dropped"], stats["segments_scored"]
        d_enc, d_drop, d_seg = encoded - self._last[0], dropped - self._last[1], scored - self._last[2]
        self._last = (encoded, dropped, scored)
        share = d_drop / (d_enc + d_drop) if d_enc + d_drop else 0.0
        recent = list(latencies)[-d_seg:] if d_seg > 0 else []
        p95 = float(np.percentile(recent, 95)) if recent else None
        keeping_up = share <= DROP_WARN and (p95 is None or p95 <= self.budget_s)
        return {"window_drop_share": round(share, 4), "window_latency_p95_s": None if p95 is None else round(p95, 4),
                "latency_budget_s": self.budget_s, "keeping_up": keeping_up}

    def say(self, window: dict, now: float | None = None) -> str | None:
        """A warning while overloaded (at most every ``SAY_EVERY_S``), one line when it recovers."""
        now = time.monotonic() if now is None else now
        if window["keeping_up"]:
            if self.overloaded:
                self.overloaded = False
                return f"feed {self.name}: keeping up again"
            return None
        self.overloaded = True
        if now - self._said_at < SAY_EVERY_S:
            return None
        self._said_at = now
        p95 = window["window_latency_p95_s"]
        return (f"feed {self.name}: overloaded: {window['window_drop_share']:.0%} of its samples dropped"
                + (f", p95 latency {p95:.1f} s against a {self.budget_s:g} s budget" if p95 is not None else "")
                + f" (this machine cannot keep up: {ADVICE})")


def summary_line(stats: dict) -> str:
    """A feed's whole watch in one line, for the exit summary."""
    dropped, encoded = stats["samples_dropped"], stats["samples_encoded"]
    share = dropped / (dropped + encoded) if dropped + encoded else 0.0
    scored, lost = stats["segments_scored"], stats["segments_lost"]
    lost_share = lost / (scored + lost) if scored + lost else 0.0
    p95 = stats.get("latency_p95_s")
    flag = "" if share <= DROP_WARN and lost_share <= DROP_WARN else f"; it did not keep up ({ADVICE})"
    return (f"feed {stats['feed']}: {scored:,} segment(s) scored, {lost:,} lost ({lost_share:.0%}), "
            f"{share:.0%} of samples dropped" + (f", p95 latency {p95:.2f} s" if p95 is not None else "") + flag)
