"""Fully connected family: InnerProduct as torch.flatten (when needed) and nn.Linear."""
from __future__ import annotations

import torch
from torch import nn

from protodef.ir import Layer

from .registry import Lowered, Step, TorchContext, blobs, torch_converter, with_weights


@torch_converter("InnerProduct")
def inner_product(layer: Layer, ctx: TorchContext) -> Lowered:
    """Caffe flattens the axes from `axis` on; its weight is (num_output, K), or (K, num_output) when
    `transpose`, where Linear wants (num_output, K)."""
    p = layer.params
    linear = ctx.module(nn.Linear, p.in_features, p.num_output, bias=p.bias_term)
    weight, *bias = blobs(layer, 2 if p.bias_term else 1)
    arrays = {"weight": weight.T if p.transpose else weight}
    if bias:
        arrays["bias"] = bias[0]
    with_weights(linear, layer, **arrays)
    if len(ctx.input_shape(layer)) == p.axis + 1:
        return linear
    return [Step(torch.flatten, (p.axis,)), linear]
