"""Convolution family: Conv -> Convolution, ConvTranspose -> Deconvolution (a BatchNormalization that only
they read folds into their weights). Padding Caffe cannot place symmetrically becomes a larger symmetric pad
and a Slice that drops the extra rows and columns."""
from __future__ import annotations

import numpy as np
import onnx

from protodef.passes.fold_affine_into_producer import fold_affine

from .crop import keep_ranges
from .norm import batchnorm_affine
from .pad import padded_input
from .registry import CaffeLayer, ExportContext, attributes, caffe_converter
from .windows import Plan, Windows, auto_pads, convolution_plan


def set_spatial(param, name: str, values: tuple[int, ...], default: int) -> None:
    """ConvolutionParameter's repeated `kernel_size`/`stride`/`pad` for equal sizes, else `name_h`/`name_w`."""
    if all(v == default for v in values) and name != "kernel":
        return
    if len(set(values)) == 1:
        getattr(param, f"{name}_size" if name == "kernel" else name).append(values[0])
    else:
        setattr(param, f"{name}_h", values[0])
        setattr(param, f"{name}_w", values[1])


def spatial_input(ctx: ExportContext, node: onnx.NodeProto, value: str) -> tuple[int, ...]:
    shape = ctx.shape(value)
    if len(shape) != 4:
        raise ctx.refuse(node, "only 2-D convolutions (4-D tensors) are exported", found=shape)
    return shape


