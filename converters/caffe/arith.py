"""Arithmetic family: Add, Sub, Mul, Div, Sum, Mean, Max, Min.

Computed inputs of one shape: Eltwise (a Mul by a number feeding an Add or Sum becomes its coefficient).
A computed input and a constant: Power for a single number; Scale (with a bias for Add and Sub) for a
constant that varies along a run of consecutive axes. A computed input broadcast over another: Scale (Mul)
or Bias (Add) with two bottoms. Division is multiplication by the reciprocal (one rounding apart).
"""
from __future__ import annotations

import math

import numpy as np
import onnx

from .activation import power
from .registry import CaffeLayer, ExportContext, caffe_converter
from .reshape import reshape_layer


def constant_run(value: np.ndarray, shape: tuple[int, ...]) -> tuple[int, np.ndarray] | None:
    """(axis, blob) when `value`, broadcast to `shape`, varies only along consecutive axes starting at `axis`
    (blob shaped like those axes of `shape`); None when it does not broadcast or is a single number."""
    value = np.asarray(value, np.float64)
    while value.ndim > len(shape) and value.shape[0] == 1:
        value = value[0]
    if value.ndim > len(shape):
        return None
    aligned = value.reshape((1,) * (len(shape) - value.ndim) + value.shape)
    if any(d not in (1, s) for d, s in zip(aligned.shape, shape)):
        return None
    varying = [axis for axis, d in enumerate(aligned.shape) if d != 1]
    if not varying:
        return None
    first, last = varying[0], varying[-1]
    index = tuple(slice(None) if first <= axis <= last else 0 for axis in range(len(shape)))
    return first, np.ascontiguousarray(np.broadcast_to(aligned, shape)[index])


def scale_layer(ctx: ExportContext, node: onnx.NodeProto, bottoms: list[str], top: str, axis: int,
                blobs: list[np.ndarray], *, bias_term: bool = False, what: str | None = None) -> CaffeLayer:
    """Caffe scale_layer.cpp: x * scale (+ bias), the scale covering axes [axis, axis + its rank)."""
    layer = ctx.layer(node, "Scale", bottoms, [top], blobs=blobs, what=what)
    p = layer.proto.scale_param
    if axis != 1:
        p.axis = axis
    if blobs and blobs[0].ndim != 1:
        p.num_axes = blobs[0].ndim
    if bias_term:
        p.bias_term = True
    return layer


def single_number(value: np.ndarray) -> float | None:
    value = np.asarray(value)
    return float(value.reshape(-1)[0]) if value.size == 1 else None


# ---------------------------------------------------------------------------------- computed op constant
def power_arguments(node: onnx.NodeProto, ctx: ExportContext, number: float, constant_first: bool) -> dict:
    """Power's (power, scale, shift) for `x op number` (or `number op x`)."""
    op = node.op_type
    if op == "Add":
        return dict(shift=number)
    if op == "Sub":
        return dict(scale=-1.0, shift=number) if constant_first else dict(shift=-number)
    if op == "Mul":
        return dict(scale=number)
    if number == 0:
        raise ctx.refuse(node, "division by a constant 0")
    return dict(power=-1.0, scale=1.0 / number) if constant_first else dict(scale=1.0 / number)


