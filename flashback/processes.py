"""Starting helper processes (decoding workers, tokenizers) safely from any parent.

They are started with ``spawn``: the parent may hold CUDA, which a forked child must not inherit.
And ``spawn`` runs the parent's ``__main__`` again in each child, to find what it defined there.
Our children need nothing from it, and running it can do anything: under a Streamlit app, or in
a test process that ran one, it is the app's script.  So it is hidden while a child starts.
"""

from __future__ import annotations

import multiprocessing
import sys
from contextlib import contextmanager


def spawn_context():
    return multiprocessing.get_context("spawn")


@contextmanager
def main_module_hidden():
    """While this is open, a spawned child does not run the parent's ``__main__``."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)
