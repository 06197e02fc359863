"""Softmax family: Softmax and ArgMax."""
from __future__ import annotations

import math

import onnx

from protodef.ir import Layer
from protodef.layers.softmax import ArgMax, Softmax

from .registry import OnnxContext, onnx_converter


@onnx_converter("Softmax")
def softmax(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """From opset 13, ONNX Softmax normalises over the one `axis`, as Caffe does (before 13 it flattened
    every axis from `axis` on, which is why opsets below 13 are not offered)."""
    p: Softmax = layer.params
    return [ctx.node("Softmax", [ctx.value(layer.inputs[0])], [ctx.value(layer.outputs[0])], layer, axis=p.axis)]


@onnx_converter("ArgMax")
def argmax(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """Caffe argmax_layer.cpp: the top_k indices (as floats) along `axis`, or with out_max_val their values.
    Without an axis it searches each item's flattened values and writes (N, 1, top_k) indices, or with
    out_max_val (N, 2, top_k): the indices, then the values. Ties: Caffe's sort puts the larger index first,
    TopK the smaller; they differ only on exactly equal values."""
    p: ArgMax = layer.params
    if p.axis is not None:
        return argmax_along_axis(layer, ctx)
    x, y = ctx.input_shape(layer), ctx.output_shape(layer)
    nodes, flat = ctx.reshape(layer, "flat", ctx.value(layer.inputs[0]), (x[0], math.prod(x[1:])))
    values, indices, found = (ctx.tensor(layer, what) for what in ("values", "indices", "found"))
    nodes.append(ctx.node("TopK", [flat, ctx.ints(layer, "k", [p.top_k])], [values, indices], layer, axis=1,
                          largest=1, sorted=1))
    nodes.append(ctx.node("Cast", [indices], [found], layer, "indices_as_float", to=onnx.TensorProto.FLOAT))
    if p.out_max_val:
        both = ctx.tensor(layer, "indices_and_values")
        nodes.append(ctx.node("Concat", [found, values], [both], layer, "indices_and_values", axis=1))
        found = both
    more, _ = ctx.reshape(layer, "reshape", found, y, ctx.value(layer.outputs[0]))
    return nodes + more


def argmax_along_axis(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    p: ArgMax = layer.params
    ctx.require_batch_axis_kept(layer, p.axis, "ArgMax")
    output = ctx.value(layer.outputs[0])
    values = output if p.out_max_val else ctx.tensor(layer, "values")
    indices = ctx.tensor(layer, "indices")
    nodes = [ctx.node("TopK", [ctx.value(layer.inputs[0]), ctx.ints(layer, "k", [p.top_k])], [values, indices],
                      layer, axis=p.axis, largest=1, sorted=1)]
    if not p.out_max_val:
        nodes.append(ctx.node("Cast", [indices], [output], layer, "indices_as_float", to=onnx.TensorProto.FLOAT))
    return nodes
