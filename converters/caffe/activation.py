"""Element-wise family: activations and one-input maps (Relu, LeakyRelu, PRelu, Sigmoid, Tanh, Clip, Elu,
Abs, Exp, Log, Softplus, Neg, Reciprocal, Sqrt, Pow), and the nodes that are the identity at inference."""
from __future__ import annotations

import math

import numpy as np
import onnx

from .registry import CaffeLayer, ExportContext, attributes, caffe_converter

# ONNX op -> the Caffe layer computing the same function, with no parameters.
_PLAIN = {"Relu": "ReLU", "Sigmoid": "Sigmoid", "Tanh": "TanH", "Abs": "AbsVal", "Exp": "Exp", "Log": "Log",
          "Softplus": "BNLL"}


def unary(ctx: ExportContext, node: onnx.NodeProto, layer_type: str, **kwargs) -> CaffeLayer:
    return ctx.layer(node, layer_type, [ctx.blob(node.input[0])], [node.output[0]], **kwargs)


def power(ctx: ExportContext, node: onnx.NodeProto, source: str, top: str, *, power: float = 1.0,
          scale: float = 1.0, shift: float = 0.0, what: str | None = None) -> CaffeLayer:
    """Caffe power_layer.cpp: (shift + scale * x) ^ power."""
    layer = ctx.layer(node, "Power", [source], [top], what=what)
    p = layer.proto.power_param
    if power != 1:
        p.power = power
    if scale != 1:
        p.scale = scale
    if shift != 0:
        p.shift = shift
    return layer


