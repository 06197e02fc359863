"""The per-layer parity cases: for every registered layer type, tiny nets over its parameter variants, each with
the references it is held to. test_parity.py runs them; a new layer type needs cases here (test_parity checks).

A case is a prototxt, seeded random weights (written by our writer) and seeded random inputs; its references
are OpenCV dnn (unless a layer's spec says OpenCV differs for its parameters, or the case says why OpenCV is no
reference for it) and a NumPy transcription of the Caffe source where one is given (reference_layers.py,
reference_detection.py). References take (net, inputs) and return {output blob: array}; they read weights from
the net (as the caffemodel gave them), parameters from the case itself, never from protodef's specs."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx
import reference_detection as det
import reference_layers as ref
from support import assert_close, assert_close_with_specials

from converters.onnx import MIN_OPSET

F32 = np.float32
Reference = Callable[[Any, dict], dict]


@dataclass(frozen=True)
class Case:
    id: str
    text: str = ""                        # the prototxt; empty for a corpus case
    reference: Reference | None = None    # NumPy transcription of Caffe: (net, inputs) -> {output: array}
    not_opencv: str = ""                  # why OpenCV is no reference here, beyond the specs' opencv_differs
    opencv_despite_spec: str = ""         # why OpenCV computes Caffe's result here although a spec says it differs
    opencv_view: Callable[[str], str] | None = None    # the prototxt OpenCV must read to compute Caffe's result
    inputs: Callable[[dict], dict] | None = None       # the case's inputs, from the seeded random ones
    weights: Callable[[Any], Any] | None = None        # a change to the random weights before they are written
    read_options: dict = field(default_factory=dict)
    opsets: tuple[int, ...] = ()          # ONNX opsets to run besides the default
    compare: Callable = assert_close
    torch_refuses: str = ""               # the UnsupportedError message with which the PyTorch backend refuses it
    no_export: str = ""                   # why torch.export cannot trace the torch module (save_pytorch refuses)
    seed: int = 0
    corpus: str = ""                      # a file under ../shared/corpus to take the prototxt from


# ---------------------------------------------------------------------------------------------- prototxt
def data(*shape: int, name: str = "data") -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}\n'


def layer(type_name: str, params: str = "", bottoms=("data",), tops=("y",), name: str | None = None) -> str:
    """One layer, named after its first top unless told (OpenCV names some layers after their tops)."""
    bottoms = (bottoms,) if isinstance(bottoms, str) else bottoms
    tops = (tops,) if isinstance(tops, str) else tops
    bottom = " ".join(f'bottom: "{b}"' for b in bottoms)
    top = " ".join(f'top: "{t}"' for t in tops)
    return f'layer {{ name: "{name or tops[0]}" type: "{type_name}" {bottom} {top} {params} }}\n'


# ---------------------------------------------------------------------------------------------- references
def single(function) -> Reference:
    """A reference of the net's only output from its (first) input."""
    def reference(net, inputs):
        (output,) = net.outputs()
        return {net.value_name(output): function(next(iter(inputs.values())))}
    return reference


def weights_of(net, name: str) -> list[np.ndarray]:
    return list(net.layer(name).weights)


def scaled(factor: float):
    return lambda inputs: {k: (v * F32(factor)).astype(F32) for k, v in inputs.items()}


def absolute(inputs):
    """Non-negative inputs, as after the ReLU that stochastic pooling expects."""
    return {k: np.abs(v) for k, v in inputs.items()}


def small_integers(inputs):
    """Values in {0, 1, 2}: ties happen (ArgMax puts the larger index first among equal values)."""
    rng = np.random.default_rng(7)
    return {k: rng.integers(0, 3, v.shape).astype(F32) for k, v in inputs.items()}


# ------------------------------------------------------------------------------------------- convolution
def conv(params: str, shape=(1, 3, 7, 7), type_name: str = "Convolution", top: str = "y") -> str:
    return data(*shape) + layer(type_name, f"convolution_param {{ {params} }}", tops=(top,))


def deconvolution(params: str, *, kernel, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1, bias=True,
                  **options) -> Case:
    def reference(net, inputs):
        weight, *rest = weights_of(net, "d")
        return {"d": ref.deconvolution(inputs["data"], weight, rest[0] if bias else None, group=group,
                                       kernel=kernel, stride=stride, pad=pad, dilation=dilation)}
    return Case(f"deconvolution {params}", conv(params, (2, 3, 7, 9), "Deconvolution", "d"), reference, **options)


def depthwise(type_name: str) -> Case:
    """OpenCV does not know the forks' types: it reads the same weights as a grouped Convolution."""
    def as_grouped(text: str) -> str:
        return text.replace(f'type: "{type_name}"', 'type: "Convolution"').replace("pad: 1", "pad: 1 group: 3")
    return Case(type_name, conv("num_output: 3 kernel_size: 3 stride: 2 pad: 1", (2, 3, 7, 9), type_name, "dw"),
                opencv_view=as_grouped, seed=3)


def two_bottoms(type_name: str, params: str, after: str = "", then: str = "", **options) -> Case:
    """Caffe's BaseConvolutionLayer with two bottoms: each convolved with the same weights into the top of its
    index (FlowNet's conv1 on both images); `after`: layers reading them, `then` names them in the id."""
    text = (data(2, 3, 7, 9, name="img0") + data(2, 3, 7, 9, name="img1")
            + layer(type_name, f"convolution_param {{ {params} }}", bottoms=("img0", "img1"), tops=("y0", "y1"),
                    name="conv") + after)
    return Case(f"{type_name} two bottoms {params}{' then ' + then if then else ''}", text, **options)


def two_bottom_deconvolution(params: str, *, kernel, stride=(1, 1), pad=(0, 0), group=1) -> Case:
    def reference(net, inputs):
        weight, bias = weights_of(net, "conv")
        return {top: ref.deconvolution(inputs[bottom], weight, bias, group=group, kernel=kernel, stride=stride,
                                       pad=pad, dilation=(1, 1))
                for bottom, top in (("img0", "y0"), ("img1", "y1"))}
    return two_bottoms("Deconvolution", params, reference=reference,
                       not_opencv="OpenCV 4.14 computes only the first top of a Deconvolution with several bottoms "
                                  "(a layer reading the second fails to set up)")


CONVOLUTION = [
    two_bottoms("Convolution", "num_output: 4 kernel_size: 3 stride: 2 pad: 1"),
    two_bottoms("Convolution", "num_output: 6 kernel_size: 3 group: 3 bias_term: false"),
    # Folding stays out: the BatchNorm reads y0 only, and conv's weights also compute y1.
    two_bottoms("Convolution", "num_output: 4 kernel_size: 3 pad: 1",
                'layer { name: "bn" type: "BatchNorm" bottom: "y0" top: "y0" }\n'
                'layer { name: "sc" type: "Scale" bottom: "y0" top: "y0" scale_param { bias_term: true } }\n',
                "BatchNorm + Scale on one top"),
    two_bottom_deconvolution("num_output: 4 kernel_size: 4 stride: 2 pad: 1", kernel=(4, 4), stride=(2, 2),
                             pad=(1, 1)),
    two_bottom_deconvolution("num_output: 6 kernel_size: 3 stride: 2 group: 3", kernel=(3, 3), stride=(2, 2), group=3),
    *(Case(f"convolution {p}", conv(p, (2, 3, 7, 9), top="c")) for p in [
        "num_output: 4 kernel_size: 3",
        "num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 3",
        "num_output: 4 kernel_size: 3 dilation: 2 pad: 2",
        "num_output: 5 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 stride_h: 2 stride_w: 1 bias_term: false",
        "num_output: 3 kernel_size: 5 stride: 3 pad: 2 group: 3"]),
    Case("conv_k3_p1", conv("num_output: 4 kernel_size: 3 pad: 1")),
    Case("conv_group_dilation_odd", conv("num_output: 6 kernel_size: 3 stride: 2 dilation: 2 group: 2",
                                         shape=(2, 4, 11, 9))),
    Case("conv_hw_nobias", conv("num_output: 5 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 stride_h: 1 stride_w: 2 "
                                "bias_term: false", shape=(1, 3, 6, 7))),
    Case("conv_1x1", conv("num_output: 8 kernel_size: 1")),
    Case("conv_depthwise_group", conv("num_output: 6 kernel_size: 3 pad: 1 group: 3")),
    depthwise("ConvolutionDepthwise"),
    depthwise("DepthwiseConvolution"),
    deconvolution("num_output: 4 kernel_size: 4 stride: 2 pad: 1", kernel=(4, 4), stride=(2, 2), pad=(1, 1)),
    deconvolution("num_output: 6 kernel_size: 3 stride: 2 group: 3", kernel=(3, 3), stride=(2, 2), group=3),
    deconvolution("num_output: 2 kernel_size: 3 stride: 3 pad: 1 bias_term: false", kernel=(3, 3), stride=(3, 3),
                  pad=(1, 1), bias=False),
    deconvolution("num_output: 3 kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 1", kernel=(2, 3), stride=(2, 1)),
    deconvolution("num_output: 3 kernel_size: 3 stride: 2 pad: 2 dilation: 2", kernel=(3, 3), stride=(2, 2),
                  pad=(2, 2), dilation=(2, 2)),
    Case("deconv_k4_s2_p1", conv("num_output: 4 kernel_size: 4 stride: 2 pad: 1", type_name="Deconvolution")),
    Case("deconv_group_odd", conv("num_output: 6 kernel_size: 3 stride: 3 group: 3 bias_term: false",
                                  shape=(1, 3, 5, 4), type_name="Deconvolution")),
]


