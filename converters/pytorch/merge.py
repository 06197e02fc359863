"""Merge family: Eltwise as +, *, torch.maximum (or a weighted sum), Concat as torch.cat."""
from __future__ import annotations

import operator

import torch

from protodef.ir import Layer

from .modules import merge as modules
from .registry import Lowered, Step, TorchContext, torch_converter

_PAIRWISE = {"SUM": operator.add, "PROD": operator.mul, "MAX": torch.maximum}
_IN_PLACE = {"SUM": "add_", "PROD": "mul_"}


@torch_converter("Eltwise")
def eltwise(layer: Layer, ctx: TorchContext) -> Lowered:
    """Caffe eltwise_layer.cpp accumulates left to right: ((a + b) + c); SUM with coefficients other than 1
    is a weighted sum."""
    p = layer.params
    if len(layer.inputs) == 1 and p.coeffs == (1.0,):
        return None      # FlowNet 2's one-bottom SUM with coefficient 1: the input itself
    if p.operation == "SUM" and any(c != 1.0 for c in p.coeffs):
        return Step(ctx.module(modules.WeightedSum, list(p.coeffs)), packed=True)
    if p.operation in _IN_PLACE and ctx.owns_input(layer, 0):
        # a.add_(b) is a + b to the bit; accumulating into the first input saves a tensor (torchvision: out += x).
        return Step(_IN_PLACE[p.operation], pairwise=True)
    return Step(_PAIRWISE[p.operation], pairwise=True)


@torch_converter("Concat")
def concat(layer: Layer, ctx: TorchContext) -> Lowered:
    if len(layer.inputs) == 1:
        return None
    return Step(torch.cat, (layer.params.axis,), packed=True)


@torch_converter("SpatialProduct")
def spatial_product(layer: Layer, ctx: TorchContext) -> Lowered:
    """(N, C, H, W) * (N, 1, H, W), broadcast over channels."""
    return Step(operator.mul, pairwise=True)


@torch_converter("Axpy")
def axpy(layer: Layer, ctx: TorchContext) -> Lowered:
    return ctx.module(modules.Axpy)
