"""SPP and ROIPooling."""
from __future__ import annotations

from protodef.ir import Layer
from protodef.layers.pool_extra import ROIPooling, SPP

from . import longtail_modules as modules
from .registry import Lowered, TorchContext, torch_converter


@torch_converter("SPP")
def spp(layer: Layer, ctx: TorchContext) -> Lowered:
    p: SPP = layer.params
    x = ctx.input_shape(layer)
    return ctx.module(modules.SpatialPyramidPool, p.method, [list(level.kernel) for level in p.levels],
                      [list(level.pad) for level in p.levels], list(x[2:]),
                      [list(level.output_shape(x)[2:]) for level in p.levels])


@torch_converter("ROIPooling")
def roi_pooling(layer: Layer, ctx: TorchContext) -> Lowered:
    p: ROIPooling = layer.params
    return ctx.module(modules.ROIPool, list(p.pooled), p.spatial_scale)
