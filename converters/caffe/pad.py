"""Pad: Caffe has no padding layer, so a Pad is taken in by the Conv or pooling that reads it."""
from __future__ import annotations

import numpy as np
import onnx

from .registry import CaffeLayer, ExportContext, attributes, caffe_converter, node_label

PAD_READERS = frozenset({"Conv", "MaxPool", "AveragePool"})


def pad_amounts(node: onnx.NodeProto, ctx: ExportContext) -> tuple[list[int], list[int], float]:
    """(begins, ends) over every axis and the fill value of a constant-mode Pad, from attributes (opset < 11)
    or inputs."""
    attrs = attributes(node)
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise ctx.refuse(node, f"'{mode}' padding has no Caffe form (Caffe pads with zeros only)")
    rank = len(ctx.shape(node.input[0]))
    if "pads" in attrs:
        pads, fill = list(attrs["pads"]), float(attrs.get("value", 0.0))
        axes = list(range(rank))
    else:
        pads = [int(p) for p in ctx.constant(node, 1, "the pads").reshape(-1)]
        value = ctx.optional_constant(node, 2, "the fill value")
        fill = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0])
        axes_value = ctx.optional_constant(node, 3, "the axes")
        axes = list(range(rank)) if axes_value is None else [int(a) % rank for a in axes_value.reshape(-1)]
    begins, ends = [0] * rank, [0] * rank
    for axis, begin, end in zip(axes, pads[:len(axes)], pads[len(axes):]):
        begins[axis], ends[axis] = begin, end
    return begins, ends, fill


@caffe_converter("Pad")
def pad(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    begins, ends, _ = pad_amounts(node, ctx)
    readers = ctx.readers(node.output[0])
    if node.output[0] in ctx.graph.outputs or not readers or any(r.op_type not in PAD_READERS for r in readers):
        raise ctx.refuse(node, "Caffe has no padding layer; a Pad is exported only when every node reading it is "
                               "a Conv, MaxPool or AveragePool, which take the padding in",
                         found=", ".join(sorted({r.op_type for r in readers})) or "a graph output")
    if len(begins) != 4 or any(begins[:2]) or any(ends[:2]) or min(begins + ends) < 0:
        raise ctx.refuse(node, "only non-negative padding of the two spatial axes of a 4-D tensor can be taken "
                               "into a Caffe layer", found=(*begins, *ends))
    ctx.defer(node)
    return []


def padded_input(ctx: ExportContext, node: onnx.NodeProto, fill_ok) -> tuple[str, tuple[tuple[int, int], ...]]:
    """(the value `node` really reads, explicit (begin, end) padding per spatial axis) looking back through a
    Pad it takes in; `fill_ok(fill)` says whether that Pad's value pads as the op needs."""
    value = node.input[0]
    producer = ctx.producer(value)
    if producer is None or producer.op_type != "Pad" or not ctx.deferred(value):
        return value, ((0, 0),) * (len(ctx.shape(value)) - 2)
    begins, ends, fill = pad_amounts(producer, ctx)
    if not fill_ok(fill):
        raise ctx.refuse(node, f"reads a Pad (node '{node_label(producer)}') that fills with {fill:g}, which "
                               "this op's Caffe form cannot reproduce")
    return producer.input[0], tuple(zip(begins[2:], ends[2:]))
