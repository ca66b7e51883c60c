"""Checks for lab exercises: compare a student's module with the fusionlib reference, in words.

``MyFDFM = check_exercise(MyFDFM, FDFM, init=..., inputs=...)`` builds both under the same seed, gives
the student's module the reference's weights, runs both on the same inputs and either prints one line
saying they agree (and returns the student's module) or explains, in words a student can act on, how they
differ: which output, which shape, which channels or pixels and by how much, and a hint from the equation.

What a failure does depends on the notebook. In an instructor notebook (the default) it raises
``LabCheckError``, so a broken reference fails the test suite. In a student notebook (its generated
``student-setup`` cell calls ``set_student_mode(True)``) it prints the explanation and the line
"continuing with the reference <X>" and returns the reference, so Run All reaches the end of the
notebook; the cells after the check use whatever it returned, and ``whose`` titles their figures
"your X" or "reference X (your check failed)". ``swap_modules`` puts a student's class into a built
network (same weights), and ``reveal`` runs a cell that would show the answer, printing it only once
the exercise's check has passed.
"""

from __future__ import annotations

import ast
import base64
import copy
import inspect
import sys
import zlib
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["LabCheckError", "check_exercise", "describe_difference", "set_student_mode", "student_mode", "whose",
           "swap_modules", "encode_cell", "reveal"]


class LabCheckError(AssertionError):
    """A student's exercise does not match the reference; the message says how."""


_STUDENT_MODE = False
_PASSED: set[str] = set()      # names of the student objects whose last check passed
_FELL_BACK: set[str] = set()   # names of the references returned in place of a failed student object
_REFERENCES: set[str] = set()  # names of every reference a check compared with


def set_student_mode(on: bool = True) -> None:
    """Make a failed check print and fall back to the reference (student notebooks) instead of raising."""
    global _STUDENT_MODE
    _STUDENT_MODE = bool(on)


def student_mode() -> bool:
    """True in a student notebook (after its ``student-setup`` cell), False in an instructor notebook."""
    return _STUDENT_MODE


def whose(obj: Any, what: str | None = None) -> str:
    """A figure title for what a check returned: "your X", "reference X (your check failed)" or "reference X".

    ``what`` defaults to the object's name without a leading ``My``/``my_``. An object defined outside
    fusionlib is the student's; a fusionlib object (or one a check used as its reference) is the reference,
    marked when it replaced a failed check.

    Examples:
        >>> whose(describe_difference, "gate")
        'reference gate'
    """
    name = _name(obj)
    what = what or (name[2:] if name.startswith("My") else name[3:] if name.startswith("my_") else name)
    if name in _FELL_BACK:
        return f"reference {what} (your check failed)"
    if name in _REFERENCES or (getattr(obj, "__module__", "") or "").startswith("fusionlib"):
        return f"reference {what}"
    return f"your {what}"


def swap_modules(model: nn.Module, reference: type, student: type) -> nn.Module:
    """A copy of ``model`` whose ``reference`` submodules run the ``student`` class's code (same weights).

    Each matching submodule of a deep copy gets ``student`` as its class, so its methods are the student's
    and its parameters, buffers and attributes stay those of the built network. That is right for an
    exercise whose ``__init__`` is given (the check has compared the parameter names). With
    ``student is reference`` (an instructor notebook, or a failed check) ``model`` itself is returned.
    """
    if student is reference:
        return model
    if not (inspect.isclass(student) and issubclass(student, nn.Module)):
        raise TypeError(f"swap_modules: {_name(student)} should be an nn.Module class like {_name(reference)}")
    out = copy.deepcopy(model)
    n = 0
    for m in out.modules():
        if type(m) is reference:
            m.__class__ = student
            n += 1
    if not n:
        raise ValueError(f"swap_modules: {type(model).__name__} has no {_name(reference)} submodule to replace")
    return out


def encode_cell(source: str) -> str:
    """The text ``reveal`` takes: a cell's source, compressed, so a student notebook does not show it."""
    return base64.b64encode(zlib.compress(source.encode("utf-8"), 9)).decode("ascii")


def reveal(exercise: str, encoded: str, namespace: dict | None = None) -> Any:
    """Run a cell that writes out the answer of ``exercise``; show its code only once that check has passed.

    The cell runs either way (later cells may need the names it binds), in ``namespace`` (the notebook's
    ``globals()``); the value of its last expression is returned, so a figure it ends with is displayed.
    """
    source = zlib.decompress(base64.b64decode(encoded)).decode("utf-8")
    ns = namespace if namespace is not None else sys._getframe(1).f_globals
    if exercise in _PASSED:
        print(f"Your {exercise} passed its check, so here is the code of this cell:\n")
        print(source.rstrip() + "\n\n--- its output ---")
    else:
        print(f"This cell writes out the answer of the exercise {exercise}, so its code is shown once your check of "
              f"{exercise} passes (run that check, then this cell again). It runs now with the reference.")
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, f"<cell revealed by {exercise}>", "exec"), ns)
    if last is not None:
        return eval(compile(ast.Expression(last.value), f"<cell revealed by {exercise}>", "eval"), ns)
    return None


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__