# ---------------------------------------------------------------------------------------------- pooling
NO_ROUND_MODE = "OpenCV's Caffe importer reads only the older ceil_mode flag, not round_mode"
NO_STOCHASTIC = "OpenCV has no STOCHASTIC pooling"


def pooling_text(method, kernel, stride, pad, mode, tops=("p",)) -> str:
    return layer("Pooling", f"pooling_param {{ pool: {method} kernel_h: {kernel[0]} kernel_w: {kernel[1]} "
                            f"stride_h: {stride[0]} stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]} "
                            f"round_mode: {mode} }}", tops=tops, name="p")


def pooling(method, size, kernel, stride, pad, mode="CEIL", shape=None, **options) -> Case:
    ceil = mode == "CEIL"
    sizes = [[ref.caffe_pooled_size(n, k, s, p, rounding_up, any(pad)) for n, k, s, p in zip(size, kernel, stride, pad)]
             for rounding_up in (True, False)]
    options.setdefault("not_opencv", NO_ROUND_MODE if not ceil and sizes[0] != sizes[1] else "")
    return Case(f"pooling {method} size {size} kernel {kernel} stride {stride} pad {pad} {mode}",
                data(*(shape or (2, 3, *size))) + pooling_text(method, kernel, stride, pad, mode),
                single(lambda x: ref.caffe_pool(x, method, kernel, stride, pad, ceil=ceil)[0]), **options)


def max_pooling_with_mask(size, kernel, stride, pad, mode) -> Case:
    """The second top holds Caffe's argmax index h * W + w within each channel plane."""
    def reference(net, inputs):
        top, mask = ref.caffe_pool(inputs["data"], "MAX", kernel, stride, pad)
        return {"p": top, "mask": mask}
    return Case(f"max pooling with mask size {size} kernel {kernel} stride {stride} pad {pad}",
                data(2, 3, *size) + pooling_text("MAX", kernel, stride, pad, mode, tops=("p", "mask")), reference)


def global_pooling(method: str) -> Case:
    return Case(f"global {method} pooling",
                data(2, 3, 7, 9) + layer("Pooling", f"pooling_param {{ pool: {method} global_pooling: true }}",
                                         tops=("g",)),
                single(lambda x: ref.caffe_pool(x, method, x.shape[2:], (1, 1), (0, 0))[0]), inputs=absolute,
                not_opencv=NO_STOCHASTIC if method == "STOCHASTIC" else "")


def pool(params: str, shape=(1, 2, 8, 8), tops=("y",)) -> str:
    return data(*shape) + layer("Pooling", f"pooling_param {{ {params} }}", tops=tops)


def caffe_pool_of(method, kernel, stride, pad, ceil=True, tops=("y",)) -> Reference:
    def reference(net, inputs):
        return dict(zip(tops, ref.caffe_pool(inputs["data"], method, kernel, stride, pad, ceil=ceil)))
    return reference


# (input size, kernel, stride, pad, round mode): odd sizes where Caffe's ceil rounding adds a window, the
# padding clip drops one, and the ceil overhang changes the AVE divisor.
POOLS = [
    ((7, 9), (3, 3), (2, 2), (0, 0), "CEIL"),
    ((8, 8), (3, 3), (2, 2), (1, 1), "CEIL"),
    ((7, 7), (2, 2), (2, 2), (0, 0), "CEIL"),
    ((11, 6), (3, 3), (3, 3), (1, 1), "CEIL"),
    ((9, 10), (5, 3), (3, 2), (2, 1), "CEIL"),
    ((7, 8), (3, 2), (2, 2), (1, 1), "FLOOR"),
    ((6, 6), (4, 4), (4, 4), (3, 0), "CEIL"),
]

POOLING = [
    *(pooling(method, *pool_) for pool_ in POOLS for method in ("MAX", "AVE")),
    *(max_pooling_with_mask(*pool_) for pool_ in POOLS[:5]),
    # Caffe's test phase weighs each value by itself: sum(x^2) / sum(x), over windows that ignore the pad.
    *(pooling("STOCHASTIC", size, kernel, stride, pad, inputs=absolute, not_opencv=NO_STOCHASTIC)
      for size, kernel, stride, pad in [((7, 9), (3, 3), (2, 2), (0, 0)), ((8, 7), (3, 2), (2, 2), (1, 1)),
                                        ((9, 9), (2, 2), (3, 3), (1, 1)), ((12, 12), (3, 3), (3, 3), (2, 2))]),
    # Stride beyond the kernel with ceil rounding: Caffe's last window starts past the input (MAX gives
    # -FLT_MAX, AVE divides an empty sum by a zero or negative area).
    # ONNX pads explicitly (the end padding exceeds the kernel, which onnxruntime refuses as `pads`); the
    # PyTorch backend refuses it.
    *(pooling(method, (6, 7), (1, 2), (3, 3), (0, 0), shape=(1, 2, 6, 7), compare=assert_close_with_specials,
              not_opencv=reason, torch_refuses="starts past the input")
      for method, reason in [("MAX", "OpenCV's MAX pooling gives no -FLT_MAX for a window past the input"),
                             ("AVE", "")]),
    *(global_pooling(method) for method in ("MAX", "AVE", "STOCHASTIC")),
    Case("max_ceil", pool("pool: MAX kernel_size: 3 stride: 2")),
    Case("ave_ceil", pool("pool: AVE kernel_size: 3 stride: 2")),
    Case("max_pad1", pool("pool: MAX kernel_size: 3 stride: 2 pad: 1")),
    Case("ave_pad1", pool("pool: AVE kernel_size: 3 stride: 2 pad: 1")),
    Case("ave_clipped_last_window", pool("pool: AVE kernel_size: 2 stride: 2 pad: 1", shape=(1, 2, 5, 5))),
    Case("max_clipped_last_window", pool("pool: MAX kernel_size: 2 stride: 2 pad: 1", shape=(1, 2, 5, 5))),
    Case("ave_odd_s3", pool("pool: AVE kernel_size: 3 stride: 3 pad: 1", shape=(1, 2, 10, 11))),
    Case("ave_rect", pool("pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0",
                          shape=(1, 2, 9, 6))),
    Case("ave_floor", pool("pool: AVE kernel_size: 3 stride: 2 round_mode: FLOOR"),
         caffe_pool_of("AVE", (3, 3), (2, 2), (0, 0), ceil=False), not_opencv=NO_ROUND_MODE),
    Case("max_global", pool("pool: MAX global_pooling: true", shape=(2, 3, 5, 6))),
    Case("ave_global", pool("pool: AVE global_pooling: true", shape=(2, 3, 5, 6))),
    # Padding over half the kernel: torch's pooling refuses it, protodef's own modules compute it.
    Case("ave_pad_over_half", pool("pool: AVE kernel_size: 3 stride: 2 pad: 2", shape=(1, 2, 7, 7)),
         caffe_pool_of("AVE", (3, 3), (2, 2), (2, 2))),
    Case("max_pad_over_half", pool("pool: MAX kernel_size: 3 stride: 2 pad: 2", shape=(1, 2, 7, 7)),
         caffe_pool_of("MAX", (3, 3), (2, 2), (2, 2))),
    Case("stochastic", pool("pool: STOCHASTIC kernel_size: 3 stride: 2", shape=(1, 2, 8, 8)),
         caffe_pool_of("STOCHASTIC", (3, 3), (2, 2), (0, 0)), not_opencv=NO_STOCHASTIC),
    Case("max_with_mask", pool("pool: MAX kernel_size: 3 stride: 2", shape=(1, 2, 8, 9), tops=("y", "mask")),
         caffe_pool_of("MAX", (3, 3), (2, 2), (0, 0), tops=("y", "mask"))),
]


# ------------------------------------------------------------------------------------------ inner product
def inner_product(params: str, shape, *, axis=1, transpose=False, bias=True, **options) -> Case:
    def reference(net, inputs):
        weight, *rest = weights_of(net, "fc")
        return {"fc": ref.inner_product(inputs["data"], weight, rest[0] if bias else None, axis=axis,
                                        transpose=transpose)}
    return Case(f"inner product {params} on {shape}",
                data(*shape) + layer("InnerProduct", f"inner_product_param {{ {params} }}", tops=("fc",)),
                reference, **options)


DENSE = [
    inner_product("num_output: 5", (2, 3, 4, 5)),
    inner_product("num_output: 4 axis: 2", (2, 3, 4, 5), axis=2),
    inner_product("num_output: 3 transpose: true", (2, 6), transpose=True),
    inner_product("num_output: 3 bias_term: false axis: -1", (2, 3, 6), axis=-1, bias=False),
    Case("ip_4d", data(2, 3, 4, 5) + layer("InnerProduct", "inner_product_param { num_output: 7 }")),
    Case("ip_transpose", data(2, 6) + layer("InnerProduct", "inner_product_param { num_output: 4 transpose: true }"),
         lambda net, inputs: {"y": ref.inner_product(inputs["data"], *weights_of(net, "y"), transpose=True)}),
    Case("ip_axis2_nobias", data(2, 3, 4, 5) + layer("InnerProduct",
                                                     "inner_product_param { num_output: 3 axis: 2 bias_term: false }")),
]


