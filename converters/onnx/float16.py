"""A float32 ONNX model made float16: weights, activations, inputs and outputs. Two kinds of value stay float32:

- an operator input whose schema takes float32 only (NonMaxSuppression's boxes, Resize's scales): a constant
  read only there stays float32, a computed value is cast back to float32 in front of it;
- float32 that holds integers, cast from an integer tensor (Caffe's pooling mask and ArgMax output are float
  indices): float16 counts exactly only to 2048, so these stay float32 and are cast to float16 only where
  they meet float16 arithmetic.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .proto import (
    AttributeProto,
    GraphProto,
    Initializer,
    ModelProto,
    NodeProto,
    TensorProto,
    element_type,
    from_array,
    make_node,
    to_array,
)

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
_INTEGER_TYPES = {TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8,
                  TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64, TensorProto.BOOL}
# Operators whose outputs hold values of their inputs, unchanged: integer-valued inputs give integer outputs.
_MOVES_DATA = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Slice", "Gather",
               "GatherElements", "GatherND", "Split", "Concat", "Tile", "Expand", "Max", "Min"}


def to_float16(model: ModelProto, initializers: Sequence[Initializer] = ()) -> list[Initializer]:
    """Convert `model` in place; returns its `initializers` converted (those that become float16 are new)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    keep = _convert_graph(model.graph, opset, value_types(model, initializers), [i.name for i in initializers])
    with np.errstate(over="ignore"):   # beyond float16's range: +-inf, as a float16 computation would give
        return [Initializer(i.name, i.array.astype(np.float16))
                if i.array.dtype == np.float32 and i.name not in keep else i for i in initializers]


def value_types(model: ModelProto, initializers: Sequence[Initializer] = ()) -> dict[str, int]:
    """The element type of every value, subgraphs included, by onnx's type inference (on the model without
    its weights' data, which inference does not need)."""
    import onnx

    from .checker import skeleton_of
    inferred = onnx.shape_inference.infer_shapes(skeleton_of(model, initializers).SerializeToString())
    types: dict[str, int] = {i.name: element_type(i.array.dtype) for i in initializers}
    graphs = [inferred.graph]
    while graphs:
        graph = graphs.pop()
        for info in (*graph.input, *graph.output, *graph.value_info):
            types[info.name] = info.type.tensor_type.elem_type
        for tensor in graph.initializer:
            types[tensor.name] = tensor.data_type
        graphs += [a.g for n in graph.node for a in n.attribute if a.type == AttributeProto.GRAPH]
    return types


def _convert_graph(graph: GraphProto, opset: int, types: dict[str, int], initializers: Sequence[str] = ()
                   ) -> set[str]:
    """Convert `graph` in place; returns the float32 values that stay float32 (the caller converts the
    `initializers` held apart from the graph that are not among them)."""
    keep = _integer_valued(graph, types) | _float32_only_constants(graph, opset, initializers)
    for tensor in graph.initializer:
        if tensor.data_type == FLOAT and tensor.name not in keep:
            tensor.CopyFrom(_half(tensor))
    for node in graph.node:
        _convert_node(node, opset, types, keep)
    for info in (*graph.input, *graph.output, *graph.value_info):
        if info.type.tensor_type.elem_type == FLOAT and info.name not in keep:
            info.type.tensor_type.elem_type = FLOAT16
    _insert_casts(graph, opset, types, keep)
    return keep


def _integer_valued(graph: GraphProto, types: dict[str, int]) -> set[str]:
    """Float values cast from integers, and what operators that only move data make of them alone."""
    found: set[str] = set()
    for node in graph.node:   # in topological order
        if node.op_type == "Cast" and _cast_target(node) == FLOAT and types.get(node.input[0]) in _INTEGER_TYPES:
            found.add(node.output[0])
        elif node.op_type in _MOVES_DATA:
            floats = [name for name in node.input if types.get(name) == FLOAT]
            if floats and all(name in found for name in floats):
                found.update(name for name in node.output if types.get(name) == FLOAT)
    return found


def _float32_only_constants(graph: GraphProto, opset: int, initializers: Sequence[str] = ()) -> set[str]:
    """Initializers and Constant outputs that only float32-only inputs read."""
    constants = {*initializers, *(t.name for t in graph.initializer),
                 *(n.output[0] for n in graph.node if n.op_type == "Constant")}
    readers: dict[str, list[bool]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in constants:
                readers.setdefault(name, []).append(_takes_float32_only(node, index, opset))
    return {name for name, float32_only in readers.items() if all(float32_only)}


def _convert_node(node: NodeProto, opset: int, types: dict[str, int], keep: set[str]) -> None:
    for attribute in node.attribute:
        if node.op_type == "Cast" and attribute.name == "to":
            if attribute.i == FLOAT and node.output[0] not in keep:
                attribute.i = FLOAT16
        elif attribute.type == AttributeProto.TENSOR and attribute.t.data_type == FLOAT \
                and node.output[0] not in keep:
            attribute.t.CopyFrom(_half(attribute.t))
        elif attribute.type == AttributeProto.GRAPH:
            _convert_graph(attribute.g, opset, types)


def _insert_casts(graph: GraphProto, opset: int, types: dict[str, int], keep: set[str]) -> None:
    """Where a float value's type (float16 now, or kept float32) is not what the reading input takes, a Cast."""
    casts: dict[str, NodeProto] = {}
    for node in graph.node:
        if node.op_type == "Cast":
            continue
        for index, name in enumerate(node.input):
            if not name or types.get(name) != FLOAT:
                continue
            stays_float32 = node.op_type in _MOVES_DATA and any(output in keep for output in node.output)
            wanted = FLOAT if stays_float32 or _takes_float32_only(node, index, opset) else FLOAT16
            if (name in keep) == (wanted == FLOAT):
                continue
            cast_name = f"{name}/{'float32' if wanted == FLOAT else 'float16'}"
            casts.setdefault(cast_name, make_node("Cast", [name], [cast_name], name=cast_name, to=wanted))
            node.input[index] = cast_name
    if casts:
        nodes = list(graph.node)
        del graph.node[:]
        graph.node.extend(_in_order(nodes, casts))


def _in_order(nodes: list[NodeProto], casts: dict[str, NodeProto]) -> list[NodeProto]:
    """Each cast right before the first node that reads it (the graph stays topologically sorted)."""
    pending = dict(casts)
    ordered = []
    for node in nodes:
        ordered += [pending.pop(name) for name in node.input if name in pending]
        ordered.append(node)
    return ordered


def _cast_target(node: NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def _half(tensor: TensorProto) -> TensorProto:
    """The tensor in float16; values beyond its range become +-inf (as a float16 computation would)."""
    with np.errstate(over="ignore"):
        return from_array(to_array(tensor).astype(np.float16), tensor.name)


def _takes_float32_only(node: NodeProto, index: int, opset: int) -> bool:
    """The operator's schema allows float32 but not float16 at this input (e.g. Resize's scales)."""
    import onnx
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return False
    if not schema.inputs:
        return False
    formal = schema.inputs[min(index, len(schema.inputs) - 1)]
    constraint = next((c for c in schema.type_constraints if c.type_param_str == formal.type_str), None)
    allowed = set(constraint.allowed_type_strs) if constraint else {formal.type_str}
    return "tensor(float)" in allowed and "tensor(float16)" not in allowed
