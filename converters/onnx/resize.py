"""Resizing layers from the forks: Interp, Upsample and Accum."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from protodef.errors import UnsupportedError
from protodef.ir import Layer
from protodef.layers.resize import Interp, Resample, Upsample

from .proto import NodeProto, TensorProto, make_tensor
from .registry import OnnxContext, onnx_converter


def resize_aligned(layer: Layer, ctx: OnnxContext, source: str, size: Sequence[int], output: str,
                   what: str) -> list[NodeProto]:
    """Bilinear resize of the last two axes to `size` with aligned corners: source = out * (in - 1) / (out - 1),
    0 when out == 1 -- the rule of the forks' interp.cpp and accum_layer.cpp."""
    nodes: list[NodeProto] = []
    empty = ctx.initializer(layer, f"{what}_roi", np.zeros(0, np.float32))
    empty_scales = ctx.initializer(layer, f"{what}_scales", np.zeros(0, np.float32))
    if ctx.opset >= 18:
        sizes = ctx.ints(layer, f"{what}_sizes", size)
        attributes = {"axes": [2, 3]}
    elif ctx.dynamic_batch:
        # Resize wants every axis's size before opset 18: take N and C from the running tensor.
        shape, leading = ctx.tensor(layer, f"{what}_shape"), ctx.tensor(layer, f"{what}_leading")
        sizes = ctx.tensor(layer, f"{what}_sizes")
        nodes += [ctx.node("Shape", [source], [shape], layer, f"{what}_shape"),
                  ctx.node("Slice", [shape, ctx.ints(layer, f"{what}_start", [0]), ctx.ints(layer, f"{what}_end", [2])],
                           [leading], layer, f"{what}_leading"),
                  ctx.node("Concat", [leading, ctx.ints(layer, f"{what}_hw", size)], [sizes], layer,
                           f"{what}_sizes", axis=0)]
        attributes = {}
    else:
        sizes = ctx.ints(layer, f"{what}_sizes", [*ctx.input_shape(layer)[:2], *size])
        attributes = {}
    nodes.append(ctx.node("Resize", [source, empty, empty_scales, sizes], [output], layer, what, mode="linear",
                          coordinate_transformation_mode="align_corners", **attributes))
    return nodes