# --------------------------------------------------------------------------------------------- norms
def batch_norm(global_stats: bool, eps: float, shape, factor: float) -> Case:
    """Stored statistics divided by the scale factor (0 means 0), or each batch's own statistics."""
    def statistics(net):
        bn = net.layer("bn")
        mean, variance = bn.weights[0] * 3, bn.weights[1] * 2
        net.replace(bn, bn.replace(weights=(mean, variance, np.asarray([factor], F32))))
        return net

    def reference(net, inputs):
        mean, variance, stored_factor = weights_of(net, "bn")
        return {"data": ref.batch_norm(inputs["data"], mean, variance, float(stored_factor[0]), eps, global_stats)}

    text = data(*shape) + layer("BatchNorm", f"batch_norm_param {{ use_global_stats: {str(global_stats).lower()} "
                                             f"eps: {eps} }}", tops=("data",), name="bn")
    # ReduceMean's axes became an input at opset 18.
    return Case(f"batch norm global_stats {global_stats} eps {eps} {shape} factor {factor}", text, reference,
                weights=statistics, seed=2, opsets=(MIN_OPSET, 18, onnx.defs.onnx_opset_version()),
                not_opencv="" if global_stats else "OpenCV 4.14 computes batch statistics for a batch of 1 only")


def scale_case(params: str, shape, *, axis=1, bias=False, **options) -> Case:
    def reference(net, inputs):
        factor, *rest = weights_of(net, "s")
        return {"s": ref.scale(inputs["data"], factor, rest[0] if bias else None, axis)}
    return Case(f"scale {params} on {shape}",
                data(*shape) + layer("Scale", f"scale_param {{ {params} }}", tops=("s",)), reference, **options)


NO_BIAS_LAYER = "OpenCV has no Bias layer"
NO_NEGATIVE_SCALE_AXIS = "OpenCV 4.14 fails on a Scale with a negative axis (its shape check)"


def by_second_input(layer_type: str, second, axis: int) -> Case:
    param = "scale_param" if layer_type == "Scale" else "bias_param"

    def reference(net, inputs):
        if layer_type == "Bias":
            return {"s": ref.bias(inputs["data"], inputs["factor"], axis)}
        return {"s": ref.scale(inputs["data"], inputs["factor"], None, axis)}
    return Case(f"{layer_type} by a second input {second} axis {axis}",
                data(2, 3, 4, 5) + data(*second, name="factor")
                + layer(layer_type, f"{param} {{ axis: {axis} }}", bottoms=("data", "factor"), tops=("s",)),
                reference, not_opencv=NO_BIAS_LAYER if layer_type == "Bias" else "")


def bias_case(params: str, axis: int) -> Case:
    return Case(f"bias {params}", data(2, 3, 4, 5) + layer("Bias", f"bias_param {{ {params} }}", tops=("b",)),
                lambda net, inputs: {"b": ref.bias(inputs["data"], weights_of(net, "b")[0], axis)},
                not_opencv=NO_BIAS_LAYER)


def lrn_case(size, alpha, beta, k, region) -> Case:
    text = data(2, 7, 6, 5) + layer("LRN", f"lrn_param {{ local_size: {size} alpha: {alpha} beta: {beta} k: {k} "
                                           f"norm_region: {region} }}", tops=("n",))
    return Case(f"LRN {region} size {size} alpha {alpha} beta {beta} k {k}", text,
                single(lambda x: ref.lrn(x, size, alpha, beta, k, region)))


BN = "batch_norm_param { eps: 0.001 }"
BATCHNORM_THEN_SCALE = data(2, 3, 5, 4) + """
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
            convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
    layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
    layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
    layer { name: "bn2" type: "BatchNorm" bottom: "conv" top: "bn2" }
    layer { name: "sc2" type: "Scale" bottom: "bn2" top: "bn2" scale_param { bias_term: false } }
    layer { name: "relu" type: "ReLU" bottom: "bn2" top: "bn2" }
    layer { name: "mix" type: "Eltwise" bottom: "bn2" bottom: "conv" top: "mix" }
"""


def scale_of(axis: int, *, second_input: str | None = None) -> Reference:
    """scale_layer.cpp for the torch-suite cases (layer "y"): factor from the second input or the first blob."""
    def reference(net, inputs):
        blobs = weights_of(net, "y")
        factor = inputs[second_input] if second_input else blobs.pop(0)
        return {"y": ref.scale(inputs["data"], factor, blobs[0] if blobs else None, axis)}
    return reference


NORM = [
    *(batch_norm(global_stats, eps, shape, factor) for factor in (1.0, 4.0, 0.0)
      for global_stats, eps, shape in [(True, 1e-5, (2, 3, 4, 5)), (False, 1e-3, (3, 4, 5, 2)),
                                       (True, 0.01, (3, 5))]),
    scale_case("bias_term: true", (2, 3, 4, 5), bias=True),
    scale_case("axis: 1 num_axes: 2", (2, 3, 4, 5)),
    scale_case("axis: 2 num_axes: 1 bias_term: true", (2, 3, 4, 5), axis=2, bias=True),
    scale_case("axis: -1", (2, 3, 4), axis=-1, not_opencv=NO_NEGATIVE_SCALE_AXIS),
    scale_case("axis: 0 num_axes: -1", (2, 3), axis=0),
    *(by_second_input(layer_type, second, axis) for layer_type in ("Scale", "Bias")
      for second, axis in [((3,), 1), ((3, 4), 1), ((4, 5), 2)]),
    bias_case("", 1), bias_case("axis: 1 num_axes: 2", 1), bias_case("axis: 3", 3),
    # Folding turns BatchNorm + Scale into one ChannelAffine, and into the convolution where it can.
    Case("batch norm and scale, folded where they follow a convolution", BATCHNORM_THEN_SCALE),
    *(lrn_case(size, alpha, beta, k, region) for region in ("ACROSS_CHANNELS", "WITHIN_CHANNEL")
      for size, alpha, beta, k in [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.6, 2.0)]),
    Case("batchnorm_scale", conv("num_output: 4 kernel_size: 3", shape=(2, 3, 6, 6))
         + layer("BatchNorm", BN, bottoms=("y",), tops=("y",), name="bn")
         + layer("Scale", "scale_param { bias_term: true }", bottoms=("y",), tops=("y",), name="scale")),
    Case("batchnorm_alone", data(2, 3, 4, 5) + layer("BatchNorm", BN)),
    Case("batchnorm_2d", data(4, 6) + layer("BatchNorm")),
    Case("scale_no_bias", data(2, 3, 4, 5) + layer("Scale")),
    Case("scale_two_axes", data(2, 3, 4, 5) + layer("Scale", "scale_param { axis: 1 num_axes: 2 bias_term: true }")),
    Case("scale_scalar", data(2, 3, 4, 5) + layer("Scale", "scale_param { num_axes: 0 bias_term: true }"),
         scale_of(1)),
    Case("scale_last_axis", data(2, 3, 4, 5) + layer("Scale", "scale_param { axis: -1 bias_term: true }"),
         scale_of(-1), not_opencv=NO_NEGATIVE_SCALE_AXIS),
    Case("scale_axis2", data(2, 3, 4, 5) + layer("Scale", "scale_param { axis: 2 num_axes: 1 }"), scale_of(2)),
    Case("scale_two_inputs", data(2, 3, 4, 5) + data(2, 3, name="s")
         + layer("Scale", "scale_param { axis: 0 bias_term: true }", bottoms=("data", "s")),
         scale_of(0, second_input="s")),
    Case("scale_two_inputs_axis1", data(2, 3, 4, 5) + data(3, 4, name="s")
         + layer("Scale", "scale_param { axis: 1 }", bottoms=("data", "s"))),
    Case("bias", data(2, 3, 4, 5) + layer("Bias"),
         lambda net, inputs: {"y": ref.bias(inputs["data"], weights_of(net, "y")[0], 1)}, not_opencv=NO_BIAS_LAYER),
    Case("bias_two_inputs", data(2, 3, 4, 5) + data(3, name="b") + layer("Bias", bottoms=("data", "b")),
         lambda net, inputs: {"y": ref.bias(inputs["data"], inputs["b"], 1)}, not_opencv=NO_BIAS_LAYER),
    Case("lrn_across_k2", data(2, 7, 4, 5) + layer("LRN", "lrn_param { local_size: 5 alpha: 0.3 beta: 0.75 k: 2 }"),
         single(lambda x: ref.lrn(x, 5, 0.3, 0.75, 2.0, "ACROSS_CHANNELS"))),
    Case("lrn_across_3", data(1, 4, 3, 3) + layer("LRN", "lrn_param { local_size: 3 alpha: 1 beta: 0.5 }")),
    Case("lrn_within", data(2, 3, 6, 5) + layer("LRN", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 "
                                                       "norm_region: WITHIN_CHANNEL }")),
]


