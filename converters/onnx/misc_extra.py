"""Parameter, Embed, Tile, Reduction, ShuffleChannel, Axpy and Correlation."""
from __future__ import annotations

import onnx

from protodef.ir import Layer
from protodef.layers.common import count
from protodef.layers.misc import Correlation, Embed, Reduction, ShuffleChannel, Tile

from .registry import OnnxContext, onnx_converter


@onnx_converter("Parameter")
def parameter(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    ctx.require_batch_axis_kept(layer, 0, "Parameter's fixed-shape output")
    return [ctx.node("Identity", [ctx.initializer(layer, "weight")], [ctx.value(layer.outputs[0])], layer)]


@onnx_converter("Embed")
def embed(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """Rows of the (input_dim, num_output) weight picked by the input values cast to integers (Caffe's
    static_cast<int> truncates, as Cast does), plus the bias."""
    p: Embed = layer.params
    indices, picked = ctx.tensor(layer, "indices"), ctx.tensor(layer, "rows")
    output = ctx.value(layer.outputs[0])
    nodes = [ctx.node("Cast", [ctx.value(layer.inputs[0])], [indices], layer, "indices", to=onnx.TensorProto.INT64),
             ctx.node("Gather", [ctx.initializer(layer, "weight"), indices], [picked if p.bias_term else output],
                      layer, axis=0)]
    if p.bias_term:
        nodes.append(ctx.node("Add", [picked, ctx.initializer(layer, "bias")], [output], layer, "bias"))
    return nodes


@onnx_converter("Tile")
def tile(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    p: Tile = layer.params
    ctx.require_batch_axis_kept(layer, p.axis, "Tile")
    repeats = [1] * len(ctx.input_shape(layer))
    repeats[p.axis] = p.tiles
    return [ctx.node("Tile", [ctx.value(layer.inputs[0]), ctx.ints(layer, "repeats", repeats)],
                     [ctx.value(layer.outputs[0])], layer)]


_REDUCE_OPS = {"SUM": "ReduceSum", "MEAN": "ReduceSum", "ASUM": "ReduceL1", "SUMSQ": "ReduceSumSquare"}


@onnx_converter("Reduction")
def reduction(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """A sum over every axis from `axis` on (of x, |x| or x^2), times coeff (coeff / count for MEAN)."""
    p: Reduction = layer.params
    x = ctx.input_shape(layer)
    ctx.require_batch_axis_kept(layer, p.axis, "Reduction")
    factor = p.scale(x)
    output = ctx.value(layer.outputs[0])
    # ctx.scalar's constant has shape (1,), which would make a scalar result 1-D: with axis 0 the sum keeps
    # its axes until the product is reshaped to ().
    scalar = p.axis == 0 and factor != 1
    nodes, total = ctx.reduce(_REDUCE_OPS[p.operation], layer, "sum", ctx.value(layer.inputs[0]),
                              list(range(p.axis, len(x))), output if factor == 1 else None, keepdims=scalar)
    if factor != 1:
        product = ctx.tensor(layer, "scaled") if scalar else output
        nodes.append(ctx.node("Mul", [total, ctx.scalar(layer, "coeff", factor)], [product], layer))
        if scalar:
            nodes += ctx.reshape(layer, "scalar", product, (), output)[0]
    return nodes


@onnx_converter("ShuffleChannel")
def shuffle_channel(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """Channels viewed as (group, C / group), transposed, flattened back."""
    p: ShuffleChannel = layer.params
    x = ctx.input_shape(layer)
    grid = (x[0], p.group, x[1] // p.group, count(x, 2))
    nodes, grouped = ctx.reshape(layer, "grouped", ctx.value(layer.inputs[0]), grid)
    swapped = ctx.tensor(layer, "swapped")
    nodes.append(ctx.node("Transpose", [grouped], [swapped], layer, "swap", perm=[0, 2, 1, 3]))
    more, _ = ctx.reshape(layer, "merge", swapped, x, ctx.value(layer.outputs[0]))
    return nodes + more


@onnx_converter("Axpy")
def axpy(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """a * x + y, a holding one factor per (n, c)."""
    a_shape, x = ctx.input_shape(layer, 0), ctx.input_shape(layer, 1)
    factor = ctx.value(layer.inputs[0])
    nodes = []
    broadcast = (*x[:2], *(1,) * (len(x) - 2))
    if a_shape != broadcast:
        nodes, factor = ctx.reshape(layer, "factor", factor, broadcast)
    scaled = ctx.tensor(layer, "scaled")
    return nodes + [ctx.node("Mul", [factor, ctx.value(layer.inputs[1])], [scaled], layer, "scale"),
                    ctx.node("Add", [scaled, ctx.value(layer.inputs[2])], [ctx.value(layer.outputs[0])], layer)]


@onnx_converter("Correlation")
def correlation(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """FlowNet 2's correlation as slices: for each displacement (dy, dx) the channel mean of a * b (or
    |a - b|) over the region that every kernel placement reads, then a k x k, stride_1 average pool.

    In padded coordinates the kernel for output (y, x) starts at (y * stride_1 + d, x * stride_1 + d),
    d = max_displacement, and input 1's at the same place plus (dy, dx); so the product map starts at d
    and spans the padded size minus 2d."""
    p: Correlation = layer.params
    a_shape = ctx.input_shape(layer)
    pads = [0, 0, p.pad, p.pad, 0, 0, p.pad, p.pad]
    nodes: list[onnx.NodeProto] = []
    padded = []
    for index, value in enumerate(layer.inputs):
        source = ctx.value(value)
        if p.pad:
            target = ctx.tensor(layer, f"padded{index}")
            nodes.append(ctx.node("Pad", [source, ctx.ints(layer, f"pads{index}", pads)], [target], layer,
                                  f"pad{index}", mode="constant"))
            source = target
        padded.append(source)
    d = p.max_displacement
    span = [size + 2 * p.pad - 2 * d for size in a_shape[2:]]
    first = _window(layer, ctx, nodes, padded[0], (d, d), span, "anchor")
    maps = []
    for channel, (dy, dx) in enumerate(p.displacements()):
        moved = _window(layer, ctx, nodes, padded[1], (d + dy, d + dx), span, f"moved{channel}")
        pair = ctx.tensor(layer, f"pair{channel}")
        if p.subtract:
            difference = ctx.tensor(layer, f"difference{channel}")
            nodes += [ctx.node("Sub", [first, moved], [difference], layer, f"difference{channel}"),
                      ctx.node("Abs", [difference], [pair], layer, f"pair{channel}")]
        else:
            nodes.append(ctx.node("Mul", [first, moved], [pair], layer, f"pair{channel}"))
        more, mean = ctx.reduce("ReduceMean", layer, f"channel_mean{channel}", pair, [1])
        nodes += more
        maps.append(mean)
    output = ctx.value(layer.outputs[0])
    pooled = p.kernel_size > 1 or p.stride_1 > 1
    stacked = ctx.tensor(layer, "maps") if pooled else output
    nodes.append(ctx.node("Concat", maps, [stacked], layer, "maps", axis=1))
    if pooled:
        nodes.append(ctx.node("AveragePool", [stacked], [output], layer, kernel_shape=[p.kernel_size] * 2,
                              strides=[p.stride_1] * 2))
    return nodes


def _window(layer: Layer, ctx: OnnxContext, nodes: list, source: str, start: tuple[int, int], span: list[int],
            what: str) -> str:
    output = ctx.tensor(layer, what)
    nodes.append(ctx.node("Slice", [source, ctx.ints(layer, f"{what}_starts", start),
                                    ctx.ints(layer, f"{what}_ends", [s + n for s, n in zip(start, span)]),
                                    ctx.ints(layer, f"{what}_axes", [2, 3])], [output], layer, what))
    return output

