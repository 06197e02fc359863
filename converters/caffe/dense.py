"""Fully connected family: Gemm and MatMul (+ Add) -> InnerProduct.

Caffe's InnerProduct flattens the axes from `axis` on and multiplies by a (num_output, K) weight; a Flatten
or Reshape that only feeds it is read through, since InnerProduct flattens the same way itself.
"""
from __future__ import annotations

import math

import numpy as np
import onnx

from .registry import CaffeLayer, ExportContext, attributes, caffe_converter


def inner_product(ctx: ExportContext, node: onnx.NodeProto, source: str, top: str, weight: np.ndarray,
                  bias: np.ndarray | None, axis: int) -> CaffeLayer:
    blobs = [weight] + ([bias] if bias is not None else [])
    layer = ctx.layer(node, "InnerProduct", [ctx.blob(source)], [top], blobs=blobs)
    p = layer.proto.inner_product_param
    p.num_output = weight.shape[0]
    if bias is None:
        p.bias_term = False
    if axis != 1:
        p.axis = axis
    return layer


def unflattened(ctx: ExportContext, value: str) -> str:
    """The input of a Flatten/Reshape that makes `value` = (N, C*H*W...) from (N, C, H, W...) and is read only
    here: InnerProduct(axis=1) on it computes the same."""
    producer = ctx.producer(value)
    if producer is None or producer.op_type not in ("Flatten", "Reshape") or len(ctx.readers(value)) != 1:
        return value
    if value in ctx.graph.outputs:
        return value
    source = producer.input[0]
    x, y = ctx.shape(source), ctx.shape(value)
    if len(x) >= 2 and y == (x[0], math.prod(x[1:])):
        return source
    return value


def constant_bias(ctx: ExportContext, node: onnx.NodeProto, value: np.ndarray | None, outputs: int,
                  rows: int) -> np.ndarray | None:
    """A bias broadcast along the rows: one number per output column."""
    if value is None:
        return None
    value = np.asarray(value, np.float32)
    if value.size == 1:
        return np.full(outputs, value.reshape(-1)[0], np.float32)
    if value.shape[-1:] == (outputs,) and value.size == outputs:
        return value.reshape(outputs)
    if value.ndim == 2 and value.shape == (rows, outputs) and np.all(value == value[:1]):
        return value[0]
    raise ctx.refuse(node, "a bias that differs between rows has no InnerProduct form", found=value.shape)


@caffe_converter("Gemm")
def gemm(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """Y = alpha * A B' + beta * C with A computed and B constant: InnerProduct with weight alpha * B (or B
    transposed), bias beta * C."""
    attrs = attributes(node)
    a, b = node.input[:2]
    if attrs.get("transA", 0) or ctx.is_constant(a) or not ctx.is_constant(b):
        raise ctx.refuse(node, "a Gemm is exported as an InnerProduct: A computed and not transposed, B constant")
    weight = np.asarray(ctx.graph.constants[b], np.float32)
    weight = weight if attrs.get("transB", 0) else weight.T
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    weight = np.ascontiguousarray(weight * np.float32(alpha) if alpha != 1 else weight)
    rows = ctx.shape(a)[0]
    bias = constant_bias(ctx, node, ctx.optional_constant(node, 2, "C"), weight.shape[0], rows)
    if bias is not None and beta != 1:
        bias = bias * np.float32(beta)
    return [inner_product(ctx, node, unflattened(ctx, a), node.output[0], weight, bias, axis=1)]


@caffe_converter("MatMul")
def matmul(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """x (..., K) @ W (K, N), W constant: InnerProduct over the last axis; an Add of a constant (N,) that only
    reads the product becomes its bias."""
    a, b = node.input[:2]
    if ctx.is_constant(a) or not ctx.is_constant(b) or ctx.graph.constants[b].ndim != 2:
        raise ctx.refuse(node, "a MatMul is exported as an InnerProduct: a computed input times a constant matrix")
    x = ctx.shape(a)
    if len(x) < 2:
        raise ctx.refuse(node, "a 1-D input has no InnerProduct form", found=x)
    weight = np.ascontiguousarray(np.asarray(ctx.graph.constants[b], np.float32).T)
    bias, output = None, node.output[0]
    follower = ctx.sole_reader(output, {"Add"})
    if follower is not None:
        other = follower.input[1] if follower.input[0] == output else follower.input[0]
        value = ctx.graph.constants.get(other)
        if value is not None and np.shape(value)[-1:] in ((), (1,), (weight.shape[0],)) and \
                np.size(value) in (1, weight.shape[0]) and ctx.shape(follower.output[0]) == ctx.shape(output):
            bias = constant_bias(ctx, follower, value, weight.shape[0], 1)
            output = follower.output[0]
            ctx.absorb(follower)
    return [inner_product(ctx, node, a, output, weight, bias, axis=len(x) - 1)]