def folded_batchnorm(ctx: ExportContext, node: onnx.NodeProto, weight: np.ndarray, bias: np.ndarray | None,
                     out_axis: int, groups: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(weight, bias, output value): with folding on, a BatchNormalization that alone reads `node`'s output
    moves into the weights and the layer writes the BatchNormalization's output."""
    follower = ctx.sole_reader(node.output[0], {"BatchNormalization"}) if ctx.fold_batchnorm else None
    if follower is None or len(follower.output) > 1 and any(follower.output[1:]):
        return weight, bias, node.output[0]
    scale, shift = batchnorm_affine(follower, ctx)
    weight, bias = fold_affine(weight, bias, scale, shift, out_axis=out_axis, groups=groups)
    ctx.absorb(follower)
    return weight, bias, follower.output[0]


def convolution_layer(ctx: ExportContext, node: onnx.NodeProto, layer_type: str, source: str, top: str,
                      weight: np.ndarray, bias: np.ndarray | None, *, num_output: int, group: int,
                      stride: tuple[int, ...], pad: tuple[int, ...], dilation: tuple[int, ...]) -> CaffeLayer:
    blobs = [weight] + ([bias] if bias is not None else [])
    layer = ctx.layer(node, layer_type, [ctx.blob(source)], [top], blobs=blobs)
    p = layer.proto.convolution_param
    p.num_output = num_output
    if bias is None:
        p.bias_term = False
    set_spatial(p, "kernel", tuple(weight.shape[2:]), 0)
    set_spatial(p, "stride", stride, 1)
    set_spatial(p, "pad", pad, 0)
    if any(d != 1 for d in dilation):
        p.dilation.extend(dilation if len(set(dilation)) > 1 else dilation[:1])
    if group != 1:
        p.group = group
    return layer


@caffe_converter("Conv")
def convolution(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    attrs = attributes(node)
    source, explicit = padded_input(ctx, node, lambda fill: fill == 0)
    x = spatial_input(ctx, node, source)
    weight = ctx.constant(node, 1, "the weight").astype(np.float32)
    bias = ctx.optional_constant(node, 2, "the bias")
    kernel = tuple(weight.shape[2:])
    stride = tuple(attrs.get("strides", [1, 1]))
    dilation = tuple(attrs.get("dilations", [1, 1]))
    group = int(attrs.get("group", 1))
    y = ctx.shape(node.output[0])
    padded = tuple(size + sum(e) for size, e in zip(x[2:], explicit))
    extents = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    pads = auto_pads(_text(attrs.get("auto_pad", "NOTSET")), padded, extents, stride, y[2:])
    begins, ends = pads if pads else (list(attrs.get("pads", [0] * 4)[:2]), list(attrs.get("pads", [0] * 4)[2:]))
    axes = [Windows(size, extent, s, b, e, count, explicit=ex)
            for size, extent, s, b, e, count, ex in zip(x[2:], extents, stride, begins, ends, y[2:], explicit)]
    plans = [convolution_plan(axis) for axis in axes]
    if any(plan is None for plan in plans):
        raise ctx.refuse(node, "negative padding has no Caffe form")
    weight, bias, output = folded_batchnorm(ctx, node, weight, bias, out_axis=0, groups=group)
    top = output if all(plan.exact for plan in plans) else ctx.intermediate(node, "uncropped")
    layer = convolution_layer(ctx, node, "Convolution", source, top, weight, bias, num_output=weight.shape[0],
                              group=group, stride=stride, pad=tuple(p.pad for p in plans), dilation=dilation)
    return [layer] + cropped(ctx, node, top, output, (y[0], y[1]), plans)


def cropped(ctx: ExportContext, node: onnx.NodeProto, top: str, output: str, leading: tuple[int, int],
            plans: list[Plan]) -> list[CaffeLayer]:
    """Slices keeping ONNX's windows of Caffe's output `top` as `output` (nothing when they are all of it)."""
    if top == output:
        return []
    shape = (*leading, *(plan.total for plan in plans))
    ranges = {axis: (plan.skip, plan.skip + plan.count) for axis, plan in enumerate(plans, start=2)}
    return keep_ranges(ctx, node, top, shape, ranges, output)


@caffe_converter("ConvTranspose")
def conv_transpose(node: onnx.NodeProto, ctx: ExportContext) -> list[CaffeLayer]:
    """Caffe's Deconvolution writes the full output s*(i-1) + d*(k-1) + 1 less `pad` on both sides; ONNX's is
    that full output from pads_begin on, output_padding longer. Output past the full one (only bias there)
    comes from zero kernel taps appended; the rest is a symmetric pad and, where needed, a Slice."""
    attrs = attributes(node)
    if "output_shape" in attrs or _text(attrs.get("auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
        raise ctx.refuse(node, "ConvTranspose with output_shape or SAME auto_pad is not exported; give explicit pads")
    x = spatial_input(ctx, node, node.input[0])
    weight = ctx.constant(node, 1, "the weight").astype(np.float32)
    bias = ctx.optional_constant(node, 2, "the bias")
    group = int(attrs.get("group", 1))
    stride = tuple(attrs.get("strides", [1, 1]))
    dilation = tuple(attrs.get("dilations", [1, 1]))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if any(d != 1 for d in dilation) and not ctx.target.reads("deconv_dilation"):
        raise ctx.refuse(node, f"target '{ctx.target.name}' leaves dilation out of a Deconvolution's output size")
    y = ctx.shape(node.output[0])
    kernel, plans = list(weight.shape[2:]), []
    for axis, (size, s, d, begin, count) in enumerate(zip(x[2:], stride, dilation, pads[:2], y[2:])):
        full = s * (size - 1) + d * (kernel[axis] - 1) + 1
        kernel[axis] += max(0, -(-(begin + count - full) // d))
        full = s * (size - 1) + d * (kernel[axis] - 1) + 1
        pad = min(begin, full - begin - count)
        plans.append(Plan(pad, full - 2 * pad, begin - pad, count))
    if tuple(kernel) != weight.shape[2:]:
        grown = np.zeros((*weight.shape[:2], *kernel), np.float32)
        grown[:, :, :weight.shape[2], :weight.shape[3]] = weight
        weight = grown
    weight, bias, output = folded_batchnorm(ctx, node, weight, bias, out_axis=1, groups=group)
    top = output if all(plan.exact for plan in plans) else ctx.intermediate(node, "uncropped")
    layer = convolution_layer(ctx, node, "Deconvolution", node.input[0], top, weight, bias,
                              num_output=weight.shape[1] * group, group=group, stride=stride,
                              pad=tuple(p.pad for p in plans), dilation=dilation)
    return [layer] + cropped(ctx, node, top, output, (y[0], y[1]), plans)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
