"""MVN and the forks' BN layer."""
from __future__ import annotations

import numpy as np
from torch import nn

from protodef.ir import Layer
from protodef.layers.norm_extra import BN, MVN

from . import longtail_modules
from . import modules
from .registry import Lowered, TorchContext, blobs, torch_converter, with_weights


@torch_converter("MVN")
def mvn(layer: Layer, ctx: TorchContext) -> Lowered:
    p: MVN = layer.params
    return ctx.module(longtail_modules.MVN, list(p.axes), p.normalize_variance, p.eps)


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
            module = ctx.module(longtail_modules.SegNetBatchNorm, channels, p.eps)
            return with_weights(module, layer, weight=scale.reshape(1, channels, 1, 1),
                                bias=shift.reshape(1, channels, 1, 1))
        return with_weights(ctx.module(modules.Scale, [channels], 2), layer, weight=scale, bias=shift)
    slope, bias, mean, variance = (np.asarray(w).reshape(channels) for w in blobs(layer, 4))
    module = ctx.module(nn.BatchNorm2d, channels, eps=p.eps, track_running_stats=not p.batch_statistics)
    if p.batch_statistics:
        return with_weights(module, layer, weight=slope, bias=bias)
    return with_weights(module, layer, weight=slope, bias=bias, running_mean=mean, running_var=variance)
