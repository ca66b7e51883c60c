"""Read a pickled PyTorch checkpoint without executing it: a restricted unpickler.

A pickle is a small program: its ``GLOBAL``/``REDUCE`` opcodes import and call any function named in the
file (``os.system`` included), so ``torch.load(weights_only=False)`` on a downloaded file runs whatever
the file says. Some authors release the *whole model* pickled (``torch.save(model)``; RPFNet's
``Trained/Model.pth`` is a ``net.FusionNetwork`` with CUDA tensors). ``weights_only=True`` refuses such a
file (its classes are not tensors), and the usual workaround, importing the authors' ``net.py`` and
unpickling for real, executes the file.

This module rebuilds such a file as inert data:

- :class:`RestrictedUnpickler` resolves only an allow-list of globals, each to *our own* function or
  marker (it never imports or calls what the file names): tensor rebuilding (``torch._utils
  ._rebuild_tensor_v2`` and friends), storage types, ``collections.OrderedDict``, ``set``/``frozenset``,
  dtypes. Every other global raises :class:`UnsafePickleError` naming it, before anything runs.
- Classes from ``torch.nn.modules.*`` and from modules you name (``placeholder_modules=("net",)``) become
  :class:`Placeholder` objects that only store what the pickle hands them (``__dict__`` state).
- :func:`load_torch_zip` reads a ``torch.save`` zip archive, rebuilding tensors from its storage records
  on the CPU (CUDA locations are ignored); :func:`state_dict_from_placeholder` walks the placeholder tree
  the way ``nn.Module.state_dict`` does (own parameters, persistent buffers, then children).
- :func:`convert_rpfnet_pickle` does both for RPFNet's ``Model.pth``; save its result with ``torch.save``
  and load it later with ``weights_only=True`` (``fusionlib.checkpoints.load_rpfnet_released``).
"""

from __future__ import annotations

import io
import pickle
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

__all__ = ["UnsafePickleError", "Placeholder", "RestrictedUnpickler", "safe_loads", "load_torch_zip",
           "state_dict_from_placeholder", "convert_model_pickle", "convert_rpfnet_pickle"]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside the allow-list (or is malformed in a way we refuse)."""


# --- inert stand-ins -----------------------------------------------------------------------------------
class Placeholder:
    """Stands in for a pickled object of a class we refuse to import (a model class, an ``nn.Module``).

    It records the arguments it was built with (``args``) and the state the pickle sets (``state``, the
    object's ``__dict__`` for an ``nn.Module``); nothing else. ``qualname`` is the class the file named.
    """

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = super().__new__(cls)
        obj.args, obj.state = args, {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args): store, run nothing
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = state

    def __repr__(self) -> str:
        return f"<Placeholder {self.qualname}>"


_PLACEHOLDER_CLASSES: dict[str, type] = {}


def _placeholder_class(qualname: str) -> type:
    if qualname not in _PLACEHOLDER_CLASSES:
        _PLACEHOLDER_CLASSES[qualname] = type(qualname.rsplit(".", 1)[-1], (Placeholder,),
                                              {"qualname": qualname, "__module__": __name__})
    return _PLACEHOLDER_CLASSES[qualname]


class _StorageType:
    """Marker for ``torch.FloatStorage`` etc.: only carries the dtype (torch's class is never used)."""

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"<storage type {self.name}>"


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}
_STORAGE_TYPES = {name: _StorageType(name, dt) for name, dt in _STORAGE_DTYPES.items()}
_DTYPES = {name: getattr(torch, name) for name in (
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "complex64", "complex128", "float", "double", "half", "long", "int", "short")}


# --- our own tensor rebuilders (same signatures as torch._utils', no side effects) ---------------------
def _rebuild_tensor_v2(storage: torch.Tensor, storage_offset: int, size: tuple, stride: tuple,
                       requires_grad: bool = False, backward_hooks: Any = None, metadata: Any = None
                       ) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise UnsafePickleError(f"tensor rebuild got {type(storage).__name__}, expected a storage record")
    return storage.as_strided(tuple(size), tuple(stride), storage_offset)


def _rebuild_tensor_v3(storage: torch.Tensor, storage_offset: int, size: tuple, stride: tuple,
                       requires_grad: bool, backward_hooks: Any, dtype: torch.dtype, metadata: Any = None
                       ) -> torch.Tensor:
    return _rebuild_tensor_v2(storage.view(dtype) if storage.dtype != dtype else storage,
                              storage_offset, size, stride)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool, backward_hooks: Any) -> torch.Tensor:
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


def _rebuild_parameter_with_state(data: torch.Tensor, requires_grad: bool, backward_hooks: Any,
                                  state: Any) -> torch.Tensor:
    return _rebuild_parameter(data, requires_grad, backward_hooks)  # extra Python attributes dropped


