"""Normalisation family: BatchNorm as Caffe's (CaffeBatchNorm), Scale, Bias, LRN, and protodef's ChannelAffine
(what the folding passes leave of BatchNorm and Scale)."""
from __future__ import annotations

import operator

import numpy as np
import torch
from torch import nn

from protodef.ir import Layer
from protodef.layers.norm import BN, MVN, NORM_L2_EPS

from .modules import norm as modules
from .registry import Lowered, Step, TorchContext, blobs, torch_converter, with_weights


@torch_converter("BatchNorm")
def batch_norm(layer: Layer, ctx: TorchContext) -> nn.Module:
    """Caffe batch_norm_layer.cpp as CaffeBatchNorm, its blobs (mean, variance, scale factor) as buffers, in
    both phases: the stored statistics or the batch's, and the blobs' updates, as Caffe has them. A
    use_global_stats the prototxt leaves unset follows the module's train/eval mode, as Caffe's follows the
    phase."""
    p = layer.params
    use_global_stats = p.use_global_stats if p.use_global_stats_set else None
    module = ctx.module(modules.CaffeBatchNorm, p.channels, p.eps, p.moving_average_fraction, use_global_stats)
    mean, variance, factor = blobs(layer, 3)
    return with_weights(module, layer, mean=mean, variance=variance, scale_factor=np.asarray(factor).reshape(1))


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
    return ctx.module(modules.NormL2, NORM_L2_EPS)


@torch_converter("MVN")
def mvn(layer: Layer, ctx: TorchContext) -> Lowered:
    p: MVN = layer.params
    return ctx.module(modules.MVN, list(p.axes), p.normalize_variance, p.eps)


@torch_converter("BN")
def bn(layer: Layer, ctx: TorchContext) -> Lowered:
    """SegNet INFERENCE: x * scale + shift. SegNet LEARN: the batch's E[x^2] - mean^2 variance (its own
    module). PSPNet: nn.BatchNorm2d with slope and bias as weight and bias, holding the stored statistics,
    or tracking none (so each batch's, with E[(x - mean)^2], as PSPNet's TRAIN phase)."""
    p: BN = layer.params
    channels = p.channels
    if p.fork == "segnet":
        scale, shift = (np.asarray(w).reshape(channels) for w in blobs(layer, 2))
        if p.batch_statistics:
            module = ctx.module(modules.SegNetBatchNorm, channels, p.eps)
            return with_weights(module, layer, weight=scale.reshape(1, channels, 1, 1),
                                bias=shift.reshape(1, channels, 1, 1))
        return with_weights(ctx.module(modules.Scale, [channels], 2), layer, weight=scale, bias=shift)
    slope, bias, mean, variance = (np.asarray(w).reshape(channels) for w in blobs(layer, 4))
    module = ctx.module(nn.BatchNorm2d, channels, eps=p.eps, track_running_stats=not p.batch_statistics)
    if p.batch_statistics:
        return with_weights(module, layer, weight=slope, bias=bias)
    return with_weights(module, layer, weight=slope, bias=bias, running_mean=mean, running_var=variance)


@torch_converter("Mean")
def mean(layer: Layer, ctx: TorchContext) -> Lowered:
    """output_scale * (input_scale * x + offset[c]) for each input; one input gives one tensor."""
    p = layer.params
    module = ctx.module(modules.ChannelMean, list(p.offsets), p.input_scale, p.output_scale)
    return [Step(module, packed=True)] + ([Step(operator.getitem, (0,))] if len(layer.outputs) == 1 else [])

