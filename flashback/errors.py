"""Errors a user can act on.

Every message is one line that names the input (a file, a URL, a bundle, a database) and what is
wrong with it, so the CLI can print it as-is and a log line is enough to fix the problem.
"""


class FlashbackError(Exception):
    """Base class: the message is already the one line a user should see."""


class InputError(FlashbackError):
    """A video input that cannot be scored (missing, not a video, no frames, ...)."""

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class BundleError(FlashbackError):
    """A memory bundle that is missing, unreadable, tampered with or malformed."""


class EncoderMismatchError(BundleError):
    """A bundle built with another encoder than the one scoring would use."""


class StoreError(FlashbackError):
    """The DuckDB results store cannot be opened or written (locked, not a database, ...)."""


class EncoderError(FlashbackError):
    """An encoder that cannot be loaded (unknown model, weights not reachable, bad checkpoint)."""
