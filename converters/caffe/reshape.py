"""Reshape family: Flatten, Reshape, Squeeze, Unsqueeze, Transpose, Concat, Split and Slice (data moved or
cut, never computed)."""
from __future__ import annotations

import math

import numpy as np
import onnx

from .crop import keep_ranges
from .registry import CaffeLayer, ExportContext, attributes, caffe_converter


def merged_axes(x: tuple[int, ...], y: tuple[int, ...]) -> tuple[int, int] | None:
    """(axis, end_axis) when `y` is `x` with axes axis..end_axis merged into one (Caffe's Flatten)."""
    for axis in range(len(x)):
        for end in range(axis + 1, len(x)):
            if y == (*x[:axis], math.prod(x[axis:end + 1]), *x[end + 1:]):
                return axis, end
    return None


def reshape_layer(ctx: ExportContext, node: onnx.NodeProto, source: str, top: str, shape: tuple[int, ...], *,
                  input_shape: tuple[int, ...] | None = None, what: str | None = None) -> CaffeLayer:
    """Flatten when `shape` merges consecutive axes of the input, else Reshape to the explicit shape (axis 0
    written as 0, "copy", when it is the input's, so the batch size can still be changed in the Input)."""
    merged = merged_axes(input_shape, tuple(shape)) if input_shape is not None else None
    if merged is not None:
        layer = ctx.layer(node, "Flatten", [source], [top], what=what)
        axis, end = merged
        if axis != 1:
            layer.proto.flatten_param.axis = axis
        if end != len(input_shape) - 1:
            layer.proto.flatten_param.end_axis = end
        return layer
    layer = ctx.layer(node, "Reshape", [source], [top], what=what)
    dims = list(shape)
    if input_shape and dims and dims[0] == input_shape[0] and len(dims) > 1:
        dims[0] = 0
    layer.proto.reshape_param.shape.dim.extend(dims)
    return layer


@caffe_converter("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def reshape(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """Every reshaping op is a Reshape (or Flatten) to the shape ONNX infers, the identity when it is the same."""
    x, y = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    source = ctx.blob(node.input[0])
    if x == y:
        ctx.alias(node.output[0], source)
        return []
    return [reshape_layer(ctx, node, source, node.output[0], y, input_shape=x)]


@caffe_converter("Transpose")
def transpose(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """A transpose that moves only axes of size 1 is a reshape; any other is Permute (SSD and forks)."""
    x, y = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    perm = list(attributes(node).get("perm", reversed(range(len(x)))))
    source = ctx.blob(node.input[0])
    if [axis for axis in perm if x[axis] != 1] == [axis for axis in range(len(x)) if x[axis] != 1]:
        if x == y:
            ctx.alias(node.output[0], source)
            return []
        return [reshape_layer(ctx, node, source, node.output[0], y, input_shape=x)]
    ctx.require(node, "Permute", "a transpose that reorders data")
    layer = ctx.layer(node, "Permute", [source], [node.output[0]])
    layer.proto.permute_param.order.extend(perm)
    return [layer]


@caffe_converter("Concat")
def concat(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    inputs = [value for value in node.input if value]
    if any(ctx.is_constant(value) for value in inputs):
        raise ctx.refuse(node, "a constant input to Concat has no Caffe form (Caffe concatenates blobs)")
    axis = int(attributes(node)["axis"]) % len(ctx.shape(node.output[0]))
    if len(inputs) == 1:
        ctx.alias(node.output[0], ctx.blob(inputs[0]))
        return []
    layer = ctx.layer(node, "Concat", [ctx.blob(value) for value in inputs], [node.output[0]])
    if axis != 1:
        layer.proto.concat_param.axis = axis
    return [layer]


@caffe_converter("Split")
def split(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """Caffe's Slice at the boundaries ONNX's output shapes give; unread pieces go to a Silence."""
    x = ctx.shape(node.input[0])
    axis = int(attributes(node).get("axis", 0)) % len(x)
    source = ctx.blob(node.input[0])
    if len(node.output) == 1:
        ctx.alias(node.output[0], source)
        return []
    sizes = [ctx.shape(value)[axis] for value in node.output]
    tops = [value if value else ctx.intermediate(node, f"piece{index}") for index, value in enumerate(node.output)]
    layer = ctx.layer(node, "Slice", [source], tops)
    layer.proto.slice_param.axis = axis
    layer.proto.slice_param.slice_point.extend(int(p) for p in np.cumsum(sizes)[:-1])
    unread = [top for top, value in zip(tops, node.output)
              if not value or (not ctx.readers(value) and value not in ctx.graph.outputs)]
    return [layer] + ([ctx.layer(node, "Silence", unread, [], what="silence")] if unread else [])


def slice_ranges(node: onnx.NodeProto, ctx: ExportContext, x: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """{axis: (start, stop)} of an ONNX Slice, clamped as ONNX clamps; steps other than 1 are refused."""
    attrs = attributes(node)
    if "starts" in attrs:   # opset < 10
        starts, ends = attrs["starts"], attrs["ends"]
        axes, steps = attrs.get("axes", range(len(starts))), [1] * len(starts)
    else:
        starts = ctx.constant(node, 1, "the starts").reshape(-1).tolist()
        ends = ctx.constant(node, 2, "the ends").reshape(-1).tolist()
        given_axes = ctx.optional_constant(node, 3, "the axes")
        given_steps = ctx.optional_constant(node, 4, "the steps")
        axes = range(len(starts)) if given_axes is None else given_axes.reshape(-1).tolist()
        steps = [1] * len(starts) if given_steps is None else given_steps.reshape(-1).tolist()
    ranges = {}
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = int(axis) % len(x)
        if step != 1:
            raise ctx.refuse(node, "a Slice with a step other than 1 has no Caffe form", found=step)
        size = x[axis]
        start, end = (int(v) + size if v < 0 else int(v) for v in (start, end))
        start, end = min(max(start, 0), size), min(max(end, 0), size)
        if end <= start:
            raise ctx.refuse(node, "an empty slice", found=(start, end))
        ranges[axis] = (start, end)
    return ranges


@caffe_converter("Slice")
def slice_op(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    x = ctx.shape(node.input[0])
    ranges = slice_ranges(node, ctx, x)
    source = ctx.blob(node.input[0])
    if all(ranges[axis] == (0, x[axis]) for axis in ranges):
        ctx.alias(node.output[0], source)
        return []
    return keep_ranges(ctx, node, source, x, ranges, node.output[0], what="slice")
