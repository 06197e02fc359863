"""Softmax family: Softmax -> Softmax over one axis (opset 13 on), or over a flattened tail (before 13)."""
from __future__ import annotations

import math

import onnx

from .registry import CaffeLayer, ExportContext, attributes, caffe_converter
from .reshape import reshape_layer


def softmax_layer(ctx: ExportContext, node: onnx.NodeProto, source: str, top: str, axis: int,
                  what: str | None = None) -> CaffeLayer:
    layer = ctx.layer(node, "Softmax", [source], [top], what=what)
    if axis != 1:
        layer.proto.softmax_param.axis = axis
    return layer


@caffe_converter("Softmax")
def softmax(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """Caffe normalises over one axis. Before opset 13, ONNX normalised over every axis from `axis` on as one:
    the same when the axes after it have size 1, else Flatten, Softmax, Reshape back."""
    x = ctx.shape(node.input[0])
    default = -1 if ctx.graph.opset >= 13 else 1
    axis = int(attributes(node).get("axis", default)) % len(x)
    source = ctx.blob(node.input[0])
    if ctx.graph.opset >= 13 or math.prod(x[axis + 1:]) == 1:
        return [softmax_layer(ctx, node, source, node.output[0], axis)]
    flat, normalised = ctx.intermediate(node, "flat"), ctx.intermediate(node, "normalised")
    flat_shape = (*x[:axis], math.prod(x[axis:]))
    return [reshape_layer(ctx, node, source, flat, flat_shape, input_shape=x, what="flatten"),
            softmax_layer(ctx, node, flat, normalised, axis, what="softmax"),
            reshape_layer(ctx, node, normalised, node.output[0], x, input_shape=flat_shape)]
