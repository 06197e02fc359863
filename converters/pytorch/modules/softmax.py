"""ArgMax with Caffe's ordering of ties.

Each class is copied verbatim into generated source (codegen.py): it stands alone, importing only torch."""

from typing import Optional

import torch
from torch import nn


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
