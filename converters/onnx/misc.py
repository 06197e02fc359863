"""Misc family: Silence."""
from __future__ import annotations

import onnx

from protodef.ir import Layer

from .registry import OnnxContext, onnx_converter


@onnx_converter("Silence")
def silence(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """Silence only keeps its inputs from being net outputs; it computes nothing."""
    return []
