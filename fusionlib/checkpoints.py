"""The authors' released weights -> our models. Tensors only: ``torch.load(weights_only=True)``.

Each paper has a key map (the authors' parameter names -> ours, written out as a table a reader can
check) and a loader that is strict: every released tensor must find a parameter of the same shape and
every parameter must be filled, or the error lists what did not match.

The released files are the authors' material (no licence granted): the suite does not ship them; pass
the path of the file you downloaded from the authors' repository.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["safe_torch_load", "load_tensors", "load_mapped_state_dict", "siba_key_map", "load_siba_released"]


def _reason(e: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's advice to retry unsafely."""
    text = str(e)
    if "Weights only load failed" in text:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        why = [ln for ln in lines[1:] if "weights_only" not in ln and "documentation" not in ln]
        return ("it holds more than tensors (code to run when unpickled, which this suite never does)"
                + (f": {why[0]}" if why else ""))
    first = text.splitlines()[0] if text else type(e).__name__
    if "central directory" in first or "zip archive" in first or isinstance(e, (EOFError, pickle.UnpicklingError)):
        return f"the file is damaged or truncated ({first.split('. ')[0]})"
    return f"{type(e).__name__}: {first}"


def safe_torch_load(path: str | Path, *, map_location: Any = "cpu", what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)``; a refused or damaged file raises ``ValueError`` naming it.

    The message says why (code in the pickle, a damaged archive) and never suggests
    ``weights_only=False``: a file that needs it is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling refused, a corrupt archive, a truncated file
        raise ValueError(f"{path} ({what}) cannot be loaded: {_reason(e)}") from None


