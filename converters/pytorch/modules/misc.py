"""Modules of the remaining layers: Parameter's blob, Correlation, FlowWarp, Correlation1D, LSTMUnit.

Each class is copied verbatim into generated source (codegen.py): it stands alone, importing only torch."""

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class Blob(nn.Module):
    """Caffe's Parameter layer: no input, its learned blob as output."""

    def __init__(self, shape: List[int]):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shape))

    def forward(self) -> torch.Tensor:
        # The blob itself, as Caffe's top shares its data; without autograd, detached, so that an output does not
        # claim to need a gradient under torch.no_grad (where .numpy() on it would fail).
        return self.weight if torch.is_grad_enabled() else self.weight.detach()


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


class LSTMUnit(nn.Module):
    """Caffe's LSTMUnit: gates i, f, o, g are the four quarters of the last axis; c = cont * sigmoid(f) * c_prev
    + sigmoid(i) * tanh(g), h = sigmoid(o) * tanh(c); returns (c, h)."""

    def forward(self, c_prev: torch.Tensor, gates: torch.Tensor, cont: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        x_i, x_f, x_o, x_g = torch.chunk(gates, 4, dim=2)
        keep = cont.unsqueeze(2) * torch.sigmoid(x_f)
        c = keep * c_prev + torch.sigmoid(x_i) * torch.tanh(x_g)
        return c, torch.sigmoid(x_o) * torch.tanh(c)
