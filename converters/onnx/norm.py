"""Normalisation family: BatchNorm, Scale, Bias, LRN and protodef's ChannelAffine."""
from __future__ import annotations

import numpy as np

from protodef.errors import WeightsError
from protodef.ir import Layer
from protodef.layers.norm import BN, LRN, MVN, NORM_L2_EPS, BatchNorm, Mean, Scale

from .proto import NodeProto
from .registry import OnnxContext, onnx_converter


def per_channel(array: np.ndarray, rank: int) -> np.ndarray:
    """A (C,) array shaped (C, 1, ..., 1) to broadcast along axis 1 of a rank-`rank` tensor."""
    return np.asarray(array, np.float32).reshape((-1,) + (1,) * (rank - 2))


@onnx_converter("BatchNorm")
def batch_norm(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: BatchNorm = layer.params
    if not p.use_global_stats:
        return batch_statistics_norm(layer, ctx)
    mean, variance = p.statistics(layer.weights)
    channels = mean.size
    inputs = [ctx.value(layer.inputs[0]), ctx.initializer(layer, "gamma", np.ones(channels)),
              ctx.initializer(layer, "beta", np.zeros(channels)), ctx.initializer(layer, "mean", mean),
              ctx.initializer(layer, "variance", variance)]
    return [ctx.node("BatchNormalization", inputs, [ctx.value(layer.outputs[0])], layer, epsilon=float(p.eps))]


def batch_statistics_norm(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """use_global_stats false: each batch's own mean and (biased) variance over every axis but 1, as Caffe
    computes them: var = E[(x - E[x])^2], y = (x - E[x]) / sqrt(var + eps)."""
    p: BatchNorm = layer.params
    rank = len(ctx.input_shape(layer))
    axes = [0, *range(2, rank)]
    source = ctx.value(layer.inputs[0])
    nodes, mean = ctx.reduce("ReduceMean", layer, "mean", source, axes)
    centered, squares, root = (ctx.tensor(layer, what) for what in ("centered", "squares", "std"))
    nodes.append(ctx.node("Sub", [source, mean], [centered], layer, "centered"))
    nodes.append(ctx.node("Mul", [centered, centered], [squares], layer, "squares"))
    more, variance = ctx.reduce("ReduceMean", layer, "variance", squares, axes)
    nodes += more
    shifted = ctx.tensor(layer, "variance_eps")
    nodes.append(ctx.node("Add", [variance, ctx.scalar(layer, "eps", p.eps)], [shifted], layer, "variance_eps"))
    nodes.append(ctx.node("Sqrt", [shifted], [root], layer, "std"))
    nodes.append(ctx.node("Div", [centered, root], [ctx.value(layer.outputs[0])], layer))
    return nodes


def scale_operand(layer: Layer, ctx: OnnxContext, what: str, index: int | None) -> tuple[list, str]:
    """The broadcastable scale (or bias): weight blob `index`, or the layer's second input when None."""
    p: Scale = layer.params
    rank = len(ctx.input_shape(layer))
    shape = p.broadcast_shape(rank)
    if index is not None:
        if p.param_shape:   # a learned blob sized by axis 0 fixes the batch
            ctx.require_batch_axis_kept(layer, p.axis, f"{layer.type}'s learned parameter")
        return [], ctx.initializer(layer, what, np.asarray(layer.weights[index]).reshape(shape))
    second = ctx.value(layer.inputs[1])
    if len(shape) == len(p.param_shape):
        return [], second
    return ctx.reshape(layer, f"{what}_broadcast", second, shape)


@onnx_converter("Scale")
def scale(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe scale_layer.cpp: y = x * scale (+ bias), scale a blob or the second input."""
    p: Scale = layer.params
    nodes, factor = scale_operand(layer, ctx, "scale", None if p.two_inputs else 0)
    output = ctx.value(layer.outputs[0])
    product = ctx.tensor(layer, "scaled") if p.bias_term else output
    nodes.append(ctx.node("Mul", [ctx.value(layer.inputs[0]), factor], [product], layer))
    if p.bias_term:
        more, bias = scale_operand(layer, ctx, "bias", len(layer.weights) - 1)
        nodes += more + [ctx.node("Add", [product, bias], [output], layer, "bias")]
    return nodes


@onnx_converter("Bias")
def bias(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe bias_layer.cpp: y = x + bias, bias a blob or the second input."""
    nodes, term = scale_operand(layer, ctx, "bias", None if layer.params.two_inputs else 0)
    nodes.append(ctx.node("Add", [ctx.value(layer.inputs[0]), term], [ctx.value(layer.outputs[0])], layer))
    return nodes


@onnx_converter("ChannelAffine")
def channel_affine(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """y = x * scale[c] + shift[c] along axis 1 (what folding makes of BatchNorm and Scale)."""
    rank = len(ctx.input_shape(layer))
    factor = ctx.initializer(layer, "scale", per_channel(layer.weights[0], rank))
    shift = ctx.initializer(layer, "shift", per_channel(layer.weights[1], rank))
    scaled = ctx.tensor(layer, "scaled")
    return [ctx.node("Mul", [ctx.value(layer.inputs[0]), factor], [scaled], layer),
            ctx.node("Add", [scaled, shift], [ctx.value(layer.outputs[0])], layer, "shift")]


@onnx_converter("LRN")
def lrn(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: LRN = layer.params
    if p.region == "WITHIN_CHANNEL":
        return lrn_within_channel(layer, ctx)
    # ONNX LRN: x / (bias + alpha/size * sum of squares over [c - (size-1)/2, c + (size-1)/2])^beta, which is
    # Caffe's ACROSS_CHANNELS term for its odd local_size, with k as bias.
    return [ctx.node("LRN", [ctx.value(layer.inputs[0])], [ctx.value(layer.outputs[0])], layer,
                     size=p.local_size, alpha=float(p.alpha), beta=float(p.beta), bias=float(p.k))]


def lrn_within_channel(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe lrn_layer.cpp builds WITHIN_CHANNEL from layers: square, AVE pool (local_size, stride 1, pad
    (local_size-1)/2, so every window's divisor is local_size^2), Power(power=-beta, scale=alpha, shift=1)
    (k is not used), then the product with x."""
    p: LRN = layer.params
    source = ctx.value(layer.inputs[0])
    half = (p.local_size - 1) // 2
    squares, mean, scaled, base, factor = (ctx.tensor(layer, what) for what in
                                           ("squares", "mean", "scaled", "base", "factor"))
    return [
        ctx.node("Mul", [source, source], [squares], layer, "squares"),
        ctx.node("AveragePool", [squares], [mean], layer, "mean", kernel_shape=[p.local_size] * 2,
                 strides=[1, 1], pads=[half] * 4, count_include_pad=1),
        ctx.node("Mul", [mean, ctx.scalar(layer, "alpha", p.alpha)], [scaled], layer, "alpha"),
        ctx.node("Add", [scaled, ctx.scalar(layer, "one", 1.0)], [base], layer, "shift"),
        ctx.node("Pow", [base, ctx.scalar(layer, "minus_beta", -p.beta)], [factor], layer, "power"),
        ctx.node("Mul", [source, factor], [ctx.value(layer.outputs[0])], layer),
    ]


@onnx_converter("ChannelNorm")
def channel_norm(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """sqrt of the sum of squares over channels, keeping a channel axis of 1."""
    nodes, squares = ctx.reduce("ReduceSumSquare", layer, "squares", ctx.value(layer.inputs[0]), [1])
    return nodes + [ctx.node("Sqrt", [squares], [ctx.value(layer.outputs[0])], layer)]


@onnx_converter("NormL2")
def norm_l2(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """x / sqrt(sum of x^2 over every axis but the batch + 1e-7)."""
    source = ctx.value(layer.inputs[0])
    nodes, squares = ctx.reduce("ReduceSumSquare", layer, "squares", source,
                                list(range(1, len(ctx.input_shape(layer)))))
    padded, norm = ctx.tensor(layer, "padded"), ctx.tensor(layer, "norm")
    return nodes + [ctx.node("Add", [squares, ctx.scalar(layer, "eps", NORM_L2_EPS)], [padded], layer, "eps"),
                    ctx.node("Sqrt", [padded], [norm], layer, "norm"),
                    ctx.node("Div", [source, norm], [ctx.value(layer.outputs[0])], layer)]


@onnx_converter("MVN")
def mvn(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """x - mean, then / (sqrt(mean of squares) + eps): Caffe adds eps after the square root."""
    p: MVN = layer.params
    source, output = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    axes = list(p.axes)
    nodes: list[NodeProto] = []
    if axes:
        nodes, mean = ctx.reduce("ReduceMean", layer, "mean", source, axes)
    else:
        mean = source    # one value per row: it is its own mean
    centred = output if not p.normalize_variance else ctx.tensor(layer, "centred")
    nodes.append(ctx.node("Sub", [source, mean], [centred], layer, "centre"))
    if not p.normalize_variance:
        return nodes
    squares = ctx.tensor(layer, "squares")
    nodes.append(ctx.node("Mul", [centred, centred], [squares], layer, "squares"))
    if axes:
        more, variance = ctx.reduce("ReduceMean", layer, "variance", squares, axes)
        nodes += more
    else:
        variance = squares
    root, denominator = ctx.tensor(layer, "std"), ctx.tensor(layer, "denominator")
    return nodes + [ctx.node("Sqrt", [variance], [root], layer, "std"),
                    ctx.node("Add", [root, ctx.scalar(layer, "eps", p.eps)], [denominator], layer, "eps"),
                    ctx.node("Div", [centred, denominator], [output], layer)]


def bn_blobs(layer: Layer) -> tuple[np.ndarray, ...]:
    """The BN layer's blobs (2 or 4, each (1, C, 1, 1)); an error naming the layer when they are missing."""
    wanted = 2 if layer.params.fork == "segnet" else 4
    if len(layer.weights) != wanted:
        raise WeightsError("the layer has no weights to convert (read the net with a caffemodel or fillers)",
                           where=layer.where, layer=layer, expected=f"{wanted} blobs", found=len(layer.weights))
    return tuple(np.asarray(w, np.float32) for w in layer.weights)


@onnx_converter("BN")
def bn(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: BN = layer.params
    blobs = bn_blobs(layer)
    if p.fork == "pspnet" and not p.batch_statistics:
        return stored_statistics(layer, ctx)
    source = ctx.value(layer.inputs[0])
    nodes: list[NodeProto] = []
    if p.batch_statistics:
        normalised = ctx.tensor(layer, "normalised")
        nodes += batch_normalise(layer, ctx, source, normalised)
        source = normalised
    scaled = ctx.tensor(layer, "scaled")
    return nodes + [
        ctx.node("Mul", [source, ctx.initializer(layer, "scale", blobs[0])], [scaled], layer, "scale"),
        ctx.node("Add", [scaled, ctx.initializer(layer, "shift", blobs[1])],
                 [ctx.value(layer.outputs[0])], layer)]


def stored_statistics(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """PSPNet with stored statistics: slope * (x - mean) / sqrt(var + eps) + bias, ONNX's BatchNormalization."""
    p: BN = layer.params
    slope, bias, mean, variance = (w.reshape(-1) for w in bn_blobs(layer))
    inputs = [ctx.value(layer.inputs[0]), ctx.initializer(layer, "slope", slope), ctx.initializer(layer, "bias", bias),
              ctx.initializer(layer, "mean", mean), ctx.initializer(layer, "variance", variance)]
    return [ctx.node("BatchNormalization", inputs, [ctx.value(layer.outputs[0])], layer, epsilon=float(p.eps))]


def batch_normalise(layer: Layer, ctx: OnnxContext, source: str, output: str) -> list[NodeProto]:
    """(x - mean) / sqrt(var + eps) with the batch's statistics over (N, H, W), the variance as each fork
    computes it: SegNet E[x^2] - mean^2, PSPNet E[(x - mean)^2]."""
    p: BN = layer.params
    axes = [0, 2, 3]
    nodes, mean = ctx.reduce("ReduceMean", layer, "mean", source, axes)
    centred = ctx.tensor(layer, "centred")
    nodes.append(ctx.node("Sub", [source, mean], [centred], layer, "centre"))
    squares = ctx.tensor(layer, "squares")
    if p.fork == "segnet":
        nodes.append(ctx.node("Mul", [source, source], [squares], layer, "squares"))
        more, mean_of_squares = ctx.reduce("ReduceMean", layer, "mean_of_squares", squares, axes)
        squared_mean, variance = ctx.tensor(layer, "squared_mean"), ctx.tensor(layer, "variance")
        nodes += more + [ctx.node("Mul", [mean, mean], [squared_mean], layer, "squared_mean"),
                         ctx.node("Sub", [mean_of_squares, squared_mean], [variance], layer, "variance")]
    else:
        nodes.append(ctx.node("Mul", [centred, centred], [squares], layer, "squares"))
        more, variance = ctx.reduce("ReduceMean", layer, "variance", squares, axes)
        nodes += more
    shifted, root = ctx.tensor(layer, "variance_eps"), ctx.tensor(layer, "std")
    return nodes + [ctx.node("Add", [variance, ctx.scalar(layer, "eps", p.eps)], [shifted], layer, "eps"),
                    ctx.node("Sqrt", [shifted], [root], layer, "std"),
                    ctx.node("Div", [centred, root], [output], layer, "normalise")]


@onnx_converter("Mean")
def mean(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """output_scale * (input_scale * x + offset[c]) for each input, as Caffe computes it (float32)."""
    p: Mean = layer.params
    nodes = []
    for index, (source, target) in enumerate(zip(layer.inputs, layer.outputs)):
        shape = ctx.shape(source)
        offsets = ctx.initializer(layer, f"offsets{index}", per_channel(p.channel_offsets(int(shape[1])), len(shape)))
        scaled, shifted = ctx.tensor(layer, f"scaled{index}"), ctx.tensor(layer, f"shifted{index}")
        nodes += [ctx.node("Mul", [ctx.value(source), ctx.scalar(layer, "input_scale", p.input_scale)], [scaled],
                           layer, f"input_scale{index}"),
                  ctx.node("Add", [scaled, offsets], [shifted], layer, f"offset{index}"),
                  ctx.node("Mul", [shifted, ctx.scalar(layer, "output_scale", p.output_scale)], [ctx.value(target)],
                           layer, f"output_scale{index}")]
    return nodes

