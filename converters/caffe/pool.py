"""Pooling family: MaxPool, AveragePool and their global forms.

Caffe rounds the pooled size up and drops a last window that starts in the padding; BVLC's later round_mode
(or OpenCV's ceil_mode) rounds down. The exporter finds a Caffe pad and rounding whose windows include ONNX's,
drops extra ones with a Slice, and makes AVE's divisor ONNX's with a Scale by a per-position constant where
Caffe's (the window clipped to the padded input) differs (count_include_pad, a Pad node before it).
"""
from __future__ import annotations

import numpy as np
import onnx

from .arith import constant_run, scale_layer
from .conv import cropped
from .pad import padded_input
from .registry import CaffeLayer, ExportContext, attributes, caffe_converter
from .windows import (
    Windows,
    auto_pads,
    caffe_average_divisors,
    onnx_average_divisors,
    onnx_pool_count,
    pooling_plans,
)

LOWEST_FLOAT = float(np.finfo(np.float32).min)
_METHOD = {"MaxPool": "MAX", "AveragePool": "AVE", "GlobalMaxPool": "MAX", "GlobalAveragePool": "AVE"}


def pool_input(ctx: ExportContext, node: onnx.NodeProto, value: str) -> tuple[int, ...]:
    shape = ctx.shape(value)
    if len(shape) != 4:
        raise ctx.refuse(node, "Caffe pools 4-D tensors (N, C, H, W) only", found=shape)
    return shape


def set_pool_spatial(param, name: str, values: tuple[int, ...], default: int) -> None:
    """PoolingParameter's single `kernel_size`/`stride`/`pad` for equal sizes, else `name_h`/`name_w`."""
    if values[0] == values[1]:
        if values[0] != default or name == "kernel":
            setattr(param, "kernel_size" if name == "kernel" else name, values[0])
    else:
        setattr(param, f"{name}_h", values[0])
        setattr(param, f"{name}_w", values[1])


def pooling_layer(ctx: ExportContext, node: onnx.NodeProto, source: str, top: str, method: str) -> CaffeLayer:
    layer = ctx.layer(node, "Pooling", [ctx.blob(source)], [top])
    layer.proto.pooling_param.pool = getattr(layer.proto.pooling_param, method)
    return layer