def _student_frame(tb) -> str:
    """The last traceback line that is not inside fusionlib or torch: where in the student's code it broke."""
    frames = traceback.extract_tb(tb)
    for fr in reversed(frames):
        f = fr.filename.replace("\\", "/")
        if "/fusionlib/" in f or "/torch/" in f or "/einops/" in f or "/kornia/" in f:
            continue
        return f"line {fr.lineno} (`{(fr.line or '').strip()}`)"
    return ""


def _shapes(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return str(tuple(x.shape))
    if isinstance(x, Mapping):
        return "{" + ", ".join(f"{k}: {_shapes(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (list, tuple)):
        return "(" + ", ".join(_shapes(v) for v in x) + ")"
    return type(x).__name__


def _arg_shapes(args: Sequence) -> str:
    return ", ".join(_shapes(a) for a in args)


def _clone(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, Mapping):
        return {k: _clone(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_clone(v) for v in x)
    return x


def _tensor_difference(where: str, got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> str | None:
    if tuple(got.shape) != tuple(want.shape):
        hint = ""
        if got.numel() == want.numel():
            hint = " (same number of values: a reshape/permute/transposition is off)"
        elif got.ndim == want.ndim:
            dims = [i for i in range(got.ndim) if got.shape[i] != want.shape[i]]
            hint = f" (dimensions {dims} differ)" if len(dims) > 1 else f" (dimension {dims[0]} differs)"
        return f"{where} has shape {tuple(got.shape)} but should have shape {tuple(want.shape)}{hint}."
    got = got.detach().to(torch.float64)
    want = want.detach().to(torch.float64)
    bad_nonfinite = (~torch.isfinite(got)) & torch.isfinite(want)
    if bad_nonfinite.any():
        idx = tuple(int(i) for i in bad_nonfinite.nonzero()[0])
        return (f"{where} has {int(bad_nonfinite.sum())} NaN/inf values where the reference is finite "
                f"(first at index {list(idx)}): look for a division by zero, log of 0 or sqrt of a negative.")
    diff = (got - want).abs()
    tol = atol + rtol * want.abs()
    wrong = diff > tol
    if not wrong.any():
        return None
    n, total = int(wrong.sum()), wrong.numel()
    flat = int(diff.argmax())
    idx = list(torch.unravel_index(torch.tensor(flat), diff.shape))
    idx = [int(i) for i in idx]
    msg = (f"{where}: {n} of {total} values differ by more than the tolerance (atol={atol:g}, rtol={rtol:g}); "
           f"largest |difference| {float(diff.max()):.4g} at index {idx} (yours {float(got.flatten()[flat]):.4g}, "
           f"reference {float(want.flatten()[flat]):.4g}).")
    if got.ndim >= 2 and got.shape[1] > 1:
        chans = wrong.transpose(0, 1).reshape(got.shape[1], -1).any(dim=1).nonzero().flatten().tolist()
        shown = chans if len(chans) <= 12 else chans[:12] + ["..."]
        if len(chans) <= got.shape[1] // 2:  # a few channels wrong: name them and say the rest are right
            msg += f" Only channels {shown} of {got.shape[1]} differ: the others are right."
        elif len(chans) < got.shape[1]:  # most are wrong: name the ones that are right
            right = [c for c in range(got.shape[1]) if c not in set(chans)]
            right_shown = right if len(right) <= 12 else right[:12] + ["..."]
            msg += f" {len(chans)} of {got.shape[1]} channels differ; only channels {right_shown} are right."
    # Common slips, named when the numbers show them.
    if torch.allclose(got, -want, atol=atol, rtol=rtol):
        msg += " Yours is the reference with the opposite sign."
    elif got.ndim >= 2 and got.shape[-1] == got.shape[-2] and torch.allclose(got, want.transpose(-1, -2), atol=atol,
                                                                             rtol=rtol):
        msg += " Yours is the reference with height and width swapped."
    else:
        nz = want.abs() > 1e-8
        if nz.sum() > 1:
            ratio = got[nz] / want[nz]
            if float(ratio.std()) < 1e-4 * max(1.0, float(ratio.abs().mean())):
                msg += f" Yours is the reference times {float(ratio.mean()):.4g}: a scale factor is off."
        shift = got - want
        if float(shift.std()) < atol and float(shift.abs().mean()) > atol:
            msg += f" Yours is the reference plus {float(shift.mean()):.4g} everywhere: an offset or bias is off."
    return msg


def describe_difference(got: Any, want: Any, *, atol: float = 1e-5, rtol: float = 1e-4,
                        where: str = "the output") -> list[str]:
    """Every way ``got`` differs from ``want`` (tensors, numbers, tuples, lists, dicts), as sentences.

    Examples:
        >>> describe_difference(torch.ones(2, 3), torch.ones(2, 3))
        []
        >>> describe_difference(torch.ones(2, 3), torch.ones(3, 2))[0]
        'the output has shape (2, 3) but should have shape (3, 2) (same number of values: a reshape/permute/transposition is off).'
    """
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return [f"{where} should be a tensor of shape {tuple(want.shape)}, got {type(got).__name__}."]
        m = _tensor_difference(where, got, want, atol, rtol)
        return [m] if m else []
    if isinstance(want, Mapping):
        if not isinstance(got, Mapping):
            return [f"{where} should be a dict with keys {sorted(want)}, got {type(got).__name__}."]
        if set(got) != set(want):
            return [f"{where} has keys {sorted(got)} but should have {sorted(want)}."]
        out: list[str] = []
        for k in want:
            out += describe_difference(got[k], want[k], atol=atol, rtol=rtol, where=f"{where}[{k!r}]")
        return out
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return [f"{where} should be a {type(want).__name__} of {len(want)} items, got {type(got).__name__}."]
        if len(got) != len(want):
            return [f"{where} has {len(got)} items but should have {len(want)}."]
        out = []
        for i, (g, w) in enumerate(zip(got, want)):
            out += describe_difference(g, w, atol=atol, rtol=rtol, where=f"{where}[{i}]")
        return out
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        if not isinstance(got, (int, float, torch.Tensor)):
            return [f"{where} should be a number, got {type(got).__name__}."]
        g = float(got)
        if abs(g - float(want)) > atol + rtol * abs(float(want)):
            return [f"{where} is {g:.6g} but should be {float(want):.6g}."]
        return []
    if got != want:
        return [f"{where} is {got!r} but should be {want!r}."]
    return []


def _call(fn: Callable, args: Sequence, kwargs: Mapping, who: str, what: str, hint: str) -> Any:
    try:
        with torch.no_grad():
            return fn(*args, **kwargs)
    except NotImplementedError:
        raise LabCheckError(f"{who} is not written yet: replace `raise NotImplementedError` in {what} with your "
                            f"code, then run this check again." + (f"\nHint: {hint}" if hint else "")) from None
    except Exception as e:  # a student's bug: say where, not a 40-frame traceback
        where = _student_frame(sys.exc_info()[2])
        raise LabCheckError(f"{who} raised {type(e).__name__}: {e}\n  at {where or 'an unknown line'} "
                            f"on inputs of shapes {_arg_shapes(args)}." + (f"\nHint: {hint}" if hint else "")) from None


def check_exercise(student: Any, reference: Any, *, inputs: Sequence | Callable[[torch.Generator], Sequence],
                   kwargs: Mapping[str, Any] | Callable[[torch.Generator], Mapping[str, Any]] | None = None,
                   init: Mapping[str, Any] | Sequence | None = None, atol: float = 1e-5, rtol: float = 1e-4,
                   seed: int = 0, train: bool = False, hint: str = "", method: str = "forward",
                   strict: bool | None = None) -> Any:
    """Check a student's class or function against the fusionlib reference; return the one to use from here on.

    Returns ``student`` when it matches. When it does not: with ``strict`` (the default outside a student
    notebook, see ``set_student_mode``) raise ``LabCheckError``; otherwise print the same explanation and
    "continuing with the reference <X>" and return ``reference``, so the notebook goes on with it.

    Args:
        student: the student's ``nn.Module`` subclass or function (``MyFDFM``).
        reference: the fusionlib one (``FDFM``), with the same constructor and call signature.
        inputs: the call's positional arguments, or a function ``g -> arguments`` of a seeded
            ``torch.Generator`` (so the inputs are the same on every run).
        kwargs: keyword arguments of the call, or a function ``g -> kwargs`` (drawn after ``inputs``).
        init: constructor arguments for a class (a kwargs dict or an args tuple).
        atol, rtol: tolerance of the comparison (``|yours - ref| <= atol + rtol * |ref|``).
        seed: seeds the inputs and both constructors.
        train: run both modules in training mode (BatchNorm batch statistics) instead of ``eval()``.
        hint: one sentence from the equation, shown with every failure.
        method: for a class, the method called on the inputs (``"inverse"``: compares ``inverse``).
        strict: raise on a failure (None: not in student mode).

    Examples:
        >>> def double(x):
        ...     return 2 * x
        >>> _ = check_exercise(double, double, inputs=(torch.zeros(2, 3),))
        ✓ double matches the reference double on inputs (2, 3)
    """
    strict = (not _STUDENT_MODE) if strict is None else strict
    who, ref_name = _name(student), _name(reference)
    _REFERENCES.add(ref_name)
    if student is reference and ref_name in _FELL_BACK and not strict:
        print(f"(skipped: an earlier check of this exercise failed, so the notebook is using the reference {ref_name})")
        return reference
    _PASSED.discard(who)
    try:
        _compare(student, reference, inputs=inputs, kwargs=kwargs, init=init, atol=atol, rtol=rtol, seed=seed,
                 train=train, hint=hint, method=method)
    except LabCheckError as e:
        if strict:
            raise
        _FELL_BACK.add(ref_name)
        print(f"✗ {e}\n\n→ continuing with the reference {ref_name}: the cells below use it in place of {who}, "
              f"so the rest of the notebook runs (its figures say so). Fix {who}, run its cell and this check again "
              f"to use yours.")
        return reference
    _PASSED.add(who)
    _FELL_BACK.discard(ref_name)
    return student


def _compare(student: Any, reference: Any, *, inputs, kwargs, init, atol: float, rtol: float, seed: int,
             train: bool, hint: str, method: str = "forward") -> None:
    """The comparison behind ``check_exercise``: print one ✓ line or raise ``LabCheckError``."""
    who = _name(student)
    g = torch.Generator().manual_seed(seed)
    args = tuple(inputs(g) if callable(inputs) else inputs)
    kw = dict((kwargs(g) if callable(kwargs) else kwargs) or {})
    with_hint = (f"\nHint: {hint}" if hint else "")

    if inspect.isclass(reference):
        if not (inspect.isclass(student) and issubclass(student, nn.Module)):
            raise LabCheckError(f"{who} should be a class deriving from nn.Module (like {_name(reference)}).")
        init_args, init_kwargs = ((), dict(init)) if isinstance(init, Mapping) else (tuple(init or ()), {})

        def build(cls, label):
            torch.manual_seed(seed)
            try:
                return cls(*init_args, **init_kwargs)
            except NotImplementedError:
                raise LabCheckError(f"{label}.__init__ is not written yet: replace `raise NotImplementedError`."
                                    + with_hint) from None
            except Exception as e:
                where = _student_frame(sys.exc_info()[2])
                raise LabCheckError(f"building {label}({init_args or ''}{init_kwargs or ''}) raised "
                                    f"{type(e).__name__}: {e} at {where or 'an unknown line'}." + with_hint) from None

        ref = build(reference, _name(reference))
        stu = build(student, who)
        want_sd, got_sd = ref.state_dict(), stu.state_dict()
        missing = [k for k in want_sd if k not in got_sd]
        extra = [k for k in got_sd if k not in want_sd]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}")
            if extra:
                parts.append(f"unexpected {extra[:8]}{' ...' if len(extra) > 8 else ''}")
            raise LabCheckError(f"{who} has different parameters from {_name(reference)}: {'; '.join(parts)}. "
                                f"Keep the layers of __init__ as given (same names), so both can share weights."
                                + with_hint)
        wrong_shape = [f"{k}: {tuple(got_sd[k].shape)} vs {tuple(v.shape)}" for k, v in want_sd.items()
                       if tuple(got_sd[k].shape) != tuple(v.shape)]
        if wrong_shape:
            raise LabCheckError(f"{who} has parameters of the wrong shape: {wrong_shape[:6]}." + with_hint)
        stu.load_state_dict(want_sd)
        ref.train(train)
        stu.train(train)
        with torch.no_grad():  # a failure here is the notebook's, not the student's: let it raise as is
            want = getattr(ref, method)(*_clone(args), **_clone(kw))
        got = _call(getattr(stu, method), _clone(args), _clone(kw), who, f"{who}.{method}", hint)
    else:
        with torch.no_grad():
            want = reference(*_clone(args), **_clone(kw))
        got = _call(student, _clone(args), _clone(kw), who, who, hint)

    problems = describe_difference(got, want, atol=atol, rtol=rtol)
    of = "" if method == "forward" or not inspect.isclass(reference) else f".{method}"
    if problems:
        raise LabCheckError(f"{who}{of} does not match {_name(reference)}{of} on inputs {_arg_shapes(args)}:\n- "
                            + "\n- ".join(problems) + with_hint)
    print(f"✓ {who}{of} matches the reference {_name(reference)}{of} on inputs {_arg_shapes(args)}")
