"""Modules for the layer types the census added (docs/layers.md): FlowNet 2's FlowWarp, Correlation1D and
Resample, R-FCN's PSROIPooling, BVLC's Im2col, BatchReindex, LSTMUnit, LSTM and RNN, arcface-caffe's NormL2.

As in longtail_modules.py: each class depends only on torch, F, math and typing, so generated source can
carry a verbatim copy; each works under torch.jit.script, on any device and dtype, at any input size (sizes are
read from the tensors). No `from __future__ import annotations` here: TorchScript reads the annotations.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class FlowWarp(nn.Module):
    """FlowNet 2's FlowWarp: the image sampled bilinearly at (x + u, y + v) from the four pixels around it, the
    right and bottom neighbours clamped to the last column and row; `fill` (0 or NaN) where the point is outside
    [0, W) x [0, H)."""

    def __init__(self, fill: float):
        super().__init__()
        self.fill = fill

    def forward(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        n, c, height, width = image.shape[0], image.shape[1], image.shape[2], image.shape[3]
        xs = torch.arange(width, device=image.device).to(image.dtype).reshape(1, 1, width)
        ys = torch.arange(height, device=image.device).to(image.dtype).reshape(1, height, 1)
        x2 = xs + flow[:, 0]
        y2 = ys + flow[:, 1]
        inside = (x2 >= 0) & (y2 >= 0) & (x2 < width) & (y2 < height)
        zero = torch.zeros_like(x2)
        left = torch.where(inside, torch.floor(x2), zero)
        top = torch.where(inside, torch.floor(y2), zero)
        alpha = (x2 - left).reshape(n, 1, -1)
        beta = (y2 - top).reshape(n, 1, -1)
        right = torch.clamp(left + 1, max=width - 1)
        bottom = torch.clamp(top + 1, max=height - 1)
        flat = image.reshape(n, c, -1)
        sample = ((1 - alpha) * (1 - beta) * self._corner(flat, top, left)
                  + alpha * (1 - beta) * self._corner(flat, top, right)
                  + (1 - alpha) * beta * self._corner(flat, bottom, left)
                  + alpha * beta * self._corner(flat, bottom, right))
        fill = torch.full_like(sample, self.fill)
        return torch.where(inside.reshape(n, 1, -1), sample, fill).reshape(image.shape)

    def _corner(self, flat: torch.Tensor, row: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
        """flat (N, C, H * W) at pixel (row, column) (N, H, W), for every channel: (N, C, H * W)."""
        width = row.shape[2]
        index = (row * width + column).to(torch.int64).reshape(flat.shape[0], 1, -1).expand(flat.shape)
        return torch.gather(flat, 2, index)


class Correlation1D(nn.Module):
    """FlowNet 2's Correlation1D: for each shift s, the mean over channels and the k x k patch of a * b (or
    |a - b|), input 1 moved right by s; inputs zero-padded by `pad` left and right, patches starting at
    (y * stride_1, x * stride_1 + d), d = max_displacement."""

    shifts: List[int]

    def __init__(self, kernel_size: int, max_displacement: int, pad: int, stride_1: int, shifts: List[int],
                 subtract: bool):
        super().__init__()
        self.kernel_size = kernel_size
        self.max_displacement = max_displacement
        self.pad = pad
        self.stride_1 = stride_1
        self.shifts = list(shifts)
        self.subtract = subtract

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a = F.pad(a, [self.pad, self.pad])
        b = F.pad(b, [self.pad, self.pad])
        d = self.max_displacement
        span = a.shape[3] - 2 * d
        anchor = a[:, :, :, d:d + span]
        maps: List[torch.Tensor] = []
        for shift in self.shifts:
            moved = b[:, :, :, d + shift:d + shift + span]
            pair = torch.abs(anchor - moved) if self.subtract else anchor * moved
            maps.append(torch.mean(pair, dim=1, keepdim=True))
        y = torch.cat(maps, 1)
        if self.kernel_size > 1 or self.stride_1 > 1:
            y = F.avg_pool2d(y, self.kernel_size, self.stride_1)
        return y


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


class BatchReindex(nn.Module):
    """Caffe's BatchReindex: items of x picked by the index values, truncated to integers."""

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.index_select(x, 0, index.to(torch.int64))