@caffe_converter(*_PLAIN)
def plain_activation(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """Caffe's BNLL is log(1 + exp(x)) computed without overflow, which is Softplus."""
    return [unary(ctx, node, _PLAIN[node.op_type])]


@caffe_converter("LeakyRelu")
def leaky_relu(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    layer = unary(ctx, node, "ReLU")
    layer.proto.relu_param.negative_slope = float(attributes(node).get("alpha", 0.01))
    return [layer]


@caffe_converter("Elu")
def elu(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    layer = unary(ctx, node, "ELU")
    layer.proto.elu_param.alpha = float(attributes(node).get("alpha", 1.0))
    return [layer]


@caffe_converter("PRelu")
def prelu(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """One slope per channel (axis 1). A shared slope is written once per channel: OpenCV refuses Caffe's
    channel_shared, and the values are the same."""
    x = ctx.shape(node.input[0])
    slope = np.asarray(ctx.constant(node, 1, "the slope"), np.float32)
    if len(x) < 2 or slope.ndim > len(x):
        raise ctx.refuse(node, "PRelu's slope must broadcast along the channel axis", found=slope.shape)
    aligned = slope.reshape((1,) * (len(x) - slope.ndim) + slope.shape)
    try:
        full = np.broadcast_to(aligned, x)
    except ValueError:
        raise ctx.refuse(node, "PRelu's slope does not broadcast to its input", found=slope.shape) from None
    per_channel = full[(0, slice(None)) + (0,) * (len(x) - 2)]
    if not np.array_equal(np.broadcast_to(per_channel.reshape((1, -1) + (1,) * (len(x) - 2)), x), full):
        raise ctx.refuse(node, "a PRelu slope that varies along axes other than the channels has no Caffe form",
                         found=slope.shape)
    return [unary(ctx, node, "PReLU", blobs=[np.ascontiguousarray(per_channel)])]


def clip_bounds(node: onnx.NodeProto, ctx: ExportContext) -> tuple[float, float]:
    attrs = attributes(node)
    if "min" in attrs or "max" in attrs:   # opset < 11
        return float(attrs.get("min", -math.inf)), float(attrs.get("max", math.inf))
    low = ctx.optional_constant(node, 1, "the minimum")
    high = ctx.optional_constant(node, 2, "the maximum")
    return (-math.inf if low is None else float(low)), (math.inf if high is None else float(high))


@caffe_converter("Clip")
def clip(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """ReLU for [0, inf); ReLU6 or Clip where the target has them; otherwise max(x, a) = a + relu(x - a) and
    min(y, b) = b - relu(b - y), with Power layers for the shifts (equal in real arithmetic, within a rounding
    of the bounds in float)."""
    low, high = clip_bounds(node, ctx)
    if low > high:
        raise ctx.refuse(node, "Clip with min above max gives max in ONNX and min in Caffe", found=(low, high))
    if (low, high) == (0, math.inf):
        return [unary(ctx, node, "ReLU")]
    if (low, high) == (0, 6) and ctx.target.has("ReLU6"):
        return [unary(ctx, node, "ReLU6")]
    if ctx.target.has("Clip"):
        layer = unary(ctx, node, "Clip")
        layer.proto.clip_param.min = max(low, float(np.finfo(np.float32).min))
        layer.proto.clip_param.max = min(high, float(np.finfo(np.float32).max))
        return [layer]
    return clip_with_relu(node, ctx, low, high)


def clip_with_relu(node: onnx.NodeProto, ctx: ExportContext, low: float, high: float) -> list[CaffeLayer]:
    steps: list[dict | None] = []     # None: a ReLU; a dict: a Power's arguments
    offset = 0.0                      # what the steps so far took away from x and have not added back
    if low > -math.inf:
        if low:
            steps.append(dict(shift=-low))
        steps.append(None)
        offset = low
    if high < math.inf:
        steps += [dict(scale=-1.0, shift=high - offset), None, dict(scale=-1.0, shift=high)]
    elif offset:
        steps.append(dict(shift=offset))
    source, layers = ctx.blob(node.input[0]), []
    for index, arguments in enumerate(steps):
        last = index == len(steps) - 1
        top = node.output[0] if last else ctx.intermediate(node, f"step{index}")
        what = None if last else f"step{index}"
        if arguments is None:
            layers.append(ctx.layer(node, "ReLU", [source], [top], what=what))
        else:
            layers.append(power(ctx, node, source, top, what=what, **arguments))
        source = top
    return layers


@caffe_converter("Neg", "Reciprocal", "Sqrt")
def power_of_input(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    arguments = {"Neg": dict(scale=-1.0), "Reciprocal": dict(power=-1.0), "Sqrt": dict(power=0.5)}[node.op_type]
    return [power(ctx, node, ctx.blob(node.input[0]), node.output[0], **arguments)]


@caffe_converter("Pow")
def pow_constant(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    exponent = ctx.constant(node, 1, "the exponent")
    if exponent.size != 1:
        raise ctx.refuse(node, "Caffe's Power takes one exponent for all elements", found=exponent.shape)
    if ctx.shape(node.output[0]) != ctx.shape(node.input[0]):
        raise ctx.refuse(node, "the exponent broadcasts the input to a larger shape")
    return [power(ctx, node, ctx.blob(node.input[0]), node.output[0], power=float(exponent.reshape(-1)[0]))]


FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)


@caffe_converter("Identity", "Dropout", "Cast")
def identity(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """The identity at inference: Identity, Dropout (its mask refused when read), a Cast between floats."""
    attrs = attributes(node)
    if node.op_type == "Dropout":
        training = ctx.optional_constant(node, 2, "training_mode")
        if attrs.get("is_test", 1) == 0 or (training is not None and bool(training)):
            raise ctx.refuse(node, "a training-mode Dropout drops and scales at random")
        if len(node.output) > 1 and node.output[1] and ctx.readers(node.output[1]):
            raise ctx.refuse(node, "Dropout's mask output has no Caffe form")
    if node.op_type == "Cast" and attrs.get("to") not in FLOAT_TYPES:
        raise ctx.refuse(node, "a Cast to a non-float type; Caffe blobs hold floats")
    ctx.alias(node.output[0], ctx.blob(node.input[0]))
    return []