def run_scale_and_bias(node: onnx.NodeProto, ctx: ExportContext, blob: np.ndarray, constant_first: bool
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    op = node.op_type
    ones = np.ones_like(blob)
    if op == "Mul":
        return blob, None
    if op == "Add":
        return ones, blob
    if op == "Sub":
        return (-ones, blob) if constant_first else (ones, -blob)
    if constant_first:
        raise ctx.refuse(node, "a constant divided by a computed tensor elementwise has no one-layer Caffe form")
    if np.any(blob == 0):
        raise ctx.refuse(node, "division by a constant holding 0")
    return 1.0 / blob, None


def with_constant(node: onnx.NodeProto, ctx: ExportContext, computed: str, value: np.ndarray,
                  constant_first: bool) -> list[CaffeLayer]:
    x = ctx.shape(computed)
    if ctx.shape(node.output[0]) != x:
        raise ctx.refuse(node, "the constant broadcasts the computed input to a larger shape",
                         expected=x, found=ctx.shape(node.output[0]))
    number = single_number(value)
    if number is not None:
        return [power(ctx, node, ctx.blob(computed), node.output[0],
                      **power_arguments(node, ctx, number, constant_first))]
    run = constant_run(value, x)
    if run is None:
        raise ctx.refuse(node, "the constant does not broadcast to the computed input", expected=x,
                         found=np.shape(value))
    axis, blob = run
    scale, bias = run_scale_and_bias(node, ctx, blob, constant_first)
    output = node.output[0]
    if bias is None:
        scale, bias, output = merged_bias(node, ctx, axis, scale)
    blobs = [scale] + ([bias] if bias is not None else [])
    return [scale_layer(ctx, node, [ctx.blob(computed)], output, axis, blobs, bias_term=bias is not None)]


def merged_bias(node: onnx.NodeProto, ctx: ExportContext, axis: int, scale: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray | None, str]:
    """An Add or Sub of a constant that alone reads this Mul's output becomes the Scale's bias (y * s + b)."""
    follower = ctx.sole_reader(node.output[0], {"Add", "Sub"})
    if follower is None:
        return scale, None, node.output[0]
    position = list(follower.input).index(node.output[0])
    other = follower.input[1 - position]
    if not ctx.is_constant(other) or ctx.shape(follower.output[0]) != ctx.shape(node.output[0]):
        return scale, None, node.output[0]
    value = ctx.graph.constants[other]
    number = single_number(value)
    if number is not None:
        bias = np.full_like(scale, number)
    else:
        run = constant_run(value, ctx.shape(node.output[0]))
        if run is None or run[0] != axis or run[1].shape != scale.shape:
            return scale, None, node.output[0]
        bias = run[1]
    if follower.op_type == "Sub":
        scale, bias = (-scale, bias) if position == 1 else (scale, -bias)
    ctx.absorb(follower)
    return scale, bias, follower.output[0]


# ---------------------------------------------------------------------------------- computed op computed
def summands(node: onnx.NodeProto, ctx: ExportContext, values: list[str]) -> tuple[list[str], list[float]]:
    """(blobs, coefficients): a Mul by a number that only this sum reads gives its coefficient."""
    blobs, coefficients = [], []
    for value in values:
        producer = ctx.producer(value)
        factor = None
        if producer is not None and producer.op_type == "Mul" and ctx.sole_reader(value, {node.op_type}) is node:
            constants = [name for name in producer.input if ctx.is_constant(name)]
            computed = [name for name in producer.input if not ctx.is_constant(name)]
            if len(constants) == 1 and len(computed) == 1 and ctx.shape(computed[0]) == ctx.shape(value):
                factor = single_number(ctx.graph.constants[constants[0]])
        if factor is None:
            blobs.append(ctx.blob(value))
            coefficients.append(1.0)
        else:
            blobs.append(ctx.blob(computed[0]))
            coefficients.append(factor)
    return blobs, coefficients


def eltwise(ctx: ExportContext, node: onnx.NodeProto, bottoms: list[str], top: str, operation: str,
            coefficients: list[float] | None = None, what: str | None = None) -> CaffeLayer:
    layer = ctx.layer(node, "Eltwise", bottoms, [top], what=what)
    p = layer.proto.eltwise_param
    p.operation = getattr(p, operation)
    if coefficients is not None and any(c != 1 for c in coefficients):
        p.coeff.extend(coefficients)
    return layer


def same_shapes(ctx: ExportContext, node: onnx.NodeProto) -> bool:
    shapes = {ctx.shape(value) for value in node.input}
    return shapes == {ctx.shape(node.output[0])}


def two_computed(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    a, b = node.input[:2]
    output = node.output[0]
    if not same_shapes(ctx, node):
        return broadcast_computed(node, ctx)
    if node.op_type in ("Add", "Sub"):
        blobs, coefficients = summands(node, ctx, [a, b])
        if node.op_type == "Sub":
            coefficients[1] = -coefficients[1]
        return [eltwise(ctx, node, blobs, output, "SUM", coefficients)]
    if node.op_type == "Mul":
        return [eltwise(ctx, node, [ctx.blob(a), ctx.blob(b)], output, "PROD")]
    inverse = ctx.intermediate(node, "reciprocal")
    return [power(ctx, node, ctx.blob(b), inverse, power=-1.0, what="reciprocal"),
            eltwise(ctx, node, [ctx.blob(a), inverse], output, "PROD")]


def broadcast_computed(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """One computed input broadcast over the other: Caffe's two-bottom Scale (Mul, Div) or Bias (Add, Sub),
    the small one reshaped to the run of axes where it varies."""
    a, b = node.input[:2]
    y = ctx.shape(node.output[0])
    if ctx.shape(a) == y and ctx.shape(b) != y:
        big, small, small_first = a, b, False
    elif ctx.shape(b) == y and ctx.shape(a) != y:
        big, small, small_first = b, a, True
    else:
        raise ctx.refuse(node, "both computed inputs broadcast; Caffe broadcasts only one over the other",
                         found=(ctx.shape(a), ctx.shape(b)))
    run = constant_run(np.zeros(ctx.shape(small)), y) if np.prod(ctx.shape(small)) > 1 else None
    shape = tuple(d for d in ctx.shape(small) if d != 1) if run is None else run[1].shape
    if run is None or np.prod(shape) != np.prod(ctx.shape(small)):
        raise ctx.refuse(node, "the broadcast input must vary along consecutive axes of the other",
                         found=ctx.shape(small))
    layers, factor = [], ctx.blob(small)
    if ctx.shape(small) != shape:
        factor = ctx.intermediate(node, "broadcast")
        layers.append(reshape_layer(ctx, node, ctx.blob(small), factor, shape, what="broadcast"))
    op = node.op_type
    main = ctx.blob(big)
    if op in ("Sub", "Div"):
        negated = ctx.intermediate(node, "inverse")
        target = main if small_first else factor
        layers.append(power(ctx, node, target, negated, what="inverse",
                            **(dict(scale=-1.0) if op == "Sub" else dict(power=-1.0))))
        main, factor = (negated, factor) if small_first else (main, negated)
    layer_type = "Scale" if op in ("Mul", "Div") else "Bias"
    ctx.require(node, layer_type, "a broadcast " + ("product" if layer_type == "Scale" else "sum"))
    layer = ctx.layer(node, layer_type, [main, factor], [node.output[0]])
    getattr(layer.proto, "scale_param" if layer_type == "Scale" else "bias_param").axis = run[0]
    return layers + [layer]


@caffe_converter("Add", "Sub", "Mul", "Div")
def binary(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    a, b = node.input[:2]
    if ctx.is_constant(a) or ctx.is_constant(b):
        constant_first = ctx.is_constant(a)
        computed, constant = (b, a) if constant_first else (a, b)
        return with_constant(node, ctx, computed, ctx.graph.constants[constant], constant_first)
    return two_computed(node, ctx)


@caffe_converter("Sum", "Mean")
def variadic_sum(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    require_computed_of_one_shape(node, ctx)
    if len(node.input) == 1:
        ctx.alias(node.output[0], ctx.blob(node.input[0]))
        return []
    blobs, coefficients = summands(node, ctx, list(node.input))
    if node.op_type == "Mean":
        coefficients = [c / len(blobs) for c in coefficients]
    return [eltwise(ctx, node, blobs, node.output[0], "SUM", coefficients)]


def require_computed_of_one_shape(node: onnx.NodeProto, ctx: ExportContext) -> None:
    if any(ctx.is_constant(value) for value in node.input) or not same_shapes(ctx, node):
        raise ctx.refuse(node, f"{node.op_type} of constants or of inputs that broadcast has no Caffe Eltwise form",
                         found=[ctx.shape(v) for v in node.input])


@caffe_converter("Max", "Min")
def extremum(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """Eltwise MAX; Min is -max(-a, -b) (negation is exact). With one number c: max(x, c) = c + relu(x - c)."""
    constants = [value for value in node.input if ctx.is_constant(value)]
    if constants:
        return extremum_with_number(node, ctx, constants)
    require_computed_of_one_shape(node, ctx)
    if node.op_type == "Max":
        return [eltwise(ctx, node, [ctx.blob(v) for v in node.input], node.output[0], "MAX")]
    layers, negated = [], []
    for index, value in enumerate(node.input):
        negated.append(ctx.intermediate(node, f"negated{index}"))
        layers.append(power(ctx, node, ctx.blob(value), negated[-1], scale=-1.0, what=f"negated{index}"))
    largest = ctx.intermediate(node, "max")
    layers.append(eltwise(ctx, node, negated, largest, "MAX", what="max"))
    return layers + [power(ctx, node, largest, node.output[0], scale=-1.0)]


def extremum_with_number(node: onnx.NodeProto, ctx: ExportContext, constants: list[str]) -> list[CaffeLayer]:
    computed = [value for value in node.input if not ctx.is_constant(value)]
    numbers = [single_number(ctx.graph.constants[value]) for value in constants]
    if len(computed) != 1 or None in numbers or ctx.shape(computed[0]) != ctx.shape(node.output[0]):
        raise ctx.refuse(node, f"{node.op_type} with a constant is exported for one computed input and single "
                               "numbers only")
    bound = max(numbers) if node.op_type == "Max" else min(numbers)
    sign = 1.0 if node.op_type == "Max" else -1.0
    source = ctx.blob(computed[0])
    if bound == 0 and sign > 0:
        return [ctx.layer(node, "ReLU", [source], [node.output[0]])]
    if math.isinf(bound):
        raise ctx.refuse(node, "an infinite bound")
    moved, rectified = ctx.intermediate(node, "moved"), ctx.intermediate(node, "rectified")
    return [power(ctx, node, source, moved, scale=sign, shift=-sign * bound, what="moved"),
            ctx.layer(node, "ReLU", [moved], [rectified], what="rectified"),
            power(ctx, node, rectified, node.output[0], scale=sign, shift=bound)]
