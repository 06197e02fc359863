"""More element-wise activations: ReLU6, Clip, Swish, Mish."""
from __future__ import annotations

import onnx

from protodef.ir import Layer
from protodef.layers.activation_extra import Clip, ReLU6, Swish

from .registry import OnnxContext, onnx_converter


@onnx_converter("ReLU6")
def relu6(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """min(max(x, 0) + slope * min(x, 0), 6): Clip(0, 6) without a slope, else LeakyRelu then Min."""
    p: ReLU6 = layer.params
    source, output = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    six = ctx.scalar(layer, "six", 6.0)
    if p.negative_slope == 0:
        return [ctx.node("Clip", [source, ctx.scalar(layer, "zero", 0.0), six], [output], layer)]
    leaky = ctx.tensor(layer, "leaky")
    return [ctx.node("LeakyRelu", [source], [leaky], layer, "leaky", alpha=float(p.negative_slope)),
            ctx.node("Min", [leaky, six], [output], layer)]


@onnx_converter("Clip")
def clip(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """Caffe: max(min, min(x, max)). ONNX Clip gives max when min > max, Caffe gives min: Min then Max
    is Caffe's order for every min and max."""
    p: Clip = layer.params
    below = ctx.tensor(layer, "below_max")
    return [ctx.node("Min", [ctx.value(layer.inputs[0]), ctx.scalar(layer, "max", p.max)], [below], layer, "max"),
            ctx.node("Max", [below, ctx.scalar(layer, "min", p.min)], [ctx.value(layer.outputs[0])], layer)]


@onnx_converter("Swish")
def swish(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """x * sigmoid(beta * x)."""
    p: Swish = layer.params
    source = ctx.value(layer.inputs[0])
    nodes = []
    argument = source
    if p.beta != 1:
        argument = ctx.tensor(layer, "scaled")
        nodes.append(ctx.node("Mul", [source, ctx.scalar(layer, "beta", p.beta)], [argument], layer, "beta"))
    gate = ctx.tensor(layer, "gate")
    return nodes + [ctx.node("Sigmoid", [argument], [gate], layer, "gate"),
                    ctx.node("Mul", [source, gate], [ctx.value(layer.outputs[0])], layer)]


@onnx_converter("Mish")
def mish(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """x * tanh(softplus(x)), built from ops every opset has (ONNX's own Mish needs opset 18). Where
    softplus's exp(x) overflows, tanh(inf) = 1 gives x, as it should."""
    source = ctx.value(layer.inputs[0])
    soft, gate = ctx.tensor(layer, "softplus"), ctx.tensor(layer, "gate")
    return [ctx.node("Softplus", [source], [soft], layer, "softplus"),
            ctx.node("Tanh", [soft], [gate], layer, "gate"),
            ctx.node("Mul", [source, gate], [ctx.value(layer.outputs[0])], layer)]
