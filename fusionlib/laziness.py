"""Network laziness: how much each functional block's weights move per epoch (AIDFusion, Fig. 1 a/b).

For a block ``b`` with parameters ``W_b`` (all its parameter tensors flattened and concatenated)
and epoch ``e`` (weights ``W_b^e`` after the epoch, ``W_b^0`` at the start of training):

    delta_b(e)    = ‖W_b^e − W_b^{e−1}‖_F
    relative_b(e) = delta_b(e) / ‖W_b^{e−1}‖_F

A "lazy" block is one whose relative update collapses early while others still learn. Norms are
accumulated in float64. Buffers (BatchNorm running statistics) are not weights and are left out.

Blocks come from, in order: the ``blocks`` argument; ``model.laziness_blocks()``; the model's
top-level children (root-level parameters then go to ``other``). A block is a list of parameter-name
prefixes, each naming a submodule or parameter path (``"enc_ir"`` and ``"enc_ir."`` both match
``enc_ir.conv.weight`` but not ``enc_ir2.weight``). Every parameter must fall in exactly one block;
``other="other"`` collects the unassigned ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from fusionlib.train import unwrap_model

__all__ = ["LazinessTracker", "resolve_blocks", "block_norms", "summarise"]


def _strip(name: str) -> str:
    for pre in ("module.", "_orig_mod."):
        while name.startswith(pre):
            name = name[len(pre):]
    return name


def _matches(name: str, prefix: str) -> bool:
    p = _strip(prefix)
    return name == p.rstrip(".") or name.startswith(p if p.endswith(".") else p + ".")


def resolve_blocks(model: nn.Module, blocks: Mapping[str, Sequence[str]] | None = None, *,
                   other: str | None = None) -> dict[str, list[str]]:
    """Map block name → the model's parameter names in it (DDP ``module.`` prefixes stripped).

    Raises ``ValueError`` listing parameters in no block (unless ``other`` names a catch-all block),
    parameters in two blocks, and prefixes that match nothing.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 1, 3))
        >>> resolve_blocks(net, {"encoder": ["0"], "decoder": ["2."]})
        {'encoder': ['0.weight', '0.bias'], 'decoder': ['2.weight', '2.bias']}
    """
    model = unwrap_model(model)
    names = [_strip(n) for n, _ in model.named_parameters()]
    if blocks is None and callable(getattr(model, "laziness_blocks", None)):
        blocks = model.laziness_blocks()
    if blocks is None:
        blocks = {c: [c + "."] for c, m in model.named_children() if any(True for _ in m.parameters())}
        other = other or "other"
    if isinstance(blocks, str) or not isinstance(blocks, Mapping):
        raise TypeError(f"laziness: blocks must be a dict {{block: [prefix, ...]}}, "
                        f"got {type(blocks).__name__}")
    out: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    duplicated: dict[str, list[str]] = {}
    unmatched: list[str] = []
    for block, prefixes in blocks.items():
        if isinstance(prefixes, str):
            prefixes = [prefixes]
        members = []
        for prefix in prefixes:
            hit = [n for n in names if _matches(n, prefix)]
            if not hit:
                unmatched.append(f"{block}: {prefix!r}")
            members.extend(n for n in hit if n not in members)
        for n in members:
            if n in owner:
                duplicated.setdefault(n, [owner[n]]).append(str(block))
            else:
                owner[n] = str(block)
        out[str(block)] = members
    missing = [n for n in names if n not in owner]
    if other is not None and missing:
        if other in out:
            raise ValueError(f"laziness: other={other!r} is also the name of a block in blocks")
        out[other] = missing
        missing = []
    problems = []
    if missing:
        problems.append(f"parameters in no block (pass other='other' to collect them): {missing}")
    if duplicated:
        problems.append("parameters in more than one block: "
                        + ", ".join(f"{n} in {bs}" for n, bs in duplicated.items()))
    if unmatched:
        problems.append(f"prefixes that match no parameter: {unmatched}")
    if problems:
        raise ValueError("laziness: bad block assignment for " + type(model).__name__ + "; "
                         + "; ".join(problems))
    return out


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {_strip(n): p for n, p in unwrap_model(model).named_parameters()}


def block_norms(weights: Mapping[str, torch.Tensor], blocks: Mapping[str, Sequence[str]],
                reference: Mapping[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Per block, ``‖W‖_F`` over its tensors (or ``‖W − reference‖_F`` when given), in float64."""
    out = {}
    for block, names in blocks.items():
        acc = 0.0
        for n in names:
            w = weights[n].detach()
            if reference is not None:
                r = reference[n]
                w = w.to(torch.float64) - r.to(device=w.device, dtype=torch.float64)
            acc += float(w.to(torch.float64).pow(2).sum())
        out[block] = math.sqrt(acc)
    return out


