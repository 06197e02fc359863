"""SPP and ROIPooling."""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from protodef.ir import Layer, Value
from protodef.layers.pool_extra import ROIPooling, SPP

from .pool import pooling
from .registry import OnnxContext, onnx_converter


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
def spp(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """One Caffe pooling per level (the Pooling converter's exact windows), each flattened to (N, -1) and
    concatenated; a single level is its pooling's output as it is."""
    p: SPP = layer.params
    x = ctx.input_shape(layer)
    output = ctx.value(layer.outputs[0])
    nodes: list[onnx.NodeProto] = []
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
def roi_pooling(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
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
    float_type = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        body, f"{layer.name}/body",
        [helper.make_tensor_value_info(body_in, onnx.TensorProto.INT64, []),
         helper.make_tensor_value_info(cond_in, onnx.TensorProto.BOOL, [])],
        [helper.make_tensor_value_info(cond_out, onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info(pooled, float_type, [x[1], *p.pooled])])
    # The trip count is the rois' row count as the graph sees it (symbolic under --dynamic-batch).
    shape, count, go, first = (ctx.tensor(layer, what) for what in ("rois_shape", "roi_count", "always", "first"))
    nodes += [ctx.node("Shape", [flat_rois], [shape], layer, "rois_shape"),
              _constant(layer, ctx, first, np.asarray(0, np.int64)),
              ctx.node("Gather", [shape, first], [count], layer, "roi_count", axis=0),
              _constant(layer, ctx, go, np.asarray(True)),
              ctx.node("Loop", [count, go], [ctx.value(layer.outputs[0])], layer, body=graph)]
    return nodes


def _constant(layer: Layer, ctx: OnnxContext, name: str, array: np.ndarray) -> onnx.NodeProto:
    """A true scalar as a Constant node (ctx.initializer would store it with shape (1,))."""
    return ctx.node("Constant", [], [name], layer, name.rsplit("/", 1)[-1], value=numpy_helper.from_array(array))


class RoiBody:
    """The nodes of one Loop iteration (roi i): Caffe's bin edges, then a masked max over the roi's box."""

    def __init__(self, layer: Layer, ctx: OnnxContext, x: tuple[int, ...], p: ROIPooling):
        self.layer, self.ctx, self.x, self.p = layer, ctx, x, p
        self.out: list[onnx.NodeProto] = []

    def op(self, op: str, inputs: list[str], what: str, **attributes: Any) -> str:
        output = self.ctx.tensor(self.layer, what)
        self.out.append(self.ctx.node(op, inputs, [output], self.layer, what, **attributes))
        return output

    def const(self, what: str, array: Any, dtype: Any = np.float32) -> str:
        array = np.asarray(array, dtype=dtype)
        if array.ndim:
            return self.ctx.initializer(self.layer, what, array, dtype=dtype)
        # A true scalar (ctx.initializer would store it with shape (1,)): a Constant node in the body.
        return self.op("Constant", [], what, value=numpy_helper.from_array(array, what))

    def nodes(self, rois: str, index: str, output: str) -> list[onnx.NodeProto]:
        _, channels, height, width = self.x
        pooled_h, pooled_w = self.p.pooled
        roi = self.op("Gather", [rois, index], "roi", axis=0)
        batch = self.op("Cast", [self.op("Gather", [roi, self.const("batch_at", 0, np.int64)], "batch_value",
                                         axis=0)], "batch", to=onnx.TensorProto.INT64)
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
        return self.op("Add", [floor, self.op("Cast", [up], "round_step", to=onnx.TensorProto.FLOAT)], "rounded")

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
        start = self.op("Cast", [first], f"{what}_start", to=onnx.TensorProto.INT64)
        stop = self.op("Cast", [last], f"{what}_stop", to=onnx.TensorProto.INT64)
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
