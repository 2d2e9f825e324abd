"""Scoring settings: one frozen dataclass that is both the knob set and the run record.

The defaults are the paper's where it publishes them (1.0 s segments, 0.5 s overlap, 16 frames,
K = 10); where it does not (smoothing sigma, event threshold and durations) they are our choices
and docs/scoring.md says so.  ``alpha`` and ``logit_scale`` default to ``None``: "use the memory's",
because both belong to how a memory was built and calibrated, not to the video.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .checks import FRACTION, Range, check_fields, knob, raise_problems
from .errors import UsageError

# How a frame that is not square reaches the square encoder input (docs/scoring.md):
#   crop   - shorter side to the input size, centre crop (CLIP's training view; loses the sides)
#   pad    - longer side to the input size, the rest filled with the normalisation mean (all of it)
#   squash - both sides to the input size (all of it, aspect ratio changed)
#   tiles  - square crops side by side over the longer side (all of it, full resolution); each tile
#            is scored and a segment takes its highest-scoring tile
FRAME_FITS = ("pad", "crop", "squash", "tiles")


@dataclass(frozen=True)
class ScoringSettings:
    segment_s: float = knob(1.0, Range(0, 3600, low_open=True), "--segment")
    overlap_s: float = knob(0.5, Range(0, 3600), "--overlap")
    frames_per_segment: int = knob(16, Range(1, 1024, integer=True), "--frames-per-segment")
    top_k: int = knob(10, Range(1, 10_000, integer=True), "--top-k")
    alpha: float | None = knob(None, Range(0, 100, low_open=True), "--alpha", optional=True)
    logit_scale: float | None = knob(None, Range(0, 10_000, low_open=True), "--logit-scale", optional=True)
    smoothing_sigma_s: float = knob(0.5, Range(0, 3600), "--sigma")
    threshold: float = knob(0.5, FRACTION, "--threshold")
    min_event_s: float = knob(1.0, Range(0, 86_400), "--min-event")
    merge_gap_s: float = knob(1.0, Range(0, 86_400), "--merge-gap")
    frame_fit: str = "pad"
    # search in the memory's centred space (retrieval.MemorySearcher): opt-in (--centre on); it was the
    # caption path's default until its gain failed to clear the noise (benchmarks/caption_defaults.py)
    centre: bool = False

    def __post_init__(self) -> None:
        problems = check_fields(self)
        if self.frame_fit not in FRAME_FITS:
            problems.append(f"--frame-fit {self.frame_fit!r}: choose one of {', '.join(FRAME_FITS)}")
        if not problems and not self.overlap_s < self.segment_s:
            problems.append(f"--overlap must be in [0, segment length) (got {self.overlap_s:g} with segment {self.segment_s:g})")
        if not problems:
            steps = self.stride_s / self.sample_step_s
            if abs(steps - round(steps)) > 1e-6 or round(steps) < 1:
                problems.append(
                    "segment stride (segment - overlap) must be a whole number of sampling steps "
                    f"(segment / frames per segment): {self.stride_s:g} s is {steps:.3f} steps of "
                    f"{self.sample_step_s:g} s, so overlapping segments could not share frames"
                )
        raise_problems(problems, "settings")

    @property
    def stride_s(self) -> float:
        return self.segment_s - self.overlap_s

    @property
    def sample_step_s(self) -> float:
        """Spacing of the global sampling grid: every segment takes every grid frame it spans."""
        return self.segment_s / self.frames_per_segment

    def to_dict(self) -> dict:
        """What the run record stores (and what a run id is computed from).  ``centre`` is left out
        while off, so runs recorded before it existed keep their ids (a re-score still replaces
        them) and read back as uncentred."""
        d = dataclasses.asdict(self)
        if not d["centre"]:
            del d["centre"]
        return d

    def resolved(self, alpha: float, logit_scale: float) -> "ScoringSettings":
        """The same settings with the memory's alpha and logit scale filled in where unset."""
        return dataclasses.replace(
            self,
            alpha=self.alpha if self.alpha is not None else alpha,
            logit_scale=self.logit_scale if self.logit_scale is not None else logit_scale,
        )


PRESETS: dict[str, ScoringSettings] = {
    # The paper's sampling: 16 frames per 1-s segment, i.e. 16 image encodings per video second.
    "default": ScoringSettings(),
    # A quarter of the encoder work (4 frames per segment, 4 encodings per video second): what a
    # CPU-only deployment can afford for a live 30-FPS feed.
    "fast": ScoringSettings(frames_per_segment=4),
    # Scoring from captions: one caption per ~0.5 s window, each a noisy one-sentence summary, so
    # the score needs more temporal pooling than CLIP frames do: sigma 3 s, chosen on UCF-Crime dev
    # captions and re-checked on a second dataset with the noise measured (benchmarks/caption_defaults.py:
    # sigma 0.5 s loses 2.8 AUC on UCF dev, 95% interval [-4.4, -0.5], and 2.2 on XD dev).  Centred
    # search (--centre on) gained +1.1 AUC on UCF dev, inside that interval ([-0.6, +2.9]), and lost
    # on the held-out half, so it is not the default; nor is lambda 30 for sentence encoders.
    "captions": ScoringSettings(smoothing_sigma_s=3.0),
}


def preset(name: str) -> ScoringSettings:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"--preset {name!r}: choose one of {', '.join(PRESETS)}") from None


def sigma_in_frames(sigma_s: float, fps: float) -> float:
    return 0.0 if sigma_s <= 0 or not math.isfinite(fps) or fps <= 0 else sigma_s * fps
