"""Convolution family: Convolution, Deconvolution and the forks' depthwise types."""
from __future__ import annotations

import numpy as np

from protodef.errors import UnsupportedError
from protodef.ir import Layer
from protodef.layers.conv import Convolution, Im2col

from .proto import NodeProto
from .registry import OnnxContext, onnx_converter


def channel_axis_one(layer: Layer, p: Convolution) -> None:
    """ONNX Conv reads channels on axis 1; Caffe's `axis` could put them elsewhere."""
    if p.axis != 1:
        raise UnsupportedError("ONNX convolutions read channels on axis 1", layer=layer, where=layer.where,
                               expected="convolution_param.axis 1", found=p.axis)


def conv_nodes(op: str, layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """One `op` node per input/output pair (Caffe convolves each bottom into its top), all reading the
    layer's one weight and bias initializer."""
    p: Convolution = layer.params
    channel_axis_one(layer, p)
    weights = [ctx.initializer(layer, "weight")] + ([ctx.initializer(layer, "bias")] if p.bias_term else [])
    # The first node is named after the layer, a later one `layer/i`.
    return [ctx.node(op, [ctx.value(source), *weights], [ctx.value(target)], layer, str(index) if index else None,
                     kernel_shape=list(p.kernel), strides=list(p.stride), pads=[*p.pad, *p.pad],
                     dilations=list(p.dilation), group=p.group)
            for index, (source, target) in enumerate(zip(layer.inputs, layer.outputs))]


@onnx_converter("Convolution")
def convolution(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    return conv_nodes("Conv", layer, ctx)


# The depthwise forks' params already carry group = channels.
onnx_converter("ConvolutionDepthwise")(convolution)


@onnx_converter("Deconvolution")
def deconvolution(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe's output size s*(i-1) + d*(k-1) + 1 - 2p is ConvTranspose's with symmetric pads and no
    output_padding; Caffe's weight (C_in, num_output/group, *kernel) is ConvTranspose's layout."""
    return conv_nodes("ConvTranspose", layer, ctx)


@onnx_converter("Im2col")
def im2col(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """A grouped convolution whose filters each pick one kernel offset (weight 1 there, 0 elsewhere): output
    channel c * K + k is input channel c at kernel offset k, Caffe's im2col order."""
    p: Im2col = layer.params
    offsets = int(np.prod(p.kernel))
    one_hot = np.eye(offsets, dtype=np.float32).reshape(offsets, 1, *p.kernel)
    selector = ctx.initializer(layer, "selector", np.tile(one_hot, (p.channels,) + (1,) * (one_hot.ndim - 1)))
    return [ctx.node("Conv", [ctx.value(layer.inputs[0]), selector], [ctx.value(layer.outputs[0])], layer,
                     kernel_shape=list(p.kernel), strides=list(p.stride), pads=[*p.pad, *p.pad],
                     dilations=list(p.dilation), group=p.channels)]
