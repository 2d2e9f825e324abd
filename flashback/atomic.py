"""Write a file so that readers see the old content or the new, never half of it.

The content goes to a temporary file in the same folder, which is then renamed over the target
(an atomic step on POSIX).  Exports, build shards and cache entries all go through here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

CACHE_ENV = "FLASHBACK_CACHE_DIR"


def cache_dir() -> Path:
    """The per-user cache (``$FLASHBACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/flashback``): the default
    memory, model exports, eval embeddings and the sample clip, all rebuilt when deleted."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "flashback"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` fills the temporary path it is given; on any failure the target is untouched.
    The file gets the mode a plain ``open`` would give it (the umask's, or the replaced file's),
    not ``mkstemp``'s private 0600: an export is meant to be read by others."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """This process's umask, read without changing it (Linux), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """One process (or thread) at a time inside the block, by an ``flock`` on the file ``lock``
    (made if missing, left in place: deleting a lock file others may hold is its own race).  For
    work that two processes starting at once would both do and then swap into place under each
    other's readers, such as building the default memory.  Where there is no ``fcntl`` (Windows),
    no lock: each does the work, as before."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:  # each call its own open file: flock then excludes threads too
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