# -------------------------------------------------------------------------------------------- activations
def activation(params: str, function=None, *, gain: float = 10, **options) -> Case:
    """Values up to +-40 by default (BNLL must not overflow)."""
    text = data(2, 3, 4, 5) + layer(params.split('"')[1], params.split('"', 2)[2].strip(), tops=("a",), name="a")
    return Case(f"activation {params}", text, single(function) if function else None, inputs=scaled(gain),
                **options)


NO_THRESHOLD = "OpenCV has no Threshold layer"
ACTIVATION = [
    activation('type: "ReLU"', lambda x: np.maximum(x, 0)),
    activation('type: "ReLU" relu_param { negative_slope: 0.1 }', lambda x: np.where(x > 0, x, F32(0.1) * x)),
    activation('type: "ELU" elu_param { alpha: 0.7 }', lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)).astype(F32)),
    activation('type: "Sigmoid"', lambda x: (1 / (1 + np.exp(-x.astype(np.float64)))).astype(F32)),
    activation('type: "TanH"', np.tanh),
    activation('type: "AbsVal"', np.abs),
    activation('type: "BNLL"', ref.bnll),
    activation('type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }', lambda x: (1 + 0.5 * x) ** 2),
    activation('type: "Power" power_param { scale: -3 shift: 0.5 }', lambda x: 0.5 - 3 * x),
    activation('type: "Power" power_param { power: 0 scale: 2 }', np.ones_like),
    activation('type: "Power" power_param { power: 3 scale: 0 shift: 2 }', lambda x: np.full_like(x, 8.0)),
    activation('type: "Exp"', np.exp, gain=1),
    activation('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }', lambda x: 2.0 ** (1 + 0.5 * x), gain=1),
    activation('type: "Exp" exp_param { scale: -1 shift: 0.25 }', lambda x: np.exp(0.25 - x), gain=1),
    activation('type: "Threshold" threshold_param { threshold: 0.3 }', lambda x: (x > F32(0.3)).astype(F32),
               not_opencv=NO_THRESHOLD),
    activation('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', lambda x: x),
    # Trained without scale_train, Caffe multiplies by 1 - ratio at test time.
    activation('type: "Dropout" dropout_param { dropout_ratio: 0.25 scale_train: false }',
               lambda x: x * F32(0.75), gain=1),
    *(Case(f"log {params}", data(2, 3, 7, 9) + layer("Log", params, tops=("l",)),
           single(lambda x, function=function: function(x.astype(np.float64)).astype(F32)),
           inputs=lambda inputs: {"data": np.abs(inputs["data"]) + F32(0.1)})
      for params, function in [("", np.log),
                               ("log_param { base: 10 scale: 2 shift: 0.5 }", lambda x: np.log10(0.5 + 2 * x)),
                               ("log_param { base: 2 }", np.log2)]),
    *(Case(f"PReLU channel_shared {shared}",
           data(2, 3, 7, 9) + layer("PReLU", f"prelu_param {{ channel_shared: {str(shared).lower()} }}", tops=("p",)),
           lambda net, inputs: {"p": ref.prelu(inputs["data"], weights_of(net, "p")[0])})
      for shared in (False, True)),
    Case("relu", data(2, 3, 4, 5) + layer("ReLU")),
    Case("leaky_relu", data(2, 3, 4, 5) + layer("ReLU", "relu_param { negative_slope: 0.1 }")),
    Case("prelu", data(2, 3, 4, 5) + layer("PReLU")),
    Case("prelu_shared", data(2, 3, 4, 5) + layer("PReLU", "prelu_param { channel_shared: true }"),
         lambda net, inputs: {"y": ref.prelu(inputs["data"], weights_of(net, "y")[0])}),
    Case("elu", data(2, 3, 4, 5) + layer("ELU", "elu_param { alpha: 0.7 }")),
    Case("sigmoid", data(2, 3, 4, 5) + layer("Sigmoid")),
    Case("tanh", data(2, 3, 4, 5) + layer("TanH")),
    Case("absval", data(2, 3, 4, 5) + layer("AbsVal")),
    Case("bnll", data(2, 3, 4, 5) + layer("BNLL")),
    Case("power_square", data(2, 3, 4, 5) + layer("Power", "power_param { power: 2 scale: 0.5 shift: 1 }")),
    Case("power_affine", data(2, 3, 4, 5) + layer("Power", "power_param { scale: -2 shift: 0.5 }")),
    Case("power_constant", data(2, 3, 4, 5) + layer("Power", "power_param { power: 3 scale: 0 shift: 1.5 }")),
    Case("exp_base2", data(2, 3, 4, 5) + layer("Exp", "exp_param { base: 2 scale: 0.5 shift: 1 }")),
    Case("exp_e", data(2, 3, 4, 5) + layer("Exp")),
    Case("log_shifted", data(2, 3, 4, 5) + layer("Log", "log_param { base: 10 shift: 8 scale: 0.5 }"),
         single(lambda x: (np.log10(8 + 0.5 * x.astype(np.float64))).astype(F32))),
    Case("threshold", data(2, 3, 4, 5) + layer("Threshold", "threshold_param { threshold: 0.3 }"),
         single(lambda x: (x > F32(0.3)).astype(F32)), not_opencv=NO_THRESHOLD),
    # Silence keeps a top from being a net output and computes nothing.
    Case("silence", data(2, 6, 4, 5) + layer("Slice", "slice_param { slice_point: 2 }", tops=("a", "b"))
         + layer("Silence", bottoms="b", tops=(), name="quiet") + layer("ReLU", bottoms="a", tops="r"),
         single(lambda x: np.maximum(x[:, :2], 0))),
    Case("dropout_unscaled", data(2, 3, 4, 5) + layer("Dropout", "dropout_param { dropout_ratio: 0.3 }")
         + layer("ReLU", bottoms=("y",), tops=("z",))),
]


# ------------------------------------------------------------------------------------------ merge, reshape
TWO_CONVOLUTIONS = """
    layer { name: "b" type: "Convolution" bottom: "data" top: "b" convolution_param { num_output: 3 kernel_size: 1 } }
    layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 3 kernel_size: 1 } }
"""


def slice_case(params: str, tops: int, axis: int, points=(), **options) -> Case:
    names = tuple(f"s{i}" for i in range(tops))

    def reference(net, inputs):
        return dict(zip(names, ref.slice_points(inputs["data"], axis, list(points), tops)))
    return Case(f"slice {params}", data(2, 3, 7, 9) + layer("Slice", f"slice_param {{ {params} }}", tops=names),
                reference, opsets=(MIN_OPSET,), **options)


def slice_of(axis: int, points=(), tops=("a", "b")) -> Reference:
    return lambda net, inputs: dict(zip(tops, ref.slice_points(inputs["data"], axis, list(points), len(tops))))


def crop_case(params: str, reference_shape) -> Case:
    return Case(f"crop {params} to {reference_shape}", data(1, 3, 5, 9) + data(*reference_shape, name="ref")
                + layer("Crop", f"crop_param {{ {params} }}", bottoms=("data", "ref"), tops=("c",)))


