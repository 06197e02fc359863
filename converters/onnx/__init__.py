"""ONNX backend: `to_onnx(net) -> onnx.ModelProto`, `save_onnx(net, path)` for a net as the pass pipeline left it
(protodef.lower). Never imports torch; writing a model does not import onnx either (see proto.py)."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from protodef.ir import Net

from .lower import DEFAULT_OPSET, MIN_OPSET, build_model_apart, lower_onnx
from .registry import OnnxContext, onnx_converter

if TYPE_CHECKING:
    import onnx


def to_onnx(net: Net, *, opset: int | None = None, dynamic_batch: bool = False) -> onnx.ModelProto:
    """The lowered net as an onnx.ModelProto that onnx's full checker accepts. `opset` defaults to
    DEFAULT_OPSET; `dynamic_batch` makes dim 0 of every tensor the symbol "batch". Raises UnsupportedError
    naming every layer that has no ONNX lowering."""
    return lower_onnx(net, opset=opset, dynamic_batch=dynamic_batch)


def save_onnx(net: Net, path: str | os.PathLike, *, opset: int | None = None, dynamic_batch: bool = False,
              float16: bool = False, check: bool = False) -> list[str]:
    """Convert and write `path` atomically; nothing is written when the conversion fails. Returns the files
    written: `path`, and `path` + ".data" holding the weights when they exceed protobuf's 2 GiB. `float16`
    stores weights and computes in float16 (float32-only operator inputs stay float32). The model is always
    checked for ONNX's structural rules; `check` adds onnx's full checker (operator schemas, shape inference),
    which imports onnx, a cost larger than the rest of a conversion."""
    from .save import save_model
    model, initializers = build_model_apart(net, opset=opset, dynamic_batch=dynamic_batch)
    if float16:
        from .float16 import to_float16
        initializers = to_float16(model, initializers)
    return save_model(model, path, initializers=initializers, where=net.source, check=check)


__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "OnnxContext", "onnx_converter", "save_onnx", "to_onnx"]
