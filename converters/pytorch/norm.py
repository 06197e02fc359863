"""Normalisation family: BatchNorm (with the Scale after it) as nn.BatchNorm*d, Scale, Bias, LRN, and
protodef's ChannelAffine (what the folding passes leave of BatchNorm and Scale)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from protodef.errors import UnsupportedError
from protodef.ir import Layer
from protodef.layers.norm import NORM_L2_EPS
from protodef.passes.batchnorm_scale_to_affine import scale_affine

from . import census_modules, modules
from .registry import Lowered, Step, TorchContext, blobs, torch_converter, with_weights

_BATCHNORM = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}

# Caffe's moving_average_fraction (0.999) would make torch's momentum 0.001, which all but freezes the
# statistics; fine-tuning usually wants them to follow the new data, as torch's default does.
FINE_TUNING_MOMENTUM = 0.1


@torch_converter("BatchNorm")
def batch_norm(layer: Layer, ctx: TorchContext) -> nn.Module:
    """Caffe batch_norm_layer.cpp: running mean = blobs[0] / s and variance = blobs[1] / s, s = blobs[2][0]
    (0 makes the factor 0). A Scale of the channel axis that alone reads the result becomes the affine
    weight and bias, so the pair trains as one torch BatchNorm. use_global_stats false (Caffe normalises by
    each batch's statistics, also at test time) gives a BatchNorm that tracks no statistics."""
    p = layer.params
    rank = len(ctx.input_shape(layer))
    if rank not in _BATCHNORM:
        raise UnsupportedError("BatchNorm over this many axes has no torch module", layer=layer, where=layer.where,
                               expected="2 to 5 axes", found=ctx.input_shape(layer))
    following = ctx.sole_reader(layer)
    affine = None
    if following is not None and following.type == "Scale":
        affine = scale_affine(ctx.net, following)
    module = ctx.module(_BATCHNORM[rank], p.channels, eps=p.eps, momentum=FINE_TUNING_MOMENTUM,
                        affine=affine is not None, track_running_stats=p.use_global_stats)
    if affine is not None:
        ctx.absorb(following, into=layer)
        with_weights(module, layer, weight=affine[0], bias=affine[1])
    if not p.use_global_stats:
        return module
    mean, variance = p.statistics(blobs(layer, 3))
    return with_weights(module, layer, running_mean=mean, running_var=variance)


@torch_converter("ChannelAffine")
def channel_affine(layer: Layer, ctx: TorchContext) -> nn.Module:
    """y = x * scale[c] + shift[c] on axis 1: a Scale module with weight and bias."""
    rank = len(ctx.input_shape(layer))
    channels = layer.params.channels
    scale, shift = blobs(layer, 2)
    module = ctx.module(modules.Scale, [channels], rank - 2)
    return with_weights(module, layer, weight=scale, bias=shift)


@torch_converter("Scale")
def scale(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    trailing = p.trailing_axes(len(ctx.input_shape(layer)))
    if p.two_inputs:
        module = ctx.module(modules.ScaleByInput, trailing, list(p.param_shape) if p.bias_term else None)
        return with_weights(module, layer, bias=blobs(layer, 1)[0]) if p.bias_term else module
    module = ctx.module(modules.Scale, list(p.param_shape), trailing, p.bias_term)
    weights = blobs(layer, 2 if p.bias_term else 1)
    arrays = {"weight": weights[0], **({"bias": weights[1]} if p.bias_term else {})}
    return with_weights(module, layer, **arrays)


@torch_converter("Bias")
def bias(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    trailing = p.trailing_axes(len(ctx.input_shape(layer)))
    if p.two_inputs:
        return ctx.module(modules.BiasByInput, trailing)
    module = ctx.module(modules.Bias, list(p.param_shape), trailing)
    return with_weights(module, layer, bias=blobs(layer, 1)[0])


@torch_converter("LRN")
def lrn(layer: Layer, ctx: TorchContext) -> nn.Module:
    """ACROSS_CHANNELS: Caffe's x * (k + alpha/n * sum of x^2 over n channels, zero-padded)^-beta is
    LocalResponseNorm's x / (k + alpha * mean of the same)^beta for odd n (the IR requires odd n)."""
    p = layer.params
    if p.region == "WITHIN_CHANNEL":
        return ctx.module(modules.WithinChannelLRN, p.local_size, p.alpha, p.beta)
    return ctx.module(nn.LocalResponseNorm, p.local_size, alpha=p.alpha, beta=p.beta, k=p.k)


@torch_converter("ChannelNorm")
def channel_norm(layer: Layer, ctx: TorchContext) -> Lowered:
    """sqrt(sum over channels of x^2), keeping the channel axis."""
    return [Step(torch.square), Step(torch.sum, (1,), {"keepdim": True}), Step(torch.sqrt)]


@torch_converter("NormL2")
def norm_l2(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(census_modules.NormL2, NORM_L2_EPS)
