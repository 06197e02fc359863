"""protodef: read Caffe nets (prototxt + caffemodel) into a graph IR; lower them to ONNX and PyTorch; draw them.

Backends are imported only when used, so `to_onnx` never imports torch. The IR (and networkx with it) is
imported on first use too, so `protodef --help` starts as fast as Python itself.
"""
from __future__ import annotations

import importlib

from .errors import (DependencyError, GraphError, InputError, Location, OutputError, ParseError, ProtodefError,
                     SchemaError, ShapeError, UnsupportedError, UsageError, WeightsError)
from .version import __version__

# name -> module that defines it; imported when the name is first used (PEP 562), so `protodef --help` and the
# ONNX path import only what they use (Solver needs torch)
_LAZY = {"read_net": "api", "lower": "api", "load": "api", "to_onnx": "api", "save_onnx": "api",
         "save_pytorch": "api", "draw": "api", "export_caffe": "api", "register_layer": "plugins",
         "Solver": "train", "data_transform": "train", "Net": "ir", "Layer": "ir", "Value": "ir"}

__all__ = ["read_net", "lower", "load", "to_onnx", "save_onnx", "save_pytorch", "draw", "export_caffe",
           "register_layer", "Solver", "data_transform", "Net", "Layer", "Value", "ProtodefError", "ParseError",
           "SchemaError", "GraphError", "ShapeError", "WeightsError", "UnsupportedError", "OutputError",
           "InputError", "DependencyError", "UsageError", "Location", "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'protodef' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
