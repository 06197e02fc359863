"""Modules for sizes known only at run time (a net built with named sizes), written so that no size decides
a branch: torch.export keeps one symbolic size per name instead of guarding on them. Like modules.py, each
class depends only on torch: generated source carries a verbatim copy."""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class PaddedMaxPool2d(nn.Module):
    """Caffe's MAX pooling: the input padded with -FLT_MAX, by `padding` before and by `end_padding` after
    (as far as Caffe's last window reaches at any size), pooled without rounding, and the first `out_h` x
    `out_w` windows kept (Caffe's count at this size, given with the input). With `with_mask`, also where each
    maximum is, as h * W + w in its input plane (Caffe's second top)."""

    kernel_size: List[int]
    stride: List[int]
    padding: List[int]
    end_padding: List[int]

    def __init__(self, kernel_size: List[int], stride: List[int], padding: List[int], end_padding: List[int],
                 with_mask: bool):
        super().__init__()
        self.kernel_size = list(kernel_size)
        self.stride = list(stride)
        self.padding = list(padding)
        self.end_padding = list(end_padding)
        self.with_mask = with_mask

    def forward(self, x: torch.Tensor, out_h: int, out_w: int):
        top, left = self.padding[0], self.padding[1]
        padded = F.pad(x, [left, self.end_padding[1], top, self.end_padding[0]], value=-3.4028234663852886e38)
        rows = torch.arange(out_h, device=x.device)
        columns = torch.arange(out_w, device=x.device)
        if not self.with_mask:
            return F.max_pool2d(padded, self.kernel_size, self.stride).index_select(2, rows).index_select(3, columns)
        y, indices = F.max_pool2d_with_indices(padded, self.kernel_size, self.stride)
        indices = indices.index_select(2, rows).index_select(3, columns)
        row = torch.div(indices, padded.shape[3], rounding_mode="floor")
        column = indices - row * padded.shape[3]
        mask = ((row - top) * x.shape[3] + column - left).to(x.dtype)
        return y.index_select(2, rows).index_select(3, columns), mask


class PaddedAvgPool2d(nn.Module):
    """Caffe's AVE pooling: the sum over each window of the input padded with zeros (by `padding` before and
    `end_padding` after), divided by the number of its positions inside [-pad, size + pad) (the same pooling
    of a plane of ones there and zeros past it); the first `out_h` x `out_w` windows are Caffe's."""

    kernel_size: List[int]
    stride: List[int]
    padding: List[int]
    end_padding: List[int]

    def __init__(self, kernel_size: List[int], stride: List[int], padding: List[int], end_padding: List[int]):
        super().__init__()
        self.kernel_size = list(kernel_size)
        self.stride = list(stride)
        self.padding = list(padding)
        self.end_padding = list(end_padding)

    def forward(self, x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
        top, left = self.padding[0], self.padding[1]
        bottom, right = self.end_padding[0], self.end_padding[1]
        total = F.avg_pool2d(F.pad(x, [left, right, top, bottom]), self.kernel_size, self.stride)
        ones = torch.ones(1, 1, x.shape[2], x.shape[3], dtype=x.dtype, device=x.device)
        inside_h, inside_w = min(top, bottom), min(left, right)
        counted = F.pad(F.pad(ones, [left, inside_w, top, inside_h], value=1.0),
                        [0, right - inside_w, 0, bottom - inside_h])
        mean = total / F.avg_pool2d(counted, self.kernel_size, self.stride)
        return mean.index_select(2, torch.arange(out_h, device=x.device)).index_select(
            3, torch.arange(out_w, device=x.device))


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
