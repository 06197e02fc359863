"""protodef: read Caffe nets (prototxt + caffemodel) into a graph IR; lower them to ONNX and PyTorch; draw them.

Backends are imported only when used, so `to_onnx` never imports torch.
"""
from __future__ import annotations

from .api import draw, export_caffe, load, lower, read_net, save_onnx, save_pytorch, to_onnx
from .errors import (GraphError, Location, OutputError, ParseError, ProtodefError, SchemaError, ShapeError,
                     UnsupportedError, WeightsError)
from .ir import Layer, Net, Value
from .plugins import register_layer

from .version import __version__

__all__ = ["read_net", "lower", "load", "to_onnx", "save_onnx", "save_pytorch", "draw", "export_caffe", "register_layer",
           "Solver", "data_transform", "Net", "Layer", "Value", "ProtodefError", "ParseError", "SchemaError", "GraphError",
           "ShapeError", "WeightsError", "UnsupportedError", "OutputError", "Location", "__version__"]


def __getattr__(name: str):
    # Solver needs torch: imported on first use, so the ONNX path stays free of it.
    if name in ("Solver", "data_transform"):
        from . import train
        return getattr(train, name)
    raise AttributeError(f"module 'protodef' has no attribute {name!r}")
