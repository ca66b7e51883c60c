"""A tiny model registry (timm's ``register_model`` / ``create_model`` / ``list_models``, minus the magic).

Each paper file registers its configurations at import::

    register_model("siba", SIBA, SIBAConfig())
    register_model("siba_tiny", SIBA, SIBAConfig(dim=8, num_heads=2))

and users build them by name, overriding config fields: ``create_model("siba", query_layernorm=True)``.
A factory is called as ``factory(config)`` with a frozen dataclass config.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

__all__ = ["ModelEntry", "register_model", "create_model", "list_models", "model_entry"]


@dataclass(frozen=True)
class ModelEntry:
    """One registered name: the factory (usually the model class) and its default config."""

    name: str
    factory: Callable[[Any], nn.Module]
    config: Any


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, factory: Callable[[Any], nn.Module], config: Any) -> ModelEntry:
    """Register ``factory(config)`` under ``name``; re-registering the same factory replaces it.

    ``config`` must be a dataclass instance (frozen, so a registered default cannot be mutated).
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"register_model({name!r}): config must be a dataclass instance, got {config!r}")
    old = _REGISTRY.get(name)
    if old is not None and _origin(old.factory) != _origin(factory):
        raise ValueError(f"model name {name!r} is already registered to {old.factory!r}")
    entry = ModelEntry(name, factory, config)
    _REGISTRY[name] = entry
    return entry


def _origin(factory: Callable) -> tuple[str, str]:
    # a reloaded module (notebook autoreload) re-registers a new class object with the same origin
    return getattr(factory, "__module__", ""), getattr(factory, "__qualname__", repr(factory))


def model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name`` (``KeyError`` listing the known names otherwise)."""
    _import_paper_modules()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}") from None


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; ``overrides`` replace fields of its default config.

    Examples:
        >>> m = create_model("siba_tiny")
        >>> type(m).__name__, m.config.dim
        ('SIBA', 8)
    """
    entry = model_entry(name)
    fields = {f.name for f in dataclasses.fields(entry.config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"create_model({name!r}): unknown config field(s) {unknown}; "
                        f"fields are {sorted(fields)}")
    return entry.factory(dataclasses.replace(entry.config, **overrides))


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern`` (``"*_tiny"``), sorted.

    Examples:
        >>> "siba" in list_models("siba*")
        True
    """
    _import_paper_modules()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def _import_paper_modules() -> None:
    # Registration happens on import of the paper files; importing the package does it.
    import fusionlib.models  # noqa: F401
