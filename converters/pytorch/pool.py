"""Pooling family: nn.MaxPool2d / nn.AvgPool2d where they equal Caffe's pooling, our modules where not.

torch's pooling equals Caffe's (pooling_layer.cpp) whenever torch accepts the parameters and gives the same
output size: both clip the last window to the input (MAX) or divide by the window clipped to the padded
input (AVE with count_include_pad). They part in two places: torch refuses padding over half the kernel, and
torch drops a last window that starts in the padding even when there is none, where Caffe keeps a window that
starts past the input (only with stride > kernel) and fills it with -FLT_MAX or divides by a size <= 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from protodef.errors import UnsupportedError
from protodef.ir import Layer
from protodef.layers.pool import SPP, ROIPooling
from protodef.sizes import needs_fixed_error
from protodef.symbolic import INF, bounds, is_static, maximum, names_in

from .modules import pool as modules
from .registry import Lowered, Step, TorchContext, torch_converter


@torch_converter("Pooling")
def pooling(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    x = ctx.input_shape(layer)
    out = p.output_shape(x)
    if p.method == "STOCHASTIC":
        return ctx.module(modules.StochasticPool2d, list(p.kernel), list(p.stride), list(x[2:]), list(out[2:]))
    if p.is_global and not p.with_mask:
        # Shape-flexible and the same arithmetic: the max, or the sum over H * W divided by H * W.
        return ctx.module(nn.AdaptiveMaxPool2d if p.method == "MAX" else nn.AdaptiveAvgPool2d, 1)
    if not is_static(x):
        return symbolic_pooling(layer, ctx)
    fits = torch_pooled_size(p, x) == tuple(out[2:])
    if p.with_mask:
        if not fits:
            raise UnsupportedError("MAX pooling with a mask output and these parameters has no PyTorch equivalent "
                                   "(torch's pooling gives another size or refuses the padding)", layer=layer,
                                   where=layer.where, expected=out[2:], found=torch_pooled_size(p, x))
        return ctx.module(modules.MaxPool2dWithMask, list(p.kernel), list(p.stride), list(p.pad), p.ceil_mode)
    if fits and p.method == "MAX":
        return ctx.module(nn.MaxPool2d, kernel_size=p.kernel, stride=p.stride, padding=p.pad, ceil_mode=p.ceil_mode)
    if fits:
        return ctx.module(nn.AvgPool2d, kernel_size=p.kernel, stride=p.stride, padding=p.pad, ceil_mode=p.ceil_mode,
                          count_include_pad=True)
    for size, o, s, pad in zip(x[2:], out[2:], p.stride, p.pad):
        if (o - 1) * s - pad >= size:
            raise UnsupportedError("Caffe's last pooling window starts past the input here (stride larger than "
                                   "the kernel and no padding), where Caffe's own output is -FLT_MAX or a "
                                   "division by a window size <= 0", layer=layer, where=layer.where,
                                   expected="windows that start inside the input", found=f"window at {o - 1}")
    cls = modules.CaffeMaxPool2d if p.method == "MAX" else modules.CaffeAvgPool2d
    return ctx.module(cls, list(p.kernel), list(p.stride), list(p.pad), list(x[2:]), list(out[2:]))


def symbolic_pooling(layer: Layer, ctx: TorchContext) -> Step:
    """Sizes known only at run time: the input is padded as far as Caffe's windows reach at any size, pooled
    without rounding, and Caffe's count of windows kept, computed in the graph from the IR's sizes. torch's
    own ceil mode, or padding that depends on the size, would branch on it: guards for torch.export."""
    p = layer.params
    x = ctx.input_shape(layer)
    if p.method == "STOCHASTIC":
        raise needs_fixed_error(names_in(x), "STOCHASTIC pooling")
    out = p.output_shape(x)[2:]
    reach = [maximum(0, (o - 1) * s + k - size - pad) for size, o, k, s, pad in zip(x[2:], out, p.kernel, p.stride,
                                                                                     p.pad)]
    end_padding = [bounds(end)[1] for end in reach]
    if INF in end_padding:
        raise needs_fixed_error(names_in(x), "pooling whose last window can reach arbitrarily far")
    if p.method == "MAX":
        module = ctx.module(modules.PaddedMaxPool2d, list(p.kernel), list(p.stride), list(p.pad),
                            end_padding, p.with_mask)
    else:
        module = ctx.module(modules.PaddedAvgPool2d, list(p.kernel), list(p.stride), list(p.pad),
                            end_padding)
    return Step(module, tuple(out))


def torch_pooled_size(p, x: tuple[int, ...]) -> tuple[int, ...] | None:
    """The output size torch's pooling gives for these parameters (None where torch refuses them), asked of
    torch itself on a meta tensor so that it is torch's rule whatever the version."""
    pool = F.max_pool2d if p.method == "MAX" else F.avg_pool2d
    try:
        y = pool(torch.empty(x, device="meta"), p.kernel, p.stride, p.pad, ceil_mode=p.ceil_mode)
    except (RuntimeError, ValueError):
        return None
    return tuple(y.shape[2:])


@torch_converter("PSROIPooling")
def psroi_pooling(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    return ctx.module(modules.PSROIPool, p.output_dim, p.group_size, p.spatial_scale)


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
