"""Pooling family: Caffe's MAX, AVE and test-phase STOCHASTIC pooling, with Caffe's window rules.

Caffe (pooling_layer.cpp) rounds the output size up, drops a last window that would start in the padding,
and divides AVE sums by the window's area clipped to input + pad (so the ceil overhang past the padding
does not count). ONNX pools floor; we give every pool explicit end padding that makes the floor-mode output
exactly the IR's shape, and correct the AVE divisor with a constant computed here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from protodef.errors import UnsupportedError
from protodef.ir import Layer
from protodef.layers.pool import Pooling
from protodef.symbolic import definitely, is_static, maximum, minimum

from .registry import OnnxContext, onnx_converter

LOWEST_FLOAT = float(np.finfo(np.float32).min)   # Caffe starts a MAX window at -FLT_MAX
SMALLEST_NORMAL_FLOAT = float(np.finfo(np.float32).tiny)   # FLT_MIN: Caffe's STOCHASTIC test-phase sum starts here


@dataclass(frozen=True)
class Windows:
    """Padding before and after each spatial axis that places a floor-mode pool's windows where Caffe's are
    (the end padding may exceed the kernel)."""

    begin: tuple[int, ...]
    end: tuple[int, ...]

    def fits_attribute(self, kernel: tuple[int, ...]) -> bool:
        """onnxruntime refuses pool `pads` that are not smaller than the kernel; an attribute is a number, so
        padding that depends on a symbolic size is an explicit Pad."""
        return all(isinstance(e, int) and b < k and e < k for b, e, k in zip(self.begin, self.end, kernel))


def windows(layer: Layer, sizes: tuple[int, ...], outputs: tuple[int, ...], begin: tuple[int, ...]) -> Windows:
    """End padding that makes a floor-mode pool give exactly `outputs` windows starting at -begin, one stride
    apart: the padded length is (o - 1) * s + k. Caffe's count is never below the floor count of the input
    without end padding (its padding clip drops at most the one window ceil added), so no input is cut."""
    p: Pooling = layer.params
    ends = []
    for size, o, k, s, b in zip(sizes, outputs, p.kernel, p.stride, begin):
        end = maximum(0, (o - 1) * s + k - size - b)
        if definitely((size + b + end - k) // s + 1 != o):
            raise UnsupportedError("no ONNX padding reproduces Caffe's pooled size", layer=layer,
                                   where=layer.where, expected=o, found=(size + b + end - k) // s + 1)
        ends.append(end)
    return Windows(tuple(begin), tuple(ends))


def caffe_ave_divisors(p: Pooling, sizes: tuple[int, ...], outputs: tuple[int, ...]) -> np.ndarray:
    """Caffe's AVE pool_size per output position: the window clipped to [-pad, size + pad), before it is
    clipped to the input (so padding counts, the ceil overhang does not)."""
    per_axis = []
    for size, o, k, s, pad in zip(sizes, outputs, p.kernel, p.stride, p.pad):
        start = np.arange(o) * s - pad
        end = np.minimum(start + k, size + pad)
        per_axis.append((end - start).astype(np.float64))
    return np.outer(*per_axis)


def place_windows(layer: Layer, ctx: OnnxContext, source: str, spots: Windows, fill: float
                  ) -> tuple[list[onnx.NodeProto], str, dict]:
    """The tensor to pool and the pool's `pads` attribute; an explicit Pad (filled with `fill`) first when
    onnxruntime would refuse the attribute."""
    if not any(spots.begin) and all(isinstance(e, int) and e == 0 for e in spots.end):
        return [], source, {}
    if spots.fits_attribute(layer.params.kernel):
        return [], source, {"pads": [*spots.begin, *spots.end]}
    padded = ctx.tensor(layer, "padded")
    pads = ctx.ints(layer, "pads", [0, 0, *spots.begin, 0, 0, *spots.end])
    return [ctx.node("Pad", [source, pads, ctx.scalar(layer, "pad_value", fill)], [padded], layer, "pad",
                     mode="constant")], padded, {}


def spatial(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[2:])


@onnx_converter("Pooling")
def pooling(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    method = layer.params.method
    if method == "MAX":
        return max_pooling(layer, ctx)
    if method == "AVE":
        return average_pooling(layer, ctx)
    if method == "STOCHASTIC":
        return stochastic_pooling(layer, ctx)
    raise UnsupportedError(f"pooling method {method} has no ONNX lowering", layer=layer, where=layer.where)


def max_pooling(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    p: Pooling = layer.params
    source, output = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    if p.is_global and not p.with_mask:
        return [ctx.node("GlobalMaxPool", [source], [output], layer)]
    x, y = ctx.input_shape(layer), ctx.output_shape(layer)
    spots = windows(layer, spatial(x), spatial(y), p.pad)
    nodes, pooled_input, pads = place_windows(layer, ctx, source, spots, LOWEST_FLOAT)
    if not p.with_mask:
        return nodes + [ctx.node("MaxPool", [pooled_input], [output], layer, kernel_shape=list(p.kernel),
                                 strides=list(p.stride), **pads)]
    if not is_static(x):
        return nodes + dynamic_max_pooling_with_mask(layer, ctx, pooled_input, spots, pads)
    if pooled_input != source:
        raise UnsupportedError("MAX pooling's mask output where Caffe's last window ends a kernel or more past "
                               "the input: ONNX's indices would count positions in a padded plane, not Caffe's "
                               "h * W + w", layer=layer, where=layer.where)
    indices = ctx.tensor(layer, "indices")
    nodes.append(ctx.node("MaxPool", [pooled_input], [output, indices], layer, kernel_shape=list(p.kernel),
                          strides=list(p.stride), **pads))
    # Caffe's mask is h * W + w within one channel plane; ONNX counts over the whole N*C*H*W tensor. Padding
    # added after the input (explicit or not) never holds a maximum Caffe would report.
    plane = ctx.tensor(layer, "plane_index")
    height, width = spatial(x)
    nodes.append(ctx.node("Mod", [indices, ctx.initializer(layer, "plane_size", np.asarray(height * width),
                                                           dtype=np.int64)], [plane], layer, "plane_index"))
    nodes.append(ctx.node("Cast", [plane], [ctx.value(layer.outputs[1])], layer, "mask", to=onnx.TensorProto.FLOAT))
    return nodes


def average_pooling(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    p: Pooling = layer.params
    source, output = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    if p.is_global:
        return [ctx.node("GlobalAveragePool", [source], [output], layer)]
    x, y = ctx.input_shape(layer), ctx.output_shape(layer)
    spots = windows(layer, spatial(x), spatial(y), p.pad)
    nodes, pooled_input, pads = place_windows(layer, ctx, source, spots, 0.0)
    if not (is_static(x) and is_static(y)):
        return nodes + dynamic_average_pooling(layer, ctx, pooled_input, spots, pads)
    # Every window now lies inside the padded input, so AveragePool divides by the kernel area.
    area = float(np.prod(p.kernel))
    with np.errstate(divide="ignore"):
        correction = area / caffe_ave_divisors(p, spatial(x), spatial(y))
    exact = bool(np.all(correction == 1.0))
    pooled = output if exact else ctx.tensor(layer, "kernel_mean")
    nodes.append(ctx.node("AveragePool", [pooled_input], [pooled], layer, kernel_shape=list(p.kernel),
                          strides=list(p.stride), count_include_pad=1, **pads))
    if not exact:
        factor = ctx.initializer(layer, "correction", correction.reshape(1, 1, *correction.shape))
        nodes.append(ctx.node("Mul", [pooled, factor], [output], layer, "correction"))
    return nodes


def stochastic_pooling(layer: Layer, ctx: OnnxContext) -> list[onnx.NodeProto]:
    """Caffe's test phase (pooling_layer.cu StoPoolForwardTest): sum(x^2) / (FLT_MIN + sum(x)) over windows
    that start at ph * stride, ignoring `pad`, clipped to the input."""
    p: Pooling = layer.params
    x, y = ctx.input_shape(layer), ctx.output_shape(layer)
    spots = windows(layer, spatial(x), spatial(y), (0,) * len(p.kernel))
    nodes, pooled_input, pads = place_windows(layer, ctx, ctx.value(layer.inputs[0]), spots, 0.0)
    area = ctx.scalar(layer, "area", float(np.prod(p.kernel)))
    squares, mean, mean_of_squares = (ctx.tensor(layer, what) for what in ("squares", "mean", "mean_of_squares"))
    total, weighted, denominator = (ctx.tensor(layer, what) for what in ("sum", "sum_of_squares", "denominator"))
    attributes = dict(kernel_shape=list(p.kernel), strides=list(p.stride), count_include_pad=1, **pads)
    nodes += [
        ctx.node("Mul", [pooled_input, pooled_input], [squares], layer, "squares"),
        ctx.node("AveragePool", [pooled_input], [mean], layer, "mean", **attributes),
        ctx.node("AveragePool", [squares], [mean_of_squares], layer, "mean_of_squares", **attributes),
        ctx.node("Mul", [mean, area], [total], layer, "sum"),
        ctx.node("Mul", [mean_of_squares, area], [weighted], layer, "sum_of_squares"),
        ctx.node("Add", [total, ctx.scalar(layer, "flt_min", SMALLEST_NORMAL_FLOAT)], [denominator], layer,
                 "denominator"),
        ctx.node("Div", [weighted, denominator], [ctx.value(layer.outputs[0])], layer),
    ]
    return nodes



def dynamic_average_pooling(layer: Layer, ctx: OnnxContext, pooled_input: str, spots: Windows, pads: dict
                            ) -> list[onnx.NodeProto]:
    """AVE pooling where the sizes are symbolic: Caffe's divisor (the window clipped to [-pad, size + pad)) is
    the same pooling of a plane of ones over that range and of zeros past it: output = mean(x) / mean(ones)."""
    p: Pooling = layer.params
    ones, counted, plane, mean, share = (ctx.tensor(layer, what) for what in
                                         ("ones", "counted", "counted_plane", "mean", "share"))
    inside = [minimum(pad, end) for pad, end in zip(p.pad, spots.end)]
    beyond = [maximum(0, end - pad) for pad, end in zip(p.pad, spots.end)]
    return [
        ctx.node("ConstantOfShape", [ctx.ints(layer, "plane_shape", [1, 1, *spatial(ctx.input_shape(layer))])],
                 [ones], layer, "ones", value=onnx.helper.make_tensor("value", onnx.TensorProto.FLOAT, [1], [1.0])),
        ctx.node("Pad", [ones, ctx.ints(layer, "counted_pads", [0, 0, *p.pad, 0, 0, *inside]),
                         ctx.scalar(layer, "one", 1.0)], [counted], layer, "counted", mode="constant"),
        ctx.node("Pad", [counted, ctx.ints(layer, "beyond_pads", [0, 0, 0, 0, 0, 0, *beyond]),
                         ctx.scalar(layer, "zero", 0.0)], [plane], layer, "counted_plane", mode="constant"),
        ctx.node("AveragePool", [pooled_input], [mean], layer, kernel_shape=list(p.kernel), strides=list(p.stride),
                 count_include_pad=1, **pads),
        ctx.node("AveragePool", [plane], [share], layer, "share", kernel_shape=list(p.kernel),
                 strides=list(p.stride)),
        ctx.node("Div", [mean, share], [ctx.value(layer.outputs[0])], layer, "divide"),
    ]


def dynamic_max_pooling_with_mask(layer: Layer, ctx: OnnxContext, pooled_input: str, spots: Windows, pads: dict
                                  ) -> list[onnx.NodeProto]:
    """MAX pooling's mask where the sizes are symbolic. ONNX counts indices over the whole N*C*H*W tensor
    (of the explicitly padded tensor, when the pads could not be an attribute); Caffe counts h * W + w within
    one unpadded plane. Padding holds -FLT_MAX, never a maximum."""
    p: Pooling = layer.params
    height, width = spatial(ctx.input_shape(layer))
    indices, position = ctx.tensor(layer, "indices"), ctx.tensor(layer, "plane_position")
    nodes = [ctx.node("MaxPool", [pooled_input], [ctx.value(layer.outputs[0]), indices], layer,
                      kernel_shape=list(p.kernel), strides=list(p.stride), **pads)]
    if pooled_input == ctx.value(layer.inputs[0]):
        nodes.append(ctx.node("Mod", [indices, ctx.ints(layer, "plane_size", [height * width])], [position], layer,
                              "plane_position"))
    else:
        (top, left), (bottom, right) = spots.begin, spots.end
        padded_width = width + left + right
        plane, row, column, row_start = (ctx.tensor(layer, what) for what in
                                         ("padded_position", "row", "column", "row_start"))
        nodes += [
            ctx.node("Mod", [indices, ctx.ints(layer, "padded_plane", [(height + top + bottom) * padded_width])],
                     [plane], layer, "padded_position"),
            ctx.node("Div", [plane, ctx.ints(layer, "padded_width", [padded_width])], [row], layer, "row"),
            ctx.node("Mod", [plane, ctx.ints(layer, "row_length", [padded_width])], [column], layer, "column"),
            ctx.node("Mul", [row, ctx.ints(layer, "width", [width])], [row_start], layer, "row_start"),
            ctx.node("Add", [row_start, column], [ctx.tensor(layer, "padded_index")], layer, "padded_index"),
        ]
        # (row - top) * W + (column - left): the padding before the input shifts every position.
        nodes.append(ctx.node("Sub", [nodes[-1].output[0], ctx.ints(layer, "shift", [top * width + left])],
                              [position], layer, "plane_position"))
    nodes.append(ctx.node("Cast", [position], [ctx.value(layer.outputs[1])], layer, "mask",
                          to=onnx.TensorProto.FLOAT))
    return nodes
