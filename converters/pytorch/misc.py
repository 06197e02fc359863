"""Misc family: Silence (computes nothing); FlowWarp and Correlation1D (FlowNet 2), LSTMUnit."""
from __future__ import annotations

from torch import nn

from protodef.ir import Layer

from . import census_modules
from .registry import Lowered, TorchContext, torch_converter


@torch_converter("Silence")
def silence(layer: Layer, ctx: TorchContext) -> Lowered:
    """Silence only stops its inputs from being net outputs; it has no outputs of its own."""
    return None


@torch_converter("FlowWarp")
def flow_warp(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(census_modules.FlowWarp, float("nan") if layer.params.fill_nan else 0.0)


@torch_converter("Correlation1D")
def correlation_1d(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    return ctx.module(census_modules.Correlation1D, p.kernel_size, p.max_displacement, p.pad, p.stride_1,
                      list(p.shifts), p.subtract)


@torch_converter("LSTMUnit")
def lstm_unit(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(census_modules.LSTMUnit)
