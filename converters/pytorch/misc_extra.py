"""Parameter, Embed, Tile, Reduction, ShuffleChannel, Axpy and Correlation."""
from __future__ import annotations

import operator

import torch

from protodef.ir import Layer
from protodef.layers.misc import Correlation, Embed, Parameter, Reduction, ShuffleChannel, Tile

from . import longtail_modules as modules
from .registry import Lowered, Step, TorchContext, blobs, torch_converter, with_weights


@torch_converter("Parameter")
def parameter(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Parameter = layer.params
    return with_weights(ctx.module(modules.Blob, list(p.shape)), layer, weight=blobs(layer, 1)[0])


@torch_converter("Embed")
def embed(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Embed = layer.params
    module = ctx.module(modules.Embed, p.input_dim, p.num_output, p.bias_term)
    weights = blobs(layer, 2 if p.bias_term else 1)
    return with_weights(module, layer, weight=weights[0], **({"bias": weights[1]} if p.bias_term else {}))


@torch_converter("Tile")
def tile(layer: Layer, ctx: TorchContext) -> Lowered:
    """Tensor.repeat is numpy.tile: the block of axes from `axis` on, `tiles` times."""
    p: Tile = layer.params
    repeats = [1] * len(ctx.input_shape(layer))
    repeats[p.axis] = p.tiles
    return Step("repeat", tuple(repeats))


_TERMS = {"SUM": [], "MEAN": [], "ASUM": [Step(torch.abs)], "SUMSQ": [Step(torch.square)]}


@torch_converter("Reduction")
def reduction(layer: Layer, ctx: TorchContext) -> Lowered:
    """The sum over every axis from `axis` on (of x, |x| or x^2), times coeff (coeff / count for MEAN)."""
    p: Reduction = layer.params
    x = ctx.input_shape(layer)
    steps = _TERMS[p.operation] + [Step(torch.sum, (list(range(p.axis, len(x))),))]
    factor = p.scale(x)
    return steps + [Step(operator.mul, (factor,))] if factor != 1 else steps


@torch_converter("ShuffleChannel")
def shuffle_channel(layer: Layer, ctx: TorchContext) -> Lowered:
    p: ShuffleChannel = layer.params
    return ctx.module(modules.ShuffleChannel, p.group)


@torch_converter("Axpy")
def axpy(layer: Layer, ctx: TorchContext) -> Lowered:
    return ctx.module(modules.Axpy)


@torch_converter("Correlation")
def correlation(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Correlation = layer.params
    return ctx.module(modules.Correlation, p.kernel_size, p.max_displacement, p.pad, p.stride_1,
                      [list(d) for d in p.displacements()], p.subtract)