def _relative(delta: float, norm: float) -> float:
    if norm > 0:
        return delta / norm
    return 0.0 if delta == 0 else math.inf


class LazinessTracker:
    """Per-block weight-change curves; a ``fit`` callback, or used by hand (``snapshot`` / ``record``).

    Args:
        model: the network (DDP / compiled wrappers are unwrapped). ``None``: take ``state.model``
            in ``on_train_start``.
        blocks: ``{block: [prefix, ...]}``; default ``model.laziness_blocks()``, else top-level children.
        every: ``"epoch"``, or an int ``N`` to also record the change over every ``N`` optimiser
            steps into ``step_records``.
        other: name of a catch-all block for parameters no prefix claims.
        snapshot_device: where the previous weights are kept (default: beside each parameter;
            ``"cpu"`` saves accelerator memory for big models).

    ``records``: one dict per (epoch, block): ``{"epoch", "block", "delta", "relative",
    "weight_norm", "prev_norm"}`` with ``weight_norm = ‖W^e‖_F`` and ``prev_norm = ‖W^{e−1}‖_F``.
    ``step_records`` holds the same keys plus ``"step"``. ``state_dict()`` keeps the curves and the
    last snapshots, so a resumed ``fit`` continues them without a gap.

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
        >>> _ = nn.init.zeros_(net[1].bias)
        >>> tr = LazinessTracker(net)
        >>> tr.snapshot()
        >>> with torch.no_grad():
        ...     _ = net[1].bias.add_(3.0)
        >>> [(r["block"], r["delta"]) for r in tr.record(epoch=1)]
        [('0', 0.0), ('1', 3.0)]
    """

    state_key = "LazinessTracker"

    def __init__(self, model: nn.Module | None = None, blocks: Mapping[str, Sequence[str]] | None = None, *,
                 every: str | int = "epoch", other: str | None = None,
                 snapshot_device: str | torch.device | None = None):
        if not (every == "epoch" or (isinstance(every, int) and not isinstance(every, bool) and every >= 1)):
            raise ValueError(f"LazinessTracker: every must be 'epoch' or a positive int, got {every!r}")
        self.model = unwrap_model(model) if model is not None else None
        self._blocks_arg = blocks
        self.other = other
        self.every = every
        self.snapshot_device = torch.device(snapshot_device) if snapshot_device is not None else None
        self.blocks: dict[str, list[str]] | None = None
        self.records: list[dict[str, Any]] = []
        self.step_records: list[dict[str, Any]] = []
        self._prev: dict[str, torch.Tensor] | None = None
        self._prev_step: dict[str, torch.Tensor] | None = None
        if self.model is not None:
            self.blocks = resolve_blocks(self.model, blocks, other=other)

    # ---- manual use
    def _need_model(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError("LazinessTracker: no model yet; pass one, or use it as a fit callback")
        if self.blocks is None:
            self.blocks = resolve_blocks(self.model, self._blocks_arg, other=self.other)
        return self.model

    def _copy(self) -> dict[str, torch.Tensor]:
        params = _params(self._need_model())
        return {n: p.detach().to(self.snapshot_device or p.device, copy=True) for n, p in params.items()}

    def snapshot(self) -> None:
        """Remember the current weights as ``W^{e−1}`` (and as the step reference)."""
        self._prev = self._copy()
        if self.every != "epoch":
            self._prev_step = self._copy()

    def _measure(self, prev: dict[str, torch.Tensor], **keys: Any) -> list[dict[str, Any]]:
        params = _params(self._need_model())
        if set(prev) != set(params):
            raise RuntimeError(f"LazinessTracker: the snapshot's parameters differ from the model's "
                               f"(missing {sorted(set(params) - set(prev))[:5]}, extra "
                               f"{sorted(set(prev) - set(params))[:5]}); was it taken on another model?")
        assert self.blocks is not None
        deltas = block_norms(params, self.blocks, reference=prev)
        now = block_norms(params, self.blocks)
        before = block_norms(prev, self.blocks)
        return [{**keys, "block": b, "delta": deltas[b], "relative": _relative(deltas[b], before[b]),
                 "weight_norm": now[b], "prev_norm": before[b]} for b in self.blocks]

    def record(self, epoch: int) -> list[dict[str, Any]]:
        """Append and return epoch ``epoch``'s records (change since the last snapshot), then re-snapshot."""
        if self._prev is None:
            raise RuntimeError("LazinessTracker: call snapshot() (or start fit) before record()")
        recs = self._measure(self._prev, epoch=int(epoch))
        self.records.extend(recs)
        self._prev = self._copy()
        return recs

    # ---- fit callback hooks
    def on_train_start(self, state: Any) -> None:
        if self.model is None:
            self.model = unwrap_model(state.model)
        self._need_model()
        if self._prev is None:
            self._prev = self._copy()
        if self.every != "epoch" and self._prev_step is None:
            self._prev_step = self._copy()

    def on_step_end(self, state: Any) -> None:
        if self.every == "epoch" or state.global_step % int(self.every) != 0:
            return
        assert self._prev_step is not None
        self.step_records.extend(self._measure(self._prev_step, epoch=int(state.epoch),
                                               step=int(state.global_step)))
        self._prev_step = self._copy()

    def on_epoch_end(self, state: Any) -> None:
        self.record(state.epoch)

    def on_train_end(self, state: Any) -> None:
        pass

    # ---- persistence and views
    def state_dict(self) -> dict[str, Any]:
        return {
            "records": [dict(r) for r in self.records],
            "step_records": [dict(r) for r in self.step_records],
            "blocks": {b: list(ns) for b, ns in (self.blocks or {}).items()},
            "prev": self._prev,
            "prev_step": self._prev_step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved_blocks = {b: list(ns) for b, ns in state.get("blocks", {}).items()}
        if self.blocks is not None and saved_blocks and saved_blocks != self.blocks:
            raise ValueError(f"LazinessTracker: saved blocks {list(saved_blocks)} differ from this "
                             f"tracker's {list(self.blocks)} (or their parameters differ)")
        self.blocks = self.blocks or saved_blocks or None
        self.records = [dict(r) for r in state.get("records", [])]
        self.step_records = [dict(r) for r in state.get("step_records", [])]

        def place(snap: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
            if snap is None:
                return None
            params = _params(self.model) if self.model is not None else {}
            return {n: t.to(self.snapshot_device or (params[n].device if n in params else t.device))
                    for n, t in snap.items()}

        self._prev = place(state.get("prev"))
        self._prev_step = place(state.get("prev_step"))

    def to_frame(self, steps: bool = False):
        """``records`` (or ``step_records``) as a ``pandas.DataFrame``."""
        import pandas as pd

        cols = ["epoch"] + (["step"] if steps else []) + ["block", "delta", "relative", "weight_norm",
                                                          "prev_norm"]
        return pd.DataFrame(self.step_records if steps else self.records, columns=cols)

    def plot(self, relative: bool = True, ax: Any = None, logy: bool = True):
        """One line per block over epochs (AIDFusion Fig. 1 a: absolute, b: relative); ``fusionlib.viz``."""
        from fusionlib.viz import plot_laziness

        return plot_laziness(self.records, relative=relative, ax=ax, logy=logy)


def summarise(records: Iterable[Mapping[str, Any]] | Any, threshold: float, *,
              key: str = "relative") -> dict[str, float]:
    """Per block, the fraction of epochs whose ``key`` (default the relative update) exceeded ``threshold``.

    ``records``: ``LazinessTracker.records``, a tracker, or its ``to_frame()``.

    Examples:
        >>> recs = [{"epoch": e, "block": "enc", "relative": r} for e, r in [(1, .1), (2, .01), (3, .001)]]
        >>> summarise(recs, 0.005)
        {'enc': 0.6666666666666666}
    """
    if isinstance(records, LazinessTracker):
        records = records.records
    elif hasattr(records, "to_dict") and hasattr(records, "columns"):
        records = records.to_dict("records")
    counts: dict[str, list[int]] = {}
    for r in records:
        if key not in r or "block" not in r:
            raise KeyError(f"summarise: each record needs 'block' and {key!r}; got keys {sorted(r)}")
        c = counts.setdefault(str(r["block"]), [0, 0])
        c[0] += int(r[key] > threshold)
        c[1] += 1
    return {b: above / total for b, (above, total) in counts.items()}
