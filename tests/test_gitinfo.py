"""fusionlib.gitinfo: the commit records carry (weights/MANIFEST.json, fusionlib/pacing_times.json)."""

import re
import shutil

import pytest

from fusionlib.gitinfo import checkout_commit


def test_outside_a_checkout_says_unknown(tmp_path):
    assert checkout_commit(root=tmp_path) == "unknown (not a git checkout)"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_in_a_checkout_the_hash_and_the_watched_paths(tmp_path):
    import subprocess

    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    run("add", ".")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "one")
    clean = checkout_commit(("pkg",), tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", clean)
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert checkout_commit(("pkg",), tmp_path) == clean + " (pkg modified)"
    assert checkout_commit(("other", "pkg"), tmp_path) == clean + " (other or pkg modified)"
