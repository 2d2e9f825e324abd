"""The parts of a service, each started again when it stops on its own.

A part is a thread (the watch, the HTTP API) or a child process (the review app, a Streamlit
server).  The supervisor looks at them a few times a second: a part that ended without being asked
to is logged with its reason and started again after a back-off that doubles up to a minute (and
starts over once the part has run a minute), so a part that fails at once cannot spin.  Stopping is
in the order the parts were added, reversed, each within its own bound.
"""

from __future__ import annotations

import subprocess
import threading
import time
import traceback
from collections.abc import Callable

from ..errors import FlashbackError, one_line

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
STEADY_S = 60.0  # a part that ran this long starts its back-off over


class Part:
    """One supervised part.  ``start`` makes it run; ``stop`` asks it to end and waits up to ``bound_s``."""

    name = "part"
    bound_s = 5.0

    def start(self) -> None: ...

    def alive(self) -> bool: ...

    def stop(self) -> None: ...

    def reason(self) -> str:
        return "it ended"


class ThreadPart(Part):
    """``run(stop)`` in a thread: it returns when ``stop`` is set; an exception is its reason."""

    def __init__(self, name: str, run: Callable[[threading.Event], None], bound_s: float = 10.0):
        self.name, self.run, self.bound_s = name, run, bound_s
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: str | None = None

    def start(self) -> None:
        self._stop = threading.Event()
        self._error = None

        def body() -> None:
            try:
                self.run(self._stop)
            except FlashbackError as e:
                self._error = str(e)
            except Exception as e:  # noqa: BLE001 - a part's crash is logged and the part restarted
                self._error = f"{type(e).__name__}: {one_line(e)} ({traceback.extract_tb(e.__traceback__)[-1].name})"

        self._thread = threading.Thread(target=body, name=f"flashback-{self.name}", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.bound_s)

    def reason(self) -> str:
        return self._error or "it returned"


class ProcessPart(Part):
    """A child process; SIGTERM to stop it, SIGKILL after ``bound_s``."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None, bound_s: float = 10.0):
        self.name, self.argv, self.env, self.bound_s = name, argv, env, bound_s
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(self.bound_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def reason(self) -> str:
        return f"exit code {self.proc.returncode}" if self.proc is not None else "never started"


class Supervisor:
    def __init__(self, log: Callable[[str], None], on_restart: Callable[[str], None] = lambda name: None):
        self.log, self.on_restart = log, on_restart
        self.parts: list[Part] = []
        self._state: dict[str, dict] = {}

    def add(self, part: Part) -> None:
        self.parts.append(part)
        part.start()
        self._state[part.name] = {"since": time.monotonic(), "wait": BACKOFF_START_S, "due": None}

    def check(self) -> None:
        """Start again what stopped on its own, once its back-off has passed."""
        now = time.monotonic()
        for part in self.parts:
            st = self._state[part.name]
            if part.alive():
                if now - st["since"] >= STEADY_S:
                    st["wait"] = BACKOFF_START_S
                continue
            if st["due"] is None:
                st["due"] = now + st["wait"]
                self.log(f"{part.name} stopped ({part.reason()}); starting it again in {st['wait']:g} s")
                st["wait"] = min(BACKOFF_MAX_S, st["wait"] * 2)
            elif now >= st["due"]:
                st["due"], st["since"] = None, now
                self.on_restart(part.name)
                part.start()

    def restart(self, name: str) -> None:
        """Stop a part and start it at once (a reload that needs it new)."""
        part = next(p for p in self.parts if p.name == name)
        part.stop()
        part.start()
        self._state[name].update(since=time.monotonic(), due=None)

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()
