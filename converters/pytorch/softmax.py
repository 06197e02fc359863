"""Softmax family: Softmax and ArgMax."""
from __future__ import annotations

from torch import nn

from protodef.ir import Layer

from .modules import softmax as modules
from .registry import TorchContext, torch_converter


@torch_converter("Softmax")
def softmax(layer: Layer, ctx: TorchContext) -> nn.Module:
    """Both subtract the maximum before exponentiating."""
    return ctx.module(nn.Softmax, dim=layer.params.axis)


@torch_converter("ArgMax")
def argmax(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    trailing = 0 if p.axis is not None else len(ctx.output_shape(layer)) - 3
    return ctx.module(modules.ArgMax, p.top_k, p.out_max_val, p.axis, trailing)
