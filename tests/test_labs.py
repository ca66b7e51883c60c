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
import inspect
import io
import re
import textwrap
from contextlib import redirect_stdout
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

import fusionlib.labs.check as labcheck
from fusionlib.labs import (
    LabCheckError,
    check_exercise,
    encode_cell,
    exercise_source,
    find_exercises,
    make_student_notebook,
    parse_exercise_line,
    reveal,
    set_student_mode,
    swap_modules,
    whose,
)
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


def _channels_off_from(first: int) -> type:
    """A ``Scale`` whose output channels ``first..`` are off by one (the ones before it are right)."""
    class ChannelsOff(Scale):
        def forward(self, x):
            y = self.conv(x)
            return torch.cat([y[:, :first], y[:, first:] + 1], 1)

    return ChannelsOff


def test_check_names_the_wrong_channels():
    with pytest.raises(LabCheckError, match=r"Only channels \[3\] of 4 differ"):
        check_exercise(_channels_off_from(3), Scale, init=dict(channels=4), inputs=_inputs)


def test_check_says_only_when_at_most_half_of_the_channels_differ():
    with pytest.raises(LabCheckError) as err:
        check_exercise(_channels_off_from(1), Scale, init=dict(channels=4), inputs=_inputs)
    assert "Only channels" not in str(err.value) and "the others are right" not in str(err.value)
    assert "3 of 4 channels differ; only channels [0] are right" in str(err.value)
    with pytest.raises(LabCheckError, match=r"Only channels \[2, 3\] of 4 differ: the others are right"):
        check_exercise(_channels_off_from(2), Scale, init=dict(channels=4), inputs=_inputs)


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


# --- student mode: a failed check explains, falls back and the notebook goes on --------------------------
@pytest.fixture
def student_mode():
    """Student mode for one test, and the check registry as it was afterwards."""
    registries = (labcheck._PASSED, labcheck._FELL_BACK, labcheck._REFERENCES)
    saved = (labcheck._STUDENT_MODE, [set(r) for r in registries])
    set_student_mode(True)
    yield
    labcheck._STUDENT_MODE = saved[0]
    for r, old in zip(registries, saved[1]):
        r.clear()
        r.update(old)


class MyScale(Scale):  # a student's wrong module: one channel off by one
    def forward(self, x):
        y = self.conv(x)
        return torch.cat([y[:, :3], y[:, 3:] + 1], 1)


def test_failed_check_in_student_mode_explains_and_returns_the_reference(student_mode):
    buf = io.StringIO()
    with redirect_stdout(buf):
        used = check_exercise(MyScale, Scale, init=dict(channels=4), inputs=_inputs, hint="one 1x1 conv")
    out = buf.getvalue()
    assert used is Scale
    assert "Only channels [3] of 4 differ" in out and "Hint: one 1x1 conv" in out, out
    assert "continuing with the reference Scale" in out, out
    assert whose(used, "scale") == "reference scale (your check failed)"
    # a second check of the same exercise (e.g. another method) is skipped, not passed
    with redirect_stdout(io.StringIO()) as buf2:
        assert check_exercise(used, Scale, init=dict(channels=4), inputs=_inputs) is Scale
    assert "skipped" in buf2.getvalue() and whose(used, "scale") == "reference scale (your check failed)"
    # the fixed module passes and is returned; the label follows
    with redirect_stdout(io.StringIO()):
        assert check_exercise(type("MyScale", (Scale,), {}), Scale, init=dict(channels=4), inputs=_inputs) is not Scale
    assert whose(Scale, "scale") == "reference scale"


def test_failed_check_outside_student_mode_raises():
    assert not labcheck.student_mode()
    with pytest.raises(LabCheckError, match=r"Only channels \[3\]"):
        check_exercise(MyScale, Scale, init=dict(channels=4), inputs=_inputs)
    with redirect_stdout(io.StringIO()):
        assert check_exercise(Scale, Scale, init=dict(channels=4), inputs=_inputs) is Scale


