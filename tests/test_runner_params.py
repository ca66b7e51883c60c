"""fusionlib.runner: a notebook that reads the other notebooks' runs (06's runs_dir) is pointed at the
runner's own --out folder, not at the repository's runs/."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

from fusionlib import runner


class _Captured(Exception):
    pass


def _notebook(path: Path, params: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t"),
                nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]})]
    nbformat.write(nb, path)
    return path


def _params_of(nb: Path, out: Path, monkeypatch, **kw) -> dict:
    seen = {}

    def fake(src, dst, parameters, **_):
        seen.update(parameters)
        raise _Captured

    monkeypatch.setattr(papermill, "execute_notebook", fake)
    with pytest.raises(_Captured):
        runner.run_notebook(nb, out, profile="smoke", progress=False, **kw)
    return seen


def test_runs_dir_follows_out(tmp_path, monkeypatch):
    nb = _notebook(tmp_path / "06_x.ipynb", 'profile = "auto"   # comment\nruns_dir = "../runs"\nseed = 0')
    assert runner._declared_parameters(nb) == {"profile", "runs_dir", "seed"}
    out = tmp_path / "elsewhere"
    assert _params_of(nb, out, monkeypatch)["runs_dir"] == str(out.resolve())
    given = _params_of(nb, out, monkeypatch, parameters={"runs_dir": "/x"})
    assert given["runs_dir"] == "/x", "an explicit -p runs_dir wins"


def test_no_runs_dir_for_a_notebook_without_it(tmp_path, monkeypatch):
    nb = _notebook(tmp_path / "00_x.ipynb", 'profile = "auto"\nout_dir = "."')
    assert "runs_dir" not in _params_of(nb, tmp_path / "o", monkeypatch)
