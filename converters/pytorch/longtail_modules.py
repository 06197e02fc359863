"""Modules for the long tail of layer types (forks' and rarer BVLC layers) that no torch module computes.

Like modules.py: each class depends only on torch and the imports below, so generated source can carry a
verbatim copy; each works under torch.jit.script, on any device and dtype (constants are made on the
input's device, in its dtype). No `from __future__ import annotations` here: TorchScript reads the
annotations.
"""
import math
from typing import List

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


class Swish(nn.Module):
    """Caffe's Swish: x * sigmoid(beta * x)."""

    def __init__(self, beta: float):
        super().__init__()
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x * self.beta)


class Blob(nn.Module):
    """Caffe's Parameter layer: no input, its learned blob as output."""

    def __init__(self, shape: List[int]):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shape))

    def forward(self) -> torch.Tensor:
        return self.weight


class Embed(nn.Module):
    """Caffe's Embed: rows of the (input_dim, num_output) weight picked by the input values truncated to
    integers, plus the bias."""

    def __init__(self, input_dim: int, num_output: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(input_dim, num_output))
        if bias:
            self.bias = nn.Parameter(torch.zeros(num_output))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.embedding(x.to(torch.int64), self.weight)
        bias = self.bias
        if bias is not None:
            y = y + bias
        return y