NO_LEGACY_SLICE = "OpenCV 4.14 reads no legacy slice_dim (it slices axis 1) and no negative axis"
MERGE_AND_RESHAPE = [
    *(Case(f"eltwise {p}", data(2, 3, 7, 9) + TWO_CONVOLUTIONS
           + layer("Eltwise", f"eltwise_param {{ {p} }}", bottoms=("data", "b", "c"), tops=("e",)))
      for p in ["operation: SUM", "operation: SUM coeff: 1 coeff: -1 coeff: 0.5", "operation: PROD",
                "operation: MAX"]),
    *(Case(f"concat axis {axis}", data(2, 3, 7, 9) + TWO_CONVOLUTIONS
           + layer("Concat", f"concat_param {{ axis: {axis} }}", bottoms=("data", "b", "c"), tops=("cat",)))
      for axis in (1, 2, -1)),
    slice_case("axis: 1 slice_point: 1", 2, 1, [1]),
    slice_case("axis: 3 slice_point: 2 slice_point: 7", 3, 3, [2, 7]),
    slice_case("slice_dim: 2", 7, 2, not_opencv=NO_LEGACY_SLICE),
    slice_case("axis: -1", 3, 3, not_opencv=NO_LEGACY_SLICE),
    # An explicit Split whose copies are read by two layers and, unread, are net outputs.
    Case("split copies are outputs", data(2, 3, 7, 9) + """
        layer { name: "split" type: "Split" bottom: "data" top: "x1" top: "x2" top: "x3" }
        layer { name: "r" type: "ReLU" bottom: "x1" top: "r" }
        layer { name: "t" type: "TanH" bottom: "x2" top: "t" }""",
         lambda net, inputs: {"x3": inputs["data"], "r": np.maximum(inputs["data"], 0), "t": np.tanh(inputs["data"])},
         not_opencv="OpenCV turns a Split into aliases of its input and returns no unread copy"),
    *(Case(f"flatten {p}", data(2, 3, 4, 5) + layer("Flatten", f"flatten_param {{ {p} }}", tops=("f",)))
      for p in ["", "axis: 2", "axis: 1 end_axis: 2", "end_axis: -2"]),
    *(Case(f"reshape {p}", data(2, 3, 4, 5) + layer("Reshape", f"reshape_param {{ {p} }}", tops=("r",)))
      for p in ["shape { dim: 0 dim: -1 }", "shape { dim: 0 dim: 3 dim: 2 dim: -1 }",
                "shape { dim: 2 dim: 2 } axis: 2 num_axes: 1", "shape { dim: -1 } axis: 1"]),
    crop_case("axis: 2 offset: 1 offset: 2", (1, 1, 3, 4)),
    crop_case("axis: 1 offset: 1", (1, 2, 2, 3)),
    crop_case("axis: 3 offset: 4", (1, 1, 1, 5)),
    Case("eltwise_sum3", data(2, 3, 4, 5) + data(2, 3, 4, 5, name="b") + data(2, 3, 4, 5, name="c")
         + layer("Eltwise", bottoms=("data", "b", "c"))),
    Case("eltwise_coeffs", data(2, 3, 4, 5) + data(2, 3, 4, 5, name="b")
         + layer("Eltwise", "eltwise_param { operation: SUM coeff: 0.5 coeff: -1 }", bottoms=("data", "b"))),
    Case("eltwise_prod", data(2, 3, 4, 5) + data(2, 3, 4, 5, name="b")
         + layer("Eltwise", "eltwise_param { operation: PROD }", bottoms=("data", "b"))),
    Case("eltwise_max", data(2, 3, 4, 5) + data(2, 3, 4, 5, name="b")
         + layer("Eltwise", "eltwise_param { operation: MAX }", bottoms=("data", "b"))),
    # FlowNet 2's fork: one bottom (its deploy nets scale flows so); BVLC Caffe and OpenCV want two.
    *(Case(f"eltwise one bottom {p or 'no coeff'}", data(2, 3, 4, 5) + layer("Eltwise", f"eltwise_param {{ {p} }}"),
           single(lambda x, c=coeff: x * F32(c)), not_opencv="OpenCV's Eltwise needs two inputs")
      for p, coeff in [("operation: SUM coeff: 20", 20.0), ("", 1.0)]),
    Case("concat_channels", data(2, 3, 4, 5) + data(2, 2, 4, 5, name="b") + layer("Concat", bottoms=("data", "b"))),
    Case("concat_axis2", data(2, 3, 4, 5) + data(2, 3, 1, 5, name="b")
         + layer("Concat", "concat_param { axis: 2 }", bottoms=("data", "b"))),
    Case("slice_points", data(2, 6, 4, 5) + layer("Slice", "slice_param { axis: 1 slice_point: 1 slice_point: 4 }",
                                                  tops=("a", "b", "c")), slice_of(1, (1, 4), ("a", "b", "c"))),
    Case("slice_equal_axis2", data(2, 3, 4, 5) + layer("Slice", "slice_param { axis: 2 }", tops=("a", "b")),
         slice_of(2), not_opencv="OpenCV 4.14 refuses an even Slice (no slice_point) on axis 2: its split check fails"),
    Case("flatten", data(2, 3, 4, 5) + layer("Flatten")),
    Case("flatten_axes", data(2, 3, 4, 5) + layer("Flatten", "flatten_param { axis: 2 end_axis: 3 }")),
    Case("reshape_keep_batch",
         data(2, 3, 4, 5) + layer("Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 5 } }")),
    Case("reshape_infer_first", data(2, 3, 4, 5) + layer("Reshape", "reshape_param { shape { dim: -1 dim: 10 } }")),
    Case("reshape_axis1", data(2, 6, 4) + layer("Reshape", "reshape_param { axis: 1 shape { dim: 2 dim: 3 } "
                                                           "num_axes: 1 }")),
    Case("crop", data(1, 3, 8, 8) + data(1, 3, 5, 4, name="ref")
         + layer("Crop", "crop_param { axis: 2 offset: 1 offset: 2 }", bottoms=("data", "ref"))),
    Case("crop_axis1_one_offset", data(2, 5, 8, 8) + data(2, 3, 5, 5, name="ref")
         + layer("Crop", "crop_param { axis: 1 offset: 1 }", bottoms=("data", "ref"))),
]


# ----------------------------------------------------------------------------------------- softmax, argmax
def argmax_case(id: str, shape, params: str, top_k: int, out_max_val: bool, axis: int | None, **options) -> Case:
    return Case(id, data(*shape) + layer("ArgMax", params), single(lambda x: ref.argmax(x, top_k, out_max_val, axis)),
                opsets=(MIN_OPSET,), not_opencv="OpenCV has no ArgMax layer", **options)


SOFTMAX = [
    *(Case(f"softmax axis {axis}", data(2, 3, 7, 9) + layer("Softmax", f"softmax_param {{ axis: {axis} }}"),
           opsets=(MIN_OPSET,)) for axis in (1, 2, -1)),
    *(argmax_case(f"argmax top_k {k} out_max_val {values} axis {axis}", (2, 3, 7, 9),
                  f"argmax_param {{ top_k: {k} out_max_val: {str(values).lower()} "
                  + (f"axis: {axis} }}" if axis is not None else "}"), k, values, axis)
      for k, values, axis in [(1, False, None), (3, True, None), (2, False, 1), (1, True, 2), (4, False, 3)]),
    Case("softmax", data(2, 5, 3, 4) + layer("Softmax")),
    Case("softmax_axis2", data(2, 5, 3, 4) + layer("Softmax", "softmax_param { axis: 2 }")),
    # Ties on purpose: Caffe puts the larger index first among equal values.
    argmax_case("argmax_top1", (2, 5, 3, 3), "", 1, False, None, inputs=small_integers),
    argmax_case("argmax_top3_values", (2, 5, 3, 3), "argmax_param { top_k: 3 out_max_val: true }", 3, True, None,
                inputs=small_integers),
    argmax_case("argmax_axis1", (2, 5, 3, 3), "argmax_param { axis: 1 top_k: 2 }", 2, False, 1,
                inputs=small_integers),
    argmax_case("argmax_axis2_values", (2, 5, 4, 3), "argmax_param { axis: 2 out_max_val: true }", 1, True, 2,
                inputs=small_integers),
]


# ------------------------------------------------------------------------------------- resize (forks' layers)
def interp(params: str, size, crop=(0, 0), **options) -> Case:
    return Case(f"Interp {params}",
                data(2, 3, 7, 9) + layer("Interp", f"interp_param {{ {params} }}", tops=("interp",)),
                single(lambda x: ref.interp(x, size, crop)), **options)


NO_INTERP_CROP = "OpenCV ignores Interp's pad_beg/pad_end and cannot shrink"


def unpooling(id: str, shape, kernel: int, stride: int, params: str, size) -> Case:
    """A max pooling's mask drives the SegNet Upsample (through a Power, so that the values differ)."""
    def reference(net, inputs):
        pooled, mask = ref.caffe_pool(inputs["data"], "MAX", (kernel, kernel), (stride, stride), (0, 0))
        if id == "overlapping_windows":   # the case this tests: one position named by two windows
            assert len(np.unique(mask[0, 0])) < mask[0, 0].size
        return {"up": ref.upsample_unpool(pooled * 2 + 1, mask, size)}
    text = (data(*shape) + layer("Pooling", f"pooling_param {{ pool: MAX kernel_size: {kernel} stride: {stride} }}",
                                 tops=("pool", "mask"))
            + layer("Power", "power_param { scale: 2 shift: 1 }", bottoms="pool", tops="shift")
            + layer("Upsample", f"upsample_param {{ {params} }}", bottoms=("shift", "mask"), tops="up"))
    return Case(f"unpooling {id}", text, reference, not_opencv=NO_UPSAMPLE)


NO_UPSAMPLE = "OpenCV has no Upsample layer (SegNet, ENet and MobileNet-YOLO forks)"


def swap_axpy_operands(text: str) -> str:
    """OpenCV computes Axpy as a * bottom[2] + bottom[1] (its importer scales the third input); SENet's Caffe
    computes a * bottom[1] + bottom[2]. Swapping the two gives OpenCV the net Caffe means."""
    def swap(match: re.Match) -> str:
        block = match.group(0)
        _, x, y = re.findall(r'bottom:\s*"([^"]+)"', block)
        return (block.replace(f'bottom: "{x}"', "\0").replace(f'bottom: "{y}"', f'bottom: "{x}"')
                .replace("\0", f'bottom: "{y}"'))
    return re.sub(r'layer \{[^{}]*type: "Axpy"[^{}]*\}', swap, text)


def axpy(factor_shape) -> Case:
    n = factor_shape[0]
    text = (data(*factor_shape, name="a") + data(n, 3, 4, 5, name="x") + data(n, 3, 4, 5, name="y")
            + layer("Axpy", bottoms=("a", "x", "y"), tops="axpy"))
    batch_one = factor_shape == (1, 3, 1, 1)     # OpenCV's Axpy runs with batch 1 only
    return Case(f"Axpy a {factor_shape}", text,
                lambda net, inputs: {"axpy": ref.axpy(inputs["a"], inputs["x"], inputs["y"])},
                opencv_view=swap_axpy_operands if batch_one else None,
                opencv_despite_spec="OpenCV reads the prototxt with x and y swapped" if batch_one else "")


def mvn(id: str, normalize_variance: bool, across_channels: bool, eps: float, shape=(2, 3, 4, 5), params=None,
        **options) -> Case:
    params = params or (f"mvn_param {{ normalize_variance: {str(normalize_variance).lower()} "
                        f"across_channels: {str(across_channels).lower()} eps: {eps} }}")
    return Case(f"MVN {id}", data(*shape) + layer("MVN", params, tops="mvn"),
                single(lambda x: ref.mvn(x, normalize_variance, across_channels, F32(eps))), **options)


