"""MVN and the forks' BN layer."""
from __future__ import annotations

import numpy as np
import onnx

from protodef.errors import WeightsError
from protodef.ir import Layer
from protodef.layers.norm_extra import BN, MVN

from .registry import OnnxContext, onnx_converter


@onnx_converter("MVN")
def mvn(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """x - mean, then / (sqrt(mean of squares) + eps): Caffe adds eps after the square root."""
    p: MVN = layer.params
    source, output = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    axes = list(p.axes)
    nodes: list[onnx.NodeProto] = []
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
def bn(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    p: BN = layer.params
    blobs = bn_blobs(layer)
    if p.fork == "pspnet" and not p.batch_statistics:
        return stored_statistics(layer, ctx)
    source = ctx.value(layer.inputs[0])
    nodes: list[onnx.NodeProto] = []
    if p.batch_statistics:
        normalised = ctx.tensor(layer, "normalised")
        nodes += batch_normalise(layer, ctx, source, normalised)
        source = normalised
    scaled = ctx.tensor(layer, "scaled")
    return nodes + [
        ctx.node("Mul", [source, ctx.initializer(layer, "scale", blobs[0])], [scaled], layer, "scale"),
        ctx.node("Add", [scaled, ctx.initializer(layer, "shift", blobs[1])],
                 [ctx.value(layer.outputs[0])], layer)]


def stored_statistics(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """PSPNet with stored statistics: slope * (x - mean) / sqrt(var + eps) + bias, ONNX's BatchNormalization."""
    p: BN = layer.params
    slope, bias, mean, variance = (w.reshape(-1) for w in bn_blobs(layer))
    inputs = [ctx.value(layer.inputs[0]), ctx.initializer(layer, "slope", slope), ctx.initializer(layer, "bias", bias),
              ctx.initializer(layer, "mean", mean), ctx.initializer(layer, "variance", variance)]
    return [ctx.node("BatchNormalization", inputs, [ctx.value(layer.outputs[0])], layer, epsilon=float(p.eps))]


def batch_normalise(layer: Layer, ctx: OnnxContext, source: str, output: str) -> list[onnx.NodeProto]:
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
