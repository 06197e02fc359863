"""Modules for the Caffe semantics no torch module has.

Each class depends only on torch and the imports below: generated source (codegen.py) carries a verbatim
copy of every class it uses, so that the file runs without protodef. Every class works under
torch.jit.script and torch.export, on any device and dtype (nothing is created as float32 on the CPU in
forward). No `from __future__ import annotations` here: TorchScript reads the annotations.
"""
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class CaffeMaxPool2d(nn.Module):
    """Caffe's MAX pooling where nn.MaxPool2d refuses it (padding over half the kernel): the input is padded
    with -inf to exactly the rows and columns Caffe's windows read, then pooled without padding."""

    kernel_size: List[int]
    stride: List[int]
    padding: List[int]

    def __init__(self, kernel_size: List[int], stride: List[int], pad: List[int], input_size: List[int],
                 output_size: List[int]):
        super().__init__()
        self.kernel_size = list(kernel_size)
        self.stride = list(stride)
        # F.pad order: left, right, top, bottom; a negative right/bottom pad drops what no window reads.
        self.padding = [pad[1], (output_size[1] - 1) * stride[1] + kernel_size[1] - input_size[1] - pad[1],
                        pad[0], (output_size[0] - 1) * stride[0] + kernel_size[0] - input_size[0] - pad[0]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.pad(x, self.padding, value=float("-inf")), self.kernel_size, self.stride)


class CaffeAvgPool2d(nn.Module):
    """Caffe's AVE pooling where nn.AvgPool2d refuses it (padding over half the kernel). Caffe divides each
    window's sum by its size clipped to the padded input (pooling_layer.cpp): padding counts, the rows past
    it that the ceil rule adds do not."""

    kernel_size: List[int]
    stride: List[int]
    padding: List[int]

    def __init__(self, kernel_size: List[int], stride: List[int], pad: List[int], input_size: List[int],
                 output_size: List[int]):
        super().__init__()
        self.kernel_size = list(kernel_size)
        self.stride = list(stride)
        self.padding = [pad[1], (output_size[1] - 1) * stride[1] + kernel_size[1] - input_size[1] - pad[1],
                        pad[0], (output_size[0] - 1) * stride[0] + kernel_size[0] - input_size[0] - pad[0]]
        sizes = []
        for axis in range(2):
            starts = [o * stride[axis] - pad[axis] for o in range(output_size[axis])]
            sizes.append([min(s + kernel_size[axis], input_size[axis] + pad[axis]) - s for s in starts])
        area = kernel_size[0] * kernel_size[1]
        # avg_pool2d divides by the whole kernel; this turns that into Caffe's divisor (1 where they agree).
        rescale = torch.tensor([[area / (h * w) for w in sizes[1]] for h in sizes[0]])
        self.register_buffer("rescale", rescale, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(x, self.padding), self.kernel_size, self.stride) * self.rescale


class StochasticPool2d(nn.Module):
    """Caffe's STOCHASTIC pooling at test time (pooling_layer.cu, StoPoolForwardTest): each window's
    sum(x * x) / sum(x), windows starting at o * stride (padding is ignored) and clipped to the input."""

    kernel_size: List[int]
    stride: List[int]
    padding: List[int]

    def __init__(self, kernel_size: List[int], stride: List[int], input_size: List[int], output_size: List[int]):
        super().__init__()
        self.kernel_size = list(kernel_size)
        self.stride = list(stride)
        self.padding = [0, (output_size[1] - 1) * stride[1] + kernel_size[1] - input_size[1],
                        0, (output_size[0] - 1) * stride[0] + kernel_size[0] - input_size[0]]
        self.area = float(kernel_size[0] * kernel_size[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.padding)
        squares = F.avg_pool2d(x * x, self.kernel_size, self.stride) * self.area
        total = F.avg_pool2d(x, self.kernel_size, self.stride) * self.area
        return squares / (total + 1.1754943508222875e-38)    # Caffe starts the sum at FLT_MIN


class MaxPool2dWithMask(nn.Module):
    """MAX pooling with Caffe's second output: where each maximum is, as the index h * W + w in its input
    plane, stored as a float (SegNet's Upsample reads it)."""

    kernel_size: List[int]
    stride: List[int]
    padding: List[int]

    def __init__(self, kernel_size: List[int], stride: List[int], padding: List[int], ceil_mode: bool):
        super().__init__()
        self.kernel_size = list(kernel_size)
        self.stride = list(stride)
        self.padding = list(padding)
        self.ceil_mode = ceil_mode

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        y, indices = F.max_pool2d_with_indices(x, self.kernel_size, self.stride, self.padding, 1, self.ceil_mode)
        return y, indices.to(x.dtype)


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


class WeightedSum(nn.Module):
    """Caffe's Eltwise SUM with coefficients: y = sum of coeffs[i] * inputs[i], accumulated in order."""

    coeffs: List[float]

    def __init__(self, coeffs: List[float]):
        super().__init__()
        self.coeffs = list(coeffs)

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        y = inputs[0] * self.coeffs[0]
        for i in range(1, len(inputs)):
            y = y + inputs[i] * self.coeffs[i]
        return y


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


class ArgMax(nn.Module):
    """Caffe's ArgMax: the top_k indices (as floats) or values along `axis`, largest first; without an axis,
    over all but the batch, giving (N, 1, top_k) indices or (N, 2, top_k) indices and values, padded with
    `trailing` axes of size 1. Caffe sorts (value, index) pairs, so among equal values the larger index wins."""

    axis: Optional[int]

    def __init__(self, top_k: int, out_max_val: bool, axis: Optional[int], trailing: int = 0):
        super().__init__()
        self.top_k = top_k
        self.out_max_val = out_max_val
        self.axis = axis
        self.trailing = trailing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = self.axis
        if axis is None:
            source = x.flatten(1)
            dim = 1
        else:
            source = x
            dim = axis
        count = source.size(dim)
        # Searching the reversed axis makes the first maximum found the one with the largest index.
        reversed_source = source.flip(dim)
        if self.top_k == 1:
            order = torch.argmax(reversed_source, dim, keepdim=True)
            values = torch.gather(reversed_source, dim, order)
        else:
            values, order = torch.sort(reversed_source, dim=dim, descending=True, stable=True)
            values = values.narrow(dim, 0, self.top_k)
            order = order.narrow(dim, 0, self.top_k)
        indices = (count - 1 - order).to(x.dtype)
        if axis is not None:
            return values if self.out_max_val else indices
        y = torch.stack([indices, values], 1) if self.out_max_val else indices.unsqueeze(1)
        for _ in range(self.trailing):
            y = y.unsqueeze(-1)
        return y


class Crop(nn.Module):
    """Caffe's Crop: input 0 cut to input 1's size on every axis from `axis` on, starting at `offsets`."""

    offsets: List[int]

    def __init__(self, axis: int, offsets: List[int]):
        super().__init__()
        self.axis = axis
        self.offsets = list(offsets)

    def forward(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        for i, offset in enumerate(self.offsets):
            x = x.narrow(self.axis + i, offset, reference.size(self.axis + i))
        return x
