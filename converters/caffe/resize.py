"""Resize (and the old Upsample op): nearest-neighbour by an integer factor and bilinear with aligned corners.

Which input pixel ONNX reads is computed from its coordinate transform and rounding for these very sizes;
only maps Caffe reproduces exactly are exported. Nearest by integer factors: the fork's Upsample where the
target has it, else a Deconvolution with one all-ones kernel of the factor's size per channel (each input
pixel copied into its block). Bilinear with aligned corners: Interp where the target has it, else when the
output is s * (input - 1) + 1, a Deconvolution with the bilinear tent kernel (stride s, pad s - 1).
"""
from __future__ import annotations

import numpy as np
import onnx

from .conv import convolution_layer
from .registry import CaffeLayer, ExportContext, attributes, caffe_converter


def _text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def source_coordinates(mode: str, out: int, size: int, scale: float) -> np.ndarray | None:
    """ONNX Resize's coordinate_transformation_mode: the input coordinate of each output index."""
    x = np.arange(out, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out > 1 else np.zeros(out)
    if mode == "align_corners":
        return x * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    return None


def nearest_indices(coordinates: np.ndarray, rounding: str, size: int) -> np.ndarray | None:
    """ONNX's nearest_mode applied to the coordinates, clamped to the input."""
    floor = np.floor(coordinates)
    tie = coordinates - floor == 0.5
    if rounding == "round_prefer_floor":
        chosen = np.where(tie, floor, np.round(coordinates))
    elif rounding == "round_prefer_ceil":
        chosen = np.where(tie, floor + 1, np.round(coordinates))
    elif rounding == "floor":
        chosen = floor
    elif rounding == "ceil":
        chosen = np.ceil(coordinates)
    else:
        return None
    return np.clip(chosen, 0, size - 1).astype(np.int64)


def resize_request(node: onnx.NodeProto, ctx: ExportContext) -> tuple[str, str, str, list[float]]:
    """(mode, coordinate transform, nearest rounding, scale per spatial axis) of a Resize or Upsample."""
    attrs = attributes(node)
    x, y = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    mode = _text(attrs.get("mode"), "nearest")
    if node.op_type == "Upsample" or ctx.graph.opset < 11:
        transform, rounding = "asymmetric", "floor"
        given = attrs.get("scales")
        scales = list(given) if given is not None else ctx.constant(node, 1, "the scales").reshape(-1).tolist()
    else:
        transform = _text(attrs.get("coordinate_transformation_mode"), "half_pixel")
        rounding = _text(attrs.get("nearest_mode"), "round_prefer_floor")
        given = ctx.optional_constant(node, 2, "the scales")
        scales = given.reshape(-1).tolist() if given is not None and given.size else [b / a for a, b in zip(x, y)]
        if attrs.get("antialias", 0) or attrs.get("axes") is not None and list(attrs["axes"]) not in ([2, 3],):
            raise ctx.refuse(node, "antialiased Resize, or Resize over axes other than H and W, is not exported")
        if len(scales) == 2:
            scales = [1.0, 1.0, *scales]
    if len(x) != 4 or x[:2] != y[:2]:
        raise ctx.refuse(node, "only resizing H and W of a 4-D tensor is exported", found=(x, y))
    return mode, transform, rounding, [float(s) for s in scales[2:]]


@caffe_converter("Resize", "Upsample")
def resize(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    mode, transform, rounding, scales = resize_request(node, ctx)
    x, y = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    if mode == "nearest":
        return nearest(node, ctx, transform, rounding, scales, x, y)
    if mode == "linear":
        return bilinear(node, ctx, transform, scales, x, y)
    raise ctx.refuse(node, f"{mode} interpolation has no Caffe form")


def nearest(node: onnx.NodeProto, ctx: ExportContext, transform: str, rounding: str, scales: list[float],
            x: tuple[int, ...], y: tuple[int, ...]) -> list[CaffeLayer]:
    factors = []
    for size, out, scale in zip(x[2:], y[2:], scales):
        coordinates = source_coordinates(transform, out, size, scale)
        indices = None if coordinates is None else nearest_indices(coordinates, rounding, size)
        factor = out // size
        if indices is None or out != factor * size or not np.array_equal(indices, np.arange(out) // factor):
            raise ctx.refuse(node, "nearest-neighbour resizing is exported where it repeats each pixel an integer "
                                   f"number of times; this one ({transform}, {rounding}) reads other pixels",
                             found=f"{size} -> {out}")
        factors.append(factor)
    if ctx.target.reads("upsample_nearest") and factors[0] == factors[1]:
        layer = ctx.layer(node, "Upsample", [ctx.blob(node.input[0])], [node.output[0]])
        layer.proto.upsample_param.scale = factors[0]
        return [layer]
    channels = x[1]
    return [fixed_deconvolution(ctx, node, np.ones((channels, 1, *factors), np.float32), factors, (0, 0))]


def fixed_deconvolution(ctx: ExportContext, node: onnx.NodeProto, weight: np.ndarray, stride, pad) -> CaffeLayer:
    """A per-channel (group = channels) Deconvolution with a fixed kernel and no bias."""
    channels = weight.shape[0]
    return convolution_layer(ctx, node, "Deconvolution", node.input[0], node.output[0], weight, None,
                             num_output=channels, group=channels, stride=tuple(stride), pad=tuple(pad),
                             dilation=(1, 1))


def bilinear(node: onnx.NodeProto, ctx: ExportContext, transform: str, scales: list[float], x: tuple[int, ...],
             y: tuple[int, ...]) -> list[CaffeLayer]:
    for size, out, scale in zip(x[2:], y[2:], scales):
        coordinates = source_coordinates(transform, out, size, scale)
        aligned = source_coordinates("align_corners", out, size, scale)
        if coordinates is None or not np.allclose(coordinates, aligned, rtol=0, atol=1e-9):
            raise ctx.refuse(node, "bilinear resizing is exported with aligned corners only (Caffe's Interp); "
                                   f"'{transform}' samples other points", found=f"{size} -> {out}")
    if ctx.target.has("Interp"):
        layer = ctx.layer(node, "Interp", [ctx.blob(node.input[0])], [node.output[0]])
        layer.proto.interp_param.height, layer.proto.interp_param.width = y[2], y[3]
        return [layer]
    factors = [(out - 1) // (size - 1) if size > 1 else 0 for size, out in zip(x[2:], y[2:])]
    if any(f < 1 or f * (size - 1) + 1 != out for f, size, out in zip(factors, x[2:], y[2:])):
        raise ctx.refuse(node, f"target '{ctx.target.name}' has no Interp layer, and a fixed Deconvolution is "
                               "exact only for outputs of s * (input - 1) + 1", found=(x[2:], y[2:]))
    tents = [1 - np.abs(np.arange(2 * f - 1) - (f - 1)) / f for f in factors]
    kernel = np.outer(*tents).astype(np.float32)
    weight = np.broadcast_to(kernel, (x[1], 1, *kernel.shape)).copy()
    return [fixed_deconvolution(ctx, node, weight, factors, [f - 1 for f in factors])]
