"""Student labs: the checks say what is wrong in words, and every generated notebook works.

For every notebook with exercises: the stubs fail their checks with the intended "not written yet"
message and the reference solutions pass them. The solution-filled student notebook is the reference
notebook but for its exercise cells (each defining the reference's own source under the alias, binding
no name the notebook binds otherwise) and two inserted cells whose only effect is to hide the exercise
sources from ``show``: so the reference notebook's smoke run in ``tests/test_notebooks.py`` proves it
runs, and ``make test`` checks that statically. Executing it with papermill as well (every paper
notebook a second time) is marked ``release``: ``make release-test``.
"""

from __future__ import annotations

import ast
import importlib
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


def _global_bindings(tree: ast.AST) -> list[tuple[str, ast.AST, ast.alias | None]]:
    """(name, node, alias) of every module-level binding of a cell: assignments, loop and ``with`` targets,
    ``def``/``class`` names and imports (not the names local to functions, classes or comprehensions)."""
    out: list[tuple[str, ast.AST, ast.alias | None]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.append((child.name, child, None))
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                out.extend(((a.asname or a.name.split(".")[0]), child, a) for a in child.names)
            elif isinstance(child, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                continue
            else:
                if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                    out.append((child.id, child, None))
                visit(child)

    visit(tree)
    return out


def _imported(node: ast.AST, alias: ast.alias):
    """The object an import statement binds to ``alias``."""
    if isinstance(node, ast.Import):
        return importlib.import_module(alias.name if alias.asname else alias.name.split(".")[0])
    mod = importlib.import_module(node.module)
    if hasattr(mod, alias.name):
        return getattr(mod, alias.name)
    return importlib.import_module(f"{node.module}.{alias.name}")


@pytest.mark.parametrize("nb", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_solution_notebook_is_the_reference_but_for_its_exercise_cells(nb: Path):
    """What running the solution-filled notebook would add to the reference notebook's smoke run, checked
    without running it: same cells in the same order, the exercise cells bind the alias (and imports of
    the very objects the notebook imports under those names), the inserted banner only hides sources."""
    import fusionlib.nb

    ref = nbformat.read(nb, as_version=4)
    solved = make_student_notebook(ref, solutions=True)
    exercises = find_exercises(ref)
    ex_index = {e.cell_index: e for e in exercises}
    banner = [i for i, c in enumerate(solved.cells) if "student-setup" in c.get("metadata", {}).get("tags", [])]
    assert len(banner) == 1 and solved.cells[banner[0] - 1].cell_type == "markdown", "inserted cells moved"
    rest = [c for i, c in enumerate(solved.cells) if i not in (banner[0] - 1, banner[0])]
    assert len(rest) == len(ref.cells)
    for i, (r, s) in enumerate(zip(ref.cells, rest)):
        assert (r.cell_type, r.get("metadata", {}).get("tags", [])) == (s.cell_type, s.get("metadata", {}).get("tags", []))
        if i not in ex_index:
            assert r.source == s.source, f"{nb.name}: cell {i} of the solution notebook differs from the reference"

    bindings: dict[str, list[tuple[ast.AST, ast.alias | None]]] = {}
    for c in ref.cells:
        if c.cell_type == "code":
            for name, node, alias in _global_bindings(ast.parse(c.source)):
                bindings.setdefault(name, []).append((node, alias))
    for i, ex in ex_index.items():
        ns: dict = {}
        exec(compile(rest[i].source, f"<{ex.alias} solution>", "exec"), ns)
        assert ex.alias in ns, f"{nb.name}: the solution cell does not define {ex.alias}"
        for name, value in ns.items():
            if name in ("__builtins__", ex.alias):
                continue
            for node, alias in bindings.get(name, []):
                assert alias is not None and _imported(node, alias) is value, (
                    f"{nb.name}: the solution of {ex.alias} binds {name!r}, which the notebook binds to something "
                    f"else (line {getattr(node, 'lineno', '?')} of its cell): the student version could differ")

    # the banner: show() of an exercise target prints a pointer instead of the answer
    before = set(fusionlib.nb.HIDDEN_SOURCES)
    try:
        exec(compile(solved.cells[banner[0]].source, "<student-setup>", "exec"), {})
        for ex in exercises:
            if any(f"show({ex.name})" in c.source for c in solved.cells if c.cell_type == "code"):
                obj = getattr(importlib.import_module(ex.module), ex.name)
                buf = io.StringIO()
                with redirect_stdout(buf):
                    assert fusionlib.nb.show(obj) is None
                assert f"source of {ex.name} is hidden" in buf.getvalue(), f"show({ex.name}) would print the answer"
    finally:
        fusionlib.nb.HIDDEN_SOURCES.clear()
        fusionlib.nb.HIDDEN_SOURCES.update(before)


@pytest.mark.release
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
