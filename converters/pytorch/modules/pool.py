"""Caffe's pooling as torch modules: rounding, windows and divisors torch's own pools do not reproduce.

Each class is copied verbatim into generated source (codegen.py): it stands alone, importing only torch."""

import math
from typing import List, Tuple

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


class PSROIPool(nn.Module):
    """R-FCN's PSROIPooling: corners rounded half away from zero, then scaled (the far one after + 1); a box at
    least 0.1 wide and high split into group_size^2 bins, floor/ceil edges clipped to the map; bin (i, j) of
    output channel d averages input channel (d * G + i) * G + j over the bin (0 when empty). Bin sums come from
    a float64 summed-area table."""

    def __init__(self, output_dim: int, group_size: int, spatial_scale: float):
        super().__init__()
        self.output_dim = output_dim
        self.group_size = group_size
        self.spatial_scale = spatial_scale

    def forward(self, x: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        boxes = rois.reshape(-1, 5).to(torch.float32)
        channels, height, width = x.shape[1], x.shape[2], x.shape[3]
        g = self.group_size
        table = F.pad(torch.cumsum(torch.cumsum(x.to(torch.float64), 2), 3), [1, 0, 1, 0])
        row_begin, row_end = self._edges(boxes[:, 2], boxes[:, 4], height)
        col_begin, col_end = self._edges(boxes[:, 1], boxes[:, 3], width)
        maps = torch.arange(channels, device=x.device).reshape(1, self.output_dim, g, g)
        plane = (height + 1) * (width + 1)
        origin = (boxes[:, 0].to(torch.int64).reshape(-1, 1, 1, 1) * channels + maps) * plane
        flat = table.reshape(-1)
        rows0, rows1 = row_begin.reshape(-1, 1, g, 1), row_end.reshape(-1, 1, g, 1)
        cols0, cols1 = col_begin.reshape(-1, 1, 1, g), col_end.reshape(-1, 1, 1, g)
        stride = width + 1
        total = (flat[origin + rows1 * stride + cols1] - flat[origin + rows0 * stride + cols1]
                 - flat[origin + rows1 * stride + cols0] + flat[origin + rows0 * stride + cols0])
        area = (rows1 - rows0) * (cols1 - cols0)
        mean = total / torch.clamp(area, min=1).to(torch.float64)
        filled = (rows1 > rows0) & (cols1 > cols0)
        return torch.where(filled, mean, torch.zeros_like(mean)).to(x.dtype)

    def _edges(self, low: torch.Tensor, high: torch.Tensor, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        scale = torch.tensor(self.spatial_scale, dtype=torch.float32, device=low.device)
        start = (self._round(low) * scale).reshape(-1, 1)
        end = ((self._round(high) + 1) * scale).reshape(-1, 1)
        step = torch.clamp(end - start, min=0.1) / float(self.group_size)
        k = torch.arange(self.group_size, device=low.device).to(torch.float32).reshape(1, -1)
        begin = torch.floor(k * step + start).to(torch.int64)
        finish = torch.ceil((k + 1) * step + start).to(torch.int64)
        return torch.clamp(begin, 0, size), torch.clamp(finish, 0, size)

    def _round(self, value: torch.Tensor) -> torch.Tensor:
        magnitude = torch.abs(value)
        whole = torch.floor(magnitude)
        return torch.sign(value) * (whole + (magnitude - whole >= 0.5).to(value.dtype))


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
