"""Flashback: zero-shot video anomaly detection by retrieval from a pseudo-scene caption memory.

Public face (everything else is internal and may change):

    from flashback import Detector, ScoringSettings, ClipEncoder, EncoderSpec, load_bundle
    encoder = ClipEncoder(EncoderSpec())            # ViT-B-32, LAION weights
    detector = Detector(default_memory(encoder), encoder, ScoringSettings())
    result = detector.score("camera1.mp4")          # per-frame scores, events, explanations
"""

from importlib.metadata import PackageNotFoundError, version

from .encoders.encoder import ClipEncoder
from .encoders.encoder_registry import EncoderSpec
from .memory.bundle import load_bundle
from .memory.default_memory import default_memory
from .scoring.pipeline import Detector, VideoResult
from .settings import ScoringSettings

try:
    __version__ = version("flashback")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+src"

__all__ = ["ClipEncoder", "Detector", "EncoderSpec", "ScoringSettings", "VideoResult",
           "default_memory", "load_bundle", "__version__"]
