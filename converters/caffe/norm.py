"""Normalisation family: BatchNormalization -> BatchNorm + Scale, LRN -> LRN."""
from __future__ import annotations

import numpy as np
import onnx

from .registry import CaffeLayer, ExportContext, attributes, caffe_converter


def batchnorm_statistics(node: onnx.NodeProto, ctx: ExportContext) -> tuple[np.ndarray, ...]:
    """(gamma, beta, mean, variance, eps) of an inference-mode BatchNormalization, in float64."""
    attrs = attributes(node)
    if attrs.get("training_mode", 0) or any(node.output[1:]):
        raise ctx.refuse(node, "training-mode BatchNormalization (batch statistics, running-mean outputs) is not "
                               "exported; export the model in eval mode")
    gamma, beta, mean, variance = (np.asarray(ctx.constant(node, i, what), np.float64).reshape(-1) for i, what in
                                   enumerate(("the scale", "the bias", "the mean", "the variance"), start=1))
    return gamma, beta, mean, variance, float(attrs.get("epsilon", 1e-5))


def batchnorm_affine(node: onnx.NodeProto, ctx: ExportContext) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel (scale, shift) a BatchNormalization applies: y = x * scale + shift."""
    gamma, beta, mean, variance, eps = batchnorm_statistics(node, ctx)
    scale = gamma / np.sqrt(variance + eps)
    return scale, beta - mean * scale


@caffe_converter("BatchNormalization")
def batch_normalization(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """Caffe batch_norm_layer.cpp: (x - mean / s) / sqrt(variance / s + eps) with s the third blob (1 here),
    then Scale for gamma and beta unless they are 1 and 0."""
    gamma, beta, mean, variance, eps = batchnorm_statistics(node, ctx)
    if len(ctx.shape(node.input[0])) < 2:
        raise ctx.refuse(node, "BatchNormalization needs a channel axis (axis 1)")
    output = node.output[0]
    affine = not (np.all(gamma == 1) and np.all(beta == 0))
    normalised = ctx.intermediate(node, "normalised") if affine else output
    norm = ctx.layer(node, "BatchNorm", [ctx.blob(node.input[0])], [normalised],
                     blobs=[mean, variance, np.ones(1)])
    norm.proto.batch_norm_param.use_global_stats = True
    norm.proto.batch_norm_param.eps = eps
    if not affine:
        return [norm]
    scale = ctx.layer(node, "Scale", [normalised], [output], blobs=[gamma, beta], what="scale")
    scale.proto.scale_param.bias_term = True
    return [norm, scale]


@caffe_converter("LRN")
def lrn(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """ONNX LRN sums squares over [c - (size-1)/2, c + size/2]: Caffe's ACROSS_CHANNELS window for odd sizes;
    both compute x / (bias + alpha / size * sum)^beta."""
    attrs = attributes(node)
    size, bias = int(attrs["size"]), float(attrs.get("bias", 1.0))
    if size % 2 == 0:
        raise ctx.refuse(node, "an even LRN size centres its window differently from Caffe's (odd sizes only)",
                         found=size)
    if bias != 1 and not ctx.target.reads("lrn_k"):
        raise ctx.refuse(node, f"target '{ctx.target.name}' ignores LRN's k (it uses 1)", found=bias)
    if len(ctx.shape(node.input[0])) != 4:
        raise ctx.refuse(node, "Caffe's LRN takes 4-D tensors", found=ctx.shape(node.input[0]))
    layer = ctx.layer(node, "LRN", [ctx.blob(node.input[0])], [node.output[0]])
    p = layer.proto.lrn_param
    p.local_size = size
    p.alpha = float(attrs.get("alpha", 1e-4))
    p.beta = float(attrs.get("beta", 0.75))
    if bias != 1:
        p.k = bias
    return [layer]
