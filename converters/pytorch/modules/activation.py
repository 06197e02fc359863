"""Element-wise modules: Power, Exp, Log, Threshold, Swish and Caffe's Dropout.

Each class is copied verbatim into generated source (codegen.py): it stands alone, importing only torch."""

import math

import torch
import torch.nn.functional as F
from torch import nn


class Power(nn.Module):
    """Caffe's Power: y = (shift + scale * x) ** power; a constant when power * scale == 0."""

    def __init__(self, power: float, scale: float, shift: float):
        super().__init__()
        self.power = power
        self.scale = scale
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.power * self.scale == 0.0:
            # Caffe power_layer.cpp fills the output without reading x (so even NaN gives the constant).
            return torch.full_like(x, 1.0 if self.power == 0.0 else self.shift ** self.power)
        y = x
        if self.scale != 1.0:
            y = y * self.scale
        if self.shift != 0.0:
            y = y + self.shift
        if self.power != 1.0:
            y = torch.pow(y, self.power)
        return y


class Exp(nn.Module):
    """Caffe's Exp: y = base ** (shift + scale * x), computed as exp(log_base * scale * x) * base ** shift."""

    def __init__(self, log_base: float, scale: float, shift: float):
        super().__init__()
        self.inner_scale = log_base * scale
        self.outer_scale = 1.0 if shift == 0.0 else math.exp(log_base * shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.exp(x) if self.inner_scale == 1.0 else torch.exp(x * self.inner_scale)
        if self.outer_scale != 1.0:
            y = y * self.outer_scale
        return y


class Log(nn.Module):
    """Caffe's Log: y = log(shift + scale * x) / log_base."""

    def __init__(self, log_base: float, scale: float, shift: float):
        super().__init__()
        self.base_scale = 1.0 / log_base
        self.scale = scale
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.scale != 1.0:
            y = y * self.scale
        if self.shift != 0.0:
            y = y + self.shift
        y = torch.log(y)
        if self.base_scale != 1.0:
            y = y * self.base_scale
        return y


class Threshold(nn.Module):
    """Caffe's Threshold: y = 1 where x > threshold, else 0 (nn.Threshold is a different function)."""

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > self.threshold).to(x.dtype)


class Swish(nn.Module):
    """Caffe's Swish: x * sigmoid(beta * x)."""

    def __init__(self, beta: float):
        super().__init__()
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x * self.beta)


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
