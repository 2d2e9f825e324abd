"""The suite itself: a test that crashes or hangs its process fails, named, and the run still reaches
its summary.  A pytest run of its own (two workers, one file each at a time, as ``pyproject.toml``
sets for the suite; then one worker) over four small files: one segfaults mid-file, one hangs past the
faulthandler's timeout.  Without ``xdist_guard`` this run waits for ever after the first crash (checked
by hand: still waiting after 5 minutes at load 0); a process is the only way to test a process dying."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here starts a process (see tests/lanes.py)

TESTS = Path(__file__).resolve().parent

CRASHING = """
import os, signal
from pathlib import Path

def test_before():
    pass

def test_segfault():
    once = Path("crashed-once")  # a rerun of this test would pass: the run must not rerun it
    if not once.exists():
        once.touch()
        os.kill(os.getpid(), signal.SIGSEGV)

def test_after():
    pass
"""

HANGING = """
import time

def test_quick():
    pass

def test_hangs():
    time.sleep(600)

def test_after_the_hang():
    pass
"""

PLAIN = """
import time

def test_one():
    time.sleep(0.5)

def test_two():
    pass

def test_three():
    pass

def test_four():
    pass
"""


@pytest.mark.parametrize("workers", [2, 1])
def test_a_crash_or_a_hang_fails_its_test_and_the_run_reaches_its_summary(tmp_path, workers):
    # one worker is the case that hung in CI once (one run in three here with two): the replacement of the
    # crashed worker is handed the crashed file's last test while the hanging file waits in the queue
    for name, body in {"test_a_plain.py": PLAIN, "test_b_plain.py": PLAIN, "test_c_crash.py": CRASHING,
                       "test_d_hang.py": HANGING}.items():
        (tmp_path / name).write_text(textwrap.dedent(body))
    # the suite's own settings (pyproject.toml), with a short faulthandler timeout for the hang
    # (xdist named, no other plugin of the environment loaded: hypothesis' and schemathesis' cost each
    # of the run's processes 3 CPU-seconds of imports and play no part in a crash or a hang)
    (tmp_path / "pytest.ini").write_text(f"[pytest]\naddopts = -p xdist.plugin -n {workers} --dist loadfile -p xdist_guard\n"
                                         "faulthandler_timeout = 5\nfaulthandler_exit_on_timeout = true\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rf"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    failed = set(re.findall(r"^FAILED (\S+)", r.stdout, re.M))
    assert failed == {"test_c_crash.py::test_segfault", "test_d_hang.py::test_hangs"}, out
    assert re.search(r"^=+ 2 failed, 12 passed", r.stdout, re.M), out  # every other test ran, once
    assert "crashed" in out and "Timeout" in out  # the crash is said, and the hang's stacks are dumped
