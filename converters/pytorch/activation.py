"""Element-wise family: activations as torch modules where one computes Caffe's function, ours elsewhere."""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from protodef.ir import Layer
from protodef.layers.activation import Clip, ReLU6, Swish

from .modules import activation as modules
from .registry import Lowered, Step, TorchContext, blobs, torch_converter, with_weights


@torch_converter("ReLU")
def relu(layer: Layer, ctx: TorchContext) -> nn.Module:
    """Caffe: max(x, 0) + negative_slope * min(x, 0), which is LeakyReLU's x if x > 0 else slope * x. In place
    where nothing else reads the input (as torchvision does; it saves a tensor's worth of memory traffic)."""
    slope = layer.params.negative_slope
    inplace = ctx.owns_input(layer)
    if slope == 0:
        return ctx.module(nn.ReLU, inplace=inplace)
    return ctx.module(nn.LeakyReLU, negative_slope=slope, inplace=inplace)


@torch_converter("PReLU")
def prelu(layer: Layer, ctx: TorchContext) -> nn.Module:
    """One slope per channel (axis 1), or one for all when channel_shared (Caffe stores that one as a scalar)."""
    p = layer.params
    count = 1 if p.channel_shared else p.channels
    module = ctx.module(nn.PReLU, num_parameters=count)
    (slopes,) = blobs(layer, 1)
    return with_weights(module, layer, weight=slopes.reshape(count) if p.channel_shared else slopes)


@torch_converter("ELU")
def elu(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(nn.ELU, alpha=layer.params.alpha)


@torch_converter("Sigmoid")
def sigmoid(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(nn.Sigmoid)


@torch_converter("TanH")
def tanh(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(nn.Tanh)


@torch_converter("AbsVal")
def absval(layer: Layer, ctx: TorchContext) -> Step:
    return Step(torch.abs)


@torch_converter("BNLL")
def bnll(layer: Layer, ctx: TorchContext) -> nn.Module:
    """Caffe bnll_layer.cpp: x + log(1 + exp(-x)) for x > 0, else log(1 + exp(x)); that is softplus, and
    Softplus's linear branch above 20 differs from it by under exp(-20), below float32's resolution there."""
    return ctx.module(nn.Softplus, beta=1.0, threshold=20.0)


@torch_converter("Power")
def power(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    return ctx.module(modules.Power, p.power, p.scale, p.shift)


@torch_converter("Exp")
def exp(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    return ctx.module(modules.Exp, p.log_base, p.scale, p.shift)


@torch_converter("Log")
def log(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    return ctx.module(modules.Log, p.log_base, p.scale, p.shift)


@torch_converter("Threshold")
def threshold(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(modules.Threshold, layer.params.threshold)


@torch_converter("Dropout")
def dropout(layer: Layer, ctx: TorchContext) -> Lowered:
    """Caffe's Dropout in either mode (a deploy lowering's remove_dropout pass takes it out before this)."""
    p = layer.params
    return ctx.module(modules.CaffeDropout, p.ratio, p.scale_train)


@torch_converter("NegReLU")
def neg_relu(layer: Layer, ctx: TorchContext) -> Lowered:
    """min(x, 0) + slope * max(x, 0): ReLU (leaky with the slope) mirrored through the origin, -f(-x)."""
    slope = layer.params.negative_slope
    activation = Step(torch.relu) if slope == 0 else Step(F.leaky_relu, (slope,))
    return [Step(operator.neg), activation, Step(operator.neg)]


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
