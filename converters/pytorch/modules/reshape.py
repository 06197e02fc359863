"""Reshaping modules: Crop (also at symbolic sizes), ShuffleChannel, BatchReindex.

Each class is copied verbatim into generated source (codegen.py): it stands alone, importing only torch."""

from typing import List

import torch
from torch import nn


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


class ShuffleChannel(nn.Module):
    """ShuffleNet's channel shuffle: channels viewed as (group, C / group) and transposed."""

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[1]
        y = x.reshape(n, self.group, c // self.group, -1).transpose(1, 2)
        return y.reshape(x.shape)


class BatchReindex(nn.Module):
    """Caffe's BatchReindex: items of x picked by the index values, truncated to integers."""

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.index_select(x, 0, index.to(torch.int64))


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
