"""Pooling family: Caffe's MAX, AVE and test-phase STOCHASTIC pooling, with Caffe's window rules.

Caffe (pooling_layer.cpp) rounds the output size up, drops a last window that would start in the padding,
and divides AVE sums by the window's area clipped to input + pad (so the ceil overhang past the padding
does not count). ONNX pools floor; we give every pool explicit end padding that makes the floor-mode output
exactly the IR's shape, and correct the AVE divisor with a constant computed here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from protodef.errors import UnsupportedError
from protodef.ir import Layer, Value
from protodef.layers.pool import SPP, Pooling, PSROIPooling, ROIPooling
from protodef.symbolic import definitely, is_static, maximum, minimum

from .emitter import Emitter
from .proto import (
    NodeProto,
    TensorProto,
    from_array,
    make_graph,
    make_tensor,
    make_tensor_value_info,
)
from .registry import OnnxContext, onnx_converter

LOWEST_FLOAT = float(np.finfo(np.float32).min)   # Caffe starts a MAX window at -FLT_MAX
SMALLEST_NORMAL_FLOAT = float(np.finfo(np.float32).tiny)   # FLT_MIN: Caffe's STOCHASTIC test-phase sum starts here


@dataclass(frozen=True)
class Windows:
    """Padding before and after each spatial axis that places a floor-mode pool's windows where Caffe's are
    (the end padding may exceed the kernel)."""

    begin: tuple[int, ...]
    end: tuple[int, ...]

    def fits_attribute(self, kernel: tuple[int, ...]) -> bool:
        """onnxruntime refuses pool `pads` that are not smaller than the kernel; an attribute is a number, so
        padding that depends on a symbolic size is an explicit Pad."""
        return all(isinstance(e, int) and b < k and e < k for b, e, k in zip(self.begin, self.end, kernel))


def windows(layer: Layer, sizes: tuple[int, ...], outputs: tuple[int, ...], begin: tuple[int, ...]) -> Windows:
    """End padding that makes a floor-mode pool give exactly `outputs` windows starting at -begin, one stride
    apart: the padded length is (o - 1) * s + k. Caffe's count is never below the floor count of the input
    without end padding (its padding clip drops at most the one window ceil added), so no input is cut."""
    p: Pooling = layer.params
    ends = []
    for size, o, k, s, b in zip(sizes, outputs, p.kernel, p.stride, begin):
        end = maximum(0, (o - 1) * s + k - size - b)
        if definitely((size + b + end - k) // s + 1 != o):
            raise UnsupportedError("no ONNX padding reproduces Caffe's pooled size", layer=layer,
                                   where=layer.where, expected=o, found=(size + b + end - k) // s + 1)
        ends.append(end)
    return Windows(tuple(begin), tuple(ends))


def caffe_ave_divisors(p: Pooling, sizes: tuple[int, ...], outputs: tuple[int, ...]) -> np.ndarray:
    """Caffe's AVE pool_size per output position: the window clipped to [-pad, size + pad), before it is
    clipped to the input (so padding counts, the ceil overhang does not)."""
    per_axis = []
    for size, o, k, s, pad in zip(sizes, outputs, p.kernel, p.stride, p.pad):
        start = np.arange(o) * s - pad
        end = np.minimum(start + k, size + pad)
        per_axis.append((end - start).astype(np.float64))
    return np.outer(*per_axis)


def place_windows(layer: Layer, ctx: OnnxContext, source: str, spots: Windows, fill: float
                  ) -> tuple[list[NodeProto], str, dict]:
    """The tensor to pool and the pool's `pads` attribute; an explicit Pad (filled with `fill`) first when
    onnxruntime would refuse the attribute."""
    if not any(spots.begin) and all(isinstance(e, int) and e == 0 for e in spots.end):
        return [], source, {}
    if spots.fits_attribute(layer.params.kernel):
        return [], source, {"pads": [*spots.begin, *spots.end]}
    padded = ctx.tensor(layer, "padded")
    pads = ctx.ints(layer, "pads", [0, 0, *spots.begin, 0, 0, *spots.end])
    return [ctx.node("Pad", [source, pads, ctx.scalar(layer, "pad_value", fill)], [padded], layer, "pad",
                     mode="constant")], padded, {}


def spatial(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[2:])


@onnx_converter("Pooling")
def pooling(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    method = layer.params.method
    if method == "MAX":
        return max_pooling(layer, ctx)
    if method == "AVE":
        return average_pooling(layer, ctx)
    if method == "STOCHASTIC":
        return stochastic_pooling(layer, ctx)
    raise UnsupportedError(f"pooling method {method} has no ONNX lowering", layer=layer, where=layer.where)


def max_pooling(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: Pooling = layer.params
    source, output = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    if p.is_global and not p.with_mask:
        return [ctx.node("GlobalMaxPool", [source], [output], layer)]
    x, y = ctx.input_shape(layer), ctx.output_shape(layer)
    spots = windows(layer, spatial(x), spatial(y), p.pad)
    nodes, pooled_input, pads = place_windows(layer, ctx, source, spots, LOWEST_FLOAT)
    if not p.with_mask:
        return nodes + [ctx.node("MaxPool", [pooled_input], [output], layer, kernel_shape=list(p.kernel),
                                 strides=list(p.stride), **pads)]
    if not is_static(x):
        return nodes + dynamic_max_pooling_with_mask(layer, ctx, pooled_input, spots, pads)
    if pooled_input != source:
        raise UnsupportedError("MAX pooling's mask output where Caffe's last window ends a kernel or more past "
                               "the input: ONNX's indices would count positions in a padded plane, not Caffe's "
                               "h * W + w", layer=layer, where=layer.where)
    indices = ctx.tensor(layer, "indices")
    nodes.append(ctx.node("MaxPool", [pooled_input], [output, indices], layer, kernel_shape=list(p.kernel),
                          strides=list(p.stride), **pads))
    # Caffe's mask is h * W + w within one channel plane; ONNX counts over the whole N*C*H*W tensor. Padding
    # added after the input (explicit or not) never holds a maximum Caffe would report.
    plane = ctx.tensor(layer, "plane_index")
    height, width = spatial(x)
    nodes.append(ctx.node("Mod", [indices, ctx.initializer(layer, "plane_size", np.asarray(height * width),
                                                           dtype=np.int64)], [plane], layer, "plane_index"))
    nodes.append(ctx.node("Cast", [plane], [ctx.value(layer.outputs[1])], layer, "mask", to=TensorProto.FLOAT))
    return nodes


def average_pooling(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: Pooling = layer.params
    source, output = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    if p.is_global:
        return [ctx.node("GlobalAveragePool", [source], [output], layer)]
    x, y = ctx.input_shape(layer), ctx.output_shape(layer)
    spots = windows(layer, spatial(x), spatial(y), p.pad)
    nodes, pooled_input, pads = place_windows(layer, ctx, source, spots, 0.0)
    if not (is_static(x) and is_static(y)):
        return nodes + dynamic_average_pooling(layer, ctx, pooled_input, spots, pads)
    # Every window now lies inside the padded input, so AveragePool divides by the kernel area.
    area = float(np.prod(p.kernel))
    with np.errstate(divide="ignore"):
        correction = area / caffe_ave_divisors(p, spatial(x), spatial(y))
    exact = bool(np.all(correction == 1.0))
    pooled = output if exact else ctx.tensor(layer, "kernel_mean")
    nodes.append(ctx.node("AveragePool", [pooled_input], [pooled], layer, kernel_shape=list(p.kernel),
                          strides=list(p.stride), count_include_pad=1, **pads))
    if not exact:
        factor = ctx.initializer(layer, "correction", correction.reshape(1, 1, *correction.shape))
        nodes.append(ctx.node("Mul", [pooled, factor], [output], layer, "correction"))
    return nodes


def stochastic_pooling(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe's test phase (pooling_layer.cu StoPoolForwardTest): sum(x^2) / (FLT_MIN + sum(x)) over windows
    that start at ph * stride, ignoring `pad`, clipped to the input."""
    p: Pooling = layer.params
    x, y = ctx.input_shape(layer), ctx.output_shape(layer)
    spots = windows(layer, spatial(x), spatial(y), (0,) * len(p.kernel))
    nodes, pooled_input, pads = place_windows(layer, ctx, ctx.value(layer.inputs[0]), spots, 0.0)
    area = ctx.scalar(layer, "area", float(np.prod(p.kernel)))
    squares, mean, mean_of_squares = (ctx.tensor(layer, what) for what in ("squares", "mean", "mean_of_squares"))
    total, weighted, denominator = (ctx.tensor(layer, what) for what in ("sum", "sum_of_squares", "denominator"))
    attributes = dict(kernel_shape=list(p.kernel), strides=list(p.stride), count_include_pad=1, **pads)
    nodes += [
        ctx.node("Mul", [pooled_input, pooled_input], [squares], layer, "squares"),
        ctx.node("AveragePool", [pooled_input], [mean], layer, "mean", **attributes),
        ctx.node("AveragePool", [squares], [mean_of_squares], layer, "mean_of_squares", **attributes),
        ctx.node("Mul", [mean, area], [total], layer, "sum"),
        ctx.node("Mul", [mean_of_squares, area], [weighted], layer, "sum_of_squares"),
        ctx.node("Add", [total, ctx.scalar(layer, "flt_min", SMALLEST_NORMAL_FLOAT)], [denominator], layer,
                 "denominator"),
        ctx.node("Div", [weighted, denominator], [ctx.value(layer.outputs[0])], layer),
    ]
    return nodes


