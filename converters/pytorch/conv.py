"""Convolution family: Convolution, Deconvolution and the forks' depthwise types, as torch's own modules."""
from __future__ import annotations

from torch import nn

from protodef.errors import UnsupportedError
from protodef.ir import Layer

from .modules import conv as modules
from .registry import Step, TorchContext, blobs, torch_converter, with_weights

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_DECONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


@torch_converter("Convolution")
@torch_converter("ConvolutionDepthwise")
def convolution(layer: Layer, ctx: TorchContext) -> Step:
    """Caffe's weights (num_output, C/group, *kernel) are torch's Conv layout."""
    return _convolution(layer, ctx, _CONV)


@torch_converter("Deconvolution")
def deconvolution(layer: Layer, ctx: TorchContext) -> Step:
    """Caffe's weights (C, num_output/group, *kernel) are torch's ConvTranspose layout, and its output size
    s*(i-1) + d*(k-1) + 1 - 2p is ConvTranspose's without output_padding."""
    return _convolution(layer, ctx, _DECONV)


def _convolution(layer: Layer, ctx: TorchContext, classes: dict[int, type]) -> Step:
    """One module, called on each input in turn: Caffe convolves every bottom with the same weights."""
    p = layer.params
    spatial = len(p.kernel)
    if p.axis != 1 or spatial not in classes or len(ctx.input_shape(layer)) != spatial + 2:
        raise UnsupportedError("the PyTorch backend converts convolutions over 1 to 3 spatial axes after the "
                               "channel axis 1", layer=layer, where=layer.where,
                               expected="axis 1, (N, C, *1-3 spatial axes)", found=ctx.input_shape(layer))
    module = ctx.module(classes[spatial], p.in_channels, p.num_output, kernel_size=p.kernel, stride=p.stride,
                        padding=p.pad, dilation=p.dilation, groups=p.group, bias=p.bias_term)
    if p.bias_term:
        weight, bias = blobs(layer, 2)
        return Step(with_weights(module, layer, weight=weight, bias=bias), per_input=True)
    (weight,) = blobs(layer, 1)
    return Step(with_weights(module, layer, weight=weight), per_input=True)


@torch_converter("Im2col")
def im2col(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    return ctx.module(modules.Im2col, p.channels, list(p.kernel), list(p.stride), list(p.pad),
                      list(p.dilation))
