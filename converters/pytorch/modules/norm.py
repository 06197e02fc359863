"""Normalisation modules: Caffe's BatchNorm (its three blobs), Scale and Bias broadcasts, LRN, MVN, the forks' BN.

Each class is copied verbatim into generated source (codegen.py): it stands alone, importing only torch."""

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn


class Scale(nn.Module):
    """Caffe's Scale, and BatchNorm folded to y = x * scale[c] + shift[c]: y = x * weight (+ bias), the
    parameters spanning the input's axes from Caffe's `axis` on, broadcast over the `trailing` axes after."""

    view: List[int]

    def __init__(self, shape: List[int], trailing: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(shape))
        if bias:
            self.bias = nn.Parameter(torch.zeros(shape))
        else:
            self.register_parameter("bias", None)
        self.view = list(shape) + [1] * trailing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.weight.view(self.view)
        bias = self.bias
        if bias is not None:
            y = y + bias.view(self.view)
        return y


class Bias(nn.Module):
    """Caffe's Bias: y = x + bias, the bias spanning the input's axes from `axis` on."""

    view: List[int]

    def __init__(self, shape: List[int], trailing: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(shape))
        self.view = list(shape) + [1] * trailing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.view(self.view)


class ScaleByInput(nn.Module):
    """Caffe's Scale with two inputs: y = x * s (+ bias), s spanning x's axes from `axis` on."""

    ones: List[int]
    view: List[int]

    def __init__(self, trailing: int, bias_shape: Optional[List[int]] = None):
        super().__init__()
        self.ones = [1] * trailing
        if bias_shape is not None:
            self.bias = nn.Parameter(torch.zeros(bias_shape))
            self.view = list(bias_shape) + self.ones
        else:
            self.register_parameter("bias", None)
            self.view = []

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        y = x * s.reshape(list(s.shape) + self.ones)
        bias = self.bias
        if bias is not None:
            y = y + bias.view(self.view)
        return y


class BiasByInput(nn.Module):
    """Caffe's Bias with two inputs: y = x + b, b spanning x's axes from `axis` on."""

    ones: List[int]

    def __init__(self, trailing: int):
        super().__init__()
        self.ones = [1] * trailing

    def forward(self, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return x + b.reshape(list(b.shape) + self.ones)


class WithinChannelLRN(nn.Module):
    """Caffe's LRN with norm_region WITHIN_CHANNEL (lrn_layer.cpp): y = x * (1 + alpha * mean(x^2))^-beta,
    the mean over a local_size x local_size window padded with zeros that count (k is not used)."""

    def __init__(self, local_size: int, alpha: float, beta: float):
        super().__init__()
        self.local_size = local_size
        self.alpha = alpha
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.local_size - 1) // 2
        mean = F.avg_pool2d(x * x, self.local_size, 1, pad, False, True)
        return x * torch.pow(mean * self.alpha + 1.0, -self.beta)


class MVN(nn.Module):
    """Caffe's MVN: x - mean over `axes`, then divided by sqrt(mean of squares) + eps (eps added after the
    root). With no axes every value is its own mean."""

    axes: List[int]

    def __init__(self, axes: List[int], normalize_variance: bool, eps: float):
        super().__init__()
        self.axes = list(axes)
        self.normalize_variance = normalize_variance
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.axes) > 0:
            centred = x - torch.mean(x, dim=self.axes, keepdim=True)
        else:
            centred = x - x
        if not self.normalize_variance:
            return centred
        squares = centred * centred
        if len(self.axes) > 0:
            squares = torch.mean(squares, dim=self.axes, keepdim=True)
        return centred / (torch.sqrt(squares) + self.eps)


class SegNetBatchNorm(nn.Module):
    """SegNet/ENet BN in LEARN mode: the batch's mean and E[x^2] - mean^2 over (N, H, W), eps 1e-9, then
    scale and shift (blobs of shape (1, C, 1, 1))."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.mean(x, dim=[0, 2, 3], keepdim=True)
        variance = torch.mean(x * x, dim=[0, 2, 3], keepdim=True) - mean * mean
        return (x - mean) / torch.sqrt(variance + self.eps) * self.weight + self.bias


class NormL2(nn.Module):
    """arcface-caffe's NormL2: each item divided by sqrt(sum of its squares + eps)."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = [axis for axis in range(1, x.dim())]
        return x / torch.sqrt(torch.sum(x * x, dim=axes, keepdim=True) + self.eps)


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


class ChannelMean(nn.Module):
    """FlowNet 2's Mean: output_scale * (input_scale * x + offsets[c % len(offsets)]) on axis 1 of each input."""

    def __init__(self, offsets: List[float], input_scale: float, output_scale: float):
        super().__init__()
        # Made once, not per call; it follows .to() and .half(), and the constructor's arguments rebuild it.
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.float32), persistent=False)
        self.input_scale = input_scale
        self.output_scale = output_scale

    def forward(self, inputs: List[torch.Tensor]) -> List[torch.Tensor]:
        results: List[torch.Tensor] = []
        for x in inputs:
            repeats = x.shape[1] // self.offsets.shape[0]
            offsets = self.offsets.to(x.dtype).repeat(repeats).reshape([-1] + [1] * (x.dim() - 2))
            results.append((x * self.input_scale + offsets) * self.output_scale)
        return results