def load_tensors(path: str | Path, *, key: str | None = None, optional: bool = False) -> dict[str, torch.Tensor]:
    """Read a ``{name: tensor}`` mapping with ``torch.load(weights_only=True, map_location="cpu")``.

    Args:
        path: a ``.pth`` / ``.pt`` file.
        key: when the file holds a dict of dicts (``{"model": state_dict}``), the entry to return;
            None returns the top level.
        optional: with ``key``, fall back to the top level when the file has no such entry (reads both a
            plain state dict and ``{"model": state_dict, ...}`` as in ``last.pt``, with one read).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not a mapping of tensors (or ``key`` is absent), with what was found.
    """
    path = Path(path)
    obj = safe_torch_load(path, what="weights file")
    if key is not None and not (optional and not (isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping))):
        if not isinstance(obj, Mapping) or key not in obj:
            found = sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
            raise ValueError(f"{path}: expected a dict with entry {key!r}, found {found}")
        obj = obj[key]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path}: expected a non-empty state dict, found {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: not a state dict, entries that are not tensors: {bad[:10]}")
    return dict(obj)


def load_mapped_state_dict(model: nn.Module, tensors: Mapping[str, torch.Tensor],
                           key_map: Callable[[str], str], *, source: str = "checkpoint") -> nn.Module:
    """Copy ``tensors`` into ``model`` after renaming with ``key_map``; strict on names and shapes.

    Raises:
        KeyError: released keys with no parameter, or parameters left unfilled (both listed).
        ValueError: a shape mismatch (listed).
    """
    mapped: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        new = key_map(k)
        if new in mapped:
            raise KeyError(f"{source}: two released keys map to {new!r}")
        mapped[new] = v
    ours = model.state_dict()
    unexpected = sorted(k for k in mapped if k not in ours)
    missing = sorted(k for k in ours if k not in mapped)
    if unexpected or missing:
        inverse = {key_map(k): k for k in tensors}
        raise KeyError(
            f"{source} does not match {type(model).__name__}: "
            f"{len(unexpected)} released key(s) without a parameter "
            f"{[f'{inverse[k]} -> {k}' for k in unexpected][:20]}; "
            f"{len(missing)} parameter(s) not in the file {missing[:20]}")
    wrong = [f"{k}: file {tuple(mapped[k].shape)} vs model {tuple(ours[k].shape)}"
             for k in ours if mapped[k].shape != ours[k].shape]
    if wrong:
        raise ValueError(f"{source}: shape mismatch for {len(wrong)} tensor(s): {wrong[:20]}")
    model.load_state_dict({k: mapped[k].to(ours[k].dtype) for k in ours}, strict=True)
    return model


# --- SIBA (Afreshbird/SIBA @ 880a1dd, checkpoint/SIBA_epoch60.pth) -----------------------------------
# Top-level modules: authors' name -> ours. The cross-attention blocks are 1-element lists there.
_SIBA_MODULES = {
    "ir_conv.": "stem_ir.", "vi_conv.": "stem_vi.",
    "ir_sa.": "sa_ir.", "vi_sa.": "sa_vi.",
    "weight_ir.": "cbsm_ir.", "weight_irI.": "cbsm_irI.",
    "weight_vi.": "cbsm_vi.", "weight_viI.": "cbsm_viI.",
    "ir2vi_ca.0.": "ca_ir2vi.", "irI2vi_ca.0.": "ca_irI2vi.",
    "vi2ir_ca.0.": "ca_vi2ir.", "viI2ir_ca.0.": "ca_viI2ir.",
    "fuse_conv.": "fuse_conv.", "out_conv.": "out_conv.",
}
# Inside the Restormer-style blocks: authors' name -> Restormer's names (which our layers keep).
_SIBA_INNER = [
    (".body.", "."),                       # LayerNorm wrapper -> LayerNorm2d's own weight/bias
    (".attn.scale", ".attn.temperature"),
    (".attn.proj.", ".attn.project_out."),
    (".mlp.", ".ffn."),
]


def siba_key_map(key: str) -> str:
    """Authors' SIBA parameter name -> ours (``ir2vi_ca.0.attn.qkv1.weight`` -> ``ca_ir2vi.attn.kv.weight``).

    ``qkv1``/``qkv2`` (1x1, depthwise 3x3) become ``qkv``/``qkv_dwconv`` in the self-attention blocks
    (they make q, k, v) and ``kv``/``kv_dwconv`` in the cross-attention blocks (they make only k, v).

    Examples:
        >>> siba_key_map("ir_sa.0.norm1.body.weight")
        'sa_ir.0.norm1.weight'
        >>> siba_key_map("viI2ir_ca.0.attn.qkv2.weight")
        'ca_viI2ir.attn.kv_dwconv.weight'
    """
    for old, new in _SIBA_MODULES.items():
        if key.startswith(old):
            out = new + key[len(old):]
            break
    else:
        return key  # unknown: left as is, so the strict loader reports it
    for old, new in _SIBA_INNER:
        out = out.replace(old, new)
    qkv = "kv" if out.startswith("ca_") else "qkv"
    out = re.sub(r"\.attn\.qkv1\.", f".attn.{qkv}.", out)
    return re.sub(r"\.attn\.qkv2\.", f".attn.{qkv}_dwconv.", out)


def load_siba_released(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load ``SIBA_epoch60.pth`` (``{"model": state_dict}``, 137 tensors) into a SIBA, returned in eval mode.

    Args:
        path: the checkpoint from ``Afreshbird/SIBA`` (``checkpoint/SIBA_epoch60.pth``).
        model: a ``SIBA`` with the released configuration; None builds ``create_model("siba")``.

    Raises:
        FileNotFoundError, ValueError, KeyError: missing file, not a state dict, keys or shapes that do
        not match (every mismatch listed).
    """
    if model is None:
        from fusionlib.models.siba import SIBA

        model = SIBA()
    tensors = load_tensors(path, key="model")
    load_mapped_state_dict(model, tensors, siba_key_map, source=str(path))
    return model.eval()


# --- RPFNet (wang-x-1997/RPFNet @ 43e555a, Trained/Model.pth) ----------------------------------------
# Module prefixes: authors' name -> ours. Everything after a prefix is kept (the conv/BN indices of the
# authors' nn.Sequential blocks are the children indices of our ConvBNReLU / RPFNetHead / gate_conv).
_RPFNET_MODULES = [
    ("init_spatial.", "stem_residual."),
    ("init_freq.", "stem_fusion."),
    ("iteration_block.cross_promotion.spatial_to_freq.", "stage.cpm.gate_conv."),
    ("iteration_block.cross_promotion.freq_to_spatial.", "stage.cpm.spatial."),
    ("iteration_block.residual_branch.dilated_convs.", "stage.rpm.dilated."),
    ("iteration_block.residual_branch.channel_attention.fc.", "stage.rpm.ca.fc."),
    ("iteration_block.residual_branch.spatial_attention.spatial_net.", "stage.rpm.sa.net."),
    ("iteration_block.residual_branch.fusion.", "stage.rpm.fuse."),
    ("iteration_block.fourier_branch.conv_layer.", "stage.fdfm.spectral_conv."),
    ("iteration_block.fourier_branch.bn.", "stage.fdfm.spectral_bn."),
    ("iteration_block.fourier_branch.conv_spatial.", "stage.fdfm.spatial."),
    ("decoder.", "head."),
]


def rpfnet_key_map(key: str) -> str:
    """Authors' RPFNet name -> ours (``init_freq.1.running_mean`` -> ``stem_fusion.1.running_mean``).

    Examples:
        >>> rpfnet_key_map("iteration_block.fourier_branch.conv_layer.weight")
        'stage.fdfm.spectral_conv.weight'
        >>> rpfnet_key_map("iteration_block.residual_branch.dilated_convs.2.1.running_var")
        'stage.rpm.dilated.2.1.running_var'
    """
    for old, new in _RPFNET_MODULES:
        if key.startswith(old):
            return new + key[len(old):]
    return key  # unknown: left as is, so the strict loader reports it


def load_rpfnet_released(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load the released RPFNet weights as a plain state dict (93 tensors) into an RPFNet.

    The authors ship ``Trained/Model.pth``, a pickle of the whole model: convert it once, without
    executing it, with ``fusionlib.safe_pickle.convert_rpfnet_pickle`` and ``torch.save`` the result.
    This function reads only tensors (``weights_only=True``). The model is returned in **eval** mode;
    use ``fusionlib.models.rpfnet.rpfnet_infer(model, ir, vi, mode="as_released")`` for the released
    inference's batch-statistics BatchNorm.

    Args:
        path: a state-dict file with the authors' key names (``init_spatial.0.weight``, ...).
        model: an ``RPFNet`` with the released configuration (shared stages); None builds one.

    Raises:
        FileNotFoundError, ValueError, KeyError: missing file, not a state dict, keys or shapes that do
        not match (every mismatch listed).
    """
    if model is None:
        from fusionlib.models.rpfnet import RPFNet

        model = RPFNet()
    tensors = load_tensors(path)
    load_mapped_state_dict(model, tensors, rpfnet_key_map, source=str(path))
    return model.eval()


__all__ += ["rpfnet_key_map", "load_rpfnet_released"]
