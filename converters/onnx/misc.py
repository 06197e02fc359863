"""Misc family: Silence; FlowWarp and Correlation1D (FlowNet 2), LSTMUnit."""
from __future__ import annotations

import numpy as np

from protodef.ir import Layer
from protodef.layers.misc import (
    Correlation,
    Correlation1D,
    FlowWarp,
    LSTMUnit,
    Reduction,
)

from .emitter import Emitter
from .proto import NodeProto, TensorProto, from_array
from .registry import OnnxContext, onnx_converter


@onnx_converter("Silence")
def silence(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Silence only keeps its inputs from being net outputs; it computes nothing."""
    return []


# ---- FlowNet 2's FlowWarp and Correlation1D; BVLC's LSTMUnit --------------------------------------------------

@onnx_converter("FlowWarp")
def flow_warp(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Bilinear sampling at (x + u, y + v) with FlowNet 2's neighbours and fill, from run-time sizes: the pixel
    grid is a running count of ones, the four neighbours are GatherElements on the flattened image."""
    p: FlowWarp = layer.params
    op = Emitter(layer, ctx)
    image, flow = (ctx.value(v) for v in layer.inputs)
    u = op("Slice", [flow, op.ints("u_start", [0]), op.ints("u_end", [1]), op.ints("flow_axis", [1])], "u")
    v = op("Slice", [flow, op.ints("v_start", [1]), op.ints("v_end", [2]), op.ints("flow_axis_v", [1])], "v")
    ones = op("ConstantOfShape", [op("Shape", [u], "pixels")], "ones",
              value=from_array(np.ones(1, np.float32)))
    one = op.floats("one", 1.0)
    x2 = op("Add", [op("Sub", [op("CumSum", [ones, op.ints("x_axis", [3])], "x_count"), one], "x"), u], "x2")
    y2 = op("Add", [op("Sub", [op("CumSum", [ones, op.ints("y_axis", [2])], "y_count"), one], "y"), v], "y2")
    size = op("Cast", [op("Slice", [op("Shape", [image], "image_shape"), op.ints("hw_start", [2]),
                                    op.ints("hw_end", [4])], "hw")], "size", to=TensorProto.FLOAT)
    height = op("Slice", [size, op.ints("h_start", [0]), op.ints("h_end", [1])], "height")
    width = op("Slice", [size, op.ints("w_start", [1]), op.ints("w_end", [2])], "width")
    zero = op.floats("zero", 0.0)
    inside = op("And", [op("And", [op("GreaterOrEqual", [x2, zero], "x_from_0"),
                                   op("GreaterOrEqual", [y2, zero], "y_from_0")], "from_0"),
                        op("And", [op("Less", [x2, width], "x_below_w"), op("Less", [y2, height], "y_below_h")],
                           "below_size")], "inside")
    # Outside, the flow may be anything (NaN too): the corners are taken at 0 there, and masked out at the end.
    left = op("Where", [inside, op("Floor", [x2], "x_floor"), zero], "left")
    top = op("Where", [inside, op("Floor", [y2], "y_floor"), zero], "top")
    alpha, beta = op("Sub", [x2, left], "alpha"), op("Sub", [y2, top], "beta")
    right = op("Min", [op("Add", [left, one], "left1"), op("Sub", [width, one], "last_x")], "right")
    bottom = op("Min", [op("Add", [top, one], "top1"), op("Sub", [height, one], "last_y")], "bottom")
    flat = op("Reshape", [image, op.ints("flat_shape", [0, 0, -1])], "flat")
    flat_shape = op("Shape", [flat], "flat_dims")
    per_pixel = op.ints("per_pixel_shape", [0, 1, -1])

    def corner(row: str, column: str, what: str) -> str:
        index = op("Cast", [op("Add", [op("Mul", [row, width], f"{what}_row"), column], f"{what}_at")],
                   f"{what}_index", to=TensorProto.INT64)
        spread = op("Expand", [op("Reshape", [index, per_pixel], f"{what}_flat_index"), flat_shape],
                    f"{what}_indices")
        return op("GatherElements", [flat, spread], what, axis=2)

    def flat_pixels(name: str) -> str:
        return op("Reshape", [name, per_pixel], f"{name.rsplit('/', 1)[-1]}_flat")

    a, b = flat_pixels(alpha), flat_pixels(beta)
    not_a, not_b = op("Sub", [one, a], "one_minus_alpha"), op("Sub", [one, b], "one_minus_beta")
    terms = [op("Mul", [op("Mul", [wy, wx], f"w_{what}"), corner(row, column, what)], f"term_{what}")
             for wy, wx, row, column, what in ((not_b, not_a, top, left, "tl"), (not_b, a, top, right, "tr"),
                                               (b, not_a, bottom, left, "bl"), (b, a, bottom, right, "br"))]
    total = op("Add", [op("Add", [op("Add", [terms[0], terms[1]], "sum_top"), terms[2]], "sum_bl"), terms[3]],
               "sample")
    fill = op.floats("fill", float("nan") if p.fill_nan else 0.0)
    warped = op("Where", [flat_pixels(inside), total, fill], "warped")
    op("Reshape", [warped, op("Shape", [image], "out_shape")], "output", output=ctx.value(layer.outputs[0]))
    return op.nodes


@onnx_converter("Correlation1D")
def correlation_1d(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """One map per shift s: the channel mean of a * b (or |a - b|) between input 0's padded columns
    [d, W' - d) and input 1's [d + s, W' - d + s), d = max_displacement, W' the padded width; then a k x k,
    stride_1 average pool. Slices count from the end, so any input size works."""
    p: Correlation1D = layer.params
    op = Emitter(layer, ctx)
    padded = []
    for index, value in enumerate(layer.inputs):
        source = ctx.value(value)
        if p.pad:
            source = op("Pad", [source, op.ints(f"pads{index}", [0, 0, 0, p.pad, 0, 0, 0, p.pad])], f"padded{index}",
                        mode="constant")
        padded.append(source)
    d, last = p.max_displacement, 2**62
    axis = op.ints("width_axis", [3])

    def columns(source: str, shift: int, what: str) -> str:
        start, end = d + shift, shift - d
        return op("Slice", [source, op.ints(f"{what}_start", [start]), op.ints(f"{what}_end", [end or last]), axis],
                  what)

    anchor = columns(padded[0], 0, "anchor")
    maps = []
    for channel, shift in enumerate(p.shifts):
        moved = columns(padded[1], shift, f"moved{channel}")
        if p.subtract:
            pair = op("Abs", [op("Sub", [anchor, moved], f"difference{channel}")], f"pair{channel}")
        else:
            pair = op("Mul", [anchor, moved], f"pair{channel}")
        more, mean = ctx.reduce("ReduceMean", layer, f"channel_mean{channel}", pair, [1])
        op.nodes += more
        maps.append(mean)
    output = ctx.value(layer.outputs[0])
    pooled = p.kernel_size > 1 or p.stride_1 > 1
    stacked = op("Concat", maps, "maps", None if pooled else output, axis=1)
    if pooled:
        op("AveragePool", [stacked], "pool", output, kernel_shape=[p.kernel_size] * 2, strides=[p.stride_1] * 2)
    return op.nodes


@onnx_converter("LSTMUnit")
def lstm_unit(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Gates i, f, o, g from the four quarters of input 1; the forget gate is scaled by cont."""
    p: LSTMUnit = layer.params
    op = Emitter(layer, ctx)
    c_prev, gates, cont = (ctx.value(v) for v in layer.inputs)
    quarters = [ctx.tensor(layer, what) for what in ("x_i", "x_f", "x_o", "x_g")]
    op.nodes += ctx.split(layer, gates, quarters, 2, [p.hidden] * 4)
    i, f, o = (op("Sigmoid", [x], what) for x, what in zip(quarters, ("i", "f", "o")))
    g = op("Tanh", [quarters[3]], "g")
    keep = op("Mul", [op("Unsqueeze", [cont, op.ints("cont_axis", [2])], "cont3"), f], "keep")
    c = op("Add", [op("Mul", [keep, c_prev], "kept"), op("Mul", [i, g], "written")], "c",
           ctx.value(layer.outputs[0]))
    op("Mul", [o, op("Tanh", [c], "tanh_c")], "h", ctx.value(layer.outputs[1]))
    return op.nodes


@onnx_converter("Parameter")
def parameter(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    ctx.require_batch_axis_kept(layer, 0, "Parameter's fixed-shape output")
    return [ctx.node("Identity", [ctx.initializer(layer, "weight")], [ctx.value(layer.outputs[0])], layer)]


_REDUCE_OPS = {"SUM": "ReduceSum", "MEAN": "ReduceSum", "ASUM": "ReduceL1", "SUMSQ": "ReduceSumSquare"}


@onnx_converter("Reduction")
def reduction(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
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


@onnx_converter("Correlation")
def correlation(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """FlowNet 2's correlation as slices: for each displacement (dy, dx) the channel mean of a * b (or
    |a - b|) over the region that every kernel placement reads, then a k x k, stride_1 average pool.

    In padded coordinates the kernel for output (y, x) starts at (y * stride_1 + d, x * stride_1 + d),
    d = max_displacement, and input 1's at the same place plus (dy, dx); so the product map starts at d
    and spans the padded size minus 2d."""
    p: Correlation = layer.params
    a_shape = ctx.input_shape(layer)
    pads = [0, 0, p.pad, p.pad, 0, 0, p.pad, p.pad]
    nodes: list[NodeProto] = []
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
