"""Merging modules: Eltwise's weighted sum, SENet's Axpy.

Each class is copied verbatim into generated source (codegen.py): it stands alone, importing only torch."""

from typing import List

import torch
from torch import nn


class WeightedSum(nn.Module):
    """Caffe's Eltwise SUM with coefficients: y = sum of coeffs[i] * inputs[i], accumulated in order."""

    coeffs: List[float]

    def __init__(self, coeffs: List[float]):
        super().__init__()
        self.coeffs = list(coeffs)

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        y = inputs[0] * self.coeffs[0]
        for i in range(1, len(inputs)):
            y = y + inputs[i] * self.coeffs[i]
        return y


class Axpy(nn.Module):
    """SENet's Axpy: a * x + y, a holding one factor per (n, c)."""

    def forward(self, a: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = [x.shape[0], x.shape[1]] + [1] * (x.dim() - 2)
        return a.reshape(shape) * x + y
