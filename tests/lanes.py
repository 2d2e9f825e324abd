"""Two lanes of tests.  A test that starts a process (the CLI as a user runs it, a decoding pool, a
stream server, a broker, a browser, a Ray cluster), or that runs for most of a minute in process (a
real LLM, the real caption sets), is marked ``slow``; everything else is the fast lane a developer
runs while working::

    python -m pytest -m "not slow"

The mark is checked, not trusted: while a test not marked ``slow`` is set up, runs or is torn down
(fixtures it pulls in included, whatever their scope), starting a process fails it, saying to mark
it or to run the code in process.  So the fast lane stays in process as the suite grows.
"""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess

import pytest

_running: list[pytest.Item] = []  # the test being set up, run or torn down in this process
# what libraries run to probe the system while they load (ctypes.util.find_library runs ldconfig and
# a compiler): over in milliseconds, and not the test's doing
PROBES = {"ldconfig", "gcc", "cc", "x86_64-linux-gnu-gcc", "ld", "ld.bfd", "objdump", "uname"}


def _refuse_in_fast_lane(what: str) -> None:
    item = _running[-1] if _running else None
    if item is not None and item.get_closest_marker("slow") is None:
        raise AssertionError(f"{item.nodeid} starts {what} but is not marked slow: mark it "
                             "@pytest.mark.slow, or run the code in process (tests/lanes.py)")


_popen_init = subprocess.Popen.__init__
_process_start = multiprocessing.process.BaseProcess.start


def _guarded_popen_init(self, args, *rest, **kwargs):
    argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    program = (os.fsdecode(argv[0]).split() or [""])[0] if argv else ""
    if os.path.basename(program) not in PROBES:
        _refuse_in_fast_lane(f"a process ({program or '?'})")
    _popen_init(self, args, *rest, **kwargs)


def _guarded_process_start(self):
    _refuse_in_fast_lane("a helper process")
    _process_start(self)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: starts a process, a stream, a browser or a cluster, or runs for most "
                                       "of a minute; the fast lane (-m 'not slow') leaves it out")
    subprocess.Popen.__init__ = _guarded_popen_init
    multiprocessing.process.BaseProcess.start = _guarded_process_start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()
