"""Detection layers of the SSD and YOLO forks: Permute and Reorg as tensor steps, the others as the modules
of modules.py (no torchvision: NMS is Caffe's own loop)."""
from __future__ import annotations

from torch import nn

from protodef.errors import UnsupportedError
from protodef.ir import Layer
from protodef.layers.detection import (
    DetectionOutput,
    Normalize,
    PriorBox,
    Reorg,
    YoloDetectionOutput,
    Yolov3DetectionOutput,
)

from .modules import detection as modules
from .registry import Lowered, Step, TorchContext, blobs, torch_converter, with_weights


@torch_converter("Permute")
def permute(layer: Layer, ctx: TorchContext) -> Step:
    return Step("permute", (tuple(layer.params.order),))


@torch_converter("Normalize")
def normalize(layer: Layer, ctx: TorchContext) -> nn.Module:
    p: Normalize = layer.params
    module = ctx.module(modules.Normalize, p.channels, len(ctx.input_shape(layer)), p.across_spatial,
                        p.channel_shared, p.eps)
    (scale,) = blobs(layer, 1)
    return with_weights(module, layer, scale=scale.reshape(1 if p.channel_shared else p.channels))


@torch_converter("PriorBox")
def prior_box(layer: Layer, ctx: TorchContext) -> nn.Module:
    p: PriorBox = layer.params
    priors = p.priors()
    return with_weights(ctx.module(modules.PriorBox, priors.shape[2]), layer, priors=priors)


@torch_converter("Reorg")
def reorg(layer: Layer, ctx: TorchContext) -> Lowered:
    """reverse: depth to space with channels split (s, s, C/s^2). Otherwise darknet's reading of the buffer
    as (N, C/s^2, H*s, W*s), each s x s block moved into channels, the buffer read as (N, C*s^2, H/s, W/s)."""
    p: Reorg = layer.params
    _, c, h, w = ctx.input_shape(layer)
    s = p.stride
    if p.reverse:
        return [Step("reshape", ((-1, s, s, c // (s * s), h, w),)), Step("permute", ((0, 3, 4, 1, 5, 2),)),
                Step("reshape", ((-1, c // (s * s), h * s, w * s),))]
    return [Step("reshape", ((-1, c // (s * s), h, s, w, s),)), Step("permute", ((0, 3, 5, 1, 2, 4),)),
            Step("reshape", ((-1, c * s * s, h // s, w // s),))]


@torch_converter("DetectionOutput")
def detection_output(layer: Layer, ctx: TorchContext) -> nn.Module:
    p: DetectionOutput = layer.params
    return ctx.module(modules.DetectionOutput, p.num_classes, p.share_location, p.background_label_id, p.code_type,
                      p.variance_encoded_in_target, p.keep_top_k, p.confidence_threshold, p.nms_threshold, p.top_k,
                      p.eta)


def at_most_four_inputs(layer: Layer) -> None:
    if len(layer.inputs) > 4:
        raise UnsupportedError("the PyTorch YOLO output module takes at most 4 inputs", layer=layer,
                               where=layer.where, expected="<= 4", found=len(layer.inputs))


@torch_converter("YoloDetectionOutput")
def yolo_detection_output(layer: Layer, ctx: TorchContext) -> nn.Module:
    p: YoloDetectionOutput = layer.params
    anchors = [list(p.biases[:2 * p.num_box])] * len(layer.inputs)
    return ctx.module(modules.YoloDetectionOutput, 2, p.num_classes, p.num_box, p.confidence_threshold,
                      p.nms_threshold, anchors, [1] * len(layer.inputs))


@torch_converter("Yolov3DetectionOutput")
def yolov3_detection_output(layer: Layer, ctx: TorchContext) -> nn.Module:
    p: Yolov3DetectionOutput = layer.params
    at_most_four_inputs(layer)
    anchors = [[value for n in range(p.num_box) for value in p.biases[2 * p.anchor(t, n): 2 * p.anchor(t, n) + 2]]
               for t in range(len(layer.inputs))]
    return ctx.module(modules.YoloDetectionOutput, 3, p.num_classes, p.num_box, p.confidence_threshold,
                      p.nms_threshold, anchors, list(p.anchors_scale[:len(layer.inputs)]))

