"""Element-wise family: activations and the other one-in one-out maps that keep the shape."""
from __future__ import annotations

import numpy as np

from protodef.ir import Layer
from protodef.layers.activation import (
    ELU,
    Clip,
    Exp,
    Power,
    PReLU,
    ReLU,
    ReLU6,
    Swish,
    Threshold,
)

from .proto import NodeProto, TensorProto, make_tensor
from .registry import OnnxContext, onnx_converter


def unary(op: str, layer: Layer, ctx: OnnxContext, **attributes) -> list[NodeProto]:
    return [ctx.node(op, [ctx.value(layer.inputs[0])], [ctx.value(layer.outputs[0])], layer, **attributes)]


@onnx_converter("ReLU")
def relu(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: ReLU = layer.params
    if p.negative_slope == 0:
        return unary("Relu", layer, ctx)
    return unary("LeakyRelu", layer, ctx, alpha=float(p.negative_slope))   # max(x, 0) + slope * min(x, 0)


@onnx_converter("PReLU")
def prelu(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: PReLU = layer.params
    rank = len(ctx.input_shape(layer))
    slope = np.asarray(layer.weights[0], np.float32)
    shape = (1,) if p.channel_shared else (slope.size, *(1,) * max(0, rank - 2))
    inputs = [ctx.value(layer.inputs[0]), ctx.initializer(layer, "slope", slope.reshape(shape))]
    return [ctx.node("PRelu", inputs, [ctx.value(layer.outputs[0])], layer)]


@onnx_converter("ELU")
def elu(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: ELU = layer.params
    return unary("Elu", layer, ctx, alpha=float(p.alpha))


@onnx_converter("Sigmoid")
def sigmoid(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    return unary("Sigmoid", layer, ctx)


@onnx_converter("TanH")
def tanh(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    return unary("Tanh", layer, ctx)


@onnx_converter("AbsVal")
def absval(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    return unary("Abs", layer, ctx)


@onnx_converter("BNLL")
def bnll(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe bnll_layer.cpp: x > 0 ? x + log(1 + exp(-x)) : log(1 + exp(x)), which is
    max(x, 0) + log(1 + exp(-|x|)): exp never overflows (ONNX Softplus may compute exp(x) as it stands)."""
    source = ctx.value(layer.inputs[0])
    softplus_tail = ctx.tensor(layer, "log1p_exp")
    nodes = chain(layer, ctx, source, softplus_tail, [("Abs", "abs", None), ("Neg", "neg", None),
                                                      ("Exp", "exp", None), ("Add", "one", 1.0), ("Log", "log", None)])
    positive = ctx.tensor(layer, "relu")
    return nodes + [ctx.node("Relu", [source], [positive], layer, "relu"),
                    ctx.node("Add", [positive, softplus_tail], [ctx.value(layer.outputs[0])], layer, "sum")]


@onnx_converter("Power")
def power(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe power_layer.cpp: (shift + scale * x) ^ power, each step skipped when it is the identity; when
    power * scale is 0 the output is the constant (power == 0 ? 1 : shift ^ power)."""
    p: Power = layer.params
    source, output = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    if p.power * p.scale == 0:
        value = 1.0 if p.power == 0 else float(np.power(np.float32(p.shift), np.float32(p.power)))
        shape = ctx.tensor(layer, "shape")
        return [ctx.node("Shape", [source], [shape], layer, "shape"),
                ctx.node("ConstantOfShape", [shape], [output], layer,
                         value=make_tensor("value", TensorProto.FLOAT, [1], [value]))]
    steps = scalar_steps(("Mul", "scale", p.scale, p.scale != 1), ("Add", "shift", p.shift, p.shift != 0),
                         ("Pow", "power", p.power, p.power != 1))
    return chain(layer, ctx, source, output, steps)


def chain(layer: Layer, ctx: OnnxContext, source: str, output: str, steps: list[tuple[str, str, float | None]]
          ) -> list[NodeProto]:
    """Apply each step in turn: (op, name, scalar) is `op(x, scalar)`, (op, name, None) is `op(x)`. The last
    step writes `output` and takes the layer's own name; no steps is an Identity."""
    if not steps:
        return [ctx.node("Identity", [source], [output], layer)]
    nodes = []
    for index, (op, what, value) in enumerate(steps):
        last = index == len(steps) - 1
        target = output if last else ctx.tensor(layer, what)
        operands = [source] if value is None else [source, ctx.scalar(layer, what, value)]
        nodes.append(ctx.node(op, operands, [target], layer, None if last else what))
        source = target
    return nodes


def scalar_steps(*candidates: tuple[str, str, float | None, bool]) -> list[tuple[str, str, float | None]]:
    """The (op, name, scalar) steps whose condition holds: Caffe skips a scale of 1 and a shift of 0."""
    return [(op, what, value) for op, what, value, needed in candidates if needed]


@onnx_converter("Exp")
def exp(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe exp_layer.cpp: outer * exp(inner * x) with inner = ln(base) * scale, outer = base ^ shift."""
    p: Exp = layer.params
    inner = p.log_base * p.scale
    outer = 1.0 if p.shift == 0 else float(np.exp(p.shift) if p.base == -1 else np.power(p.base, p.shift))
    steps = scalar_steps(("Mul", "inner_scale", inner, inner != 1), ("Exp", "exp", None, True),
                         ("Mul", "outer_scale", outer, outer != 1))
    return chain(layer, ctx, ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0]), steps)


@onnx_converter("Log")
def log(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe log_layer.cpp: log(shift + scale * x) / ln(base) (base -1: natural log)."""
    p: Exp = layer.params
    base_scale = 1.0 / p.log_base
    steps = scalar_steps(("Mul", "scale", p.scale, p.scale != 1), ("Add", "shift", p.shift, p.shift != 0),
                         ("Log", "ln", None, True), ("Mul", "base_scale", base_scale, base_scale != 1))
    return chain(layer, ctx, ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0]), steps)


@onnx_converter("Threshold")
def threshold(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe threshold_layer.cpp: 1 where x > threshold, else 0."""
    p: Threshold = layer.params
    above = ctx.tensor(layer, "above")
    return [ctx.node("Greater", [ctx.value(layer.inputs[0]), ctx.scalar(layer, "threshold", p.threshold)], [above],
                     layer, "above"),
            ctx.node("Cast", [above], [ctx.value(layer.outputs[0])], layer, to=TensorProto.FLOAT)]


@onnx_converter("Dropout")
def dropout(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Test phase: the identity, or a scale by 1 - ratio when it was trained without scale_train."""
    scale = layer.params.test_scale
    steps = [("Mul", "test_scale", scale)] if scale != 1 else []
    return chain(layer, ctx, ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0]), steps)


@onnx_converter("NegReLU")
def neg_relu(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """min(x, 0) + slope * max(x, 0) is ReLU (LeakyRelu) mirrored through the origin: -f(-x)."""
    slope = float(layer.params.negative_slope)
    flipped, activated = ctx.tensor(layer, "flipped"), ctx.tensor(layer, "activated")
    activation = (ctx.node("Relu", [flipped], [activated], layer, "relu") if slope == 0 else
                  ctx.node("LeakyRelu", [flipped], [activated], layer, "relu", alpha=slope))
    return [ctx.node("Neg", [ctx.value(layer.inputs[0])], [flipped], layer, "flip"), activation,
            ctx.node("Neg", [activated], [ctx.value(layer.outputs[0])], layer)]


@onnx_converter("ReLU6")
def relu6(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
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
def clip(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe: max(min, min(x, max)). ONNX Clip gives max when min > max, Caffe gives min: Min then Max
    is Caffe's order for every min and max."""
    p: Clip = layer.params
    below = ctx.tensor(layer, "below_max")
    return [ctx.node("Min", [ctx.value(layer.inputs[0]), ctx.scalar(layer, "max", p.max)], [below], layer, "max"),
            ctx.node("Max", [below, ctx.scalar(layer, "min", p.min)], [ctx.value(layer.outputs[0])], layer)]


@onnx_converter("Swish")
def swish(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
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
def mish(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """x * tanh(softplus(x)), built from ops every opset has (ONNX's own Mish needs opset 18). Where
    softplus's exp(x) overflows, tanh(inf) = 1 gives x, as it should."""
    source = ctx.value(layer.inputs[0])
    soft, gate = ctx.tensor(layer, "softplus"), ctx.tensor(layer, "gate")
    return [ctx.node("Softplus", [source], [soft], layer, "softplus"),
            ctx.node("Tanh", [soft], [gate], layer, "gate"),
            ctx.node("Mul", [source, gate], [ctx.value(layer.outputs[0])], layer)]