@onnx_converter("PSROIPooling")
def psroi_pooling(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """R-FCN's position-sensitive average, without a loop over rois: bin sums read from a summed-area table
    (in float64, so the four-corner difference keeps float32's precision), bin edges computed from the rois
    in float32 as the kernel does."""
    p: PSROIPooling = layer.params
    op = Emitter(layer, ctx)
    x, rois = (ctx.value(v) for v in layer.inputs)
    groups = p.group_size
    sums = op("CumSum", [op("CumSum", [op("Cast", [x], "x64", to=TensorProto.DOUBLE), op.ints("rows_axis", [2])],
                            "row_sums"), op.ints("cols_axis", [3])], "box_sums")
    table = op("Pad", [sums, op.ints("table_pads", [0, 0, 1, 1, 0, 0, 0, 0])], "table", mode="constant")
    dims = op("Shape", [table], "table_shape")
    table_c, table_h, table_w = (op("Slice", [dims, op.ints(f"{what}_from", [axis]), op.ints(f"{what}_to", [axis + 1])],
                                    what) for axis, what in ((1, "table_c"), (2, "table_h"), (3, "table_w")))
    boxes = op("Reshape", [rois, op.ints("roi_shape", [-1, 5])], "boxes")
    batch = op("Cast", [_roi_column(op, boxes, 0, "batch_value")], "batch", to=TensorProto.INT64)
    # (R, G) bin edges, as (R, 1, G, 1) rows and (R, 1, 1, G) columns to broadcast to (R, D, G, G)
    rows = [op("Reshape", [edge, op.ints(f"row_{k}_shape", [-1, 1, groups, 1])], f"row_{k}")
            for k, edge in enumerate(_bin_edges(op, boxes, p, 2, 4, table_h, "h"))]
    cols = [op("Reshape", [edge, op.ints(f"col_{k}_shape", [-1, 1, 1, groups])], f"col_{k}")
            for k, edge in enumerate(_bin_edges(op, boxes, p, 1, 3, table_w, "w"))]
    maps = np.arange(p.output_dim * groups * groups, dtype=np.int64).reshape(1, p.output_dim, groups, groups)
    batch_first = op("Mul", [op("Reshape", [batch, op.ints("batch_shape", [-1, 1, 1, 1])], "batch4"), table_c],
                     "batch_channels")
    origin = op("Mul", [op("Add", [batch_first, ctx.initializer(layer, "maps", maps, dtype=np.int64)], "channel"),
                        op("Mul", [table_h, table_w], "plane")], "origin")
    flat = op("Reshape", [table, op.ints("flat", [-1])], "flat_table")

    def at(row: str, col: str, what: str) -> str:
        index = op("Add", [op("Add", [origin, op("Mul", [row, table_w], f"{what}_row")], f"{what}_row_at"), col],
                   f"{what}_index")
        return op("Gather", [flat, index], what, axis=0)

    total = op("Add", [op("Sub", [op("Sub", [at(rows[1], cols[1], "br"), at(rows[0], cols[1], "tr")], "minus_top"),
                                  at(rows[1], cols[0], "bl")], "minus_left"), at(rows[0], cols[0], "tl")], "bin_sum")
    height, width = op("Sub", [rows[1], rows[0]], "bin_h"), op("Sub", [cols[1], cols[0]], "bin_w")
    zero = op.ints("no_size", [0])
    filled = op("And", [op("Greater", [height, zero], "has_rows"), op("Greater", [width, zero], "has_cols")], "filled")
    area = op("Cast", [op("Max", [op("Mul", [height, width], "area_int"), op.ints("one_cell", [1])], "area_pos")],
              "area", to=TensorProto.DOUBLE)
    mean = op("Cast", [op("Div", [total, area], "mean64")], "mean", to=TensorProto.FLOAT)
    op("Where", [filled, mean, op.floats("empty_bin", 0.0)], "output", output=ctx.value(layer.outputs[0]))
    return op.nodes


def _roi_column(op: Emitter, boxes: str, index: int, what: str) -> str:
    """Column `index` of the (R, 5) rois, as (R, 1)."""
    return op("Slice", [boxes, op.ints(f"{what}_start", [index]), op.ints(f"{what}_end", [index + 1]),
                        op.ints(f"{what}_axis", [1])], what)


def _bin_edges(op: Emitter, boxes: str, p: PSROIPooling, low: int, high: int, table_size: str, what: str
               ) -> list[str]:
    """[begins, ends] (R, G) int64 along one axis: floor(k * bin + start) and ceil((k + 1) * bin + start),
    clipped to [0, size]; start = round(x1) * scale, bin = max((round(x2) + 1) * scale - start, 0.1) / G."""
    scale, one = op.floats(f"{what}_scale", p.spatial_scale), op.floats(f"{what}_one", 1.0)
    start = op("Mul", [op.round_half_away(_roi_column(op, boxes, low, f"{what}1"), f"{what}1"), scale], f"{what}_start")
    end = op("Mul", [op("Add", [op.round_half_away(_roi_column(op, boxes, high, f"{what}2"), f"{what}2"), one],
                        f"{what}_end1"), scale], f"{what}_end")
    extent = op("Max", [op("Sub", [end, start], f"{what}_extent0"), op.floats(f"{what}_min", 0.1)], f"{what}_extent")
    step = op("Div", [extent, op.floats(f"{what}_groups", float(p.group_size))], f"{what}_bin")
    limit = op("Sub", [table_size, op.ints(f"{what}_last", [1])], f"{what}_limit")
    edges = []
    for rounding, first, name in (("Floor", 0, "begin"), ("Ceil", 1, "end")):
        grid = op.ctx.initializer(op.layer, f"{what}_{name}_grid",
                                  np.arange(first, first + p.group_size, dtype=np.float32))
        raw = op("Add", [op("Mul", [grid, step], f"{what}_{name}_at"), start], f"{what}_{name}_raw")
        whole = op("Cast", [op(rounding, [raw], f"{what}_{name}_whole")], f"{what}_{name}_int",
                   to=TensorProto.INT64)
        edges.append(op("Min", [op("Max", [whole, op.ints(f"{what}_{name}_zero", [0])], f"{what}_{name}_low"), limit],
                        f"{what}_{name}"))
    return edges


def dynamic_average_pooling(layer: Layer, ctx: OnnxContext, pooled_input: str, spots: Windows, pads: dict
                            ) -> list[NodeProto]:
    """AVE pooling where the sizes are symbolic: Caffe's divisor (the window clipped to [-pad, size + pad)) is
    the same pooling of a plane of ones over that range and of zeros past it: output = mean(x) / mean(ones)."""
    p: Pooling = layer.params
    ones, counted, plane, mean, share = (ctx.tensor(layer, what) for what in
                                         ("ones", "counted", "counted_plane", "mean", "share"))
    inside = [minimum(pad, end) for pad, end in zip(p.pad, spots.end)]
    beyond = [maximum(0, end - pad) for pad, end in zip(p.pad, spots.end)]
    return [
        ctx.node("ConstantOfShape", [ctx.ints(layer, "plane_shape", [1, 1, *spatial(ctx.input_shape(layer))])],
                 [ones], layer, "ones", value=make_tensor("value", TensorProto.FLOAT, [1], [1.0])),
        ctx.node("Pad", [ones, ctx.ints(layer, "counted_pads", [0, 0, *p.pad, 0, 0, *inside]),
                         ctx.scalar(layer, "one", 1.0)], [counted], layer, "counted", mode="constant"),
        ctx.node("Pad", [counted, ctx.ints(layer, "beyond_pads", [0, 0, 0, 0, 0, 0, *beyond]),
                         ctx.scalar(layer, "zero", 0.0)], [plane], layer, "counted_plane", mode="constant"),
        ctx.node("AveragePool", [pooled_input], [mean], layer, kernel_shape=list(p.kernel), strides=list(p.stride),
                 count_include_pad=1, **pads),
        ctx.node("AveragePool", [plane], [share], layer, "share", kernel_shape=list(p.kernel),
                 strides=list(p.stride)),
        ctx.node("Div", [mean, share], [ctx.value(layer.outputs[0])], layer, "divide"),
    ]


def dynamic_max_pooling_with_mask(layer: Layer, ctx: OnnxContext, pooled_input: str, spots: Windows, pads: dict
                                  ) -> list[NodeProto]:
    """MAX pooling's mask where the sizes are symbolic. ONNX counts indices over the whole N*C*H*W tensor
    (of the explicitly padded tensor, when the pads could not be an attribute); Caffe counts h * W + w within
    one unpadded plane. Padding holds -FLT_MAX, never a maximum."""
    p: Pooling = layer.params
    height, width = spatial(ctx.input_shape(layer))
    indices, position = ctx.tensor(layer, "indices"), ctx.tensor(layer, "plane_position")
    nodes = [ctx.node("MaxPool", [pooled_input], [ctx.value(layer.outputs[0]), indices], layer,
                      kernel_shape=list(p.kernel), strides=list(p.stride), **pads)]
    if pooled_input == ctx.value(layer.inputs[0]):
        nodes.append(ctx.node("Mod", [indices, ctx.ints(layer, "plane_size", [height * width])], [position], layer,
                              "plane_position"))
    else:
        (top, left), (bottom, right) = spots.begin, spots.end
        padded_width = width + left + right
        plane, row, column, row_start = (ctx.tensor(layer, what) for what in
                                         ("padded_position", "row", "column", "row_start"))
        nodes += [
            ctx.node("Mod", [indices, ctx.ints(layer, "padded_plane", [(height + top + bottom) * padded_width])],
                     [plane], layer, "padded_position"),
            ctx.node("Div", [plane, ctx.ints(layer, "padded_width", [padded_width])], [row], layer, "row"),
            ctx.node("Mod", [plane, ctx.ints(layer, "row_length", [padded_width])], [column], layer, "column"),
            ctx.node("Mul", [row, ctx.ints(layer, "width", [width])], [row_start], layer, "row_start"),
            ctx.node("Add", [row_start, column], [ctx.tensor(layer, "padded_index")], layer, "padded_index"),
        ]
        # (row - top) * W + (column - left): the padding before the input shifts every position.
        nodes.append(ctx.node("Sub", [nodes[-1].output[0], ctx.ints(layer, "shift", [top * width + left])],
                              [position], layer, "plane_position"))
    nodes.append(ctx.node("Cast", [position], [ctx.value(layer.outputs[1])], layer, "mask",
                          to=TensorProto.FLOAT))
    return nodes


class LevelContext:
    """The context seen by the Pooling converter for one SPP level: a layer of its own whose output is a
    fresh tensor of the level's shape; everything else is the real context's."""

    def __init__(self, ctx: OnnxContext, level: Layer, output: str, shape: tuple[int, ...]):
        self._ctx, self._level, self._output, self._shape = ctx, level, output, shape

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def value(self, value: Value) -> str:
        return self._output if value == self._level.outputs[0] else self._ctx.value(value)

    def output_shape(self, layer: Layer, index: int = 0) -> tuple[int, ...]:
        return self._shape if layer is self._level else self._ctx.output_shape(layer, index)


@onnx_converter("SPP")
def spp(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """One Caffe pooling per level (the Pooling converter's exact windows), each flattened to (N, -1) and
    concatenated; a single level is its pooling's output as it is."""
    p: SPP = layer.params
    x = ctx.input_shape(layer)
    output = ctx.value(layer.outputs[0])
    nodes: list[NodeProto] = []
    flats = []
    for index, level in enumerate(p.levels):
        name = f"{layer.name}/level{index}"
        level_layer = Layer(name=name, type="Pooling", params=level, inputs=layer.inputs[:1],
                            outputs=(Value(name),), where=layer.where, caffe_name=layer.caffe_name)
        shape = level.output_shape(x)
        pooled = output if len(p.levels) == 1 else ctx.tensor(layer, f"level{index}")
        nodes += pooling(level_layer, LevelContext(ctx, level_layer, pooled, shape))
        if len(p.levels) > 1:
            more, flat = ctx.reshape(layer, f"level{index}_flat", pooled, (shape[0], shape[1] * shape[2] * shape[3]))
            nodes += more
            flats.append(flat)
    if flats:
        nodes.append(ctx.node("Concat", flats, [output], layer, axis=1))
    return nodes


@onnx_converter("ROIPooling")
def roi_pooling(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """py-faster-rcnn's loop over rois as an ONNX Loop: each iteration cuts the roi's rows and columns from
    its image and takes the max over each bin, columns first, then rows. (ONNX's MaxRoiPool leaves the
    rounding unspecified and onnxruntime has no kernel for it from opset 22 on.)"""
    p: ROIPooling = layer.params
    x, rois = ctx.input_shape(layer, 0), ctx.input_shape(layer, 1)
    nodes, flat_rois = ctx.reshape(layer, "rois", ctx.value(layer.inputs[1]), (rois[0], 5))
    body_in, cond_in, cond_out = (ctx.tensor(layer, what) for what in ("roi_index", "cond_in", "cond_out"))
    pooled = ctx.tensor(layer, "roi_output")
    body = RoiBody(layer, ctx, x, p).nodes(flat_rois, body_in, pooled)
    body.append(ctx.node("Identity", [cond_in], [cond_out], layer, "cond"))
    float_type = TensorProto.FLOAT
    graph = make_graph(
        body, f"{layer.name}/body",
        [make_tensor_value_info(body_in, TensorProto.INT64, []),
         make_tensor_value_info(cond_in, TensorProto.BOOL, [])],
        [make_tensor_value_info(cond_out, TensorProto.BOOL, []),
         make_tensor_value_info(pooled, float_type, [x[1], *p.pooled])])
    # The trip count is the rois' row count as the graph sees it (symbolic under --dynamic-batch).
    shape, count, go, first = (ctx.tensor(layer, what) for what in ("rois_shape", "roi_count", "always", "first"))
    nodes += [ctx.node("Shape", [flat_rois], [shape], layer, "rois_shape"),
              _constant(layer, ctx, first, np.asarray(0, np.int64)),
              ctx.node("Gather", [shape, first], [count], layer, "roi_count", axis=0),
              _constant(layer, ctx, go, np.asarray(True)),
              ctx.node("Loop", [count, go], [ctx.value(layer.outputs[0])], layer, body=graph)]
    return nodes


def _constant(layer: Layer, ctx: OnnxContext, name: str, array: np.ndarray) -> NodeProto:
    """A true scalar as a Constant node (ctx.initializer would store it with shape (1,))."""
    return ctx.node("Constant", [], [name], layer, name.rsplit("/", 1)[-1], value=from_array(array))


class RoiBody:
    """The nodes of one Loop iteration (roi i): Caffe's bin edges, then a masked max over the roi's box."""

    def __init__(self, layer: Layer, ctx: OnnxContext, x: tuple[int, ...], p: ROIPooling):
        self.layer, self.ctx, self.x, self.p = layer, ctx, x, p
        self.out: list[NodeProto] = []

    def op(self, op: str, inputs: list[str], what: str, **attributes: Any) -> str:
        output = self.ctx.tensor(self.layer, what)
        self.out.append(self.ctx.node(op, inputs, [output], self.layer, what, **attributes))
        return output

    def const(self, what: str, array: Any, dtype: Any = np.float32) -> str:
        array = np.asarray(array, dtype=dtype)
        if array.ndim:
            return self.ctx.initializer(self.layer, what, array, dtype=dtype)
        # A true scalar (ctx.initializer would store it with shape (1,)): a Constant node in the body.
        return self.op("Constant", [], what, value=from_array(array, what))

    def nodes(self, rois: str, index: str, output: str) -> list[NodeProto]:
        _, channels, height, width = self.x
        pooled_h, pooled_w = self.p.pooled
        roi = self.op("Gather", [rois, index], "roi", axis=0)
        batch = self.op("Cast", [self.op("Gather", [roi, self.const("batch_at", 0, np.int64)], "batch_value",
                                         axis=0)], "batch", to=TensorProto.INT64)
        corners = self.op("Slice", [roi, self.const("corner_start", [1], np.int64),
                                    self.const("corner_end", [5], np.int64)], "corners")
        scaled = self.op("Mul", [corners, self.const("spatial_scale", self.p.spatial_scale)], "scaled")
        x1, y1, x2, y2 = (self.op("Gather", [self.rounded(scaled), self.const(f"{n}_at", i, np.int64)], n, axis=0)
                          for i, n in enumerate(("x1", "y1", "x2", "y2")))
        rows = self.bin_edges(y1, y2, pooled_h, height, "rows")
        cols = self.bin_edges(x1, x2, pooled_w, width, "cols")
        image = self.op("Gather", [self.ctx.value(self.layer.inputs[0]), batch], "image", axis=0)
        box_rows, row_mask = self.box(rows, height, "rows")
        box_cols, col_mask = self.box(cols, width, "cols")
        box = self.op("Slice", [image, self.op("Concat", [box_rows[0], box_cols[0]], "box_start", axis=0),
                                self.op("Concat", [box_rows[1], box_cols[1]], "box_end", axis=0),
                                self.const("box_axes", [1, 2], np.int64)], "box")
        lowest = self.const("lowest", -np.inf)
        # (C, h, 1, w) against the column mask (PW, w): max over w gives (C, h, PW)
        spread = self.op("Unsqueeze", [box, self.const("spread_axes", [2], np.int64)], "spread")
        by_cols = self.reduce_max(self.op("Where", [col_mask, spread, lowest], "col_masked"), 3, "col_max")
        # (C, 1, h, PW) against the row mask (PH, h, 1): max over h gives (C, PH, PW)
        lifted = self.op("Unsqueeze", [by_cols, self.const("lift_axes", [1], np.int64)], "lifted")
        row_mask3 = self.op("Unsqueeze", [row_mask, self.const("row_mask_axes", [2], np.int64)], "row_mask3")
        maxima = self.reduce_max(self.op("Where", [row_mask3, lifted, lowest], "row_masked"), 2, "row_max")
        filled = self.op("And", [self.op("Unsqueeze", [rows[2], self.const("rows_axes", [1], np.int64)], "rows_some"),
                                 self.op("Unsqueeze", [cols[2], self.const("cols_axes", [0], np.int64)], "cols_some")],
                         "filled")
        self.out.append(self.ctx.node("Where", [filled, maxima, self.const("empty_bin", 0.0)], [output], self.layer,
                                      "bins"))
        return self.out

    def rounded(self, value: str) -> str:
        """C's round(): half away from zero (ONNX Round goes to even). floor and v - floor(v) are exact."""
        floor = self.op("Floor", [value], "floor")
        fraction = self.op("Sub", [value, floor], "fraction")
        half = self.const("half", 0.5)
        up = self.op("Or", [self.op("Greater", [fraction, half], "above_half"),
                            self.op("And", [self.op("Equal", [fraction, half], "at_half"),
                                            self.op("GreaterOrEqual", [value, self.const("zero", 0.0)], "positive")],
                                    "half_up")], "round_up")
        return self.op("Add", [floor, self.op("Cast", [up], "round_step", to=TensorProto.FLOAT)], "rounded")

    def bin_edges(self, start: str, end: str, pooled: int, size: int, what: str) -> tuple[str, str, str]:
        """Caffe: length = max(end - start + 1, 1), bin = length / pooled (float); bin k spans
        [floor(k * bin), ceil((k + 1) * bin)) + start, clipped to [0, size]. Returns (begins, ends, nonempty)."""
        one = self.const(f"{what}_one", 1.0)
        length = self.op("Max", [self.op("Add", [self.op("Sub", [end, start], f"{what}_span"), one],
                                         f"{what}_span1"), one], f"{what}_length")
        step = self.op("Div", [length, self.const(f"{what}_pooled", float(pooled))], f"{what}_bin")
        index = self.const(f"{what}_index", np.arange(pooled, dtype=np.float32))
        low, high = self.const(f"{what}_low", 0.0), self.const(f"{what}_high", float(size))
        begins = self.op("Clip", [self.op("Add", [self.op("Floor", [self.op("Mul", [index, step], f"{what}_lo")],
                                                          f"{what}_floor"), start], f"{what}_begin_raw"), low, high],
                         f"{what}_begins")
        after = self.const(f"{what}_after", np.arange(1, pooled + 1, dtype=np.float32))
        ends = self.op("Clip", [self.op("Add", [self.op("Ceil", [self.op("Mul", [after, step], f"{what}_hi")],
                                                        f"{what}_ceil"), start], f"{what}_end_raw"), low, high],
                       f"{what}_ends")
        return begins, ends, self.op("Greater", [ends, begins], f"{what}_nonempty")

    def box(self, edges: tuple[str, str, str], size: int, what: str) -> tuple[tuple[str, str], str]:
        """The slice [first, last) that covers every bin on this axis (at least one index, so that an
        all-empty roi still reduces), and the (bins, positions) mask of which position is in which bin."""
        begins, ends, _ = edges
        first = self.op("Min", [self.op("ReduceMin", [begins], f"{what}_first_raw", keepdims=1),
                                self.const(f"{what}_last_index", [size - 1.0])], f"{what}_first")
        last = self.op("Max", [self.op("ReduceMax", [ends], f"{what}_last_raw", keepdims=1),
                               self.op("Add", [first, self.const(f"{what}_step", [1.0])], f"{what}_first1")],
                       f"{what}_last")
        start = self.op("Cast", [first], f"{what}_start", to=TensorProto.INT64)
        stop = self.op("Cast", [last], f"{what}_stop", to=TensorProto.INT64)
        positions = self.op("Range", [self.op("Squeeze", [first], f"{what}_first0"),
                                      self.op("Squeeze", [last], f"{what}_last0"),
                                      self.const(f"{what}_stride", 1.0)], f"{what}_positions")
        column = self.const(f"{what}_column", [1], np.int64)
        lo = self.op("Unsqueeze", [begins, column], f"{what}_begins2")
        hi = self.op("Unsqueeze", [ends, column], f"{what}_ends2")
        inside = self.op("And", [self.op("GreaterOrEqual", [positions, lo], f"{what}_after_begin"),
                                 self.op("Less", [positions, hi], f"{what}_before_end")], f"{what}_mask")
        return (start, stop), inside

    def reduce_max(self, source: str, axis: int, what: str) -> str:
        nodes, output = self.ctx.reduce("ReduceMax", self.layer, what, source, [axis], keepdims=False)
        self.out += nodes
        return output
