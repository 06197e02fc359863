"""Layers that compute nothing in a forward pass: Silence."""
from __future__ import annotations

from protodef.ir import Layer

from .registry import Lowered, TorchContext, torch_converter


@torch_converter("Silence")
def silence(layer: Layer, ctx: TorchContext) -> Lowered:
    """Silence only stops its inputs from being net outputs; it has no outputs of its own."""
    return None
