"""The nbval check of the notebooks' deterministic cells (``fusionlib.nbval_check``), without running a
notebook: the stored outputs are there, and a changed parameter count, shape or check in an executed
notebook is reported (``tests/test_notebooks.py`` applies the same check to the real smoke run)."""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

from fusionlib.nbsource import build_all, build_notebook
from fusionlib.nbval_check import check_notebook, checked_cells, compare_outputs, main, store_outputs, stored_form
from fusionlib.runner import find_notebooks

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = find_notebooks(NB_DIR)
PAPER_AND_FOUNDATIONS = [p for p in NOTEBOOKS if not p.stem.startswith("06_")]


def _out(text: str, name: str = "stdout") -> nbformat.NotebookNode:
    return nbformat.v4.new_output("stream", name=name, text=text)


def _executed_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What a run of ``nb`` looks like: papermill's injected parameters cell first, same outputs."""
    run = copy.deepcopy(nb)
    injected = nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["injected-parameters"]})
    run.cells.insert(1, injected)
    return run


@pytest.mark.parametrize("nb", PAPER_AND_FOUNDATIONS, ids=[p.stem for p in PAPER_AND_FOUNDATIONS])
def test_notebook_stores_the_outputs_of_one_to_three_marked_cells(nb: Path):
    cells = checked_cells(nbformat.read(nb, as_version=4))
    assert 1 <= len(cells) <= 3, f"{nb.name}: {len(cells)} cells marked NBVAL_CHECK_OUTPUT, want 1-3"
    for i, c in cells:
        assert c.execution_count is not None and c.outputs, (
            f"{nb.name} cell {i}: marked NBVAL_CHECK_OUTPUT without stored outputs (its source changed since "
            f"they were stored): run `make nbval-update NB={nb.stem[:2]}`")
        text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in c.outputs)
        assert text.strip(), f"{nb.name} cell {i}: the stored outputs print nothing to compare"


def test_stored_outputs_agree_with_themselves():
    for nb in NOTEBOOKS:
        stored = nbformat.read(nb, as_version=4)
        assert check_notebook(stored, _executed_copy(stored), nb.name) == []


def test_a_changed_parameter_count_fails_the_check():
    """The promise of the marked cells: RPFNet's 72,074 parameters turning into 72,075 is caught."""
    nb = NB_DIR / "04_rpfnet.ipynb"
    stored = nbformat.read(nb, as_version=4)
    run = _executed_copy(stored)
    (i, cell), = [(i, c) for i, c in checked_cells(run) if "72,074" in "".join(o.get("text", "") for o in c.outputs)]
    for o in cell.outputs:
        if o.output_type == "stream":
            o.text = o.text.replace("72,074", "72,075")
    problems = check_notebook(nb, run)
    assert len(problems) == 1
    assert "04_rpfnet.ipynb cell" in problems[0] and "outputs differ" in problems[0]
    assert "72,074" in problems[0] and "72,075" in problems[0], problems[0]
    assert "make nbval-update NB=04" in problems[0]


def test_a_changed_shape_and_a_missing_cell_fail():
    stored = nbformat.read(NB_DIR / "00_foundations.ipynb", as_version=4)
    run = _executed_copy(stored)
    (_, walk), *_ = [(i, c) for i, c in checked_cells(run) if "shapes:" in "".join(o.get("text", "") for o in c.outputs)]
    walk.outputs[0].text = walk.outputs[0].text.replace("(1, 16, 96, 96)", "(1, 16, 48, 48)", 1)
    assert any("(1, 16, 48, 48)" in p for p in check_notebook(stored, run, "00_foundations.ipynb"))
    run.cells.remove(walk)
    assert any("not in the executed notebook" in p for p in check_notebook(stored, run, "00_foundations.ipynb"))


def test_what_nbval_lax_ignores_is_ignored():
    ref = [_out("total 10\n")]
    # stderr (warnings), images and output metadata are not compared; streams split anyhow are merged
    test = [_out("total "), _out("UserWarning: ...\n", "stderr"), _out("10\n"),
            nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="}, metadata={"a": 1})]
    assert compare_outputs(test, ref) is None
    assert "total 11" in compare_outputs([_out("total 11\n")], ref)
    fig = nbformat.v4.new_output("execute_result", data={"text/plain": "<Figure size 10x10 with 2 Axes>",
                                                         "image/png": "AAAA"}, execution_count=3)
    assert compare_outputs([fig], [fig]) is None
    assert "Missing output fields" in compare_outputs([], [fig])
    assert [dict(o) for o in stored_form([fig])] == [{"output_type": "execute_result", "execution_count": 3,
                                                      "metadata": {},
                                                      "data": {"text/plain": "<Figure size 10x10 with 2 Axes>"}}]


def _percent(tmp: Path, count_line: str) -> Path:
    src = tmp / "src" / "01_toy.py"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text('# %% [markdown]\n# # Toy\n\n# %% tags=["parameters"]\nprofile = "auto"\n\n'
                   f"# %%\n# NBVAL_CHECK_OUTPUT\n{count_line}\n\n# %%\nprint('not checked')\n")
    return src


def test_stored_outputs_survive_a_rebuild_until_the_cell_changes(tmp_path: Path):
    src = _percent(tmp_path, "print('params', 72074)")
    build_all(tmp_path / "src", tmp_path)
    target = tmp_path / "01_toy.ipynb"
    nb = nbformat.read(target, as_version=4)
    run = _executed_copy(nb)
    run.cells[3].outputs = [_out("params 72074\n"), _out("a warning\n", "stderr")]
    run.cells[3].execution_count = 2
    run.cells[4].outputs = [_out("not checked\n")]
    assert store_outputs(nb, run, "01_toy.ipynb") == 1
    target.write_text(nbformat.writes(nb) + "\n")
    assert build_all(tmp_path / "src", tmp_path, check=True) == [], "stored outputs must not make it stale"
    build_all(tmp_path / "src", tmp_path)  # a rebuild keeps them
    kept = nbformat.read(target, as_version=4)
    assert [o.get("text") for o in kept.cells[2].outputs] == ["params 72074\n"]  # stderr not stored
    assert kept.cells[3].outputs == [], "an unmarked cell stores nothing"
    assert check_notebook(target, run) == []
    # the marked cell's source changes: its outputs are dropped and the check says what to run
    _percent(tmp_path, "print('params', 72075)")
    assert build_all(tmp_path / "src", tmp_path) == [target]
    rebuilt = nbformat.read(target, as_version=4)
    assert rebuilt.cells[2].outputs == [] and rebuilt.cells[2].execution_count is None
    assert rebuilt == build_notebook(src), "nothing else of the old build is carried"
    (problem,) = check_notebook(target, _executed_copy(rebuilt))
    assert "no stored outputs" in problem and "make nbval-update NB=01" in problem


def test_update_refuses_a_run_that_is_not_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _percent(tmp_path, "print(1)")
    build_all(tmp_path / "src", tmp_path)
    run_dir = tmp_path / "runs" / "01_toy"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text('{"meta": {"profile": "lab"}, "x": 1}')
    with pytest.raises(ValueError, match="not a finished smoke run"):
        main(["update", "--notebooks", str(tmp_path), "--src", str(tmp_path / "src"), "--runs", str(tmp_path / "runs")])
    assert main(["check", "--notebooks", str(tmp_path)]) == 2
    assert "check needs --runs" in capsys.readouterr().err
