"""Resizing modules: Interp's aligned resize, Accum, SegNet's unpooling, FlowNet's Resample.

Each class is copied verbatim into generated source (codegen.py): it stands alone, importing only torch."""

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn


class AlignedResize(nn.Module):
    """The forks' Interp (DeepLab/PSPNet interp.cpp): crop `crop[0]` rows/columns at the start and `crop[1]`
    at the end, then bilinear resize with aligned corners to `size`."""

    size: List[int]
    crop: List[int]

    def __init__(self, size: List[int], crop: List[int]):
        super().__init__()
        self.size = list(size)
        self.crop = list(crop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        begin, end = self.crop[0], self.crop[1]
        if begin > 0 or end > 0:
            x = x[:, :, begin:x.shape[2] - end, begin:x.shape[3] - end]
        if x.shape[2] == self.size[0] and x.shape[3] == self.size[1]:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=True)


class Accum(nn.Module):
    """FlowNet's Accum: every input (the last excluded when it is only the size reference) resized bilinearly
    with aligned corners to `size`, concatenated on channels."""

    size: List[int]

    def __init__(self, size: List[int], have_reference: bool):
        super().__init__()
        self.size = list(size)
        self.have_reference = have_reference

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        count = len(inputs) - 1 if self.have_reference else len(inputs)
        parts: List[torch.Tensor] = []
        for i in range(count):
            x = inputs[i]
            if x.shape[2] != self.size[0] or x.shape[3] != self.size[1]:
                x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=True)
            parts.append(x)
        return torch.cat(parts, 1)


class MaxUnpool(nn.Module):
    """SegNet's Upsample: each x[n, c, i] goes to flat position mask[n, c, i] (h * W + w) of a zero plane of
    `size`; where two go to one position, the later i wins, as in Caffe's loop."""

    size: List[int]

    def __init__(self, size: List[int]):
        super().__init__()
        self.size = list(size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, height: int = 0, width: int = 0) -> torch.Tensor:
        if height == 0:   # a size given with the inputs (a net with symbolic sizes) wins over the fixed one
            height, width = self.size[0], self.size[1]
        n, c = x.shape[0], x.shape[1]
        flat = x.reshape(n, c, -1)
        index = mask.reshape(n, c, -1).to(torch.int64)
        plane = height * width
        order = torch.arange(1, flat.shape[2] + 1, device=x.device).expand(n, c, flat.shape[2])
        writer = torch.zeros(n, c, plane, dtype=torch.int64, device=x.device)
        writer = writer.scatter_reduce(2, index, order, reduce="amax", include_self=True)
        picked = torch.gather(flat, 2, (writer - 1).clamp(min=0))
        out = torch.where(writer > 0, picked, torch.zeros_like(picked))
        return out.reshape(n, c, height, width)


class Resample(nn.Module):
    """FlowNet 2's Resample as two matrix products, rows then columns, with the weights protodef computed from
    FlowNet 2's kernel (buffers `rows` (H_out, H_in) and `columns` (W_out, W_in), in the state dict)."""

    def __init__(self, out_height: int, in_height: int, out_width: int, in_width: int):
        super().__init__()
        self.register_buffer("rows", torch.zeros(out_height, in_height))
        self.register_buffer("columns", torch.zeros(out_width, in_width))

    def forward(self, x: torch.Tensor, reference: Optional[torch.Tensor] = None) -> torch.Tensor:
        # With two inputs the second only gave the output size, already in the weights.
        return torch.matmul(torch.matmul(self.rows.to(x.dtype), x), self.columns.to(x.dtype).t())
