"""A pytest-xdist plugin: with ``--dist loadfile``, a test that crashes its worker (a segfault in native
code, ``os._exit``, the faulthandler's timeout) fails that test, named, and the run goes on to its summary.

pytest-xdist 3.8's file scheduler does not: when a worker dies it puts the dead worker's whole
workload back in the queue, finished files and the crashed test included, so the replacement worker
runs the crashing test again and again, and once it is handed a file with nothing left to run the
controller and both workers wait on each other for ever (pytest-xdist issues 784, 1313 and 1323; the
fixes were merged after 3.8.0, the newest release).  Here the crashed test counts as done (xdist reports
it as failed, with the worker's crash) and only files with tests still to run go back in the queue.

A second wait for ever: xdist's worker holds its last test until it is sent another or told to shut down
(it needs the next test for teardown), and the controller only tops a worker up when it reports a test.
A replacement worker handed a crashed file's one remaining test, while other files wait in the queue and
no other worker is alive, therefore never runs it (deterministic with ``-n 1``; one run in three with
``-n 2`` here, and once in CI).  A worker is topped up until it holds two tests or the queue is empty.

Files are handed out heaviest first (``pytest_collection_modifyitems``): the ones with the most tests
marked ``slow`` (a cluster, a browser, live feeds), then the most tests.  xdist's own order is by number of
tests alone, which can leave the Ray cluster's file, the suite's longest, to start late and run alone.

``tests/conftest.py`` imports the hooks, so the suite uses them; ``test_suite_guard.py`` proves the crash
handling with a deliberate crash.
"""

from __future__ import annotations

from collections import Counter

from xdist.scheduler import LoadFileScheduling


class CrashSafeLoadFileScheduling(LoadFileScheduling):
    def __init__(self, config, log=None):
        super().__init__(config, log)
        config.option.loadscopereorder = False  # the collection's order, heaviest file first, is the queue's

    def remove_node(self, node) -> str | None:
        workload = self.assigned_work.pop(node)
        pending = [(scope, nodeid) for scope, unit in workload.items() for nodeid, done in unit.items() if not done]
        if not pending:
            return None
        # a worker runs its tests in the order given, so the first one not finished is the one it died in
        scope, crashitem = pending[0]
        workload[scope][crashitem] = True
        for scope, unit in workload.items():
            if not all(unit.values()):
                self.workqueue[scope] = unit
        for other in self.assigned_work:
            self._reschedule(other)
        return crashitem

    def _reschedule(self, node) -> None:
        super()._reschedule(node)
        while self.workqueue and not node.shutting_down and self._pending_of(self.assigned_work[node]) < 2:
            self._assign_work_unit(node)


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") == "loadfile":
        return CrashSafeLoadFileScheduling(config, log)
    return None


def pytest_collection_modifyitems(config, items) -> None:
    """Files with more ``slow`` tests first, then files with more tests; a file's own order is kept."""
    slow, count = Counter(), Counter()
    for item in items:
        path = item.nodeid.split("::")[0]
        count[path] += 1
        slow[path] += item.get_closest_marker("slow") is not None
    rank = {path: i for i, path in enumerate(sorted(count, key=lambda f: (-slow[f], -count[f], f)))}
    items.sort(key=lambda item: rank[item.nodeid.split("::")[0]])