class ShuffleChannel(nn.Module):
    """ShuffleNet's channel shuffle: channels viewed as (group, C / group) and transposed."""

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[1]
        y = x.reshape(n, self.group, c // self.group, -1).transpose(1, 2)
        return y.reshape(x.shape)


class Axpy(nn.Module):
    """SENet's Axpy: a * x + y, a holding one factor per (n, c)."""

    def forward(self, a: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = [x.shape[0], x.shape[1]] + [1] * (x.dim() - 2)
        return a.reshape(shape) * x + y


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


class SpatialPyramidPool(nn.Module):
    """Caffe's SPP: one Caffe pooling per level (kernel = stride, padding per spp_layer.cpp), each flattened to
    (N, -1) and concatenated (a single level is returned as it is). Each level pads the input to exactly the
    rows and columns its windows read (-inf for MAX, 0 otherwise) and pools without padding; AVE divides by
    Caffe's window size clipped to the padded input; STOCHASTIC (test phase) windows ignore the padding and
    give sum(x^2) / (FLT_MIN + sum(x))."""

    kernels: List[List[int]]
    paddings: List[List[int]]
    divisors: List[List[List[float]]]

    def __init__(self, method: str, kernels: List[List[int]], pads: List[List[int]], input_size: List[int],
                 output_sizes: List[List[int]]):
        super().__init__()
        self.method = method
        self.kernels = [list(k) for k in kernels]
        self.paddings = []
        self.divisors = []
        for kernel, pad, out in zip(kernels, pads, output_sizes):
            begin = [0, 0] if method == "STOCHASTIC" else list(pad)
            # F.pad order: left, right, top, bottom; a negative right/bottom drops what no window reads.
            self.paddings.append([begin[1], (out[1] - 1) * kernel[1] + kernel[1] - input_size[1] - begin[1],
                                  begin[0], (out[0] - 1) * kernel[0] + kernel[0] - input_size[0] - begin[0]])
            sizes = [[float(min(start + kernel[axis], input_size[axis] + pad[axis]) - start)
                      for start in (o * kernel[axis] - pad[axis] for o in range(out[axis]))] for axis in range(2)]
            area = float(kernel[0] * kernel[1])
            self.divisors.append([[area / (h * w) for w in sizes[1]] for h in sizes[0]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels: List[torch.Tensor] = []
        for i in range(len(self.kernels)):
            kernel = self.kernels[i]
            if self.method == "MAX":
                y = F.max_pool2d(F.pad(x, self.paddings[i], value=-math.inf), kernel, kernel)
            elif self.method == "AVE":
                rescale = torch.tensor(self.divisors[i], dtype=x.dtype, device=x.device)
                y = F.avg_pool2d(F.pad(x, self.paddings[i]), kernel, kernel) * rescale
            else:
                padded = F.pad(x, self.paddings[i])
                area = float(kernel[0] * kernel[1])
                squares = F.avg_pool2d(padded * padded, kernel, kernel) * area
                total = F.avg_pool2d(padded, kernel, kernel) * area
                y = squares / (total + 1.1754943508222875e-38)
            levels.append(y)
        if len(levels) == 1:
            return levels[0]
        return torch.cat([level.flatten(1) for level in levels], 1)


class ROIPool(nn.Module):
    """py-faster-rcnn's ROIPooling, roi by roi as Caffe loops: corners scaled and rounded half away from zero,
    size max(end - start + 1, 1), bin k spanning [floor(k * size / pooled), ceil((k + 1) * size / pooled))
    from the start, clipped to the map; each bin's max, 0 when it is empty."""

    pooled: List[int]

    def __init__(self, pooled: List[int], spatial_scale: float):
        super().__init__()
        self.pooled = list(pooled)
        self.spatial_scale = spatial_scale

    def forward(self, x: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        rois = rois.reshape(rois.shape[0], 5)
        height, width = x.shape[2], x.shape[3]
        scaled = rois[:, 1:] * torch.tensor(self.spatial_scale, dtype=rois.dtype, device=rois.device)
        floor = torch.floor(scaled)
        fraction = scaled - floor
        up = (fraction > 0.5) | ((fraction == 0.5) & (scaled >= 0))
        corners = (floor + up.to(scaled.dtype)).to(torch.int64)
        outputs: List[torch.Tensor] = []
        for r in range(rois.shape[0]):
            rows = self._edges(int(corners[r, 1]), int(corners[r, 3]), self.pooled[0], height)
            cols = self._edges(int(corners[r, 0]), int(corners[r, 2]), self.pooled[1], width)
            image = x[int(rois[r, 0])]
            bins: List[torch.Tensor] = []
            for row in rows:
                for col in cols:
                    if row[1] <= row[0] or col[1] <= col[0]:
                        bins.append(torch.zeros(x.shape[1], dtype=x.dtype, device=x.device))
                    else:
                        bins.append(torch.amax(image[:, row[0]:row[1], col[0]:col[1]], dim=[1, 2]))
            outputs.append(torch.stack(bins, 1).reshape(x.shape[1], self.pooled[0], self.pooled[1]))
        return torch.stack(outputs, 0)

    def _edges(self, start: int, end: int, pooled: int, size: int) -> List[List[int]]:
        length = max(end - start + 1, 1)
        # Caffe computes the bin size and its multiples in float32.
        step = torch.tensor(float(length), dtype=torch.float32) / float(pooled)
        edges: List[List[int]] = []
        for k in range(pooled):
            low = int(torch.floor(step * float(k))) + start
            high = int(torch.ceil(step * float(k + 1))) + start
            edges.append([min(max(low, 0), size), min(max(high, 0), size)])
        return edges


class Correlation(nn.Module):
    """FlowNet 2's Correlation: for each displacement (dy, dx) of the grid, the mean over channels and the
    k x k patch of a * b (or |a - b| for SUBTRACT), input 1 moved by (dy, dx); inputs zero-padded by `pad`,
    patches starting at (y * stride_1 + d, x * stride_1 + d), d = max_displacement."""

    displacements: List[List[int]]

    def __init__(self, kernel_size: int, max_displacement: int, pad: int, stride_1: int,
                 displacements: List[List[int]], subtract: bool):
        super().__init__()
        self.kernel_size = kernel_size
        self.max_displacement = max_displacement
        self.pad = pad
        self.stride_1 = stride_1
        self.displacements = [list(d) for d in displacements]
        self.subtract = subtract

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        pads = [self.pad, self.pad, self.pad, self.pad]
        a = F.pad(a, pads)
        b = F.pad(b, pads)
        d = self.max_displacement
        span_h = a.shape[2] - 2 * d
        span_w = a.shape[3] - 2 * d
        anchor = a[:, :, d:d + span_h, d:d + span_w]
        maps: List[torch.Tensor] = []
        for shift in self.displacements:
            moved = b[:, :, d + shift[0]:d + shift[0] + span_h, d + shift[1]:d + shift[1] + span_w]
            pair = torch.abs(anchor - moved) if self.subtract else anchor * moved
            maps.append(torch.mean(pair, dim=1, keepdim=True))
        y = torch.cat(maps, 1)
        if self.kernel_size > 1 or self.stride_1 > 1:
            y = F.avg_pool2d(y, self.kernel_size, self.stride_1)
        return y
