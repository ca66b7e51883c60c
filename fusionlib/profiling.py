"""Model cost: parameters, FLOPs (GMAC and GFLOPs), latency and peak memory.

Conventions (``notebooks/released_code.md`` §FLOPs). ``torch.utils.flop_counter.FlopCounterMode`` counts one
multiply-add as **2 FLOPs**. We always report both numbers, labelled:

* ``gmac``   = multiply-accumulates / 1e9: what ``thop`` reports as "MACs" and what SIBA's paper
  calls "FLOPs" (9.2 G at 128x128);
* ``gflops`` = 2 x ``gmac``: what LKC-FUNet's paper calls FLOPs (4050 G at 256x256).

FlopCounterMode counts matrix products and convolutions (``aten.convolution``, ``mm``, ``addmm``,
``bmm``, ``baddbmm``, scaled-dot-product attention, ...) and not element-wise ops, norms, activations
or FFTs, and it does not count biases. thop counts per module type instead, so the two can differ by
a few percent (for SIBA: FlopCounter 9.24 GMAC, thop 9.20 G).

Examples:
    >>> from torch import nn
    >>> conv = nn.Conv2d(1, 8, 3, padding=1)
    >>> count_parameters(conv)                   # 8 * 9 weights + 8 biases
    80
    >>> count_flops(conv, torch.rand(1, 1, 16, 16))["gmac"] * 1e9   # 8 * 9 * 16 * 16 MACs
    18432.0
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "count_parameters",
    "parameter_table",
    "format_parameter_table",
    "format_count",
    "count_flops",
    "measure_latency",
    "bf16_slowdown",
    "peak_memory",
    "profile_model",
    "CPU_MEMORY_NOTE",
]

CPU_MEMORY_NOTE = (
    "not measured on CPU: torch's CPU allocator keeps no peak counter, and process RSS "
    "(resource.getrusage) is a process-wide high-water mark that cannot be reset"
)


# --- parameters -------------------------------------------------------------------------------
def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements, each shared parameter counted once (as ``nn.Module.parameters``).

    Works for models on the meta device. Buffers (BatchNorm running statistics) are not counted.

    Examples:
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
        >>> _ = m[1].requires_grad_(False)
        >>> count_parameters(m), count_parameters(m, trainable_only=True)
        (23, 15)
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_table(model: nn.Module, depth: int = 1) -> pd.DataFrame:
    """Parameters grouped by submodule path truncated to ``depth`` components.

    Each unique parameter is assigned to the group of the first name under which it appears, so the
    ``params`` column sums to :func:`count_parameters` and ``share_%`` to 100. Parameters held
    directly by a module shallower than ``depth`` are grouped under that module's path
    (``"(root)"`` for the model itself).

    Returns:
        DataFrame with columns ``module`` (dotted path), ``type`` (class name), ``params``,
        ``trainable`` and ``share_%``, in order of first appearance.

    Examples:
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 1, 3))
        >>> parameter_table(m)[["module", "params"]].values.tolist()
        [['0', 80], ['2', 73]]
    """
    if depth < 1:
        raise ValueError(f"parameter_table: depth must be >= 1, got {depth}")
    modules = dict(model.named_modules())
    rows: dict[str, dict[str, Any]] = {}
    for name, p in model.named_parameters():
        owner = name.split(".")[:-1]
        key = ".".join(owner[:depth]) or "(root)"
        row = rows.setdefault(
            key,
            {
                "module": key,
                "type": type(modules[key] if key != "(root)" else model).__name__,
                "params": 0,
                "trainable": 0,
            },
        )
        row["params"] += p.numel()
        row["trainable"] += p.numel() if p.requires_grad else 0
    df = pd.DataFrame(list(rows.values()), columns=["module", "type", "params", "trainable"])
    total = int(df["params"].sum())
    df["share_%"] = 100.0 * df["params"] / total if total else 0.0
    return df


def format_count(n: float, digits: int = 2) -> str:
    """Human-readable count with K / M / G suffix (powers of 1000).

    Examples:
        >>> format_count(565941), format_count(41174438), format_count(512)
        ('565.94 K', '41.17 M', '512')
    """
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " K")):
        if abs(n) >= div:
            return f"{n / div:.{digits}f}{suffix}"
    return f"{n:g}"


def format_parameter_table(table: pd.DataFrame | nn.Module, depth: int = 1) -> str:
    """Plain-text table with thousands separators and a total line; accepts a model or a table.

    Examples:
        >>> from torch import nn
        >>> print(format_parameter_table(nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 1))))
        module  type    params   share
        0       Linear  10,100   99.0%
        1       Linear     101    1.0%
        total           10,201  100.0%
    """
    df = parameter_table(table, depth) if isinstance(table, nn.Module) else table
    total = int(df["params"].sum())
    rows = [(str(m), str(t), f"{int(n):,}", f"{s:.1f}%") for m, t, n, s in
            zip(df["module"], df["type"], df["params"], df["share_%"])]
    rows.append(("total", "", f"{total:,}", "100.0%"))
    head = ("module", "type", "params", "share")
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = [
        f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}".rstrip() for r in [head, *rows]
    ]
    return "\n".join(lines)


# --- FLOPs ----------------------------------------------------------------------------------------
def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _as_input(x: Any, device: torch.device) -> Any:
    """torch.Size -> zeros of that shape on ``device``; tensors moved to ``device``; others untouched."""
    if isinstance(x, torch.Size):
        return torch.zeros(x, device=device)
    if isinstance(x, torch.Tensor):
        return x.to(device) if x.device != device else x
    return x


def _op_name(op: Any) -> str:
    return str(getattr(op, "_qualified_op_name", op)).replace("::", ".")


def count_flops(
    model: nn.Module,
    *inputs: Any,
    meta: bool = False,
    by_op: bool = False,
    by_module: bool = False,
) -> dict[str, Any]:
    """FLOPs of one forward pass ``model(*inputs)`` with ``FlopCounterMode``, under ``torch.no_grad()``.

    Args:
        model: any ``nn.Module``; its train/eval mode is left as it is (a real pass through a
            training-mode BatchNorm updates its running statistics, as any forward does; a meta
            pass does not touch the model).
        *inputs: forward arguments. A ``torch.Size`` stands for a zero tensor of that shape
            (handy with ``meta=True``: nothing is allocated).
        meta: count on the meta device (shapes only, no memory, no arithmetic). A model already on
            meta is used as is; otherwise it runs through ``torch.func.functional_call`` with meta
            stand-ins for its parameters and buffers (the model is not modified). Fails for forward
            passes that read values (``.item()``, data-dependent branches) or create tensors on a
            fixed device.
        by_op: add ``by_op``: ``{"aten.convolution": flops, ...}``.
        by_module: add ``by_module``: FLOPs per module path as FlopCounterMode names them
            (``"<RootClass>.<child>..."``), summed over ops.

    Returns:
        ``{"flops": int, "gflops": flops / 1e9, "gmac": gflops / 2}`` (+ the optional breakdowns).

    Examples:
        >>> from torch import nn
        >>> count_flops(nn.Linear(10, 5), torch.Size([4, 10]), meta=True, by_op=True)
        {'flops': 400, 'gflops': 4e-07, 'gmac': 2e-07, 'by_op': {'aten.addmm': 400}}
    """
    on_meta = _model_device(model).type == "meta"
    device = torch.device("meta") if (meta or on_meta) else _model_device(model)
    args = tuple(_as_input(x, device) for x in inputs)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        if meta and not on_meta:
            state = {
                n: torch.empty_like(t, device="meta")
                for n, t in [*model.named_parameters(), *model.named_buffers()]
            }
            functional_call(model, state, args)
        else:
            model(*args)
    total = int(counter.get_total_flops())
    out: dict[str, Any] = {"flops": total, "gflops": total / 1e9, "gmac": total / 2e9}
    counts = counter.get_flop_counts()
    if by_op:
        out["by_op"] = {_op_name(k): int(v) for k, v in counts.get("Global", {}).items()}
    if by_module:
        out["by_module"] = {m: int(sum(ops.values())) for m, ops in counts.items() if m != "Global"}
    return out


# --- time and memory ----------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    model: nn.Module,
    *inputs: Any,
    warmup: int = 2,
    repeats: int = 5,
    device: torch.device | str | None = None,
    autocast: torch.dtype | None = None,
    sync: bool = True,
) -> dict[str, Any]:
    """Wall-clock time of ``model(*inputs)`` under ``torch.inference_mode()``.

    ``warmup`` untimed calls, then ``repeats`` timed calls with ``time.perf_counter``; on CUDA
    ``torch.cuda.synchronize`` runs before each clock read. The model's train/eval mode is left as
    it is (call ``model.eval()`` first for inference timings).

    Args:
        device: where to run; if given, the model is moved there (``model.to`` is in place) and so are
            the inputs. Default: the model's device.
        autocast: e.g. ``torch.bfloat16``: run under ``torch.autocast(device_type, dtype)`` (weights
            stay float32; matmuls and convs run in that dtype). None: the inputs' own dtype.
        sync: ``False`` reads the clock without synchronising. On a GPU that times the kernel
            *launches*, not the work, and frame rates look far higher than the device delivers; it is
            there to show the difference, not to report.

    Returns:
        ``median_s``, ``min_s``, ``mean_s``, ``runs_s`` (list), ``fps`` (images per second =
        batch size of the first tensor input / ``median_s``), ``batch``, ``device``, ``threads``,
        ``dtype`` (the autocast dtype or "float32"/the inputs' dtype), ``synchronised``.

    Examples:
        >>> from torch import nn
        >>> r = measure_latency(nn.Conv2d(1, 1, 3), torch.rand(2, 1, 8, 8), warmup=1, repeats=3)
        >>> len(r["runs_s"]), r["batch"], r["min_s"] <= r["median_s"]
        (3, 2, True)
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"measure_latency: need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    if device is not None:
        dev = torch.device(device)
        model.to(dev)
    else:
        dev = _model_device(model)
    if dev.type == "meta":
        raise ValueError("measure_latency: the model is on the meta device; latency needs real weights")
    args = tuple(_as_input(x, dev) for x in inputs)
    batch = next((int(x.shape[0]) for x in args if isinstance(x, torch.Tensor) and x.ndim), 1)
    first = next((x for x in args if isinstance(x, torch.Tensor)), None)
    dtype = autocast if autocast is not None else (first.dtype if first is not None else torch.float32)
    amp = (torch.autocast(dev.type, dtype=autocast) if autocast is not None else contextlib.nullcontext())
    runs: list[float] = []
    with torch.inference_mode(), amp:
        for _ in range(warmup):
            model(*args)
        _sync(dev)
        for _ in range(repeats):
            if sync:
                _sync(dev)
            t0 = time.perf_counter()
            model(*args)
            if sync:
                _sync(dev)
            runs.append(time.perf_counter() - t0)
        _sync(dev)  # leave no queued work behind, whatever was timed
    med = statistics.median(runs)
    return {
        "median_s": med,
        "min_s": min(runs),
        "mean_s": statistics.fmean(runs),
        "runs_s": runs,
        "fps": batch / med if med > 0 else float("inf"),
        "batch": batch,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "synchronised": sync,
    }


def bf16_slowdown(device: torch.device | str = "cpu", *, channels: int = 32, size: int = 64,
                  repeats: int = 3) -> float:
    """How many times slower a 3x3 convolution runs in bfloat16 than in float32 on ``device``.

    A probe of well under a second: ``(1, channels, size, size)`` through one ``channels -> channels``
    conv, median of ``repeats`` timed calls per dtype. Near or below 1 where the hardware has bf16
    (GPUs, CPUs with AVX512-BF16/AMX); tens where it is emulated, where timing a whole network in
    bf16 takes minutes and says only that.

    Examples:
        >>> bf16_slowdown("cpu", channels=4, size=8, repeats=1) > 0
        True
    """
    dev = torch.device(device)
    conv = nn.Conv2d(channels, channels, 3, padding=1).to(dev).eval()
    x = torch.rand(1, channels, size, size, device=dev)
    f32 = measure_latency(conv, x, warmup=1, repeats=repeats)["median_s"]
    bf = measure_latency(conv.to(torch.bfloat16), x.to(torch.bfloat16), warmup=1, repeats=repeats)["median_s"]
    return bf / max(f32, 1e-9)


def peak_memory(
    fn: Callable[[], Any], *, device: torch.device | str | None = None, relative: bool = False
) -> int | None:
    """Peak CUDA memory allocated by tensors while ``fn()`` runs, in bytes; ``None`` off CUDA.

    On CUDA: ``torch.cuda.reset_peak_memory_stats``, run ``fn``, synchronise, read
    ``torch.cuda.max_memory_allocated``. The absolute peak includes what was already allocated
    (the model's weights), which is what papers report as "memory"; ``relative=True`` subtracts the
    memory allocated before the call. The caching allocator's reserved memory (what ``nvidia-smi``
    shows) is larger.

    On CPU (or meta) it returns ``None``: see :data:`CPU_MEMORY_NOTE` for why.

    Args:
        fn: a zero-argument callable, e.g. ``lambda: model(ir, vi)``; wrap it in
            ``torch.inference_mode()`` yourself if autograd buffers should not count.
        device: the CUDA device ``fn`` uses; default ``"cuda"`` when available, else ``"cpu"``.

    Examples:
        >>> peak_memory(lambda: torch.ones(10), device="cpu") is None
        True
    """
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    if dev.type != "cuda":
        return None
    torch.cuda.synchronize(dev)
    before = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    fn()
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev)
    return int(peak - before) if relative else int(peak)


