"""Resizing layers from the forks: Interp, Upsample and Accum."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from protodef.ir import Layer
from protodef.layers.resize import Accum, Interp, Upsample
from protodef.symbolic import is_static

from .modules import resize as modules
from .registry import Lowered, Step, TorchContext, torch_converter, with_weights


@torch_converter("Interp")
def interp(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Interp = layer.params
    x = ctx.input_shape(layer)
    if not (is_static(x) and is_static(p.size)):
        return symbolic_interp(p, x)
    return ctx.module(modules.AlignedResize, list(p.size), list(p.crop))


def symbolic_interp(p: Interp, x: tuple) -> list[Step]:
    """AlignedResize's steps where the sizes are symbolic: crop, then bilinear with aligned corners (equal to
    the forks' interp.cpp, and the identity at the same size)."""
    begin, end = p.crop
    steps = [Step("narrow", (axis, begin, x[axis] - begin - end)) for axis in (2, 3) if begin or end]
    return steps + [Step(F.interpolate, kwargs={"size": list(p.size), "mode": "bilinear", "align_corners": True})]


@torch_converter("Accum")
def accum(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Accum = layer.params
    return Step(ctx.module(modules.Accum, list(p.size), p.have_reference), packed=True)


@torch_converter("Upsample")
def upsample(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Upsample = layer.params
    if p.unpool and not is_static(p.size):
        # SegNet's unpooling at a size known at run time: the same module, its size given with the inputs.
        return Step(ctx.module(modules.MaxUnpool, [0, 0]), (*p.size,))
    if p.unpool:
        return ctx.module(modules.MaxUnpool, list(p.size))
    if p.scale == 1:
        return None
    # MobileNet-YOLO's nearest form: each pixel repeated scale times along H, then along W.
    return [Step("repeat_interleave", (p.scale,), {"dim": -2}), Step("repeat_interleave", (p.scale,), {"dim": -1})]


@torch_converter("Resample")
def resample(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    rows, columns = p.axis_weights(ctx.input_shape(layer))
    module = ctx.module(modules.Resample, *rows.shape, *columns.shape)
    return with_weights(module, layer, rows=rows, columns=columns)