def _torch_size(*args: Any) -> tuple:
    return tuple(*args)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch", "Size"): _torch_size,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
}
_ALLOWED |= {("torch", name): st for name, st in _STORAGE_TYPES.items()}
_ALLOWED |= {("torch", name): dt for name, dt in _DTYPES.items()}


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only an allow-list of globals, to our own inert objects.

    Args:
        file: a binary file object holding the pickle.
        storages: ``persistent_load`` for torch storage records, ``pid tuple -> flat tensor``; None
            refuses persistent ids.
        placeholder_modules: module names whose classes (any name inside, and their submodules) become
            :class:`Placeholder` objects; ``torch.nn.modules`` is always included.

    Raises (from ``load()``):
        UnsafePickleError: ``refusing global 'posix.system'`` for anything else.
    """

    def __init__(self, file: io.BufferedIOBase, *, storages: Any = None,
                 placeholder_modules: Iterable[str] = ()) -> None:
        super().__init__(file)
        self._storages = storages
        self._placeholder_modules = ("torch.nn.modules", *placeholder_modules)

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)  # protocol <= 2 writes Python 2 names
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        if any(module == m or module.startswith(m + ".") for m in self._placeholder_modules) \
                and name.isidentifier():
            return _placeholder_class(f"{module}.{name}")
        raise UnsafePickleError(f"refusing global '{module}.{name}': not a tensor, container or allowed "
                                f"model class (allowed model modules: {list(self._placeholder_modules)})")

    def persistent_load(self, pid: Any) -> Any:
        if self._storages is None:
            raise UnsafePickleError(f"refusing persistent id {pid!r}: no storage records in a plain pickle")
        return self._storages(pid)


def safe_loads(data: bytes, *, placeholder_modules: Iterable[str] = ()) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (plain containers, placeholders; no storages).

    Examples:
        >>> safe_loads(pickle.dumps({"a": [1, 2]}))
        {'a': [1, 2]}
    """
    return RestrictedUnpickler(io.BytesIO(data), placeholder_modules=placeholder_modules).load()


def load_torch_zip(path: str | Path, *, placeholder_modules: Iterable[str] = ()) -> Any:
    """Read a ``torch.save`` zip archive with the restricted unpickler; tensors land on the CPU.

    Storage records ``('storage', type, key, location, numel)`` are read from ``<archive>/data/<key>``
    as little-endian bytes into fresh CPU tensors (the ``location``, e.g. ``cuda:0``, is ignored).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a zip archive written by ``torch.save`` (legacy pre-1.6 files are not supported).
        UnsafePickleError: a global outside the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a torch.save zip archive (legacy pickles are not supported)")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ValueError(f"{path}: expected one data.pkl in the archive, found {pkl}")
        prefix = pkl[0][: -len("data.pkl")]
        order = prefix + "byteorder"
        if order in names and zf.read(order).decode().strip() != "little":
            raise ValueError(f"{path}: big-endian archives are not supported")
        if sys.byteorder != "little":
            raise ValueError("load_torch_zip: needs a little-endian machine")
        cache: dict[str, torch.Tensor] = {}

        def storages(pid: Any) -> torch.Tensor:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                    and isinstance(pid[1], _StorageType)):
                raise UnsafePickleError(f"refusing persistent id {pid!r}: not a torch storage record")
            _, stype, key, _location, numel = pid
            key = str(key)
            if key not in cache:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise ValueError(f"{path}: storage record {record!r} is missing")
                raw = bytearray(zf.read(record))
                flat = torch.frombuffer(raw, dtype=stype.dtype) if raw else torch.empty(0, dtype=stype.dtype)
                if flat.numel() != int(numel):
                    raise ValueError(f"{path}: storage {key} holds {flat.numel()} values, "
                                     f"the pickle says {numel}")
                cache[key] = flat
            return cache[key]

        with zf.open(pkl[0]) as f:
            return RestrictedUnpickler(io.BytesIO(f.read()), storages=storages,
                                       placeholder_modules=placeholder_modules).load()


def state_dict_from_placeholder(root: Placeholder, prefix: str = "") -> OrderedDict[str, torch.Tensor]:
    """The ``state_dict`` an ``nn.Module`` pickled as ``root`` would give (same keys, same order).

    Per module: its ``_parameters`` (skipping None), its ``_buffers`` not in
    ``_non_persistent_buffers_set`` (skipping None), then each child in ``_modules`` order. Tensors are
    detached.
    """
    if not isinstance(root, Placeholder) or not isinstance(root.state, dict):
        raise ValueError(f"expected a pickled nn.Module (placeholder with a state dict), got {root!r}")
    st = root.state
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    skip = st.get("_non_persistent_buffers_set") or set()
    for field in ("_parameters", "_buffers"):
        for name, t in (st.get(field) or {}).items():
            if t is None or (field == "_buffers" and name in skip):
                continue
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{prefix}{name}: {field} entry is {type(t).__name__}, not a tensor")
            out[prefix + name] = t.detach()
    for name, child in (st.get("_modules") or {}).items():
        if child is not None:
            out.update(state_dict_from_placeholder(child, prefix + name + "."))
    return out


def convert_model_pickle(path: str | Path, *, model_modules: Iterable[str],
                         expected_root: str | None = None) -> OrderedDict[str, torch.Tensor]:
    """A whole-model ``torch.save`` file -> its state dict, without importing or running its classes.

    Args:
        path: the pickled model (a ``torch.save`` zip archive).
        model_modules: module names whose classes the file may name (the authors' ``net``).
        expected_root: the class the pickled root must be (``"net.FusionNetwork"``), or None.

    Raises:
        UnsafePickleError: a global outside the allow-list (nothing was executed).
        ValueError: the root is not a pickled module, or not ``expected_root``.
    """
    root = load_torch_zip(path, placeholder_modules=model_modules)
    if expected_root is not None and getattr(root, "qualname", None) != expected_root:
        raise ValueError(f"{path}: the pickled root is {root!r}, expected {expected_root}")
    sd = state_dict_from_placeholder(root)
    return OrderedDict((k, v.clone()) for k, v in sd.items())  # own memory, not views into the archive


def convert_rpfnet_pickle(path: str | Path) -> OrderedDict[str, torch.Tensor]:
    """RPFNet's released ``Trained/Model.pth`` (a pickled ``net.FusionNetwork``) -> its 93-tensor state dict.

    Nothing in the file is imported or executed; CUDA tensors come back on the CPU. The keys are the
    authors' (``init_spatial.0.weight``, ...); save the result with ``torch.save`` and load it with
    ``fusionlib.checkpoints.load_rpfnet_released`` (which maps the names to ours).
    """
    return convert_model_pickle(path, model_modules=("net",), expected_root="net.FusionNetwork")
