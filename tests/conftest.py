"""Shared fixtures: the repository root, ../shared (reference data) when present, and ``smoke_run`` (one
smoke execution per notebook per session, shared by the notebook, nbval and site tests)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """``$FUSIONLIB_SHARED`` or ``<repo>/../shared``; None when absent (a user's clone)."""
    env = os.environ.get("FUSIONLIB_SHARED")
    p = Path(env) if env else REPO.parent / "shared"
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared() -> Path:
    """The reference folder; tests using it are skipped, with the reason, when it is absent."""
    p = shared_dir()
    if p is None:
        pytest.skip("../shared (reference data: golden outputs, metric_ref) is absent in this clone")
    return p


# Intra-op threads of every unit test: FUSIONLIB_TEST_THREADS, default 1. The tests' tensors are small, and
# on a shared 2-core machine (CI beside other jobs, or this suite's own notebook kernels) OpenMP threads
# that wait for each other cost far more than they gain (measured: a metric test 3x slower in wall time and
# 5x in CPU time at 2 threads than at 1 under load).
TEST_THREADS = int(os.environ.get("FUSIONLIB_TEST_THREADS", "1"))


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(TEST_THREADS)
    yield


@pytest.fixture(autouse=True)
def _doctest_torch(doctest_namespace):
    doctest_namespace["torch"] = torch


@pytest.fixture
def one_thread():
    """One intra-op thread: small models are thousands of tiny ops that only contend for threads on a
    shared CPU (several times faster this way). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- one smoke execution per notebook per session, shared by every test that needs it ------------------
class SmokeRuns:
    """Each notebook executed at ``smoke`` at most once per test session (``fusionlib.runner.run_notebook``)
    into ``root/<stem>/<stem>/``, up to ``jobs`` notebooks at a time (``FUSIONLIB_NOTEBOOK_JOBS``, default 2
    on a machine with 2 or more cores). While more than one runs, their kernels start with
    ``OMP_NUM_THREADS=1``: a smoke notebook is thousands of tiny ops, and two one-thread kernels keep two
    cores busy where one two-thread kernel mostly waits on its threads. The first ``get`` queues, in test
    order, every notebook a collected test will ask for; each ``get`` then waits for its own notebook."""

    THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

    def __init__(self, root: Path, jobs: int, wanted: list[Path]) -> None:
        self.root, self.jobs, self.wanted = root, max(1, jobs), list(wanted)
        self.seconds: dict[str, float] = {}
        self._futures: dict[Path, Any] = {}
        self._pool: Any = None
        self._lock = threading.Lock()
        self._pending = 0
        self._saved_env: dict[str, str | None] | None = None

    def _restore_env(self) -> None:
        for k, v in (self._saved_env or {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved_env = None

    def _run(self, nb: Path) -> Path:
        from fusionlib.runner import run_notebook

        t0 = time.perf_counter()
        try:
            run_notebook(nb, self.root / nb.stem, profile="smoke", progress=False)
            return self.root / nb.stem
        finally:
            self.seconds[nb.stem] = time.perf_counter() - t0
            with self._lock:
                self._pending -= 1
                if self._pending == 0:
                    self._restore_env()

    def _submit(self, nb: Path) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if nb in self._futures:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="smoke")
            if self.jobs > 1 and self._saved_env is None:
                self._saved_env = {k: os.environ.get(k) for k in self.THREAD_VARS}
                os.environ.update({k: "1" for k in self.THREAD_VARS})
            self._pending += 1
            self._futures[nb] = self._pool.submit(self._run, nb)

    def get(self, nb: str | Path) -> Path:
        """The folder holding ``<stem>/`` of this notebook's smoke run (raises the run's error)."""
        nb = Path(nb).resolve()
        for other in ([] if nb in self.wanted else [nb]) + self.wanted:
            self._submit(other)
        return self._futures[nb].result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._restore_env()


_WANTED: list[Path] = []
_SMOKE: list[SmokeRuns] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note, in test order, the notebooks (param ``nb``) that the selected tests using ``smoke_run`` will ask
    for (after ``-k``/``-m`` deselection: a notebook no selected test needs is not run)."""
    _WANTED.clear()
    for item in session.items:
        nb = getattr(getattr(item, "callspec", None), "params", {}).get("nb")
        if nb is not None and "smoke_run" in getattr(item, "fixturenames", ()):
            if Path(nb).resolve() not in _WANTED:
                _WANTED.append(Path(nb).resolve())


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory):
    """``smoke_run(nb) -> folder``: the session's one smoke run of notebook ``nb`` is ``folder/<stem>/``."""
    jobs = int(os.environ.get("FUSIONLIB_NOTEBOOK_JOBS", min(2, os.cpu_count() or 1)))
    runs = SmokeRuns(tmp_path_factory.mktemp("smoke"), jobs, _WANTED)
    _SMOKE.append(runs)
    yield runs.get
    runs.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for runs in _SMOKE:
        if runs.seconds:
            tr = terminalreporter
            tr.section(f"notebook smoke runs ({runs.jobs} at a time; wall seconds of each)")
            for stem, sec in runs.seconds.items():
                tr.write_line(f"{stem:<24} {sec:7.1f}")
            tr.write_line(f"{'sum':<24} {sum(runs.seconds.values()):7.1f}")