def test_whose_names_the_students_module():
    assert whose(MyScale) == "your Scale" and whose(MyScale, "gate") == "your gate"
    from fusionlib.models.dmnet import AffineCoupling

    assert whose(AffineCoupling) == "reference AffineCoupling"


def test_swap_modules_runs_the_students_code_with_the_models_weights():
    torch.manual_seed(0)
    model = nn.Sequential(Scale(4), nn.ReLU(), Scale(4))
    x = _inputs(torch.Generator().manual_seed(1))[0]
    swapped = swap_modules(model, Scale, MyScale)
    assert swapped is not model and type(model[0]) is Scale and type(swapped[2]) is MyScale
    assert torch.equal(swapped[0].conv.weight, model[0].conv.weight)
    def students_forward(m, t):  # MyScale's code with module m's weights
        y = m.conv(t)
        return torch.cat([y[:, :3], y[:, 3:] + 1], 1)

    with torch.no_grad():  # every Scale of the copy runs the student's code; the original is untouched
        want = students_forward(model[2], torch.relu(students_forward(model[0], x)))
        torch.testing.assert_close(swapped(x), want)
        torch.testing.assert_close(model(x), model[2](torch.relu(model[0].conv(x))))
    assert swap_modules(model, Scale, Scale) is model
    with pytest.raises(ValueError, match="has no Scale submodule"):
        swap_modules(nn.Sequential(nn.ReLU()), Scale, MyScale)


def test_check_of_another_method():
    class Inv(Scale):
        def inverse(self, y):
            return y - self.conv.bias[None, :, None, None]

    class MyInv(Inv):
        def inverse(self, y):
            return y + self.conv.bias[None, :, None, None]

    with pytest.raises(LabCheckError, match=r"MyInv\.inverse does not match \S*Inv\.inverse"):
        check_exercise(MyInv, Inv, init=dict(channels=4), inputs=_inputs, method="inverse")


def test_reveal_runs_the_cell_and_prints_its_code_only_after_the_check_passed(student_mode):
    src = "walked = secret_value * 2\nwalked + 1"
    ns = {"secret_value": 20}
    with redirect_stdout(io.StringIO()) as buf:
        assert reveal("MyScale", encode_cell(src), ns) == 41
    assert ns["walked"] == 40 and "secret_value" not in buf.getvalue() and "once your check" in buf.getvalue()
    with redirect_stdout(io.StringIO()):
        check_exercise(MyScale, MyScale, init=dict(channels=4), inputs=_inputs)
    with redirect_stdout(io.StringIO()) as buf:
        assert reveal("MyScale", encode_cell(src), ns) == 41
    assert "walked = secret_value * 2" in buf.getvalue()
    assert "secret_value" not in encode_cell(src)


def test_several_methods_are_stubbed():
    ex = parse_exercise_line("from fusionlib.models.dmnet import AffineCoupling as MyAffineCoupling  # exercise: forward, inverse")
    assert ex.methods == ("forward", "inverse")
    src = exercise_source(ex)
    assert 'raise NotImplementedError("write MyAffineCoupling.forward")' in src
    assert 'raise NotImplementedError("write MyAffineCoupling.inverse")' in src
    assert "torch.exp(self.rho(z2))" not in src and "torch.linalg.inv" not in src
    assert "self.phi = " in src or "self.phi" in src  # __init__ stays
    ns: dict = {}
    exec(compile(src, "<stub>", "exec"), ns)
    with pytest.raises(NotImplementedError):
        ns["MyAffineCoupling"](8).inverse(torch.zeros(1, 8, 2, 2))


# --- the notebooks' exercises ----------------------------------------------------------------------------
def _tags(c) -> list[str]:
    return c.get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("nb", PAPER_NOTEBOOKS, ids=[p.stem for p in PAPER_NOTEBOOKS])
