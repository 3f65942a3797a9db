"""The `register` stage: an evaluated checkpoint as an MLflow model version, promoted by a gate.

The names below load on first use (PEP 562): `sayo.registry.config` is read by every recipe, and
importing this package must not pull in transformers for a command that only reads recipes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sayo.lazy import lazy_exports

if TYPE_CHECKING:
    from sayo.registry.config import RegisterConfig
    from sayo.registry.register import (
        GateDecision,
        Registration,
        gate_decision,
        register_checkpoint,
        register_evaluated,
    )

# module -> the public names it defines
_HOMES = {
    "sayo.registry.config": ("RegisterConfig",),
    "sayo.registry.register": (
        "GateDecision",
        "Registration",
        "gate_decision",
        "register_checkpoint",
        "register_evaluated",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "GateDecision",
    "RegisterConfig",
    "Registration",
    "gate_decision",
    "register_checkpoint",
    "register_evaluated",
]


__getattr__ = lazy_exports(__name__, _HOME_OF)