# --- summary ---------------------------------------------------------------------------------------
def profile_model(
    model: nn.Module,
    inputs: torch.Tensor | torch.Size | Sequence[Any],
    *,
    latency: bool = True,
    memory: bool = True,
    warmup: int = 2,
    repeats: int = 5,
    device: torch.device | str | None = None,
    meta: bool = False,
) -> dict[str, Any]:
    """One-call cost summary for the notebooks' "Efficiency" section.

    Args:
        inputs: one forward argument (tensor or ``torch.Size``) or a sequence of them.
        latency: time the forward pass (:func:`measure_latency`); skipped for a meta model.
        memory: peak CUDA memory of one forward under ``inference_mode`` (:func:`peak_memory`);
            ``None`` with a note off CUDA.
        device: where latency and memory are measured (the model is moved there); FLOPs are
            counted where the model is, or on meta with ``meta=True``.

    Returns:
        ``params``, ``params_trainable``, ``flops``, ``gflops``, ``gmac``, ``input_shapes``,
        ``median_s``, ``min_s``, ``fps``, ``device``, ``threads``, ``peak_memory_bytes``,
        ``peak_memory_note``, ``convention`` (a reminder of GMAC vs GFLOPs).

    Examples:
        >>> from torch import nn
        >>> r = profile_model(nn.Conv2d(1, 8, 3, padding=1), torch.rand(1, 1, 16, 16), repeats=1, warmup=0)
        >>> r["params"], r["gmac"] * 1e9, r["median_s"] > 0
        (80, 18432.0, True)
    """
    if isinstance(inputs, (torch.Tensor, torch.Size)):
        inputs = (inputs,)
    inputs = tuple(inputs)
    if device is not None:
        model.to(torch.device(device))
    flops = count_flops(model, *inputs, meta=meta)
    on_meta = _model_device(model).type == "meta"
    dev = _model_device(model)
    out: dict[str, Any] = {
        "params": count_parameters(model),
        "params_trainable": count_parameters(model, trainable_only=True),
        **flops,
        "input_shapes": [tuple(x.shape) if isinstance(x, torch.Tensor) else tuple(x) for x in inputs
                         if isinstance(x, (torch.Tensor, torch.Size))],
        "median_s": None,
        "min_s": None,
        "fps": None,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "peak_memory_bytes": None,
        "peak_memory_note": "not requested",
        "convention": "gmac = thop MACs; gflops = 2 * gmac (FlopCounterMode)",
    }
    if on_meta:
        out["peak_memory_note"] = "model on the meta device: nothing to run"
        return out
    if latency:
        lat = measure_latency(model, *inputs, warmup=warmup, repeats=repeats)
        out.update(median_s=lat["median_s"], min_s=lat["min_s"], fps=lat["fps"])
    if memory:
        if dev.type == "cuda":
            args = tuple(_as_input(x, dev) for x in inputs)

            def run() -> None:
                with torch.inference_mode():
                    model(*args)

            out["peak_memory_bytes"] = peak_memory(run, device=dev)
            out["peak_memory_note"] = "torch.cuda.max_memory_allocated during one forward (inference_mode)"
        else:
            out["peak_memory_note"] = CPU_MEMORY_NOTE
    return out