def bn(id: str, params: str, phase: str, fork: str, batch: bool, eps: float = 1e-5) -> Case:
    """The fork is told by the fields the layer sets; `eps` is PSPNet's (bn_param's default 1e-5)."""
    def reference(net, inputs):
        p = net.layer("bn").params
        assert (p.fork, p.batch_statistics) == (fork, batch)     # the front end tells the fork as the case does
        x, blobs = inputs["data"], weights_of(net, "bn")
        return {"bn": ref.bn_segnet(x, *blobs, batch) if fork == "segnet" else ref.bn_pspnet(x, *blobs, eps, batch)}
    return Case(f"BN {id}", data(2, 3, 4, 5) + layer("BN", params, tops="bn"), reference,
                read_options={"phase": phase}, not_opencv=NO_BN)


NO_BN = "OpenCV has no BN layer (SegNet, ENet and PSPNet forks)"


def roi_pooling(scale: str) -> Case:
    """opencv_dnn_testdata/net_roi_pooling.prototxt with another spatial_scale; rois include halves, inverted
    boxes and boxes outside the image."""
    def rois(inputs):
        rng = np.random.default_rng(3)
        boxes = np.zeros((100, 5), F32)
        boxes[:, 0] = rng.integers(0, 4, 100)
        boxes[:, 1:] = rng.integers(-10, 30, (100, 4))
        boxes[:6, 1:] = [[0.5, 1.5, 2.5, 3.5], [-0.5, -1.5, 16.5, 40], [7, 9, 3, 2], [2.49, 2.51, 9.5, 10.5],
                         [16, 20, 16, 20], [-30, -30, -20, -25]]
        return {"input": rng.standard_normal((4, 3, 21, 17)).astype(F32), "rois": boxes}

    text = (data(4, 3, 21, 17, name="input") + data(100, 5, name="rois")
            + layer("ROIPooling", f"roi_pooling_param {{ pooled_w: 6 pooled_h: 6 spatial_scale: {scale} }}",
                    bottoms=("input", "rois"), tops="output"))
    return Case(f"ROIPooling scale {scale}", text,
                lambda net, inputs: {"output": ref.roi_pooling(inputs["input"], inputs["rois"], (6, 6), float(scale))},
                inputs=rois, no_export="the torch module reads each roi's corners as Python ints",
                opencv_despite_spec="valid rois (integer batch indices within the batch): OpenCV "
                                                 "pools them as Caffe does, outside the image too")


def accum(id: str, params: str, shapes, size, opencv_reason: str = "") -> Case:
    names = [f"in{i}" for i in range(len(shapes))]
    have_reference = "have_reference: true" in params

    def reference(net, inputs):
        return {"accum": ref.accum([inputs[n] for n in names], size, have_reference)}
    text = "".join(data(*s, name=n) for n, s in zip(names, shapes)) + layer("Accum", f"accum_param {{ {params} }}",
                                                                           bottoms=names, tops="accum")
    return Case(f"Accum {id}", text, reference, not_opencv=opencv_reason)


def correlation(id: str, params: str, shape, kernel, displacement, pad, stride_1, stride_2, subtract=False) -> Case:
    text = (data(*shape, name="a") + data(*shape, name="b")
            + layer("Correlation", f"correlation_param {{ {params} }}", bottoms=("a", "b"), tops="corr"))
    return Case(f"Correlation {id}", text,
                lambda net, inputs: {"corr": ref.correlation(inputs["a"], inputs["b"], kernel, displacement, pad,
                                                             stride_1, stride_2, subtract)})


def spp(shape, height: int, method: str) -> Case:
    return Case(f"SPP {method} pyramid {height} on {shape}",
                data(*shape) + layer("SPP", f"spp_param {{ pyramid_height: {height} pool: {method} }}", tops="spp"),
                single(lambda x: ref.spp(x, height, method)), not_opencv="OpenCV has no SPP layer",
                inputs=absolute if method == "STOCHASTIC" else None)


REDUCTIONS = {f"{op.lower()}_{axis % 4}": (op, axis) for op in ("SUM", "ASUM", "SUMSQ", "MEAN") for axis in (0, 1, -1)}


def reductions(net, inputs):
    expected = {name: ref.reduction(inputs["data"], op, axis % 4, 0.5) for name, (op, axis) in REDUCTIONS.items()}
    assert expected["sum_0"].shape == ()
    return expected


TILES = {"tile_axis1": (1, 3), "tile_last": (-1, 2), "tile_axis0": (0, 2)}

LONG_TAIL = [
    interp("height: 9 width: 8", (9, 8)),
    interp("zoom_factor: 3", (19, 25)),
    interp("height: 7 width: 9", (7, 9)),
    interp("height: 1 width: 7", (1, 7)),
    interp("shrink_factor: 2", (4, 5), not_opencv=NO_INTERP_CROP),
    interp("zoom_factor: 3 shrink_factor: 2", (10, 13), not_opencv=NO_INTERP_CROP),
    interp("zoom_factor: 2 pad_beg: -1 pad_end: -2", (7, 11), crop=(1, 2)),
    unpooling("segnet_scale", (2, 3, 8, 10), 2, 2, "scale: 2", (8, 10)),
    unpooling("pad_out", (1, 2, 7, 9), 2, 2, "scale: 2 pad_out_h: true", (7, 10)),
    unpooling("explicit_size", (1, 2, 8, 8), 2, 2, "upsample_h: 8 upsample_w: 8", (8, 8)),
    unpooling("overlapping_windows", (1, 2, 7, 7), 3, 2, "upsample_h: 7 upsample_w: 7", (7, 7)),
    *(Case(f"Upsample nearest scale {scale} on {shape}",
           data(*shape) + layer("Upsample", f"upsample_param {{ scale: {scale} }}", tops="up"),
           single(lambda x, scale=scale: ref.upsample_nearest(x, scale)), not_opencv=NO_UPSAMPLE)
      for scale, shape in [(2, (1, 3, 4, 5)), (3, (2, 2, 3)), (1, (1, 1, 2, 2))]),
    # Inputs spread over [-12, 12] to reach ReLU6's and Clip's limits.
    *(Case(f"{type_name} {params}", data(2, 3, 4, 5) + layer(type_name, params, tops=name), single(function),
           inputs=scaled(4), not_opencv=reason) for name, type_name, params, function, reason in [
        ("relu6", "ReLU6", "", ref.relu6, ""),
        ("relu6_slope", "ReLU6", "relu6_param { negative_slope: 0.1 }", lambda x: ref.relu6(x, 0.1), ""),
        ("clip", "Clip", "clip_param { min: -1 max: 2 }", lambda x: ref.clip(x, -1, 2), "OpenCV has no Clip layer"),
        ("clip_inverted", "Clip", "clip_param { min: 2 max: -1 }", lambda x: ref.clip(x, 2, -1),
         "OpenCV has no Clip layer"),
        ("swish", "Swish", "", lambda x: ref.swish(x, 1.0), ""),
        ("swish_beta", "Swish", "swish_param { beta: 0.5 }", lambda x: ref.swish(x, 0.5), ""),
        ("mish", "Mish", "", ref.mish, "")]),
    *(Case(f"ShuffleChannel group {group} on {shape}",
           data(*shape) + layer("ShuffleChannel", f"shuffle_channel_param {{ group: {group} }}", tops="shuffle"),
           single(lambda x, group=group: ref.shuffle_channel(x, group)), not_opencv=reason)
      for group, shape, reason in [(3, (2, 6, 4, 5), ""), (2, (2, 6, 3), "OpenCV's ShuffleChannel wants 4-D input"),
                                   (1, (1, 4, 2, 2), "")]),
    *(axpy(shape) for shape in [(1, 3, 1, 1), (2, 3, 1, 1), (2, 3)]),
    Case("Tile", data(2, 3, 4) + "".join(layer("Tile", f"tile_param {{ axis: {axis} tiles: {tiles} }}", tops=name)
                                         for name, (axis, tiles) in TILES.items()),
         lambda net, inputs: {name: ref.tile(inputs["data"], axis % 3, tiles) for name, (axis, tiles) in TILES.items()}),
    Case("Reduction", data(2, 3, 4, 5) + "".join(
        layer("Reduction", f"reduction_param {{ operation: {op} axis: {axis} coeff: 0.5 }}", tops=name)
        for name, (op, axis) in REDUCTIONS.items()), reductions, not_opencv="OpenCV has no Reduction layer"),
    mvn("variance", True, False, 0.1),
    mvn("variance_across", True, True, 0.1),
    mvn("mean_only", False, False, 0.1),
    mvn("mean_across", False, True, 0.1),
    mvn("default_eps", True, False, 1e-9,
        opencv_despite_spec="eps 1e-9 is below float resolution next to the variance, where OpenCV and Caffe part"),
    *(mvn(f"{shape} across_channels {across}", True, across, 1e-9, shape,
          f"mvn_param {{ across_channels: {str(across).lower()} }}",
          opencv_despite_spec="" if size_one else "eps 1e-9 is below float resolution next to the variance")
      for shape, across, size_one in [((2, 3), False, True), ((2, 3), True, False), ((2, 3, 6), False, False)]),
    *(Case(f"Embed bias {bias}", data(2, 3) + layer(
        "Embed", f"embed_param {{ num_output: 4 input_dim: 7 bias_term: {str(bias).lower()} }}", tops="embed"),
           lambda net, inputs, bias=bias: {"embed": ref.embed(inputs["data"], *weights_of(net, "embed")[:1],
                                                              weights_of(net, "embed")[1] if bias else None)},
           inputs=lambda inputs: {"data": np.random.default_rng(1).integers(0, 7, (2, 3)).astype(F32)},
           not_opencv="OpenCV has no Embed layer") for bias in (True, False)),
    Case("Parameter",
         'layer { name: "blob" type: "Parameter" top: "blob" parameter_param { shape { dim: 2 dim: 3 } } }',
         lambda net, inputs: {"blob": weights_of(net, "blob")[0]}, not_opencv="OpenCV has no Parameter layer"),
    bn("segnet_inference", "bn_param { bn_mode: INFERENCE }", "TEST", "segnet", False),
    bn("segnet_learn", "bn_param { bn_mode: LEARN }", "TEST", "segnet", True),
    bn("segnet_by_params", "param { lr_mult: 1 } param { lr_mult: 1 }", "TEST", "segnet", True),
    bn("pspnet_frozen", "bn_param { frozen: true momentum: 0.95 }", "TEST", "pspnet", False),
    bn("pspnet_test_phase", "bn_param { eps: 0.001 }", "TEST", "pspnet", False, eps=0.001),
    bn("pspnet_train_phase", "bn_param { eps: 0.001 }", "TRAIN", "pspnet", True, eps=0.001),
    bn("pspnet_frozen_train", "bn_param { frozen: true eps: 0.01 }", "TRAIN", "pspnet", False, eps=0.01),
    bn("pspnet_by_params", "param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 0 } param { lr_mult: 0 }",
       "TEST", "pspnet", False),
    *(spp(shape, height, method) for shape, height, method in [
        ((2, 3, 8, 8), 3, "MAX"), ((1, 2, 7, 9), 3, "AVE"), ((1, 2, 5, 6), 1, "MAX"), ((1, 2, 13, 11), 3, "AVE"),
        ((1, 2, 6, 6), 2, "STOCHASTIC")]),
    *(roi_pooling(scale) for scale in ("0.0625", "0.5", "1")),
    # The size: the largest input's, the last input's (have_reference), the given one, or the largest rounded up.
    accum("largest", "", [(1, 2, 2, 3), (1, 3, 8, 12)], (8, 12)),
    accum("reference", "have_reference: true", [(1, 2, 3, 4), (1, 1, 5, 7), (1, 9, 6, 9)], (6, 9)),
    accum("divisible", "size_divisible_by: 8", [(1, 2, 3, 4), (1, 1, 5, 7)], (8, 8),
          "OpenCV ignores size_divisible_by"),
    accum("top_size", "top_height: 9 top_width: 11", [(1, 2, 3, 4), (1, 1, 5, 7)], (9, 11)),
    accum("batch2", "", [(2, 2, 3, 4), (2, 1, 5, 7)], (5, 7), "OpenCV's Accum reads past the first sample"),
    correlation("corpus", "pad: 1 kernel_size: 1 max_displacement: 1 stride_1: 1 stride_2: 1", (1, 3, 2, 2),
                1, 1, 1, 1, 1),
    correlation("kernel3_stride2", "pad: 4 kernel_size: 3 max_displacement: 4 stride_1: 1 stride_2: 2",
                (2, 3, 7, 8), 3, 4, 4, 1, 2),
    correlation("stride1_2", "pad: 2 kernel_size: 1 max_displacement: 2 stride_1: 2 stride_2: 1", (1, 4, 9, 9),
                1, 2, 2, 2, 1),
    correlation("subtract", "pad: 3 kernel_size: 3 max_displacement: 2 stride_1: 2 correlation_type: SUBTRACT",
                (1, 2, 8, 7), 3, 2, 3, 2, 1, subtract=True),
]


