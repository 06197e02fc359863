"""Fully connected family: InnerProduct as torch.flatten (when needed) and nn.Linear; LSTM and RNN."""
from __future__ import annotations

import operator

import torch
from torch import nn

from protodef.ir import Layer
from protodef.layers.dense import Embed

from .modules import dense as modules
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


@torch_converter("LSTM")
@torch_converter("RNN")
def recurrent(layer: Layer, ctx: TorchContext) -> Lowered:
    """Our module for Caffe's unrolled net (torch's nn.LSTM orders the gates differently and has no cont)."""
    p = layer.params
    module = ctx.module(modules.CaffeRecurrent, layer.type == "LSTM", p.in_features, p.hidden,
                        p.static_features, p.expose_hidden)
    weights = list(blobs(layer, len(p.weight_shapes())))
    names = ["weight_x", "bias_x"] + (["weight_static"] if p.static_features else []) + ["weight_h"]
    names += ["weight_o", "bias_o"] if layer.type == "RNN" else []
    with_weights(module, layer, **dict(zip(names, weights)))
    steps = [Step(module, packed=True)]
    return steps if p.expose_hidden else steps + [Step(operator.getitem, (0,))]


@torch_converter("Embed")
def embed(layer: Layer, ctx: TorchContext) -> Lowered:
    p: Embed = layer.params
    module = ctx.module(modules.Embed, p.input_dim, p.num_output, p.bias_term)
    weights = blobs(layer, 2 if p.bias_term else 1)
    return with_weights(module, layer, weight=weights[0], **({"bias": weights[1]} if p.bias_term else {}))
