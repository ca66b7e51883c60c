"""Generate student versions of the paper notebooks: exercise cells become stubs, checks stay.

A notebook marks an exercise with a code cell tagged ``exercise`` that holds exactly one line::

    from fusionlib.models.rpfnet import FDFM as MyFDFM  # exercise: forward

followed (somewhere after it) by a cell tagged ``check`` that calls ``fusionlib.labs.check_exercise``.
In the instructor notebook the line simply imports the reference. In the student notebook it becomes
the reference's source, renamed ``MyFDFM``, with the named method's body (``forward`` by default for a
class, the whole body for a function) replaced by ``raise NotImplementedError``: signature, docstring
and the given ``__init__`` stay, so the check can share weights between the two. With
``solutions=True`` the full source is written instead (used by the tests to prove the cells work).

``fusionlib.nb.show`` hides the source of the exercise targets in a student notebook, so the answer
is not printed two sections earlier.
"""

from __future__ import annotations

import ast
import builtins
import copy
import importlib
import inspect
import re
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import nbformat

__all__ = ["Exercise", "parse_exercise_line", "find_exercises", "exercise_source", "make_student_notebook",
           "write_labs"]

_LINE = re.compile(r"^from\s+(?P<module>[\w.]+)\s+import\s+(?P<name>\w+)\s+as\s+(?P<alias>\w+)\s*"
                   r"(?:#\s*exercise:\s*(?P<method>\w+))?\s*$")


@dataclass(frozen=True)
class Exercise:
    """One exercise: ``from module import name as alias`` and the method the student writes."""

    module: str
    name: str
    alias: str
    method: str | None  # None: a function's whole body (or a class's forward, resolved in exercise_source)
    cell_index: int

    @property
    def target(self) -> str:
        return f"{self.module}.{self.name}"


def parse_exercise_line(source: str, cell_index: int = -1) -> Exercise:
    """Read an exercise cell; raise ``ValueError`` naming the cell when it is not the one-line form."""
    lines = [ln for ln in source.strip().splitlines() if ln.strip() and not ln.strip().startswith("#")
             or _LINE.match(ln.strip())]
    if len(lines) != 1 or not _LINE.match(lines[0].strip()):
        raise ValueError(f"exercise cell {cell_index} must be one line `from <module> import <Name> as My<Name>"
                         f"  # exercise: <method>`, got:\n{source}")
    m = _LINE.match(lines[0].strip())
    return Exercise(m["module"], m["name"], m["alias"], m["method"], cell_index)


def find_exercises(nb: nbformat.NotebookNode) -> list[Exercise]:
    """The exercises of a notebook, in order."""
    return [parse_exercise_line("".join(c.source), i) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and "exercise" in c.get("metadata", {}).get("tags", [])]


def _free_names(tree: ast.AST) -> set[str]:
    loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return loads


def _public_home(v: object, name: str) -> str | None:
    """The shortest module path that exports ``v`` as ``name`` (``einops``, not ``einops.einops``)."""
    home = getattr(v, "__module__", None)
    if not home:
        return None
    parts = home.split(".")
    for i in range(1, len(parts) + 1):
        cand = ".".join(parts[:i])
        try:
            if getattr(importlib.import_module(cand), name, None) is v:
                return cand
        except ImportError:  # pragma: no cover
            continue
    return None


def _imports_for(obj: object, names: set[str], exclude: set[str]) -> list[str]:
    """``import`` lines that bind every module-level name the source of ``obj`` uses."""
    mod = importlib.import_module(obj.__module__)
    lines = []
    for n in sorted(names - exclude):
        if hasattr(builtins, n) or n not in vars(mod):
            continue
        v = vars(mod)[n]
        if isinstance(v, types.ModuleType):
            lines.append(f"import {v.__name__}" if v.__name__ == n else f"import {v.__name__} as {n}")
        else:
            lines.append(f"from {_public_home(v, n) or obj.__module__} import {n}")
    plain = sorted(ln for ln in lines if ln.startswith("import "))
    froms = sorted(ln for ln in lines if ln.startswith("from "))
    return plain + froms


def _stub_body(src_lines: list[str], fn: ast.FunctionDef, message: str) -> list[str]:
    """Replace the body of ``fn`` (after its docstring) by one ``raise NotImplementedError``."""
    body = fn.body
    first = body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
        and isinstance(first.value.value, str)
    keep_until = first.end_lineno if has_doc else fn.body[0].lineno - 1  # 1-based, inclusive
    indent = " " * (first.col_offset)
    stub = [f"{indent}# YOUR CODE HERE", f'{indent}raise NotImplementedError("{message}")']
    return src_lines[:keep_until] + stub + src_lines[fn.end_lineno:]