def test_paper_notebook_has_one_to_three_exercises_each_checked_and_used_later(nb: Path):
    """Each exercise: a check that binds what it returns, and a later cell that uses it and titles it."""
    book = nbformat.read(nb, as_version=4)
    exercises = find_exercises(book)
    assert 1 <= len(exercises) <= 3, f"{nb.name}: {len(exercises)} exercises, want 1 to 3"
    for ex in exercises:
        later = book.cells[ex.cell_index + 1:]
        checks = [i for i, c in enumerate(later) if "check" in _tags(c) and ex.alias in "".join(c.source)]
        assert checks, f"{nb.name}: exercise {ex.alias} has no cell tagged 'check' that uses it"
        check_src = "".join(later[checks[0]].source)
        assert re.search(rf"^{ex.alias}\s*=\s*check_exercise\(", check_src, re.M), (
            f"{nb.name}: the check of {ex.alias} must bind what check_exercise returns (`{ex.alias} = check_exercise(...)`)")
        users = [c for c in later[checks[0] + 1:] if c.cell_type == "code" and "check" not in _tags(c)
                 and re.search(rf"\b{ex.alias}\b", "".join(c.source)) and "whose(" in "".join(c.source)]
        assert users, f"{nb.name}: no cell after the check uses {ex.alias} in a figure titled with whose(...)"


def _key_lines(ex) -> list[str]:
    """The code the student writes, normalised (no ``self.``/``return``/spaces), lines of 16+ characters."""
    obj = getattr(importlib.import_module(ex.module), ex.name)
    tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    node = tree.body[0]
    if isinstance(node, ast.ClassDef):
        wanted = ex.methods or ("forward",)
        fns = [b for b in node.body if isinstance(b, ast.FunctionDef) and b.name in wanted]
    else:
        fns = [node]
    out = []
    for fn in fns:
        body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) else fn.body
        for stmt in body:
            for line in ast.unparse(stmt).splitlines():
                key = _normalise(line)
                if len(key) >= 16:
                    out.append(key)
    return out


def _normalise(text: str) -> str:
    text = re.sub(r"#.*", "", text)
    return re.sub(r"\s+|self\.|\breturn\b|`", "", text)


@pytest.mark.parametrize("nb", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_student_notebook_shows_no_answer_before_its_check(nb: Path):
    """No line of a stubbed body (spaces, ``self.`` and ``return`` aside) is in a cell, or its stored output,
    before the exercise's check: not in prose, hints, walks or ``show`` listings."""
    ref = nbformat.read(nb, as_version=4)
    cells = make_student_notebook(ref).cells
    for ex in find_exercises(ref):
        check_at = next(i for i, c in enumerate(cells) if "check" in _tags(c) and ex.alias in "".join(c.source))
        keys = _key_lines(ex)
        assert keys, f"{nb.name}: {ex.alias} leaves nothing to write"
        for i, c in enumerate(cells[:check_at]):
            text = "".join(c.source) + "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else ""
                                               for o in c.get("outputs", []))
            flat = _normalise(text)
            for k in keys:
                assert k not in flat, f"{nb.name}: cell {i} of the student notebook shows `{k}` of {ex.alias} before its check"


@pytest.mark.parametrize("nb", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_reveal_cells_hide_their_code_in_the_student_version(nb: Path):
    """A ``reveals:<alias>`` code cell becomes a ``reveal`` call that holds its code compressed."""
    ref = nbformat.read(nb, as_version=4)
    student = make_student_notebook(ref)
    tagged = [c for c in ref.cells if any(t.startswith("reveals:") for t in _tags(c))]
    hidden = [c for c in student.cells if any(t.startswith("reveals:") for t in _tags(c))]
    assert len(tagged) == len(hidden)
    for r, s_ in zip(tagged, hidden):
        if r.cell_type == "code":
            assert "reveal(" in s_.source and encode_cell(r.source) in s_.source
            assert not any(len(ln.strip()) > 20 and ln.strip() in s_.source for ln in r.source.splitlines())
        else:
            assert "instructor notebook" in s_.source


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
        set_student_mode(False)


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
