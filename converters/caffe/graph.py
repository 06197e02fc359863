"""The ONNX model as the exporter reads it: nodes in dependency order, constants folded, every shape static."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from protodef.errors import ParseError, ShapeError, UnsupportedError

from .fold import fold_constants

# Constants larger than this reach shape inference as typed inputs, not data: no shape depends on a weight.
_DATA_FOR_INFERENCE = 4096
_MAX_FOLD_ROUNDS = 8


@dataclass
class OnnxGraph:
    """Nodes in dependency order; `constants` holds initializers and folded values, `shapes` every value's."""

    name: str
    source: str
    opset: int
    nodes: list[onnx.NodeProto]
    inputs: list[str]
    outputs: list[str]
    constants: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    readers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)

    def __post_init__(self):
        self.readers = {}
        for node in self.nodes:
            for name in dict.fromkeys(node.input):
                if name:
                    self.readers.setdefault(name, []).append(node)

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.constants:
            return tuple(self.constants[name].shape)
        return self.shapes[name]

    def readers_of(self, name: str) -> list[onnx.NodeProto]:
        return self.readers.get(name, [])


def load_model(model) -> tuple[onnx.ModelProto, str]:
    """A ModelProto from a ModelProto, serialized bytes or a path; and a name for messages."""
    if isinstance(model, onnx.ModelProto):
        return model, "<onnx model>"
    if isinstance(model, (bytes, bytearray)):
        return _parse(bytes(model), "<onnx bytes>"), "<onnx bytes>"
    path = os.fspath(model)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ParseError(f"cannot read the file: {exc.strerror}", where=path) from exc
    proto = _parse(data, path)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        onnx.external_data_helper.load_external_data_for_model(proto, os.path.dirname(os.path.abspath(path)))
    return proto, path


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    try:
        return onnx.load_from_string(data)
    except Exception as exc:   # protobuf's DecodeError, or onnx's own complaints
        raise ParseError(f"not an ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                         where=where) from None


def read_graph(model, input_shape: Mapping[str, Sequence[int]] | None = None) -> OnnxGraph:
    """Load, fix the input shapes, fold constant subgraphs and infer every shape."""
    proto, source = load_model(model)
    opset = _default_opset(proto, source)
    graph = proto.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    declared = [i for i in graph.input if i.name not in constants]
    input_shapes = fixed_input_shapes(declared, dict(input_shape or {}), source)
    nodes = ordered_nodes(graph, set(constants) | set(input_shapes), source)
    shapes: dict[str, tuple[int, ...]] = {}
    for _ in range(_MAX_FOLD_ROUNDS):
        shapes = infer_shapes(nodes, constants, input_shapes, opset, source)
        nodes, folded = fold_constants(nodes, constants, shapes, opset, source)
        if not folded:
            break
    outputs = [o.name for o in graph.output]
    constant_outputs = [name for name in outputs if name in constants]
    if constant_outputs:
        raise UnsupportedError("a graph output is a constant, which a Caffe net cannot produce", where=source,
                               found=", ".join(constant_outputs))
    return OnnxGraph(graph.name or "net", source, opset, nodes, list(input_shapes), outputs, constants, shapes)


def _default_opset(proto: onnx.ModelProto, source: str) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    raise UnsupportedError("the model imports no standard ONNX opset", where=source)


def fixed_input_shapes(inputs, overrides: dict[str, Sequence[int]], source: str) -> dict[str, tuple[int, ...]]:
    """Each input's static shape: an override, else its declared dims; a symbolic batch (axis 0) becomes 1."""
    known = {i.name for i in inputs}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ShapeError("--input-shape names a value that is not an input of this model", where=source,
                         expected=", ".join(sorted(known)) or "no inputs", found=", ".join(unknown))
    shapes = {}
    for value in inputs:
        tensor = value.type.tensor_type
        if not value.type.HasField("tensor_type") or tensor.elem_type not in (onnx.TensorProto.FLOAT,
                                                                             onnx.TensorProto.DOUBLE,
                                                                             onnx.TensorProto.FLOAT16):
            raise UnsupportedError(f"input '{value.name}' is not a float tensor; Caffe blobs hold floats",
                                   where=source)
        if value.name in overrides:
            shapes[value.name] = tuple(int(d) for d in overrides[value.name])
            continue
        if not tensor.HasField("shape"):
            raise ShapeError(f"input '{value.name}' has no declared shape; give it with --input-shape", where=source)
        dims = []
        for axis, dim in enumerate(tensor.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                dims.append(dim.dim_value)
            elif axis == 0:
                dims.append(1)   # a symbolic batch: Caffe input shapes are concrete, and 1 is the usual one
            else:
                raise ShapeError(f"input '{value.name}' has a symbolic size at axis {axis}; give its shape with "
                                 f"--input-shape {value.name}=...", where=source, found=dim.dim_param or "?")
        shapes[value.name] = tuple(dims)
    return shapes


def ordered_nodes(graph: onnx.GraphProto, available: set[str], source: str) -> list[onnx.NodeProto]:
    """The nodes in an order where each one's inputs are computed before it (file order where it allows)."""
    waiting = list(graph.node)
    ready = set(available) | {""}
    ordered = []
    while waiting:
        still = []
        for node in waiting:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                still.append(node)
        if len(still) == len(waiting):
            missing = sorted({name for node in still for name in node.input if name not in ready})
            raise UnsupportedError("nodes read values nothing computes (or the graph has a cycle)", where=source,
                                   found=", ".join(missing[:5]))
        waiting = still
    return ordered


def infer_shapes(nodes: list[onnx.NodeProto], constants: dict[str, np.ndarray],
                 input_shapes: dict[str, tuple[int, ...]], opset: int, source: str) -> dict[str, tuple[int, ...]]:
    """ONNX shape inference over the graph; big constants enter as typed inputs (their values never decide a
    shape), so this costs no copy of the weights."""
    used = {name for node in nodes for name in node.input}
    small = [numpy_helper.from_array(np.asarray(value), name) for name, value in constants.items()
             if name in used and np.asarray(value).size <= _DATA_FOR_INFERENCE]
    typed = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype),
                                           list(np.shape(value)))
             for name, value in constants.items() if name in used and np.asarray(value).size > _DATA_FOR_INFERENCE]
    inputs = [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(shape))
              for name, shape in input_shapes.items()]
    produced = [name for node in nodes for name in node.output if name]
    graph = helper.make_graph(nodes, "shapes", inputs + typed, [], initializer=small)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:   # onnx raises InferenceError and friends; one line is enough
        raise ShapeError(f"ONNX shape inference fails: {str(exc).strip().splitlines()[0]}", where=source) from None
    shapes = dict(input_shapes)
    for info in inferred.graph.value_info:
        shape = static_shape(info)
        if shape is not None:
            shapes[info.name] = shape
    missing = [name for name in produced if name not in shapes and name not in constants]
    if missing:
        shapes.update({name: None for name in missing})   # reported by the node that reads or writes them
    return shapes


def static_shape(info: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    tensor = info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims = []
    for dim in tensor.shape.dim:
        if not dim.HasField("dim_value"):
            return None
        dims.append(int(dim.dim_value))
    return tuple(dims)
