"""Reductions: ReduceMean/ReduceMax over H and W are global pooling (what OpenCV reads too); a mean, sum, sum
of squares or of absolute values over trailing axes is Caffe's Reduction."""
from __future__ import annotations

import onnx

from .pool import pool_input, pooling_layer
from .registry import CaffeLayer, ExportContext, attributes, caffe_converter
from .reshape import reshape_layer

_POOLED = {"ReduceMean": "AVE", "ReduceMax": "MAX"}
_REDUCTION = {"ReduceMean": "MEAN", "ReduceSum": "SUM", "ReduceSumSquare": "SUMSQ", "ReduceL1": "ASUM"}


def reduced_axes(node: onnx.NodeProto, ctx: ExportContext, rank: int) -> list[int] | None:
    """The sorted axes reduced; None when there are none (noop_with_empty_axes)."""
    attrs = attributes(node)
    if "axes" in attrs:
        return sorted(int(a) % rank for a in attrs["axes"])
    given = ctx.optional_constant(node, 1, "the axes")
    if given is None or not given.size:
        return None if attrs.get("noop_with_empty_axes", 0) else list(range(rank))
    return sorted(int(a) % rank for a in given.reshape(-1))


@caffe_converter("ReduceMean", "ReduceMax", "ReduceSum", "ReduceSumSquare", "ReduceL1")
def reduce(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    x, y = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    axes = reduced_axes(node, ctx, len(x))
    if axes is None:
        ctx.alias(node.output[0], ctx.blob(node.input[0]))
        return []
    if node.op_type in _POOLED and len(x) == 4 and axes == [2, 3]:
        return spatial_pooling(node, ctx, x, y)
    if node.op_type in _REDUCTION and axes == list(range(axes[0], len(x))):
        return trailing_reduction(node, ctx, x, y, axes[0])
    raise ctx.refuse(node, f"{node.op_type} is exported over H and W of a 4-D tensor (global pooling) or, for "
                           "a mean or sum, over the last axes (Reduction)", found=f"axes {axes} of {x}")


def spatial_pooling(node: onnx.NodeProto, ctx: ExportContext, x: tuple[int, ...], y: tuple[int, ...]
                    ) -> list[CaffeLayer]:
    """Global pooling, then a Flatten when the axes are dropped."""
    pool_input(ctx, node, node.input[0])
    keep = len(y) == 4
    pooled = node.output[0] if keep else ctx.intermediate(node, "pooled")
    layer = pooling_layer(ctx, node, node.input[0], pooled, _POOLED[node.op_type])
    layer.proto.pooling_param.global_pooling = True
    if keep:
        return [layer]
    return [layer, reshape_layer(ctx, node, pooled, node.output[0], y, input_shape=(*x[:2], 1, 1), what="flatten")]


def trailing_reduction(node: onnx.NodeProto, ctx: ExportContext, x: tuple[int, ...], y: tuple[int, ...],
                       axis: int) -> list[CaffeLayer]:
    """Caffe reduction_layer.cpp: reduces every axis from `axis` on, leaving shape x[:axis]."""
    reduced = tuple(x[:axis])
    top = node.output[0] if y == reduced else ctx.intermediate(node, "reduced")
    layer = ctx.layer(node, "Reduction", [ctx.blob(node.input[0])], [top])
    p = layer.proto.reduction_param
    p.operation = getattr(p, _REDUCTION[node.op_type])
    if axis:
        p.axis = axis
    if y == reduced:
        return [layer]
    return [layer, reshape_layer(ctx, node, top, node.output[0], y, input_shape=reduced, what="keepdims")]
