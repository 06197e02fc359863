"""Loss family: Caffe's losses and Accuracy, for TRAIN-phase lowerings (a deploy lowering drops them first)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import nn

from protodef.errors import WeightsError
from protodef.ir import Layer

from .modules import loss as modules
from .registry import TorchContext, torch_converter, with_weights


@torch_converter("SoftmaxWithLoss")
def softmax_with_loss(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    return ctx.module(modules.SoftmaxWithLoss, p.axis, p.normalization, p.ignore_label, p.outputs == 2)


@torch_converter("InfogainLoss")
def infogain_loss(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    labels = ctx.input_shape(layer)[p.axis]
    module = ctx.module(modules.InfogainLoss, p.axis, p.normalization, p.ignore_label, p.outputs == 2, labels,
                        bool(p.source))
    if not p.source:
        return module
    return with_weights(module, layer, infogain=read_infogain_matrix(layer, ctx.net.source, labels))


@torch_converter("SigmoidCrossEntropyLoss")
def sigmoid_cross_entropy_loss(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(modules.SigmoidCrossEntropyLoss, layer.params.normalization, layer.params.ignore_label)


@torch_converter("EuclideanLoss")
def euclidean_loss(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(modules.EuclideanLoss)


@torch_converter("HingeLoss")
def hinge_loss(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(modules.HingeLoss, layer.params.norm)


@torch_converter("ContrastiveLoss")
def contrastive_loss(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(modules.ContrastiveLoss, layer.params.margin, layer.params.legacy_version)


@torch_converter("MultinomialLogisticLoss")
def multinomial_logistic_loss(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(modules.MultinomialLogisticLoss)


@torch_converter("SmoothL1Loss")
def smooth_l1_loss(layer: Layer, ctx: TorchContext) -> nn.Module:
    return ctx.module(modules.SmoothL1Loss, layer.params.sigma)


@torch_converter("Accuracy")
def accuracy(layer: Layer, ctx: TorchContext) -> nn.Module:
    p = layer.params
    return ctx.module(modules.Accuracy, p.top_k, p.axis, p.ignore_label, p.outputs == 2)


def read_infogain_matrix(layer: Layer, net_path: str | None, labels: int) -> np.ndarray:
    """The BlobProto that infogain_loss_param.source names (Caffe opens it from the working directory; we
    also look beside the prototxt), as a labels x labels matrix."""
    from caffe_proto import caffe_pb2

    source = layer.params.source
    candidates = [Path(source)]
    if net_path and not os.path.isabs(source):
        candidates.append(Path(net_path).parent / source)
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise WeightsError("the infogain matrix file is not there", where=layer.where, layer=layer,
                           expected="a binaryproto at " + " or ".join(map(str, candidates)), found="no file")
    blob = caffe_pb2.BlobProto()
    try:
        blob.ParseFromString(path.read_bytes())
    except Exception as error:     # protobuf's DecodeError, or a file that is not a BlobProto at all
        raise WeightsError(f"the infogain matrix file is not a BlobProto: {error}", where=layer.where,
                           layer=layer) from None
    values = np.asarray(blob.double_data if len(blob.double_data) else blob.data, np.float32)
    if values.size != labels * labels:
        raise WeightsError("the infogain matrix must be num_labels x num_labels", where=layer.where, layer=layer,
                           expected=f"{labels * labels} values", found=f"{values.size} in {path}")
    return values.reshape(labels, labels)