@caffe_converter("GlobalMaxPool", "GlobalAveragePool")
def global_pooling(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    pool_input(ctx, node, node.input[0])
    layer = pooling_layer(ctx, node, node.input[0], node.output[0], _METHOD[node.op_type])
    layer.proto.pooling_param.global_pooling = True
    return [layer]


def rounding_modes(ctx: ExportContext) -> tuple[bool, ...]:
    """Caffe's ceil rounding always; floor where the target has a field for it."""
    return (True, False) if ctx.target.reads("round_mode") or ctx.target.reads("ceil_mode") else (True,)


def set_floor_rounding(ctx: ExportContext, param) -> None:
    if ctx.target.reads("round_mode"):
        param.round_mode = param.FLOOR
    else:
        param.ceil_mode = False


@caffe_converter("MaxPool", "AveragePool")
def pooling(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    attrs = attributes(node)
    method = _METHOD[node.op_type]
    if len(node.output) > 1 and node.output[1] and ctx.readers(node.output[1]):
        raise ctx.refuse(node, "MaxPool's Indices output is not exported (Caffe's mask counts differently)")
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise ctx.refuse(node, "dilated pooling has no Caffe form", found=tuple(attrs["dilations"]))
    fill_ok = (lambda fill: fill <= LOWEST_FLOAT) if method == "MAX" else (lambda fill: fill == 0)
    source, explicit = padded_input(ctx, node, fill_ok)
    x, y = pool_input(ctx, node, source), ctx.shape(node.output[0])
    axes = pooled_windows(node, ctx, attrs, x, y, explicit)
    found = pooling_plans(axes, rounding_modes(ctx))
    if found is None:
        raise ctx.refuse(node, "no symmetric Caffe padding below the kernel size places Caffe's windows where "
                               "ONNX's are", found=f"pads {[a.begin for a in axes]} + {[a.end for a in axes]}, "
                                                   f"Pad node {list(explicit)}")
    ceil, plans = found
    correction, output = None, node.output[0]
    if method == "AVE":
        correction = average_correction(ctx, node, axes, plans, bool(attrs.get("count_include_pad", 0)))
        correction, output = merged_correction(ctx, node, correction)
    pooled = output if all(p.exact for p in plans) and correction is None else ctx.intermediate(node, "pooled")
    layer = pooling_layer(ctx, node, source, pooled, method)
    p = layer.proto.pooling_param
    set_pool_spatial(p, "kernel", tuple(a.extent for a in axes), 0)
    set_pool_spatial(p, "stride", tuple(a.stride for a in axes), 1)
    set_pool_spatial(p, "pad", tuple(plan.pad for plan in plans), 0)
    if not ceil:
        set_floor_rounding(ctx, p)
    layers = [layer]
    if not all(plan.exact for plan in plans):
        kept = output if correction is None else ctx.intermediate(node, "kept")
        layers += cropped(ctx, node, pooled, kept, (y[0], y[1]), plans)
        pooled = kept
    if correction is not None:
        layers.append(scale_layer(ctx, node, [pooled], output, 2, [correction], what="divisor"))
    return layers


def pooled_windows(node: onnx.NodeProto, ctx: ExportContext, attrs: dict, x: tuple[int, ...], y: tuple[int, ...],
                   explicit: tuple[tuple[int, int], ...]) -> list[Windows]:
    kernel = tuple(attrs["kernel_shape"])
    strides = tuple(attrs.get("strides", [1, 1]))
    ceil = bool(attrs.get("ceil_mode", 0))
    padded = tuple(size + sum(e) for size, e in zip(x[2:], explicit))
    auto = attrs.get("auto_pad", b"NOTSET")
    pads = auto_pads(auto.decode() if isinstance(auto, bytes) else auto, padded, kernel, strides, y[2:])
    begins, ends = pads if pads else (list(attrs.get("pads", [0] * 4)[:2]), list(attrs.get("pads", [0] * 4)[2:]))
    axes = [Windows(size, k, s, b, e, count, explicit=ex)
            for size, k, s, b, e, count, ex in zip(x[2:], kernel, strides, begins, ends, y[2:], explicit)]
    for axis in axes:
        if onnx_pool_count(axis, ceil) != axis.count:
            raise ctx.refuse(node, "ONNX's shape inference and onnxruntime/PyTorch disagree on this pooled size "
                                   "(ceil_mode with a window starting in the padding)",
                             expected=onnx_pool_count(axis, ceil), found=axis.count)
    return axes


def average_correction(ctx: ExportContext, node: onnx.NodeProto, axes: list[Windows], plans: list,
                       count_include_pad: bool) -> np.ndarray | None:
    """Caffe's divisor over ONNX's, per output position (None where they agree everywhere)."""
    ratios = [caffe_average_divisors(axis, plan) / onnx_average_divisors(axis, count_include_pad)
              for axis, plan in zip(axes, plans)]
    correction = np.outer(*ratios)
    return None if np.all(correction == 1) else correction


def merged_correction(ctx: ExportContext, node: onnx.NodeProto, correction: np.ndarray | None
                      ) -> tuple[np.ndarray | None, str]:
    """A Mul by a per-position constant that alone reads the pooled values joins the divisor correction
    (protodef's own ONNX writes Caffe's divisor that way); when the two cancel, neither is written."""
    follower = ctx.sole_reader(node.output[0], {"Mul"})
    y = ctx.shape(node.output[0])
    if follower is None or ctx.shape(follower.output[0]) != y:
        return correction, node.output[0]
    other = [value for value in follower.input if value != node.output[0]]
    if len(other) != 1 or not ctx.is_constant(other[0]):
        return correction, node.output[0]
    value = np.asarray(ctx.graph.constants[other[0]], np.float64)
    run = constant_run(value, y)
    if run is None or run[0] < 2:
        return correction, node.output[0]
    factor = np.broadcast_to(value.reshape(value.shape[max(0, value.ndim - len(y)):]), y)[0, 0]
    combined = factor * (1.0 if correction is None else correction)
    ctx.absorb(follower)
    # The Mul's constant is float32; its product with the exact ratio is 1 up to that rounding.
    return (None if np.allclose(combined, 1.0, rtol=1e-6, atol=0) else np.ascontiguousarray(combined),
            follower.output[0])

