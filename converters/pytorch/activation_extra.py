"""More element-wise activations: ReLU6, Clip, Swish, Mish."""
from __future__ import annotations

import torch
from torch import nn

from protodef.ir import Layer
from protodef.layers.activation_extra import Clip, ReLU6, Swish

from . import longtail_modules as modules
from .registry import Lowered, Step, TorchContext, torch_converter


@torch_converter("ReLU6")
def relu6(layer: Layer, ctx: TorchContext) -> Lowered:
    """min(max(x, 0) + slope * min(x, 0), 6): nn.ReLU6 without a slope, else LeakyReLU then min with 6."""
    p: ReLU6 = layer.params
    if p.negative_slope == 0:
        return ctx.module(nn.ReLU6)
    return [ctx.module(nn.LeakyReLU, p.negative_slope), Step(torch.clamp, kwargs={"max": 6.0})]


@torch_converter("Clip")
def clip(layer: Layer, ctx: TorchContext) -> Lowered:
    """Caffe: max(min, min(x, max)). torch.clamp(x, min, max) gives max when min > max; clamping from above
    then from below is Caffe's order for every min and max."""
    p: Clip = layer.params
    return [Step(torch.clamp, kwargs={"max": p.max}), Step(torch.clamp, kwargs={"min": p.min})]


@torch_converter("Swish")
def swish(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Swish = layer.params
    return ctx.module(nn.SiLU) if p.beta == 1 else ctx.module(modules.Swish, p.beta)


@torch_converter("Mish")
def mish(layer: Layer, ctx: TorchContext) -> Lowered:
    return ctx.module(nn.Mish)
