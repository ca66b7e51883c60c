"""Generate student versions of the paper notebooks: exercise cells become stubs, checks stay.

A notebook marks an exercise with a code cell tagged ``exercise`` that holds exactly one line::

    from fusionlib.models.rpfnet import FDFM as MyFDFM  # exercise: forward

followed (somewhere after it) by a cell tagged ``check`` that calls ``fusionlib.labs.check_exercise``
and binds what it returns: ``MyFDFM = check_exercise(MyFDFM, FDFM, ...)``. In the instructor notebook
the line simply imports the reference. In the student notebook it becomes the reference's source,
renamed ``MyFDFM``, with the named methods' bodies (``# exercise: maps, forward`` names several;
``forward`` by default for a class, the whole body for a function) replaced by ``raise
NotImplementedError``: signature, docstring and the rest of the class stay, so the check can share
weights between the two. With ``solutions=True`` the full source is written instead (used by the tests
to prove the cells work).

A cell that would give the answer away (a walk that writes out the stubbed code) is tagged
``reveals:<alias>``. In the student notebook a code cell so tagged becomes a call of
``fusionlib.labs.reveal`` holding its source compressed: it still runs (later cells may need its
names) but prints its code only after the check of ``<alias>`` has passed; a markdown cell so tagged
is replaced by a note. The generated ``student-setup`` cell switches the checks to student mode (a
failed check explains, falls back to the reference and lets Run All go on) and makes
``fusionlib.nb.show`` hide the source of the exercise targets.
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
           "revealed_by", "write_labs", "REVEALS"]

_LINE = re.compile(r"^from\s+(?P<module>[\w.]+)\s+import\s+(?P<name>\w+)\s+as\s+(?P<alias>\w+)\s*"
                   r"(?:#\s*exercise:\s*(?P<method>\w+(?:\s*,\s*\w+)*))?\s*$")
REVEALS = "reveals:"  # tag prefix of a cell that writes out an exercise's answer: ``reveals:MyFDFM``


@dataclass(frozen=True)
class Exercise:
    """One exercise: ``from module import name as alias`` and the method the student writes."""

    module: str
    name: str
    alias: str
    method: str | None  # None: a function's whole body (or a class's forward); "maps, forward": several
    cell_index: int

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods the student writes (empty: the default, see ``method``)."""
        return tuple(m.strip() for m in self.method.split(",")) if self.method else ()

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
    method = ", ".join(x.strip() for x in m["method"].split(",")) if m["method"] else None
    return Exercise(m["module"], m["name"], m["alias"], method, cell_index)


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
    """Replace the body of ``fn`` by one ``raise NotImplementedError``, keeping its docstring's first paragraph."""
    body = fn.body
    first = body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
        and isinstance(first.value.value, str)
    indent = " " * (first.col_offset)
    head = src_lines[:fn.body[0].lineno - 1]  # up to the signature
    if has_doc:  # its first paragraph only: the rest of a docstring often spells the body out
        doc = inspect.cleandoc(first.value.value).split("\n\n")[0].strip().replace('"""', "'''").splitlines()
        doc[0] = f'{indent}"""{doc[0]}'
        doc[1:] = [f"{indent}{ln}" if ln else "" for ln in doc[1:]]
        head += doc
        head[-1] += '"""'
    stub = [f"{indent}# YOUR CODE HERE", f'{indent}raise NotImplementedError("{message}")']
    return head + stub + src_lines[fn.end_lineno:]


