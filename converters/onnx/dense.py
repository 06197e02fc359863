"""Fully connected family: InnerProduct."""
from __future__ import annotations

import onnx

from protodef.ir import Layer
from protodef.layers.dense import InnerProduct

from .registry import OnnxContext, onnx_converter


@onnx_converter("InnerProduct")
def inner_product(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """Caffe flattens axes [axis, end) into K features and keeps the axes before it: Flatten(axis) gives the
    (M, K) matrix, Gemm multiplies by the (num_output, K) weight (or (K, num_output) when `transpose`), and a
    Reshape restores the leading axes when there is more than one."""
    p: InnerProduct = layer.params
    x, y = ctx.input_shape(layer), ctx.output_shape(layer)
    ctx.require_batch_axis_kept(layer, p.axis, "InnerProduct's flattening")
    nodes = []
    source = ctx.value(layer.inputs[0])
    if len(x) != 2 or p.axis != 1:
        flat = ctx.tensor(layer, "flat")
        nodes.append(ctx.node("Flatten", [source], [flat], layer, "flatten", axis=p.axis))
        source = flat
    output = ctx.value(layer.outputs[0])
    product = output if p.axis == 1 else ctx.tensor(layer, "product")
    inputs = [source, ctx.initializer(layer, "weight")]
    if p.bias_term:
        inputs.append(ctx.initializer(layer, "bias"))
    nodes.append(ctx.node("Gemm", inputs, [product], layer, transB=0 if p.transpose else 1))
    if product != output:
        reshape, _ = ctx.reshape(layer, "unflatten", product, y, output)
        nodes += reshape
    return nodes