@onnx_converter("Interp")
def interp(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: Interp = layer.params
    x = ctx.input_shape(layer)
    source, output = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    nodes = []
    if any(p.crop):
        (top, bottom), (left, right) = p.cropped(x)
        cropped = ctx.tensor(layer, "cropped")
        nodes.append(ctx.node("Slice", [source, ctx.ints(layer, "crop_starts", [top, left]),
                                        ctx.ints(layer, "crop_ends", [bottom, right]),
                                        ctx.ints(layer, "crop_axes", [2, 3])], [cropped], layer, "crop"))
        source = cropped
    return nodes + resize_aligned(layer, ctx, source, p.size, output, "resize")


@onnx_converter("Accum")
def accum(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    size = ctx.output_shape(layer)[2:]
    resized_inputs = layer.inputs[:-1] if layer.params.have_reference else layer.inputs
    nodes, parts = [], []
    for index, value in enumerate(resized_inputs):
        source = ctx.value(value)
        if ctx.shape(value)[2:] == size:
            parts.append(source)    # Caffe's interpolation at the same size gives every pixel back
            continue
        resized = ctx.tensor(layer, f"resized{index}")
        nodes += resize_aligned(layer, ctx, source, size, resized, f"resize{index}")
        parts.append(resized)
    output = ctx.value(layer.outputs[0])
    if len(parts) == 1:
        return nodes + [ctx.node("Identity", parts, [output], layer)]
    return nodes + [ctx.node("Concat", parts, [output], layer, axis=1)]


@onnx_converter("Upsample")
def upsample(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: Upsample = layer.params
    return max_unpool(layer, ctx) if p.unpool else nearest_upsample(layer, ctx)


def nearest_upsample(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Each pixel repeated scale x scale times: (..., H, 1, W, 1) expanded to (..., H, s, W, s)."""
    p: Upsample = layer.params
    x = ctx.input_shape(layer)
    source, output = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    if p.scale == 1:
        return [ctx.node("Identity", [source], [output], layer)]
    nodes, spread = ctx.reshape(layer, "spread", source, (*x[:-2], x[-2], 1, x[-1], 1))
    repeated = ctx.tensor(layer, "repeated")
    nodes.append(ctx.node("Expand", [spread, ctx.ints(layer, "repeats", [1] * (len(x) - 2) + [1, p.scale, 1, p.scale])],
                          [repeated], layer, "repeat"))
    more, _ = ctx.reshape(layer, "merge", repeated, ctx.output_shape(layer), output)
    return nodes + more


def max_unpool(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """SegNet: out[n, c, mask[n, c, i]] = x[n, c, i] on a zero plane of the output size. Where masks can
    repeat a position (overlapping pooling windows, or a mask that is not a pooling's), Caffe's later i wins:
    the winner per position is found with a max-scatter of i + 1, then gathered."""
    x, y = ctx.input_shape(layer), ctx.output_shape(layer)
    n, c, h, w = x
    plane = y[2] * y[3]
    nodes, flat = ctx.reshape(layer, "flat", ctx.value(layer.inputs[0]), (n, c, h * w))
    more, flat_mask = ctx.reshape(layer, "flat_mask", ctx.value(layer.inputs[1]), (n, c, h * w))
    nodes += more
    indices = ctx.tensor(layer, "indices")
    nodes.append(ctx.node("Cast", [flat_mask], [indices], layer, "indices", to=TensorProto.INT64))
    shape = ctx.tensor(layer, "flat_shape")
    nodes += [ctx.node("Shape", [flat], [shape], layer, "flat_shape")]
    out_shape = ctx.tensor(layer, "out_shape")
    nodes.append(ctx.node("Concat", [leading_dims(layer, ctx, nodes, shape), ctx.ints(layer, "plane", [plane])],
                          [out_shape], layer, "out_shape", axis=0))
    scattered = ctx.tensor(layer, "scattered")
    if unique_positions(layer, ctx):
        zeros = ctx.tensor(layer, "zeros")
        nodes += [_constant_of_shape(layer, ctx, out_shape, zeros, TensorProto.FLOAT, "zeros"),
                  ctx.node("ScatterElements", [zeros, indices, flat], [scattered], layer, "scatter", axis=2)]
    else:
        if ctx.opset < 18:
            raise UnsupportedError("Upsample with a mask that may name a position twice needs ONNX opset 18 "
                                   "(ScatterElements reduction='max') to keep Caffe's last-write-wins order",
                                   layer=layer, where=layer.where, expected="--opset 18 or later", found=ctx.opset)
        nodes += last_writer_gather(layer, ctx, flat, indices, shape, out_shape, h * w, scattered)
    more, _ = ctx.reshape(layer, "unflatten", scattered, y, ctx.value(layer.outputs[0]))
    return nodes + more


def leading_dims(layer: Layer, ctx: OnnxContext, nodes: list, shape: str) -> str:
    """The first two entries (N, C) of a Shape output, appending the node that takes them."""
    leading = ctx.tensor(layer, "leading")
    nodes.append(ctx.node("Slice", [shape, ctx.ints(layer, "leading_start", [0]), ctx.ints(layer, "leading_end", [2])],
                          [leading], layer, "leading"))
    return leading


def _constant_of_shape(layer: Layer, ctx: OnnxContext, shape: str, output: str, dtype: int, what: str
                       ) -> NodeProto:
    return ctx.node("ConstantOfShape", [shape], [output], layer, what,
                    value=make_tensor("value", dtype, [1], [0]))


def last_writer_gather(layer: Layer, ctx: OnnxContext, flat: str, indices: str, shape: str, out_shape: str,
                       count: int, output: str) -> list[NodeProto]:
    """output[p] = flat[i] for the largest i with indices[i] == p, else 0."""
    names = {what: ctx.tensor(layer, what) for what in ("order", "no_writer", "writer", "written", "source",
                                                        "clamped", "gathered")}
    zero = ctx.initializer(layer, "zero", np.asarray(0), dtype=np.int64)
    return [
        ctx.node("Expand", [ctx.initializer(layer, "order_values", np.arange(1, count + 1).reshape(1, 1, count),
                                            dtype=np.int64), shape], [names["order"]], layer, "order"),
        _constant_of_shape(layer, ctx, out_shape, names["no_writer"], TensorProto.INT64, "no_writer"),
        ctx.node("ScatterElements", [names["no_writer"], indices, names["order"]], [names["writer"]], layer,
                 "writer", axis=2, reduction="max"),
        ctx.node("Greater", [names["writer"], zero], [names["written"]], layer, "written"),
        ctx.node("Sub", [names["writer"], ctx.initializer(layer, "one", np.asarray(1), dtype=np.int64)],
                 [names["source"]], layer, "source"),
        ctx.node("Where", [names["written"], names["source"], zero], [names["clamped"]], layer, "clamp"),
        ctx.node("GatherElements", [flat, names["clamped"]], [names["gathered"]], layer, "gather", axis=2),
        ctx.node("Where", [names["written"], names["gathered"], ctx.scalar(layer, "empty", 0.0)], [output], layer,
                 "select"),
    ]


def unique_positions(layer: Layer, ctx: OnnxContext) -> bool:
    """Whether the mask cannot name a position twice: it is the mask of a MAX pooling whose windows do not
    overlap (kernel <= stride on both axes), each of which reports one position inside itself."""
    producer = ctx.net.producer(layer.inputs[1])
    if producer is None or producer.type != "Pooling" or layer.inputs[1] != producer.outputs[-1]:
        return False
    p = producer.params
    return p.with_mask and all(k <= s for k, s in zip(p.kernel, p.stride))


@onnx_converter("Resample")
def resample(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """FlowNet 2's resampling is separable: rows then columns, each a matrix product with the normalised
    filter weights (one-hot rows for NEAREST)."""
    p: Resample = layer.params
    rows, columns = p.axis_weights(ctx.input_shape(layer))
    resized_rows = ctx.tensor(layer, "rows")
    return [ctx.node("MatMul", [ctx.initializer(layer, "row_weights", rows), ctx.value(layer.inputs[0])], [resized_rows],
                     layer, "rows"),
            ctx.node("MatMul", [resized_rows, ctx.initializer(layer, "column_weights", columns.T)],
                     [ctx.value(layer.outputs[0])], layer)]