def exercise_source(ex: Exercise, *, solutions: bool = False) -> str:
    """The code of a student's exercise cell (stub, or the full reference with ``solutions=True``)."""
    obj = getattr(importlib.import_module(ex.module), ex.name)
    src = textwrap.dedent(inspect.getsource(obj))
    tree = ast.parse(src)
    node = tree.body[0]
    lines = src.splitlines()
    methods = ex.methods or (("forward",) if inspect.isclass(obj) else ())
    method = " and ".join(f"`{m}`" for m in methods)
    if not solutions:
        if inspect.isclass(obj):
            fns = {b.name: b for b in node.body if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))}
            for name in sorted(methods, key=lambda n: -fns[n].lineno if n in fns else 0):  # bottom up
                if name not in fns:
                    raise ValueError(f"{ex.target} has no method {name!r} to turn into an exercise")
                lines = _stub_body(lines, fns[name], f"write {ex.alias}.{name}")
        else:
            lines = _stub_body(lines, node, f"write {ex.alias}")
    # rename the class/function on its definition line only
    for i in range(len(lines)):
        if re.match(rf"^(class|def|async def)\s+{ex.name}\b", lines[i]):
            lines[i] = re.sub(rf"^(class|def|async def)\s+{ex.name}\b", rf"\1 {ex.alias}", lines[i])
            break
    else:  # pragma: no cover - inspect always gives the definition line
        raise ValueError(f"could not find the definition line of {ex.target}")
    for i in range(len(lines)):  # docstring examples call the alias too
        if lines[i].lstrip().startswith((">>>", "...")):
            lines[i] = re.sub(rf"\b{ex.name}\(", f"{ex.alias}(", lines[i])
    body = "\n".join(lines)
    imports = _imports_for(obj, _free_names(tree), exclude={ex.name})
    if inspect.isclass(obj) and not solutions:
        head = (f"# Exercise: write {method} of {ex.alias} (the rest is given; keep the layer names so the "
                f"check can share weights).\n# Reference: {ex.target}. Run the check cell below when done.")
    elif not solutions:
        head = f"# Exercise: write the body of {ex.alias}.\n# Reference: {ex.target}. Run the check cell below when done."
    else:
        head = f"# Solution: the reference {ex.target}, renamed {ex.alias}."
    return head + "\n" + "\n".join(imports) + ("\n\n" if imports else "\n") + body + "\n"


def revealed_by(cell: nbformat.NotebookNode) -> str | None:
    """The exercise alias a cell's ``reveals:<alias>`` tag names, or None."""
    tags = [t for t in cell.get("metadata", {}).get("tags", []) if t.startswith(REVEALS)]
    if len(tags) > 1:
        raise ValueError(f"a cell has several {REVEALS} tags {tags}: one exercise per cell")
    return tags[0][len(REVEALS):] if tags else None


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
    aliases = {ex.alias for ex in exercises}
    for i, cell in enumerate(out.cells):
        revealed = revealed_by(cell)
        if revealed is None:
            continue
        if revealed not in aliases:
            raise ValueError(f"cell {i} is tagged '{REVEALS}{revealed}' but the notebook has no exercise {revealed}; "
                             f"its exercises are {sorted(aliases)}")
        if solutions:  # the answers are in the exercise cells anyway
            continue
        if cell.cell_type == "code":
            from fusionlib.labs.check import encode_cell

            cell.source = (f"# This cell writes out the answer of the exercise {revealed}: its code is printed once your "
                           f"check of {revealed} passes.\n"
                           f"from fusionlib.labs import reveal\nreveal({revealed!r}, {encode_cell(cell.source)!r}, globals())")
            cell.outputs = []
            cell.execution_count = None
        else:
            cell.source = (f"*(A note here explains the answer of the exercise `{revealed}`; it is in the instructor "
                           f"notebook, read it after your check passes.)*")
    hidden = sorted({ex.target for ex in exercises})
    banner = nbformat.v4.new_code_cell(
        "# Student version: a failed check explains and continues with the reference; the sources of the\n"
        "# exercise modules are hidden until you write them.\n"
        "import fusionlib.labs\nimport fusionlib.nb\nfusionlib.labs.set_student_mode(True)\n"
        f"fusionlib.nb.HIDDEN_SOURCES.update({hidden!r})")
    banner.metadata["tags"] = ["student-setup"]
    intro = nbformat.v4.new_markdown_cell(
        "**Student version** (generated by `make labs` from the instructor notebook; do not edit the original). "
        f"It has {len(exercises)} exercises: " + ", ".join(f"`{e.alias}`" for e in exercises) + ". Each one is a "
        "code cell with `raise NotImplementedError`; write the missing code and run the check cell below it, "
        "which compares your module with the reference on the same weights and inputs and says what differs. "
        "The notebook then goes on with your module (its figures are titled \"your ...\"). If a check fails, it "
        "says why and the notebook continues with the reference module, so Run All always reaches the end; "
        "cells that would show an answer print their code only after its check has passed.")
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
