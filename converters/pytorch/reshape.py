"""Reshape family: Split (the identity), Slice, Flatten, Reshape and Crop."""
from __future__ import annotations

import torch
from torch import nn

from protodef.ir import Layer
from protodef.layers.reshape import ShuffleChannel, Tile
from protodef.symbolic import is_static

from .modules import reshape as modules
from .registry import Lowered, Step, TorchContext, torch_converter


@torch_converter("Split")
def split(layer: Layer, ctx: TorchContext) -> Lowered:
    """Every output is the input (passes normally remove Split before lowering)."""
    return None


@torch_converter("Slice")
def slice_layer(layer: Layer, ctx: TorchContext) -> Step:
    p = layer.params
    sizes = [b - a for a, b in zip(p.points, p.points[1:])]
    return Step(torch.split, (sizes, p.axis))


@torch_converter("Flatten")
def flatten(layer: Layer, ctx: TorchContext) -> Step:
    p = layer.params
    return Step(torch.flatten, (p.axis, p.end_axis))


@torch_converter("Reshape")
def reshape(layer: Layer, ctx: TorchContext) -> Step:
    """The IR's output shape, with the batch left to torch (-1) where the reshape keeps axis 0 or infers the
    axis that absorbs it, so the module runs at any batch size."""
    p = layer.params
    target = list(ctx.output_shape(layer))
    keeps_batch = p.axis > 0 or (p.num_axes > 0 and p.dims and p.dims[0] == 0)
    if keeps_batch:
        target[0] = -1
    elif -1 in p.dims and p.axis == 0:
        target[p.dims.index(-1)] = -1
    return Step("reshape", (tuple(target),))


@torch_converter("Crop")
def crop(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    if not is_static(ctx.input_shape(layer)):
        return ctx.module(modules.SelectedCrop, p.axis, list(p.offsets))
    return ctx.module(modules.Crop, p.axis, list(p.offsets))


@torch_converter("Flip")
def flip(layer: Layer, ctx: TorchContext) -> Lowered:
    axes = list(layer.params.axes)
    return Step(torch.flip, (axes,)) if axes else None


@torch_converter("BatchReindex")
def batch_reindex(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(modules.BatchReindex)


@torch_converter("Tile")
def tile(layer: Layer, ctx: TorchContext) -> Lowered:
    """Tensor.repeat is numpy.tile: the block of axes from `axis` on, `tiles` times."""
    p: Tile = layer.params
    repeats = [1] * len(ctx.input_shape(layer))
    repeats[p.axis] = p.tiles
    return Step("repeat", tuple(repeats))


@torch_converter("ShuffleChannel")
def shuffle_channel(layer: Layer, ctx: TorchContext) -> Lowered:
    p: ShuffleChannel = layer.params
    return ctx.module(modules.ShuffleChannel, p.group)
