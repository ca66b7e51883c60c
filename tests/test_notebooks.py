"""Every notebook in notebooks/ executes end to end at profile="smoke" and writes a results.json
of finite numbers, and its cells marked ``# NBVAL_CHECK_OUTPUT`` print what is stored for them
(nbval's ``--nbval-lax`` comparison on that same execution: ``fusionlib.nbval_check``). Each notebook
runs once per session (``smoke_run`` in conftest.py; the site test reuses 00's run). New notebooks are
covered without editing this file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from fusionlib.nbval_check import check_notebook, checked_cells
from fusionlib.runner import check_results, find_notebooks

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = find_notebooks(NB_DIR)
CHECKED = [p for p in NOTEBOOKS if checked_cells(nbformat.read(p, as_version=4))]  # 06 marks none


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no NN_*.ipynb notebooks found in {NB_DIR}"


@pytest.mark.notebooks
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_smoke(nb: Path, smoke_run):
    data = check_results(smoke_run(nb) / nb.stem / "results.json")
    assert data.get("meta", {}).get("profile") == "smoke"


@pytest.mark.notebooks
@pytest.mark.parametrize("nb", CHECKED, ids=[p.stem for p in CHECKED])
def test_checked_cells_print_their_stored_outputs(nb: Path, smoke_run):
    """The nbval check (a parameter count, a shape walk, an equivalence check) on the smoke run above."""
    problems = check_notebook(nb, smoke_run(nb) / nb.stem / nb.name)
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_clean(nb: Path):
    """Stored without outputs (but for nbval-checked cells), with a kernelspec and a parameters cell."""
    data = json.loads(nb.read_text())
    assert data["metadata"].get("kernelspec", {}).get("name"), "kernelspec metadata missing"
    tagged = [c for c in data["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    for c in data["cells"]:
        if c["cell_type"] == "code" and "NBVAL_CHECK_OUTPUT" not in "".join(c["source"]):
            assert not c.get("outputs"), f"stored outputs in a cell of {nb.name}"


@pytest.mark.notebooks
def test_smoke_runs_execute_each_notebook_once_two_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """conftest.SmokeRuns: two tiny notebooks overlap in time, each kernel on one OpenMP thread; the
    thread variables are restored afterwards and a second ``get`` does not execute again."""
    from conftest import SmokeRuns

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    code = ("import json, os, time\nt0 = time.time()\ntime.sleep(3)\n"
            "json.dump({'meta': {'profile': profile}, 'omp': int(os.environ.get('OMP_NUM_THREADS', 0)), "
            "'t0': t0, 't1': time.time()}, open(os.path.join(out_dir, 'results.json'), 'w'))")
    nbs = []
    for stem in ("01_a", "02_b"):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell('profile = "auto"\nout_dir = "."', metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, tmp_path / f"{stem}.ipynb")
        nbs.append(tmp_path / f"{stem}.ipynb")
    runs = SmokeRuns(tmp_path / "runs", 2, nbs)
    try:
        a = json.loads((runs.get(nbs[0]) / "01_a" / "results.json").read_text())
        b = json.loads((runs.get(nbs[1]) / "02_b" / "results.json").read_text())
        assert runs.get(nbs[0]) == tmp_path / "runs" / "01_a" and set(runs.seconds) == {"01_a", "02_b"}
    finally:
        runs.close()
    assert a["meta"]["profile"] == "smoke" and a["omp"] == b["omp"] == 1
    assert a["t0"] < b["t1"] and b["t0"] < a["t1"], "the two notebooks did not run at the same time"
    assert "OMP_NUM_THREADS" not in os.environ
