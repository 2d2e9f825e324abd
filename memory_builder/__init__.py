"""Offline half: turn labelled captions into a memory bundle (flashback/memory/bundle.py's format)."""

from flashback.memory.templates import TEMPLATES, apply_template

from .build import build_from_captions, build_memory
from .captions_io import read_labelled_captions

__all__ = ["build_from_captions", "build_memory", "read_labelled_captions", "TEMPLATES", "apply_template"]
