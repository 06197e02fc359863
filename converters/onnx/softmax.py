"""Softmax family: Softmax and ArgMax."""
from __future__ import annotations

import math

from protodef.ir import Layer
from protodef.layers.softmax import ArgMax, Softmax

from .proto import NodeProto, TensorProto
from .registry import OnnxContext, onnx_converter


@onnx_converter("Softmax")
def softmax(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """From opset 13, ONNX Softmax normalises over the one `axis`, as Caffe does (before 13 it flattened
    every axis from `axis` on, which is why opsets below 13 are not offered)."""
    p: Softmax = layer.params
    return [ctx.node("Softmax", [ctx.value(layer.inputs[0])], [ctx.value(layer.outputs[0])], layer, axis=p.axis)]


@onnx_converter("ArgMax")
def argmax(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe argmax_layer.cpp: the top_k indices (as floats) along `axis`, or with out_max_val their values.
    Without an axis it searches each item's flattened values and writes (N, 1, top_k) indices, or with
    out_max_val (N, 2, top_k): the indices, then the values. Ties: Caffe's sort puts the larger index first,
    TopK the smaller, so TopK searches the axis reversed (see top_k_larger_index_first)."""
    p: ArgMax = layer.params
    if p.axis is not None:
        return argmax_along_axis(layer, ctx)
    x, y = ctx.input_shape(layer), ctx.output_shape(layer)
    nodes, flat = ctx.reshape(layer, "flat", ctx.value(layer.inputs[0]), (x[0], math.prod(x[1:])))
    found = ctx.tensor(layer, "found")
    more, values, indices = top_k_larger_index_first(layer, ctx, flat, 1, math.prod(x[1:]), p.top_k)
    nodes += more
    nodes.append(ctx.node("Cast", [indices], [found], layer, "indices_as_float", to=TensorProto.FLOAT))
    if p.out_max_val:
        both = ctx.tensor(layer, "indices_and_values")
        nodes.append(ctx.node("Concat", [found, values], [both], layer, "indices_and_values", axis=1))
        found = both
    more, _ = ctx.reshape(layer, "reshape", found, y, ctx.value(layer.outputs[0]))
    return nodes + more


def argmax_along_axis(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: ArgMax = layer.params
    ctx.require_batch_axis_kept(layer, p.axis, "ArgMax")
    output = ctx.value(layer.outputs[0])
    n = ctx.input_shape(layer)[p.axis]
    nodes, values, indices = top_k_larger_index_first(layer, ctx, ctx.value(layer.inputs[0]), p.axis, n, p.top_k,
                                                      values=output if p.out_max_val else None)
    if not p.out_max_val:
        nodes.append(ctx.node("Cast", [indices], [output], layer, "indices_as_float", to=TensorProto.FLOAT))
    return nodes


def top_k_larger_index_first(layer: Layer, ctx: OnnxContext, x: str, axis: int, n: int, k: int,
                             values: str | None = None) -> tuple[list[NodeProto], str, str]:
    """TopK that orders equal values larger index first, as Caffe's std::greater sort of (value, index) pairs
    does: ONNX TopK puts the smaller index first, so search the axis reversed and map i -> n - 1 - i."""
    reversed_x, found = ctx.tensor(layer, "reversed"), ctx.tensor(layer, "reversed_indices")
    values = values or ctx.tensor(layer, "values")
    indices = ctx.tensor(layer, "indices")
    nodes = [
        ctx.node("Slice", [x, ctx.ints(layer, "reverse_starts", [-1]), ctx.ints(layer, "reverse_ends", [-(2**63)]),
                           ctx.ints(layer, "reverse_axes", [axis]), ctx.ints(layer, "reverse_steps", [-1])],
                 [reversed_x], layer, "reverse"),
        ctx.node("TopK", [reversed_x, ctx.ints(layer, "k", [k])], [values, found], layer, axis=axis, largest=1,
                 sorted=1),
        ctx.node("Sub", [ctx.ints(layer, "last_index", [n - 1]), found], [indices], layer, "unreverse"),
    ]
    return nodes, values, indices