# ------------------------------------------------------------------------------------------------ detection
def permute(order, full: bool) -> Case:
    """A partial order is completed with the other axes in order."""
    completed = list(order) + [a for a in range(4) if a not in order]
    return Case(f"Permute order {order}",
                data(2, 3, 4, 5) + layer("Permute", "permute_param { " + " ".join(f"order: {o}" for o in order) + " }",
                                         name="perm"),
                single(lambda x: x.transpose(completed)),
                not_opencv="" if full else "OpenCV's Permute accepts full orders only")


def normalize(across_spatial: bool, channel_shared: bool, eps: float, shape) -> Case:
    text = data(*shape) + layer("Normalize", f"norm_param {{ across_spatial: {str(across_spatial).lower()} "
                                             f"channel_shared: {str(channel_shared).lower()} eps: {eps} }}",
                                name="norm")
    return Case(f"Normalize across_spatial {across_spatial} channel_shared {channel_shared} eps {eps} {shape}", text,
                lambda net, inputs: {"y": det.normalize(inputs["data"], weights_of(net, "norm")[0],
                                                        across_spatial=across_spatial, channel_shared=channel_shared,
                                                        eps=eps)},
                not_opencv="OpenCV refuses across_spatial with a per-channel scale"
                if across_spatial and not channel_shared else "")


def reorg(stride: int, reverse: bool, shape) -> Case:
    """darknet's reorg as the MobileNet-YOLO fork calls it."""
    return Case(f"Reorg stride {stride} reverse {reverse} on {shape}",
                data(*shape) + layer("Reorg", f"reorg_param {{ stride: {stride} reverse: {str(reverse).lower()} }}",
                                     name="reorg"),
                single(lambda x: det.reorg(x, stride, reverse)))


def prior_box(id: str, settings: str, caffe_settings: dict, opencv_reason: str) -> Case:
    text = data(1, 2, 4, 5, name="feature") + data(1, 3, 32, 48, name="image") + layer(
        "PriorBox", f"prior_box_param {{ {settings} }}", bottoms=("feature", "image"), name="priors")
    return Case(f"PriorBox {id}", text, lambda net, inputs: {"y": det.prior_box((4, 5), (32, 48), **caffe_settings)},
                not_opencv=opencv_reason)


# OpenCV defaults PriorBox's clip to true and wants variance given, where Caffe's defaults are false and 0.1,
# and it takes the image size from the second input even when img_h/img_w give it.
PRIOR_BOXES = [
    prior_box("max_and_flip", "min_size: 10 max_size: 20 aspect_ratio: 2 aspect_ratio: 3 flip: true clip: false "
                              "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2",
              {"min_sizes": [10], "max_sizes": [20], "aspect_ratios": [2, 3], "flip": True,
               "variance": [0.1, 0.1, 0.2, 0.2]}, ""),
    prior_box("clip_one_variance_duplicate_ratio", "min_size: 8 min_size: 16 aspect_ratio: 2 aspect_ratio: 0.5 "
                                                   "clip: true variance: 0.2 offset: 0.3",
              {"min_sizes": [8, 16], "aspect_ratios": [2, 0.5], "clip": True, "variance": [0.2], "offset": 0.3}, ""),
    prior_box("caffe_defaults_no_flip_img_size_step", "min_size: 12 aspect_ratio: 3 flip: false img_size: 40 step: 9",
              {"min_sizes": [12], "aspect_ratios": [3], "flip": False, "img_size": 40, "step": 9},
              "OpenCV's PriorBox defaults differ from Caffe's (clip true, variance required)"),
    prior_box("step_hw", "min_size: 5 max_size: 9 step_h: 7 step_w: 11 clip: false variance: 0.1",
              {"min_sizes": [5], "max_sizes": [9], "step_hw": (7, 11), "variance": [0.1]}, ""),
    prior_box("img_hw", "min_size: 5 img_h: 30 img_w: 50 clip: false variance: 0.1",
              {"min_sizes": [5], "img_hw": (30, 50), "variance": [0.1]},
              "OpenCV takes the image size from the second input even when img_h/img_w give it"),
    # Pelee's SSD heads: Caffe's Forward_cpu truncates the sizes to int (OpenCV keeps the fractions).
    prior_box("fractional_sizes", "min_size: 9.76 max_size: 18.48 aspect_ratio: 2 clip: false variance: 0.1",
              {"min_sizes": [9.76], "max_sizes": [18.48], "aspect_ratios": [2], "variance": [0.1]}, ""),
]

PRIORS_PER_CELL = 4     # min, sqrt(min * max), 2 and 1/2
DETECTION_PRIORS = ("min_size: 10 max_size: 20 aspect_ratio: 2 clip: false "
                    "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2")


def detection_net(batch: int, classes: int, share: bool, settings: str) -> str:
    """A DetectionOutput (layer "det", top "y") on inputs loc and conf and the priors of a PriorBox."""
    priors = 5 * 5 * PRIORS_PER_CELL
    return (data(batch, priors * (1 if share else classes) * 4, name="loc") + data(batch, priors * classes, name="conf")
            + data(batch, 1, 5, 5, name="feature") + data(batch, 3, 50, 50, name="image")
            + layer("PriorBox", f"prior_box_param {{ {DETECTION_PRIORS} }}", bottoms=("feature", "image"),
                    tops="priors")
            + layer("DetectionOutput", f"detection_output_param {{ num_classes: {classes} "
                                       f"share_location: {str(share).lower()} {settings} }}",
                    bottoms=("loc", "conf", "priors"), name="det"))


