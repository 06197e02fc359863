"""Keeping part of a blob along some axes: Caffe's Slice cuts it into pieces, a Silence takes the unused ones.

Slice + Silence exist in every Caffe (BVLC 1.0 included) and need no reference blob, unlike Crop.
"""
from __future__ import annotations

import onnx

from .registry import CaffeLayer, ExportContext


def keep_range(ctx: ExportContext, node: onnx.NodeProto, source: str, axis: int, start: int, stop: int,
               length: int, output: str, what: str) -> list[CaffeLayer]:
    """Layers that write `output` = `source`[start:stop] along `axis` (of `length`)."""
    points = [p for p in (start, stop) if 0 < p < length]
    tops, kept = [], None
    edges = [0, *points, length]
    for index, (a, b) in enumerate(zip(edges, edges[1:])):
        if (a, b) == (start, stop):
            kept = index
            tops.append(output)
        else:
            tops.append(ctx.intermediate(node, f"{what}_unused{index}"))
    layer = ctx.layer(node, "Slice", [source], tops, what=what)
    layer.proto.slice_param.axis = axis
    layer.proto.slice_param.slice_point.extend(points)
    unused = [top for index, top in enumerate(tops) if index != kept]
    return [layer, ctx.layer(node, "Silence", unused, [], what=f"{what}_silence")]


def keep_ranges(ctx: ExportContext, node: onnx.NodeProto, source: str, shape: tuple[int, ...],
                ranges: dict[int, tuple[int, int]], output: str, what: str = "crop") -> list[CaffeLayer]:
    """`output` = `source` cut to [start, stop) on each axis in `ranges` (one Slice per axis that changes)."""
    cuts = [(axis, start, stop) for axis, (start, stop) in sorted(ranges.items()) if (start, stop) != (0, shape[axis])]
    layers: list[CaffeLayer] = []
    for index, (axis, start, stop) in enumerate(cuts):
        last = index == len(cuts) - 1
        target = output if last else ctx.intermediate(node, f"{what}{axis}")
        layers += keep_range(ctx, node, source, axis, start, stop, shape[axis], target, f"{what}{axis}")
        source = target
    return layers
