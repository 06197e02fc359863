"""ONNX backend: `to_onnx(net) -> onnx.ModelProto`, `save_onnx(net, path)` for a net as the pass pipeline left
it (protodef.lower). Never imports torch."""
from __future__ import annotations

import os

import onnx

from protodef.ir import Net

from .lower import DEFAULT_OPSET, MIN_OPSET, build_model_apart, lower_onnx
from .registry import OnnxContext, onnx_converter


def to_onnx(net: Net, *, opset: int | None = None, dynamic_batch: bool = False) -> onnx.ModelProto:
    """The lowered net as a checked ONNX model. `opset` defaults to DEFAULT_OPSET; `dynamic_batch` makes dim 0
    of every tensor the symbol "batch". Raises UnsupportedError naming every layer that has no ONNX lowering."""
    return lower_onnx(net, opset=opset, dynamic_batch=dynamic_batch)


def save_onnx(net: Net, path: str | os.PathLike, *, opset: int | None = None, dynamic_batch: bool = False,
              float16: bool = False) -> list[str]:
    """Convert, check and write `path` atomically; nothing is written when the conversion fails. Returns the
    files written: `path`, and `path` + ".data" holding the weights when they exceed protobuf's 2 GiB.
    `float16` stores weights and computes in float16 (float32-only operator inputs stay float32)."""
    from .save import save_model
    model, initializers = build_model_apart(net, opset=opset, dynamic_batch=dynamic_batch)
    if float16:
        from .float16 import to_float16
        model.graph.initializer.extend(initializers)
        initializers = []
        to_float16(model)
    return save_model(model, path, initializers=initializers, where=net.source)


__all__ = ["to_onnx", "save_onnx", "DEFAULT_OPSET", "MIN_OPSET", "onnx_converter", "OnnxContext"]
