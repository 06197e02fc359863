"""Resizing layers from the forks: Interp, Upsample and Accum."""
from __future__ import annotations

from protodef.ir import Layer
from protodef.layers.resize import Accum, Interp, Upsample

from . import longtail_modules as modules
from . import census_modules
from .registry import Lowered, Step, TorchContext, torch_converter, with_weights


@torch_converter("Interp")
def interp(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Interp = layer.params
    return ctx.module(modules.AlignedResize, list(p.size), list(p.crop))


@torch_converter("Accum")
def accum(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Accum = layer.params
    return Step(ctx.module(modules.Accum, list(p.size), p.have_reference), packed=True)


@torch_converter("Upsample")
def upsample(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Upsample = layer.params
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
    module = ctx.module(census_modules.Resample, *rows.shape, *columns.shape)
    return with_weights(module, layer, rows=rows, columns=columns)
