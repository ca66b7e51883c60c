"""Look inside a network with forward hooks: capture submodule outputs by name; feature spectra.

Anything a notebook visualises passes through a named submodule (an attention softmax
``self.attend``, an ``nn.Identity`` probe point), so no ``forward`` needs a
``return_attention`` flag (DESIGN.md, "Layout"). Names are those of
``model.named_modules()`` (``"encoder.0.attn.attend"``) or glob patterns (``"*.attend"``).

- :func:`capture` runs the model once and returns ``{name: output}``;
- :class:`Recorder` keeps hooks across several forward calls (a list of outputs per name);
- :func:`find_modules` lists the names a pattern selects;
- :func:`feature_spectrum` gives the channel-averaged radial PSD of feature maps.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from fusionlib.spectral import radial_psd

__all__ = ["capture", "Recorder", "find_modules", "feature_spectrum"]

_GLOB_CHARS = set("*?[")


def _is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


def _not_found_message(model: nn.Module, name: str, all_names: Sequence[str]) -> str:
    """Error text for an unknown module name, with the closest names the model does have."""
    suffix_hits = [n for n in all_names if n.endswith("." + name)]
    close = difflib.get_close_matches(name, all_names, n=6, cutoff=0.5)
    hints = list(dict.fromkeys(suffix_hits[:6] + close))
    msg = f"no submodule named {name!r} in {type(model).__name__}"
    if hints:
        msg += f"; close matches: {hints}"
    if suffix_hits:
        msg += f" (the glob pattern '*.{name}' selects all {len(suffix_hits)} of them)"
    if not hints:
        shown = [n for n in all_names if n][:12]
        more = "" if len(all_names) - 1 <= 12 else f" ... ({len(all_names) - 1} in all)"
        msg += f"; its submodules are {shown}{more}"
    return msg + ". Names come from model.named_modules(); glob patterns such as '*.attend' work too."


def find_modules(model: nn.Module, names: Iterable[str] | str = "*") -> dict[str, nn.Module]:
    """Resolve exact names and glob patterns to ``{name: submodule}``, in the order given.

    An exact name must exist (``""`` is the model itself); a glob pattern must match at least
    one submodule (the root, whose name is ``""``, is never matched by a pattern). Unknown
    names raise ``KeyError`` listing the closest names the model has.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 1, 3))
        >>> list(find_modules(net, "*"))
        ['0', '1', '2']
    """
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError("names is empty: give at least one submodule name or glob pattern")
    modules = dict(model.named_modules())
    all_names = list(modules)
    found: dict[str, nn.Module] = {}
    for pattern in names:
        if not isinstance(pattern, str):
            raise TypeError(f"names must be strings, got {pattern!r} ({type(pattern).__name__})")
        if pattern in modules:
            found.setdefault(pattern, modules[pattern])
        elif _is_glob(pattern):
            hits = [n for n in all_names if n and fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise KeyError(
                    f"glob pattern {pattern!r} matches no submodule of {type(model).__name__}; "
                    f"some names it has: {[n for n in all_names if n][:12]}"
                )
            for n in hits:
                found.setdefault(n, modules[n])
        else:
            raise KeyError(_not_found_message(model, pattern, all_names))
    return found


def _first_tensor(out: Any) -> torch.Tensor | None:
    """The output itself if a tensor, else the first tensor inside a tuple / list / dict."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        for item in out:
            t = _first_tensor(item)
            if t is not None:
                return t
    return None


