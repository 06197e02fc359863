"""Modules for sizes known only at run time (a net built with named sizes), written so that no size decides
a branch: torch.export keeps one symbolic size per name instead of guarding on them. Like modules.py, each
class depends only on torch: generated source carries a verbatim copy."""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class PaddedMaxPool2d(nn.Module):
    """Caffe's MAX pooling: the input padded with -FLT_MAX, by `padding` before and by `end_h`/`end_w` after
    (as far as Caffe's last window reaches, given with the inputs), then pooled without rounding. With
    `with_mask`, also where each maximum is, as h * W + w in its input plane (Caffe's second top)."""

    kernel_size: List[int]
    stride: List[int]
    padding: List[int]

    def __init__(self, kernel_size: List[int], stride: List[int], padding: List[int], with_mask: bool):
        super().__init__()
        self.kernel_size = list(kernel_size)
        self.stride = list(stride)
        self.padding = list(padding)
        self.with_mask = with_mask

    def forward(self, x: torch.Tensor, end_h: int, end_w: int):
        top, left = self.padding[0], self.padding[1]
        padded = F.pad(x, [left, end_w, top, end_h], value=-3.4028234663852886e38)
        if not self.with_mask:
            return F.max_pool2d(padded, self.kernel_size, self.stride)
        y, indices = F.max_pool2d_with_indices(padded, self.kernel_size, self.stride)
        row = torch.div(indices, padded.shape[3], rounding_mode="floor")
        column = indices - row * padded.shape[3]
        return y, ((row - top) * x.shape[3] + column - left).to(x.dtype)


class PaddedAvgPool2d(nn.Module):
    """Caffe's AVE pooling: the sum over each window of the zero-padded input, divided by the number of its
    positions inside [-pad, size + pad): the same pooling of a plane of ones padded with ones by `padding`
    before and `inside_h`/`inside_w` after, then with zeros up to `end_h`/`end_w` (all given with the inputs)."""

    kernel_size: List[int]
    stride: List[int]
    padding: List[int]

    def __init__(self, kernel_size: List[int], stride: List[int], padding: List[int]):
        super().__init__()
        self.kernel_size = list(kernel_size)
        self.stride = list(stride)
        self.padding = list(padding)

    def forward(self, x: torch.Tensor, end_h: int, end_w: int, inside_h: int, inside_w: int) -> torch.Tensor:
        top, left = self.padding[0], self.padding[1]
        total = F.avg_pool2d(F.pad(x, [left, end_w, top, end_h]), self.kernel_size, self.stride)
        ones = torch.ones(1, 1, x.shape[2], x.shape[3], dtype=x.dtype, device=x.device)
        counted = F.pad(F.pad(ones, [left, inside_w, top, inside_h], value=1.0),
                        [0, end_w - inside_w, 0, end_h - inside_h])
        return total / F.avg_pool2d(counted, self.kernel_size, self.stride)


class SelectedCrop(nn.Module):
    """Caffe's Crop where sizes are symbolic: input 0 cut to input 1's size on every axis from `axis` on,
    starting at `offsets`, by selecting those indices (narrowing or slicing would compare the sizes, which
    torch.export cannot decide for every size)."""

    offsets: List[int]

    def __init__(self, axis: int, offsets: List[int]):
        super().__init__()
        self.axis = axis
        self.offsets = list(offsets)

    def forward(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        for i, offset in enumerate(self.offsets):
            axis = self.axis + i
            x = x.index_select(axis, torch.arange(offset, offset + reference.shape[axis], device=x.device))
        return x