def exercise_source(ex: Exercise, *, solutions: bool = False) -> str:
    """The code of a student's exercise cell (stub, or the full reference with ``solutions=True``)."""
    obj = getattr(importlib.import_module(ex.module), ex.name)
    src = textwrap.dedent(inspect.getsource(obj))
    tree = ast.parse(src)
    node = tree.body[0]
    lines = src.splitlines()
    method = ex.method or ("forward" if inspect.isclass(obj) else None)
    what = f"{ex.alias}.{method}" if inspect.isclass(obj) else ex.alias
    if not solutions:
        if inspect.isclass(obj):
            fns = [b for b in node.body if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) and b.name == method]
            if not fns:
                raise ValueError(f"{ex.target} has no method {method!r} to turn into an exercise")
            lines = _stub_body(lines, fns[0], f"write {what}")
        else:
            lines = _stub_body(lines, node, f"write {what}")
    # rename the class/function on its definition line only
    for i in range(len(lines)):
        if re.match(rf"^(class|def|async def)\s+{ex.name}\b", lines[i]):
            lines[i] = re.sub(rf"^(class|def|async def)\s+{ex.name}\b", rf"\1 {ex.alias}", lines[i])
            break
    else:  # pragma: no cover - inspect always gives the definition line
        raise ValueError(f"could not find the definition line of {ex.target}")
    body = "\n".join(lines)
    imports = _imports_for(obj, _free_names(tree), exclude={ex.name})
    if inspect.isclass(obj) and not solutions:
        head = (f"# Exercise: write `{method}` of {ex.alias} (the rest is given; keep the layer names so the "
                f"check can share weights).\n# Reference: {ex.target}. Run the check cell below when done.")
    elif not solutions:
        head = f"# Exercise: write the body of {ex.alias}.\n# Reference: {ex.target}. Run the check cell below when done."
    else:
        head = f"# Solution: the reference {ex.target}, renamed {ex.alias}."
    return head + "\n" + "\n".join(imports) + ("\n\n" if imports else "\n") + body + "\n"


def make_student_notebook(nb: nbformat.NotebookNode, *, solutions: bool = False) -> nbformat.NotebookNode:
    """A copy of ``nb`` with every exercise cell turned into a stub (or the full solution)."""
    exercises = find_exercises(nb)
    if not exercises:
        raise ValueError("this notebook has no cells tagged 'exercise'")
    out = copy.deepcopy(nb)
    for ex in exercises:
        cell = out.cells[ex.cell_index]
        cell.source = exercise_source(ex, solutions=solutions)
        cell.outputs = []
        cell.execution_count = None
    hidden = sorted({ex.target for ex in exercises})
    banner = nbformat.v4.new_code_cell(
        "# Student version: the sources of the exercise modules are hidden until you write them.\n"
        f"import fusionlib.nb\nfusionlib.nb.HIDDEN_SOURCES.update({hidden!r})")
    banner.metadata["tags"] = ["student-setup"]
    intro = nbformat.v4.new_markdown_cell(
        "**Student version** (generated by `make labs` from the instructor notebook; do not edit the original). "
        f"It has {len(exercises)} exercises: " + ", ".join(f"`{e.alias}`" for e in exercises) + ". Each one is a "
        "code cell with `raise NotImplementedError`; write the missing code and run the check cell below it, "
        "which compares your module with the reference on the same weights and inputs and says what differs.")
    # after the parameters cell, so papermill's injected parameters still come first
    pos = next((i + 1 for i, c in enumerate(out.cells) if "parameters" in c.get("metadata", {}).get("tags", [])), 0)
    out.cells[pos:pos] = [intro, banner]
    out.metadata.setdefault("fusionlib", {})["student"] = {"solutions": solutions,
                                                           "exercises": [e.alias for e in exercises]}
    for i, c in enumerate(out.cells):  # unique ids, by position as nbsource does
        c["id"] = f"s{i:03d}"
    return out


def write_labs(notebooks: str | Path = "notebooks", out: str | Path = "labs", *, solutions: bool = False) -> list[Path]:
    """Write ``out/<stem>_student.ipynb`` for every notebook in ``notebooks`` that has exercises."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in sorted(Path(notebooks).glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        if not find_exercises(nb):
            continue
        student = make_student_notebook(nb, solutions=solutions)
        suffix = "_solutions" if solutions else "_student"
        target = out / f"{p.stem}{suffix}.ipynb"
        from fusionlib.atomic import atomic_write_text
        from fusionlib.nbsource import dumps

        atomic_write_text(target, dumps(student))
        written.append(target)
    return written