class Recorder:
    """Forward hooks on the named submodules, recording every call's output while attached.

    Use as a context manager; hooks are removed on exit, also when the body raises::

        with Recorder(model, "*.attend") as rec:
            for ir, vi in loader:
                model(ir, vi)
        maps = rec["encoder.0.attn.attend"]        # list, one tensor per call

    Args:
        model: the network.
        names: exact names from ``model.named_modules()`` or glob patterns (see
            :func:`find_modules`); a single string is one name.
        detach: store ``output.detach()`` copies (a later in-place op in the network cannot
            change them). With ``False`` the tensor is kept as produced, graph included.
        to_cpu: move what is stored to the CPU.

    A tuple / list / dict output is recorded as its first tensor.
    """

    def __init__(
        self, model: nn.Module, names: Iterable[str] | str, *, detach: bool = True, to_cpu: bool = True
    ) -> None:
        self.model = model
        self.modules = find_modules(model, names)
        self.detach = detach
        self.to_cpu = to_cpu
        self.records: dict[str, list[torch.Tensor]] = {n: [] for n in self.modules}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    @property
    def names(self) -> list[str]:
        """The resolved module names, in order."""
        return list(self.modules)

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def _make_hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            t = _first_tensor(output)
            if t is None:
                raise TypeError(
                    f"probe on {name!r} ({type(module).__name__}): the output is "
                    f"{type(output).__name__}, which holds no tensor to record"
                )
            if self.detach:
                t = t.detach()
                t = t.to("cpu", copy=True) if self.to_cpu else t.clone()
            elif self.to_cpu:
                t = t.cpu()
            self.records[name].append(t)

        return hook

    def attach(self) -> Recorder:
        """Register the hooks (done by ``with``); attaching twice is an error."""
        if self._handles:
            raise RuntimeError("Recorder is already attached; call remove() first")
        try:
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._make_hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Remove every hook this recorder registered (safe to call twice)."""
        while self._handles:
            self._handles.pop().remove()

    def clear(self) -> None:
        """Forget the recorded outputs, keep the hooks."""
        for v in self.records.values():
            v.clear()

    def __enter__(self) -> Recorder:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __getitem__(self, name: str) -> list[torch.Tensor]:
        if name not in self.records:
            raise KeyError(f"{name!r} is not recorded; recorded names: {self.names}")
        return self.records[name]

    def last(self) -> dict[str, torch.Tensor]:
        """``{name: latest output}`` for the modules that ran at least once."""
        return {n: v[-1] for n, v in self.records.items() if v}

    def stacked(self, name: str) -> torch.Tensor:
        """All recorded outputs of ``name`` stacked along a new dim 0: ``(calls, *shape)``."""
        outs = self[name]
        if not outs:
            raise RuntimeError(f"{name!r} has not run while the recorder was attached")
        return torch.stack(outs)

    def __repr__(self) -> str:
        counts = {n: len(v) for n, v in self.records.items()}
        return f"Recorder({type(self.model).__name__}, calls={counts}, attached={self.attached})"


def capture(
    model: nn.Module,
    *inputs: Any,
    names: Iterable[str] | str,
    detach: bool = True,
    to_cpu: bool = True,
    call: int = -1,
    strict: bool = True,
) -> dict[str, torch.Tensor]:
    """Run ``model(*inputs)`` once and return the outputs of the named submodules.

    The model's train/eval mode is left as it is (call ``model.eval()`` first for dropout
    and BatchNorm to behave as at test time). With ``detach`` the forward runs under
    ``torch.no_grad()``. Hooks are removed afterwards, also when the forward raises.

    Args:
        model: the network.
        *inputs: positional inputs of ``model.forward`` (``ir, vi`` for the fusion models).
        names: exact names from ``model.named_modules()`` or glob patterns (``"*.attend"``).
        detach: detached copies, forward under ``no_grad``; ``False`` keeps the graph.
        to_cpu: move the captured tensors to the CPU.
        call: which call to return when a module runs several times in one forward
            (a weight-shared encoder applied to ``ir`` then ``vi``): ``-1`` the last,
            ``0`` the first. Use :class:`Recorder` to get them all.
        strict: raise if a selected module did not run; with ``False`` it is left out.

    Returns:
        ``{module name: output}``; a tuple output gives its first tensor.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
        >>> out = capture(net, torch.rand(2, 1, 8, 8), names=["0", "1"])
        >>> {k: tuple(v.shape) for k, v in out.items()}
        {'0': (2, 4, 8, 8), '1': (2, 4, 8, 8)}
    """
    rec = Recorder(model, names, detach=detach, to_cpu=to_cpu)
    grad_ctx = torch.no_grad() if detach else nullcontext()
    with rec, grad_ctx:
        model(*inputs)
    missing = [n for n, v in rec.records.items() if not v]
    if missing and strict:
        raise RuntimeError(
            f"these submodules of {type(model).__name__} did not run during the forward: {missing} "
            "(pass strict=False to leave them out)"
        )
    out: dict[str, torch.Tensor] = {}
    for n, v in rec.records.items():
        if not v:
            continue
        try:
            out[n] = v[call]
        except IndexError:
            raise IndexError(f"call={call} but {n!r} ran {len(v)} time(s) in this forward") from None
    return out


def feature_spectrum(
    features: torch.Tensor, *, remove_mean: bool = True, normalize: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Radial power spectral density of feature maps, averaged over channels.

    ``(B, C, H, W)`` -> ``(freqs (n,), psd (B, n))``; ``(C, H, W)`` -> ``psd (n,)``;
    n = min(H, W) // 2, freqs in cycles/pixel (see :func:`fusionlib.spectral.radial_psd`).
    With ``normalize`` each channel's PSD is divided by its total power first, so channels
    with large activations do not dominate the average (compares shapes of spectra).

    Examples:
        >>> f, p = feature_spectrum(torch.rand(2, 8, 32, 32))
        >>> f.shape, p.shape
        (torch.Size([16]), torch.Size([2, 16]))
    """
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.ndim not in (3, 4):
        raise ValueError(
            f"features must be (B, C, H, W) or (C, H, W), got shape {tuple(features.shape)}"
        )
    if min(features.shape[-2:]) < 2:
        raise ValueError(f"features need H, W >= 2 for a spectrum, got shape {tuple(features.shape)}")
    freqs, psd = radial_psd(features.detach(), remove_mean=remove_mean)  # (*, C, n)
    if normalize:
        psd = psd / psd.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(psd.dtype).tiny)
    return freqs, psd.mean(dim=-2)
