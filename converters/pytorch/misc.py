"""Misc family: Silence (computes nothing); FlowWarp and Correlation1D (FlowNet 2), LSTMUnit."""
from __future__ import annotations

import operator

import torch
from torch import nn

from protodef.ir import Layer
from protodef.layers.misc import Correlation, Parameter, Reduction

from .modules import misc as modules
from .registry import Lowered, Step, TorchContext, blobs, torch_converter, with_weights


@torch_converter("Silence")
def silence(layer: Layer, ctx: TorchContext) -> Lowered:
    """Silence only stops its inputs from being net outputs; it has no outputs of its own."""
    return None


@torch_converter("FlowWarp")
def flow_warp(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(modules.FlowWarp, float("nan") if layer.params.fill_nan else 0.0)


@torch_converter("Correlation1D")
def correlation_1d(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    return ctx.module(modules.Correlation1D, p.kernel_size, p.max_displacement, p.pad, p.stride_1,
                      list(p.shifts), p.subtract)


@torch_converter("LSTMUnit")
def lstm_unit(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(modules.LSTMUnit)


@torch_converter("Parameter")
def parameter(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Parameter = layer.params
    return with_weights(ctx.module(modules.Blob, list(p.shape)), layer, weight=blobs(layer, 1)[0])


_TERMS = {"SUM": [], "MEAN": [], "ASUM": [Step(torch.abs)], "SUMSQ": [Step(torch.square)]}


@torch_converter("Reduction")
def reduction(layer: Layer, ctx: TorchContext) -> Lowered:
    """The sum over every axis from `axis` on (of x, |x| or x^2), times coeff (coeff / count for MEAN)."""
    p: Reduction = layer.params
    x = ctx.input_shape(layer)
    steps = _TERMS[p.operation] + [Step(torch.sum, (list(range(p.axis, len(x))),))]
    factor = p.scale(x)
    return steps + [Step(operator.mul, (factor,))] if factor != 1 else steps


@torch_converter("Correlation")
def correlation(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Correlation = layer.params
    return ctx.module(modules.Correlation, p.kernel_size, p.max_displacement, p.pad, p.stride_1,
                      [list(d) for d in p.displacements()], p.subtract)
