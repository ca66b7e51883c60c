"""Every notebook in notebooks/ executes end to end at profile="smoke" and writes a results.json
of finite numbers. New notebooks are covered without editing this file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusionlib.runner import check_results, find_notebooks, run_notebook

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = find_notebooks(NB_DIR)


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no NN_*.ipynb notebooks found in {NB_DIR}"


@pytest.mark.notebooks
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_smoke(nb: Path, tmp_path: Path):
    results = run_notebook(nb, tmp_path, profile="smoke", progress=False)
    data = check_results(results)
    assert data.get("meta", {}).get("profile") == "smoke"


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
