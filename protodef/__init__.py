"""protodef: read Caffe nets (prototxt + caffemodel) into a graph IR; lower them to ONNX and PyTorch; draw them.

Backends are imported only when used, so `to_onnx` never imports torch.
"""
from __future__ import annotations

from .api import draw, export_caffe, load, read_net, to_onnx
from .errors import (GraphError, Location, OutputError, ParseError, ProtodefError, SchemaError, ShapeError,
                     UnsupportedError, WeightsError)
from .ir import Layer, Net, Value
from .plugins import register_layer

__version__ = "0.1.0"

__all__ = ["read_net", "load", "to_onnx", "draw", "export_caffe", "register_layer", "Net", "Layer", "Value", "ProtodefError", "ParseError", "SchemaError", "GraphError",
           "ShapeError", "WeightsError", "UnsupportedError", "OutputError", "Location", "__version__"]
