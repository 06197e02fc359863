"""Modules whose result depends on torch's train/eval mode as Caffe's depends on its phase: BatchNorm and Dropout.

Train mode is Caffe's TRAIN phase, eval mode its TEST phase. Like modules.py, each class depends only on torch
(generated source carries a verbatim copy) and works under torch.jit.script and torch.export.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class CaffeBatchNorm(nn.Module):
    """Caffe's BatchNorm (batch_norm_layer.cpp), no affine (the Scale after it is its own module), holding
    Caffe's three blobs as buffers: `mean` and `variance` are sums weighted by moving_average_fraction and
    `scale_factor` is their total weight, so the statistics are mean / scale_factor and variance /
    scale_factor (a factor of 0 means statistics of 0).

    With use_global_stats it normalises by those statistics; without, by the batch's own mean and biased
    variance (eps inside the square root); left unset (None) it does what Caffe's default does in the
    matching phase: the batch's statistics in train mode, the stored ones in eval mode. Every forward that
    normalises by the batch updates the blobs as Caffe's does, in either mode: scale_factor = maf *
    scale_factor + 1, mean = maf * mean + batch mean, variance = maf * variance + m / (m - 1) * batch variance,
    for m values per channel (m = 1: the variance as it is)."""

    eps: float
    moving_average_fraction: float
    use_global_stats: Optional[bool]

    def __init__(self, channels: int, eps: float, moving_average_fraction: float,
                 use_global_stats: Optional[bool]):
        super().__init__()
        self.eps = eps
        self.moving_average_fraction = moving_average_fraction
        self.use_global_stats = use_global_stats
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("variance", torch.zeros(channels))
        self.register_buffer("scale_factor", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_global = self.use_global_stats
        if use_global is None:
            use_global = not self.training
        if use_global:
            s = self.scale_factor
            factor = torch.where(s == 0, torch.zeros_like(s), 1.0 / s)
            return F.batch_norm(x, self.mean * factor, self.variance * factor, None, None, False, 0.0, self.eps)
        maf = self.moving_average_fraction
        if x.numel() == x.shape[1]:
            # One value per channel: torch's batch_norm refuses it; Caffe gives 0 and adds variance 0.
            self.scale_factor.mul_(maf).add_(1.0)
            self.mean.mul_(maf).add_(x.detach().reshape(-1).to(self.mean.dtype))
            self.variance.mul_(maf)
            return x - x
        batch_mean = torch.zeros_like(self.mean)
        batch_variance = torch.zeros_like(self.variance)
        # momentum 1 leaves exactly the batch's mean and its m / (m - 1)-corrected variance in the two buffers.
        y = F.batch_norm(x, batch_mean, batch_variance, None, None, True, 1.0, self.eps)
        self.scale_factor.mul_(maf).add_(1.0)
        self.mean.mul_(maf).add_(batch_mean)
        self.variance.mul_(maf).add_(batch_variance)
        return y


class CaffeDropout(nn.Module):
    """Caffe's Dropout (dropout_layer.cpp): in train mode each value is kept with probability 1 - ratio and,
    with scale_train (Caffe's only behaviour in BVLC), scaled by 1 / (1 - ratio); in eval mode the identity,
    or a scale by 1 - ratio when trained without scale_train (a fork's option). The masks come from torch's
    random generator, so they are not the ones Caffe's generator would draw."""

    ratio: float
    scale_train: bool

    def __init__(self, ratio: float, scale_train: bool = True):
        super().__init__()
        self.ratio = ratio
        self.scale_train = scale_train

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            y = F.dropout(x, self.ratio, True)
            return y if self.scale_train else y * (1.0 - self.ratio)
        return x if self.scale_train else x * (1.0 - self.ratio)
