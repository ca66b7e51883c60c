"""Shared fixtures: the repository root, and ../shared (reference data) when present."""

from __future__ import annotations

import os
from pathlib import Path

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


@pytest.fixture(autouse=True)
def _few_threads():
    # The CI machine has 2 cores; keep unit tests from oversubscribing them.
    torch.set_num_threads(2)
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
