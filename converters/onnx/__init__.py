"""ONNX backend: `to_onnx(net) -> onnx.ModelProto`, `save_onnx(net, path)` for a net as the pass pipeline left
it (protodef.lower). Never imports torch."""
from __future__ import annotations

import os

import onnx

from protodef.ir import Net

from .lower import DEFAULT_OPSET, MIN_OPSET, lower_onnx
from .registry import OnnxContext, onnx_converter


def to_onnx(net: Net, *, opset: int | None = None, dynamic_batch: bool = False) -> onnx.ModelProto:
    """The lowered net as a checked ONNX model. `opset` defaults to DEFAULT_OPSET; `dynamic_batch` makes dim 0
    of every tensor the symbol "batch". Raises UnsupportedError naming every layer that has no ONNX lowering."""
    return lower_onnx(net, opset=opset, dynamic_batch=dynamic_batch)[0]


def save_onnx(net: Net, path: str | os.PathLike, *, opset: int | None = None, dynamic_batch: bool = False) -> None:
    """Convert, check and write `path` atomically; nothing is written when the conversion fails."""
    from protodef.write import atomic_write
    atomic_write(path, lower_onnx(net, opset=opset, dynamic_batch=dynamic_batch)[1])


__all__ = ["to_onnx", "save_onnx", "DEFAULT_OPSET", "MIN_OPSET", "onnx_converter", "OnnxContext"]