class NormL2(nn.Module):
    """arcface-caffe's NormL2: each item divided by sqrt(sum of its squares + eps)."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = [axis for axis in range(1, x.dim())]
        return x / torch.sqrt(torch.sum(x * x, dim=axes, keepdim=True) + self.eps)


class LSTMUnit(nn.Module):
    """Caffe's LSTMUnit: gates i, f, o, g are the four quarters of the last axis; c = cont * sigmoid(f) * c_prev
    + sigmoid(i) * tanh(g), h = sigmoid(o) * tanh(c); returns (c, h)."""

    def forward(self, c_prev: torch.Tensor, gates: torch.Tensor, cont: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        x_i, x_f, x_o, x_g = torch.chunk(gates, 4, dim=2)
        keep = cont.unsqueeze(2) * torch.sigmoid(x_f)
        c = keep * c_prev + torch.sigmoid(x_i) * torch.tanh(x_g)
        return c, torch.sigmoid(x_o) * torch.tanh(c)


class CaffeRecurrent(nn.Module):
    """Caffe's LSTM (lstm=True) or RNN layer over inputs [x (T, N, ...), cont (T, N), optional static (N, ...),
    with expose_hidden the initial states (1, N, H): h_0, and for the LSTM c_0]. Per step, with h multiplied by
    cont_t first: the LSTM's gates = W_x x_t + b (+ W_static x_static) + W_h h, ordered i, f, o, g;
    c = cont_t sigmoid(f) c + sigmoid(i) tanh(g), h = sigmoid(o) tanh(c), output h. The RNN's
    h = tanh(W_x x_t + b (+ W_static x_static) + W_h h), output tanh(W_o h + b_o). Returns [outputs (T, N, H)]
    and, with expose_hidden, the final states."""

    def __init__(self, lstm: bool, in_features: int, hidden: int, static_features: int, expose_hidden: bool):
        super().__init__()
        self.lstm = lstm
        self.hidden = hidden
        self.expose_hidden = expose_hidden
        width = 4 * hidden if lstm else hidden
        self.weight_x = nn.Parameter(torch.zeros(width, in_features))
        self.bias_x = nn.Parameter(torch.zeros(width))
        if static_features:
            self.weight_static = nn.Parameter(torch.zeros(width, static_features))
        else:
            self.register_parameter("weight_static", None)
        self.weight_h = nn.Parameter(torch.zeros(width, hidden))
        if lstm:
            self.register_parameter("weight_o", None)
            self.register_parameter("bias_o", None)
        else:
            self.weight_o = nn.Parameter(torch.zeros(hidden, hidden))
            self.bias_o = nn.Parameter(torch.zeros(hidden))

    def forward(self, inputs: List[torch.Tensor]) -> List[torch.Tensor]:
        x, cont = inputs[0], inputs[1]
        steps, streams = x.shape[0], x.shape[1]
        projected = F.linear(x.reshape(steps, streams, -1), self.weight_x, self.bias_x)
        weight_static = self.weight_static
        first = 2
        if weight_static is not None:
            projected = projected + F.linear(inputs[2].reshape(streams, -1), weight_static)
            first = 3
        h = torch.zeros(streams, self.hidden, dtype=x.dtype, device=x.device)
        c = torch.zeros(streams, self.hidden, dtype=x.dtype, device=x.device)
        if self.expose_hidden:
            h = inputs[first].reshape(streams, self.hidden)
            if self.lstm:
                c = inputs[first + 1].reshape(streams, self.hidden)
        outputs: List[torch.Tensor] = []
        for t in range(steps):
            keep = cont[t].unsqueeze(1)
            summed = projected[t] + F.linear(h * keep, self.weight_h)
            weight_o, bias_o = self.weight_o, self.bias_o
            if weight_o is not None and bias_o is not None:
                h = torch.tanh(summed)
                outputs.append(torch.tanh(F.linear(h, weight_o, bias_o)))
            else:
                x_i, x_f, x_o, x_g = torch.chunk(summed, 4, dim=1)
                c = keep * torch.sigmoid(x_f) * c + torch.sigmoid(x_i) * torch.tanh(x_g)
                h = torch.sigmoid(x_o) * torch.tanh(c)
                outputs.append(h)
        result = [torch.stack(outputs, 0)]
        if self.expose_hidden:
            result.append(h.unsqueeze(0))
            if self.lstm:
                result.append(c.unsqueeze(0))
        return result
