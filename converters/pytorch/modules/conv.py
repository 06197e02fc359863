"""Im2col as a module.

Each class is copied verbatim into generated source (codegen.py): it stands alone, importing only torch."""

from typing import List

import torch
import torch.nn.functional as F
from torch import nn


class Im2col(nn.Module):
    """Caffe's Im2col as a grouped convolution whose filters each pick one kernel offset: output channel
    c * K + k is input channel c at offset k (K = prod(kernel)), zero outside the padded input."""

    kernel: List[int]
    stride: List[int]
    pad: List[int]
    dilation: List[int]

    def __init__(self, channels: int, kernel: List[int], stride: List[int], pad: List[int], dilation: List[int]):
        super().__init__()
        self.channels = channels
        self.kernel = list(kernel)
        self.stride = list(stride)
        self.pad = list(pad)
        self.dilation = list(dilation)
        offsets = 1
        for k in self.kernel:
            offsets *= k
        one_hot = torch.eye(offsets).reshape([offsets, 1] + self.kernel)
        self.register_buffer("selector", one_hot.repeat([channels] + [1] * (len(self.kernel) + 1)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.selector.to(x.dtype)
        if len(self.kernel) == 1:
            return F.conv1d(x, weight, None, self.stride, self.pad, self.dilation, self.channels)
        if len(self.kernel) == 2:
            return F.conv2d(x, weight, None, self.stride, self.pad, self.dilation, self.channels)
        return F.conv3d(x, weight, None, self.stride, self.pad, self.dilation, self.channels)
