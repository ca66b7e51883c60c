"""The commit a record was made at: ``HEAD`` of this checkout, flagged when watched paths differ from it."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["checkout_commit"]

REPO = Path(__file__).resolve().parent.parent


def checkout_commit(watched: Sequence[str] = ("fusionlib",), root: str | Path = REPO) -> str:
    """``HEAD``'s hash, plus ``" (<paths> modified)"`` when ``git status`` shows changes under ``watched``.

    ``"unknown (not a git checkout)"`` outside a git checkout (or without git).
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *watched], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (f" ({' or '.join(watched)} modified)" if dirty else "")
