"""Student labs: the checks say what is wrong in words, and every generated notebook works.

For every notebook with exercises: the stubs fail their checks with the intended "not written yet"
message, the reference solutions pass them, and the solution-filled student notebook executes at
smoke with papermill (marked ``notebooks``).
"""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

from fusionlib.labs import LabCheckError, check_exercise, find_exercises, make_student_notebook
from fusionlib.runner import check_results, find_notebooks, run_notebook

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = find_notebooks(NB_DIR)
PAPER_NOTEBOOKS = [p for p in NOTEBOOKS if not p.stem.startswith("00_") and not p.stem.startswith("06_")]
WITH_EXERCISES = [p for p in NOTEBOOKS if find_exercises(nbformat.read(p, as_version=4))]


# --- check_exercise on small known cases --------------------------------------------------------------
class Scale(nn.Module):
    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return self.conv(x)


def _inputs(g):
    return (torch.rand(2, 4, 6, 6, generator=g),)


def test_check_passes_for_the_reference_itself():
    buf = io.StringIO()
    with redirect_stdout(buf):
        check_exercise(Scale, Scale, init=dict(channels=4), inputs=_inputs)
    assert buf.getvalue().startswith("✓ Scale matches")


def test_check_names_a_scale_slip_and_the_hint():
    class Doubled(Scale):
        def forward(self, x):
            return 2 * self.conv(x)

    with pytest.raises(LabCheckError, match=r"times 2: a scale factor is off(.|\n)*Hint: one 1x1 conv"):
        check_exercise(Doubled, Scale, init=dict(channels=4), inputs=_inputs, hint="one 1x1 conv")


def test_check_names_the_wrong_channels():
    class OneChannelOff(Scale):
        def forward(self, x):
            y = self.conv(x)
            return torch.cat([y[:, :3], y[:, 3:] + 1], 1)

    with pytest.raises(LabCheckError, match=r"Only channels \[3\] of 4 differ"):
        check_exercise(OneChannelOff, Scale, init=dict(channels=4), inputs=_inputs)


def test_check_reports_shape_and_stub_and_student_line():
    class Cropped(Scale):
        def forward(self, x):
            return self.conv(x)[..., 1:]

    with pytest.raises(LabCheckError, match=r"shape \(2, 4, 6, 5\) but should have shape \(2, 4, 6, 6\)"):
        check_exercise(Cropped, Scale, init=dict(channels=4), inputs=_inputs)

    class Stub(Scale):
        def forward(self, x):
            raise NotImplementedError

    with pytest.raises(LabCheckError, match="not written yet"):
        check_exercise(Stub, Scale, init=dict(channels=4), inputs=_inputs)

    class Broken(Scale):
        def forward(self, x):
            return self.conv(x) @ torch.ones(3, 3)  # wrong inner size

    with pytest.raises(LabCheckError, match=r"raised RuntimeError(.|\n)*at line \d+ \(`return self.conv\(x\) @"):
        check_exercise(Broken, Scale, init=dict(channels=4), inputs=_inputs)


def test_check_reports_renamed_layers():
    class Renamed(nn.Module):
        def __init__(self, channels: int = 4) -> None:
            super().__init__()
            self.proj = nn.Conv2d(channels, channels, 1)

        def forward(self, x):
            return self.proj(x)

    with pytest.raises(LabCheckError, match=r"missing \['conv.weight', 'conv.bias'\]"):
        check_exercise(Renamed, Scale, init=dict(channels=4), inputs=_inputs)


# --- the notebooks' exercises ----------------------------------------------------------------------------
@pytest.mark.parametrize("nb", PAPER_NOTEBOOKS, ids=[p.stem for p in PAPER_NOTEBOOKS])
def test_paper_notebook_has_three_exercises_each_with_a_check(nb: Path):
    book = nbformat.read(nb, as_version=4)
    exercises = find_exercises(book)
    assert len(exercises) >= 3, f"{nb.name}: {len(exercises)} exercises, need at least 3"
    for ex in exercises:
        later = book.cells[ex.cell_index + 1:]
        checks = [c for c in later if "check" in c.get("metadata", {}).get("tags", [])
                  and ex.alias in "".join(c.source)]
        assert checks, f"{nb.name}: exercise {ex.alias} has no cell tagged 'check' that uses it"


def _exercise_pairs(book: nbformat.NotebookNode):
    for ex in find_exercises(book):
        check = next(c for c in book.cells[ex.cell_index + 1:]
                     if "check" in c.get("metadata", {}).get("tags", []) and ex.alias in "".join(c.source))
        yield ex, "".join(check.source)


@pytest.mark.parametrize("nb", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_stubs_fail_with_the_intended_message_and_solutions_pass(nb: Path):
    book = nbformat.read(nb, as_version=4)
    stubs = make_student_notebook(book)
    solved = make_student_notebook(book, solutions=True)
    n = 0
    tagged = lambda nb: [c for c in nb.cells if "exercise" in c.get("metadata", {}).get("tags", [])]  # noqa: E731
    for (ex, check_src), stub_cell, solved_cell in zip(_exercise_pairs(book), tagged(stubs), tagged(solved)):
        assert f'raise NotImplementedError("write {ex.alias}' in "".join(stub_cell.source)
        assert re.search(rf"^(class|def)\s+{ex.alias}\b", "".join(solved_cell.source), re.M)
        ns: dict = {}
        exec(compile("".join(stub_cell.source), f"<{ex.alias} stub>", "exec"), ns)
        with pytest.raises(LabCheckError, match="not written yet"):
            exec(compile(check_src, f"<{ex.alias} check>", "exec"), ns)
        ns = {}
        exec(compile("".join(solved_cell.source), f"<{ex.alias} solution>", "exec"), ns)
        buf = io.StringIO()
        with redirect_stdout(buf):
            exec(compile(check_src, f"<{ex.alias} check>", "exec"), ns)
        assert "✓" in buf.getvalue(), f"{nb.name}: {ex.alias} solution did not print a pass"
        n += 1
    assert n >= 1


@pytest.mark.notebooks
@pytest.mark.parametrize("nb", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_student_notebook_with_solutions_runs_at_smoke(nb: Path, tmp_path: Path):
    solved = make_student_notebook(nbformat.read(nb, as_version=4), solutions=True)
    target = tmp_path / f"{nb.stem}_solutions.ipynb"
    nbformat.write(solved, target)
    results = run_notebook(target, tmp_path / "runs", profile="smoke", progress=False)
    assert check_results(results).get("meta", {}).get("profile") == "smoke"
    executed = nbformat.read(tmp_path / "runs" / target.stem / target.name, as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert text.count("✓") >= len(find_exercises(nbformat.read(nb, as_version=4))), "a check did not pass"
    for ex in find_exercises(nbformat.read(nb, as_version=4)):  # show(Name) must not print the answer
        if any(f"show({ex.name})" in "".join(c.source) for c in solved.cells if c.cell_type == "code"):
            assert f"source of {ex.name} is hidden" in text, f"show({ex.name}) printed the solution"