def detection_priors() -> np.ndarray:
    """The PriorBox of detection_net, as prior_box_layer.cpp computes it."""
    return det.prior_box((5, 5), (50, 50), min_sizes=[10], max_sizes=[20], aspect_ratios=[2], flip=True,
                         variance=[0.1, 0.1, 0.2, 0.2])


def detection_feeds(batch: int, classes: int, share: bool, loc_scale: float, ties: bool, seed: int = 5):
    """Random offsets (large ones invert CORNER boxes) and scores in [0, 1) (rounded to 0.1: many ties)."""
    rng = np.random.default_rng(seed)
    priors = 5 * 5 * PRIORS_PER_CELL
    conf = rng.uniform(0, 1, (batch, priors * classes))
    offsets = rng.standard_normal((batch, priors * (1 if share else classes) * 4)) * loc_scale
    return {"loc": offsets.astype(F32), "conf": (np.round(conf, 1) if ties else conf).astype(F32),
            "feature": np.zeros((batch, 1, 5, 5), F32), "image": np.zeros((batch, 3, 50, 50), F32)}


def detection_output(id: str, batch: int, classes: int, share: bool, settings: str, caffe_settings: dict,
                     loc_scale: float, ties: bool) -> Case:
    def reference(net, inputs):
        rows = det.detection_output(inputs["loc"], inputs["conf"], detection_priors(), num_classes=classes,
                                    share_location=share, **caffe_settings)
        if id == "nothing_found":
            assert rows.tolist() == [[[[0, -1, -1, -1, -1, -1, -1], [1, -1, -1, -1, -1, -1, -1]]]]
        else:
            assert rows.shape[2] > 3
        return {"y": rows}
    return Case(f"DetectionOutput {id}", detection_net(batch, classes, share, settings), reference,
                inputs=lambda _: detection_feeds(batch, classes, share, loc_scale, ties), no_export=DATA_DEPENDENT)


DATA_DEPENDENT = "the number of detections depends on the data, which torch.export cannot trace"
DETECTIONS = [
    detection_output("center_size", 2, 3, True, "code_type: CENTER_SIZE nms_param { nms_threshold: 0.45 top_k: 30 } "
                                                "keep_top_k: 20 confidence_threshold: 0.3 background_label_id: 0",
                     {"code_type": "CENTER_SIZE", "nms_threshold": 0.45, "top_k": 30, "keep_top_k": 20,
                      "confidence_threshold": 0.3, "background_label_id": 0}, 0.5, False),
    detection_output("corner_per_class_locations_no_background", 1, 3, False,
                     "code_type: CORNER background_label_id: -1 nms_param { nms_threshold: 0.3 } "
                     "confidence_threshold: 0.5",
                     {"code_type": "CORNER", "background_label_id": -1, "nms_threshold": 0.3,
                      "confidence_threshold": 0.5}, 8.0, False),
    detection_output("corner_size_encoded_variance_ties", 2, 4, False,
                     "code_type: CORNER_SIZE variance_encoded_in_target: true nms_param { nms_threshold: 0.5 "
                     "top_k: 10 } keep_top_k: 7 background_label_id: 2",
                     {"code_type": "CORNER_SIZE", "variance_encoded_in_target": True, "nms_threshold": 0.5,
                      "top_k": 10, "keep_top_k": 7, "background_label_id": 2}, 0.5, True),
    detection_output("no_threshold_background_only_shared_corner", 1, 2, True,
                     "code_type: CORNER nms_param { nms_threshold: 0.2 top_k: 50 }",
                     {"code_type": "CORNER", "nms_threshold": 0.2, "top_k": 50}, 4.0, True),
    detection_output("nothing_found", 2, 3, True, "code_type: CENTER_SIZE confidence_threshold: 1.5 keep_top_k: 10",
                     {"code_type": "CENTER_SIZE", "confidence_threshold": 1.5, "keep_top_k": 10}, 0.5, False),
]

YOLO_V2_BIASES = (1.1, 1.3, 3.2, 2.1)
YOLO_V3_BIASES = (10, 14, 23, 27, 37, 58, 81, 82)


def yolo(threshold: float, nms: float) -> Case:
    """Two inputs each, batch 2 (the fork pools all images, image id 0); 30 channels, of which v3 reads 16."""
    text = (data(2, 30, 4, 4, name="a") + data(2, 30, 2, 2, name="b")
            + layer("YoloDetectionOutput", "yolo_detection_output_param { num_classes: 3 num_box: 2 "
                    f"confidence_threshold: {threshold} nms_threshold: {nms} "
                    + " ".join(f"biases: {b}" for b in YOLO_V2_BIASES) + " }", bottoms=("a", "b"), tops="v2")
            + layer("Yolov3DetectionOutput", "yolov3_detection_output_param { num_classes: 3 num_box: 2 "
                    f"confidence_threshold: {threshold} nms_threshold: {nms} "
                    + " ".join(f"biases: {b}" for b in YOLO_V3_BIASES)
                    + " mask: 2 mask: 3 mask: 0 mask: 1 mask_group_num: 2 anchors_scale: 16 anchors_scale: 8 }",
                    bottoms=("b", "a"), tops="v3"))

    def reference(net, inputs):
        v2 = det.yolo_detection_output([inputs["a"], inputs["b"]], num_classes=3, num_box=2, biases=YOLO_V2_BIASES,
                                       confidence_threshold=threshold, nms_threshold=nms)
        v3 = det.yolov3_detection_output([inputs["b"], inputs["a"]], num_classes=3, num_box=2, biases=YOLO_V3_BIASES,
                                         anchors_scale=[16, 8], mask=[2, 3, 0, 1], mask_group_num=2,
                                         confidence_threshold=threshold, nms_threshold=nms)
        if threshold > 0.9:
            assert v2.shape == v3.shape == (1, 1, 2, 7) and v2[0, 0, :, 1].tolist() == [-1, -1]
        return {"v2": v2, "v3": v3}
    return Case(f"YOLO outputs threshold {threshold} nms {nms}", text, reference, no_export=DATA_DEPENDENT,
                not_opencv="OpenCV has no YoloDetectionOutput or Yolov3DetectionOutput layer")


DETECTION = [
    *(permute(order, full) for order, full in [((0, 2, 3, 1), True), ((0, 3, 1, 2), True), ((0, 2), False),
                                               ((1, 0), False)]),
    *(normalize(*settings) for settings in [(False, False, 1e-10, (2, 6, 5, 4)), (True, True, 1e-10, (2, 6, 5, 4)),
                                            (False, True, 0.5, (1, 6, 3, 3)), (True, False, 1e-3, (2, 6, 5, 4)),
                                            (False, False, 1e-10, (3, 6))]),
    reorg(2, False, (2, 8, 6, 4)),
    reorg(3, False, (1, 18, 6, 9)),
    reorg(2, True, (2, 8, 3, 2)),
    *PRIOR_BOXES,
    *DETECTIONS,
    *(yolo(threshold, nms) for threshold, nms in [(0.3, 0.45), (0.05, 0.3), (0.999, 0.45)]),
]


# ------------------------------------------------------------------------------------ single-layer corpus nets
CORPUS_CASES = [
    Case("layer_interp", corpus="opencv_dnn_testdata/layer_interp.prototxt",
         reference=single(lambda x: ref.interp(ref.interp(x, (9, 8)), (17, 15)))),
    Case("layer_mvn", corpus="opencv_dnn_testdata/layer_mvn.prototxt",
         reference=single(lambda x: ref.mvn(x, True, False, F32(0.1)))),
    Case("accum", corpus="opencv_dnn_testdata/accum.prototxt"),
    Case("correlation", corpus="opencv_dnn_testdata/correlation.prototxt"),
    Case("prior_box", corpus="opencv_dnn_testdata/prior_box.prototxt",
         reference=lambda net, inputs: {"priorbox": det.prior_box(
             (3, 4), (10, 10), min_sizes=[2, 3], max_sizes=[6, 7], aspect_ratios=[2], flip=True, clip=False,
             variance=[0.1, 0.1, 0.2, 0.2])}),
]

def flownet_mean(x: np.ndarray) -> np.ndarray:
    """mean_layer.cpp, value form: output_scale * (input_scale * x + mean_scale * (-value[c % 3])), in float."""
    f = np.float32
    values = [f(0.411451), f(0.432060), f(0.450141)]
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        out[:, c] = f(2.0) * (f(0.0039216) * x[:, c] + f(1.0) * -values[c % 3])
    return out


FLOWNET_MEAN = [Case("mean_subtract", data(2, 6, 3, 4) + layer(
    "Mean", "mean_param { operation: SUBTRACT input_scale: 0.0039216 output_scale: 2 value: 0.411451 "
    "value: 0.432060 value: 0.450141 }"), single(flownet_mean), not_opencv="OpenCV has no Mean layer")]

CASES = [*CONVOLUTION, *POOLING, *DENSE, *NORM, *ACTIVATION, *MERGE_AND_RESHAPE, *SOFTMAX, *LONG_TAIL, *DETECTION,
         *FLOWNET_MEAN]
