"""PyTorch backend: per-layer parity with OpenCV (and NumPy transcriptions of Caffe where OpenCV differs),
folded and unfolded; generated source in a fresh interpreter; jit, export, compile, half, devices; ResNet-50."""
from __future__ import annotations

import copy
import operator
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from reference_layers import caffe_pool  # noqa: E402
from support import CORPUS, assert_close, opencv_forward, random_inputs, write_net  # noqa: E402

from converters.pytorch.registry import TORCH_CONVERTERS, torch_converter  # noqa: E402
from protodef import load, save_pytorch  # noqa: E402
from protodef.api import read_net  # noqa: E402
from protodef.errors import UnsupportedError, WeightsError  # noqa: E402

torch.set_num_threads(2)

# torch 2.13 deprecates TorchScript, and its checker warns about GraphModule's own __init__; we test it anyway.
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning")]


def data(*shape: int, name: str = "data") -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}\n'


def one(type_name: str, params: str = "", bottoms: tuple[str, ...] = ("data",), tops: tuple[str, ...] = ("y",),
        name: str | None = None) -> str:
    """One layer, named after its first top unless told (OpenCV names some layers after their tops)."""
    name = name or tops[0]
    bottom = " ".join(f'bottom: "{b}"' for b in bottoms)
    top = " ".join(f'top: "{t}"' for t in tops)
    return f'layer {{ name: "{name}" type: "{type_name}" {bottom} {top} {params} }}\n'


def conv(params: str, shape=(1, 3, 7, 7), type_name: str = "Convolution") -> str:
    return data(*shape) + one(type_name, f"convolution_param {{ {params} }}")


def pool(params: str, shape=(1, 2, 8, 8), tops=("y",)) -> str:
    return data(*shape) + one("Pooling", f"pooling_param {{ {params} }}", tops=tops)


@dataclass
class Case:
    id: str
    text: str
    oracle: Callable | None = None     # (net, inputs) -> {output: array}; None: OpenCV
    integer_inputs: bool = False       # small integers, so that ties happen (ArgMax)


def pool_oracle(net, inputs):
    layer = net.layers()[0]
    p = layer.params
    out = caffe_pool(inputs["data"], p.method, p.kernel, p.stride, p.pad, net.shape(layer.outputs[0])[2:])
    return dict(zip((net.value_name(v) for v in layer.outputs), out))


def argmax_oracle(net, inputs):
    """argmax_layer.cpp: std::partial_sort of (value, index) pairs with std::greater, so equal values put the
    larger index first; values or indices (as floats) out."""
    p = net.layers()[0].params
    x = inputs["data"].astype(np.float64)
    if p.axis is None:
        flat = x.reshape(x.shape[0], -1)
        rows = [sorted(((v, j) for j, v in enumerate(row)), reverse=True)[:p.top_k] for row in flat]
        index = np.array([[j for _, j in r] for r in rows], np.float32)
        value = np.array([[v for v, _ in r] for r in rows], np.float32)
        out = np.stack([index, value], 1) if p.out_max_val else index[:, None]
        out = out.reshape(out.shape + (1,) * (max(3, x.ndim) - 3))
    else:
        moved = np.moveaxis(x, p.axis, -1)
        flat = moved.reshape(-1, moved.shape[-1])
        rows = [sorted(((v, j) for j, v in enumerate(row)), reverse=True)[:p.top_k] for row in flat]
        picked = np.array([[v if p.out_max_val else j for v, j in r] for r in rows], np.float32)
        out = np.moveaxis(picked.reshape(*moved.shape[:-1], p.top_k), -1, p.axis)
    return {"y": out}


def scale_oracle(net, inputs):
    """scale_layer.cpp: x * scale (+ bias), both spanning x's axes [axis, axis + scale.ndim) and broadcast over
    the rest; the scale is the second input or the first blob (OpenCV ignores axis 0 and scalar scales)."""
    layer = net.layers()[0]
    p = layer.params
    x = inputs["data"]
    scale, *bias = ([inputs["s"]] if p.two_inputs else []) + list(layer.weights)
    shape = tuple(p.param_shape) + (1,) * (x.ndim - p.axis - len(p.param_shape))
    y = x * scale.reshape(shape)
    return {"y": y + bias[0].reshape(shape) if bias else y}


def bias_oracle(net, inputs):
    """bias_layer.cpp: x + b broadcast from `axis` (OpenCV has no Bias layer)."""
    layer = net.layers()[0]
    p = layer.params
    b = inputs["b"] if p.two_inputs else layer.weights[0]
    return {"y": inputs["data"] + b.reshape(b.shape + (1,) * (inputs["data"].ndim - p.axis - b.ndim))}


def inner_product_oracle(net, inputs):
    """inner_product_layer.cpp: y = x W^T + b, or x W + b with `transpose` (OpenCV ignores transpose)."""
    layer = net.layers()[0]
    weight, bias = layer.weights
    x = inputs["data"].reshape(inputs["data"].shape[0], -1)
    return {"y": x @ (weight if layer.params.transpose else weight.T) + bias}


def prelu_oracle(net, inputs):
    """prelu_layer.cpp: max(x, 0) + a * min(x, 0) (OpenCV cannot read a channel_shared scalar slope)."""
    (slope,) = net.layers()[0].weights
    x = inputs["data"]
    a = slope.reshape(-1, 1, 1) if slope.ndim else slope
    return {"y": np.maximum(x, 0) + a * np.minimum(x, 0)}


def log_oracle(net, inputs):
    """log_layer.cpp: log(shift + scale * x) / ln(base) (OpenCV's Log gives NaN with a shift)."""
    p = net.layers()[0].params
    inner = np.float32(p.shift) + np.float32(p.scale) * inputs["data"]
    return {"y": np.log(inner) / (1.0 if p.base == -1 else np.log(p.base))}


def threshold_oracle(net, inputs):
    """threshold_layer.cpp: 1 where x > threshold, else 0 (OpenCV has no Threshold layer)."""
    return {"y": (inputs["data"] > net.layers()[0].params.threshold).astype(np.float32)}


def lrn_oracle(net, inputs):
    """lrn_layer.cpp, ACROSS_CHANNELS: x * (k + alpha / n * sum over n channels of x^2)^-beta (OpenCV
    ignores k)."""
    p = net.layers()[0].params
    x = inputs["data"].astype(np.float64)
    half = (p.local_size - 1) // 2
    squares = np.pad(x * x, ((0, 0), (half, half), (0, 0), (0, 0)))
    total = sum(squares[:, i:i + x.shape[1]] for i in range(p.local_size))
    return {"y": x * (p.k + p.alpha / p.local_size * total) ** -p.beta}


def slice_oracle(net, inputs):
    """slice_layer.cpp (OpenCV 4.14 gives no way to fetch a layer's second output by name)."""
    layer = net.layers()[0]
    pieces = np.split(inputs["data"], layer.params.points[1:-1], axis=layer.params.axis)
    return dict(zip((net.value_name(v) for v in layer.outputs), pieces))


BN = 'batch_norm_param { eps: 0.001 }'
CASES = [
    # Convolution: pads, strides, groups, dilation, rectangular and odd sizes, no bias, 1x1.
    Case("conv_k3_p1", conv("num_output: 4 kernel_size: 3 pad: 1")),
    Case("conv_group_dilation_odd", conv("num_output: 6 kernel_size: 3 stride: 2 dilation: 2 group: 2",
                                         shape=(2, 4, 11, 9))),
    Case("conv_hw_nobias", conv("num_output: 5 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 stride_h: 1 stride_w: 2 "
                                "bias_term: false",
                                shape=(1, 3, 6, 7))),
    Case("conv_1x1", conv("num_output: 8 kernel_size: 1")),
    Case("conv_depthwise_group", conv("num_output: 6 kernel_size: 3 pad: 1 group: 3")),
    Case("deconv_k4_s2_p1", conv("num_output: 4 kernel_size: 4 stride: 2 pad: 1", type_name="Deconvolution")),
    Case("deconv_group_odd", conv("num_output: 6 kernel_size: 3 stride: 3 group: 3 bias_term: false",
                                  shape=(1, 3, 5, 4), type_name="Deconvolution")),
    # Pooling: Caffe's ceil rule and its clipping, AVE divisors at the border, global, rectangular, floor.
    Case("max_ceil", pool("pool: MAX kernel_size: 3 stride: 2")),
    Case("ave_ceil", pool("pool: AVE kernel_size: 3 stride: 2")),
    Case("max_pad1", pool("pool: MAX kernel_size: 3 stride: 2 pad: 1")),
    Case("ave_pad1", pool("pool: AVE kernel_size: 3 stride: 2 pad: 1")),
    Case("ave_clipped_last_window", pool("pool: AVE kernel_size: 2 stride: 2 pad: 1", shape=(1, 2, 5, 5))),
    Case("max_clipped_last_window", pool("pool: MAX kernel_size: 2 stride: 2 pad: 1", shape=(1, 2, 5, 5))),
    Case("ave_odd_s3", pool("pool: AVE kernel_size: 3 stride: 3 pad: 1", shape=(1, 2, 10, 11))),
    Case("ave_rect", pool("pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0",
                          shape=(1, 2, 9, 6))),
    Case("ave_floor", pool("pool: AVE kernel_size: 3 stride: 2 round_mode: FLOOR"), pool_oracle),   # OpenCV refuses
    Case("max_global", pool("pool: MAX global_pooling: true", shape=(2, 3, 5, 6))),
    Case("ave_global", pool("pool: AVE global_pooling: true", shape=(2, 3, 5, 6))),
    # Padding over half the kernel: torch refuses it, our own modules compute it.
    Case("ave_pad_over_half", pool("pool: AVE kernel_size: 3 stride: 2 pad: 2", shape=(1, 2, 7, 7)), pool_oracle),
    Case("max_pad_over_half", pool("pool: MAX kernel_size: 3 stride: 2 pad: 2", shape=(1, 2, 7, 7)), pool_oracle),
    Case("stochastic", pool("pool: STOCHASTIC kernel_size: 3 stride: 2", shape=(1, 2, 8, 8)), pool_oracle),
    Case("max_with_mask", pool("pool: MAX kernel_size: 3 stride: 2", shape=(1, 2, 8, 9), tops=("y", "mask")),
         pool_oracle),
    # InnerProduct: flattening, transpose, axis 2, no bias.
    Case("ip_4d", data(2, 3, 4, 5) + one("InnerProduct", "inner_product_param { num_output: 7 }")),
    Case("ip_transpose", data(2, 6) + one("InnerProduct", "inner_product_param { num_output: 4 transpose: true }"),
         inner_product_oracle),
    Case("ip_axis2_nobias", data(2, 3, 4, 5) + one("InnerProduct",
                                                   "inner_product_param { num_output: 3 axis: 2 bias_term: false }")),
    # Activations.
    Case("relu", data(2, 3, 4, 5) + one("ReLU")),
    Case("leaky_relu", data(2, 3, 4, 5) + one("ReLU", "relu_param { negative_slope: 0.1 }")),
    Case("prelu", data(2, 3, 4, 5) + one("PReLU")),
    Case("prelu_shared", data(2, 3, 4, 5) + one("PReLU", "prelu_param { channel_shared: true }"), prelu_oracle),
    Case("elu", data(2, 3, 4, 5) + one("ELU", "elu_param { alpha: 0.7 }")),
    Case("sigmoid", data(2, 3, 4, 5) + one("Sigmoid")),
    Case("tanh", data(2, 3, 4, 5) + one("TanH")),
    Case("absval", data(2, 3, 4, 5) + one("AbsVal")),
    Case("bnll", data(2, 3, 4, 5) + one("BNLL")),
    Case("power_square", data(2, 3, 4, 5) + one("Power", "power_param { power: 2 scale: 0.5 shift: 1 }")),
    Case("power_affine", data(2, 3, 4, 5) + one("Power", "power_param { scale: -2 shift: 0.5 }")),
    Case("power_constant", data(2, 3, 4, 5) + one("Power", "power_param { power: 3 scale: 0 shift: 1.5 }")),
    Case("exp_base2", data(2, 3, 4, 5) + one("Exp", "exp_param { base: 2 scale: 0.5 shift: 1 }")),
    Case("exp_e", data(2, 3, 4, 5) + one("Exp")),
    Case("log_shifted", data(2, 3, 4, 5) + one("Log", "log_param { base: 10 shift: 8 scale: 0.5 }"), log_oracle),
    Case("threshold", data(2, 3, 4, 5) + one("Threshold", "threshold_param { threshold: 0.3 }"), threshold_oracle),
    Case("dropout_unscaled", data(2, 3, 4, 5) + one("Dropout", "dropout_param { dropout_ratio: 0.3 }")
         + one("ReLU", bottoms=("y",), tops=("z",))),
    # Normalisation.
    Case("batchnorm_scale", conv("num_output: 4 kernel_size: 3", shape=(2, 3, 6, 6))
         + one("BatchNorm", BN, bottoms=("y",), tops=("y",), name="bn")
         + one("Scale", "scale_param { bias_term: true }", bottoms=("y",), tops=("y",), name="scale")),
    Case("batchnorm_alone", data(2, 3, 4, 5) + one("BatchNorm", BN)),
    Case("batchnorm_2d", data(4, 6) + one("BatchNorm")),
    Case("scale_no_bias", data(2, 3, 4, 5) + one("Scale")),
    Case("scale_two_axes", data(2, 3, 4, 5) + one("Scale", "scale_param { axis: 1 num_axes: 2 bias_term: true }")),
    Case("scale_scalar", data(2, 3, 4, 5) + one("Scale", "scale_param { num_axes: 0 bias_term: true }"), scale_oracle),
    Case("scale_last_axis", data(2, 3, 4, 5) + one("Scale", "scale_param { axis: -1 bias_term: true }"), scale_oracle),
    Case("scale_axis2", data(2, 3, 4, 5) + one("Scale", "scale_param { axis: 2 num_axes: 1 }"), scale_oracle),
    Case("scale_two_inputs", data(2, 3, 4, 5) + data(2, 3, name="s")
         + one("Scale", "scale_param { axis: 0 bias_term: true }", bottoms=("data", "s")), scale_oracle),
    Case("scale_two_inputs_axis1", data(2, 3, 4, 5) + data(3, 4, name="s")
         + one("Scale", "scale_param { axis: 1 }", bottoms=("data", "s"))),
    Case("bias", data(2, 3, 4, 5) + one("Bias"), bias_oracle),
    Case("bias_two_inputs", data(2, 3, 4, 5) + data(3, name="b") + one("Bias", bottoms=("data", "b")), bias_oracle),
    Case("lrn_across_k2", data(2, 7, 4, 5) + one("LRN", "lrn_param { local_size: 5 alpha: 0.3 beta: 0.75 k: 2 }"),
         lrn_oracle),
    Case("lrn_across_3", data(1, 4, 3, 3) + one("LRN", "lrn_param { local_size: 3 alpha: 1 beta: 0.5 }")),
    Case("lrn_within", data(2, 3, 6, 5) + one("LRN", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 "
                                                      "norm_region: WITHIN_CHANNEL }")),
    # Merging.
    Case("eltwise_sum3", data(2, 3, 4, 5) + data(2, 3, 4, 5, name="b") + data(2, 3, 4, 5, name="c")
         + one("Eltwise", bottoms=("data", "b", "c"))),
    Case("eltwise_coeffs", data(2, 3, 4, 5) + data(2, 3, 4, 5, name="b")
         + one("Eltwise", "eltwise_param { operation: SUM coeff: 0.5 coeff: -1 }", bottoms=("data", "b"))),
    Case("eltwise_prod", data(2, 3, 4, 5) + data(2, 3, 4, 5, name="b")
         + one("Eltwise", "eltwise_param { operation: PROD }", bottoms=("data", "b"))),
    Case("eltwise_max", data(2, 3, 4, 5) + data(2, 3, 4, 5, name="b")
         + one("Eltwise", "eltwise_param { operation: MAX }", bottoms=("data", "b"))),
    Case("concat_channels", data(2, 3, 4, 5) + data(2, 2, 4, 5, name="b") + one("Concat", bottoms=("data", "b"))),
    Case("concat_axis2", data(2, 3, 4, 5) + data(2, 3, 1, 5, name="b")
         + one("Concat", "concat_param { axis: 2 }", bottoms=("data", "b"))),
    # Reshaping.
    Case("slice_points", data(2, 6, 4, 5) + one("Slice", "slice_param { axis: 1 slice_point: 1 slice_point: 4 }",
                                                tops=("a", "b", "c")), slice_oracle),
    Case("slice_equal_axis2", data(2, 3, 4, 5) + one("Slice", "slice_param { axis: 2 }", tops=("a", "b")),
         slice_oracle),
    Case("flatten", data(2, 3, 4, 5) + one("Flatten")),
    Case("flatten_axes", data(2, 3, 4, 5) + one("Flatten", "flatten_param { axis: 2 end_axis: 3 }")),
    Case("reshape_keep_batch", data(2, 3, 4, 5) + one("Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 5 } }")),
    Case("reshape_infer_first", data(2, 3, 4, 5) + one("Reshape", "reshape_param { shape { dim: -1 dim: 10 } }")),
    Case("reshape_axis1", data(2, 6, 4) + one("Reshape", "reshape_param { axis: 1 shape { dim: 2 dim: 3 } "
                                                         "num_axes: 1 }")),
    Case("crop", data(1, 3, 8, 8) + data(1, 3, 5, 4, name="ref")
         + one("Crop", "crop_param { axis: 2 offset: 1 offset: 2 }", bottoms=("data", "ref"))),
    Case("crop_axis1_one_offset", data(2, 5, 8, 8) + data(2, 3, 5, 5, name="ref")
         + one("Crop", "crop_param { axis: 1 offset: 1 }", bottoms=("data", "ref"))),
    # Softmax and ArgMax (ties on purpose: Caffe puts the larger index first).
    Case("softmax", data(2, 5, 3, 4) + one("Softmax")),
    Case("softmax_axis2", data(2, 5, 3, 4) + one("Softmax", "softmax_param { axis: 2 }")),
    Case("argmax_top1", data(2, 5, 3, 3) + one("ArgMax"), argmax_oracle, True),
    Case("argmax_top3_values", data(2, 5, 3, 3) + one("ArgMax", "argmax_param { top_k: 3 out_max_val: true }"),
         argmax_oracle, True),
    Case("argmax_axis1", data(2, 5, 3, 3) + one("ArgMax", "argmax_param { axis: 1 top_k: 2 }"), argmax_oracle, True),
    Case("argmax_axis2_values", data(2, 5, 4, 3) + one("ArgMax", "argmax_param { axis: 2 out_max_val: true }"),
         argmax_oracle, True),
]


def build(tmp_path: Path, text: str, name: str = "net"):
    """(prototxt, caffemodel or None, Net with seeded random weights, written and read back by our code)."""
    prototxt = tmp_path / f"{name}.prototxt"
    prototxt.write_text(text)
    bare = read_net(prototxt, init="none")
    if not any(getattr(layer.params, "weight_shapes", None) and layer.params.weight_shapes(
            *(bare.shape(v) for v in layer.inputs)) for layer in bare.layers()):
        return prototxt, None, bare        # our caffemodel reader refuses a file with no layers in it
    return write_net(tmp_path, text, name=name)


def inputs_for(net, case: Case) -> dict[str, np.ndarray]:
    inputs = random_inputs(net)
    if case.integer_inputs:
        rng = np.random.default_rng(7)
        inputs = {k: rng.integers(0, 3, v.shape).astype(np.float32) for k, v in inputs.items()}
    return inputs


def reference(case: Case, net, prototxt, caffemodel, inputs):
    if case.oracle is not None:
        return case.oracle(net, inputs)
    return opencv_forward(net, prototxt, caffemodel if caffemodel is not None else "", inputs)


def run_torch(module, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(a) for a in inputs.values()))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each case's files and net, made once for all the tests that read them."""
    cache = {}

    def get(case: Case):
        if case.id not in cache:
            directory = tmp_path_factory.mktemp(case.id)
            prototxt, caffemodel, net = build(directory, case.text)
            inputs = inputs_for(net, case)
            cache[case.id] = (prototxt, caffemodel, net, inputs,
                              reference(case, net, prototxt, caffemodel, inputs))
        return cache[case.id]

    return get


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "unfolded"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_layer_matches_caffe(case, fold, built):
    prototxt, caffemodel, net, inputs, expected = built(case)
    module = load(net, fold=fold)
    assert list(module.output_names) == list(expected)
    for name, actual in zip(module.output_names, run_torch(module, inputs)):
        assert_close(actual, expected[name], f"{case.id} {name}")


# The ArgMax cases have ties on purpose: Caffe puts the larger index first among equal values
# (argmax_layer.cpp sorts (value, index) pairs with std::greater), and both backends must too.
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_layer_matches_onnxruntime(case, built):
    import onnxruntime as ort

    import protodef
    prototxt, caffemodel, net, inputs, _ = built(case)
    model = protodef.to_onnx(net)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: inputs[i.name] for i in session.get_inputs()}
    expected = dict(zip((o.name for o in session.get_outputs()), session.run(None, feeds)))
    module = load(net)
    for name, actual in zip(module.output_names, run_torch(module, inputs)):
        assert_close(actual, expected[name], f"{case.id} {name} vs onnxruntime")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_layer_scripts_exports_and_writes_out_as_source(case, built, tmp_path):
    """Each converter's module under torch.jit.script and torch.export (batch-free where the net allows), and
    its generated source (run here, in a namespace of its own) with the same state dict, give the
    GraphModule's outputs (the generated source bit for bit)."""
    prototxt, caffemodel, net, inputs, _ = built(case)
    module = load(net, fold=False)
    expected = run_torch(module, inputs)
    for a, b in zip(run_torch(torch.jit.script(module), inputs), expected):
        assert_close(a, b, f"{case.id}: script")
    save_pytorch(net, tmp_path / "case.pt2", fold=False, form="export")
    for a, b in zip(run_torch(torch.export.load(tmp_path / "case.pt2").module(), inputs), expected):
        assert_close(a, b, f"{case.id}: export")
    save_pytorch(net, tmp_path / "case.py", fold=False)
    namespace = {"__file__": str(tmp_path / "case.py"), "__name__": "generated_case"}
    exec(compile((tmp_path / "case.py").read_text(), "case.py", "exec"), namespace)
    generated = namespace["load_model"]()
    for a, b in zip(run_torch(generated, inputs), expected):
        assert np.array_equal(a, b), f"{case.id}: generated source differs"


# ---- structure ----------------------------------------------------------------------------------------------
def test_unfolded_batchnorm_keeps_caffe_blobs_and_the_scale_after_it(tmp_path):
    """fold=False keeps Caffe's BatchNorm (its three blobs as buffers, no affine) and the Scale as its own
    module; in train mode it normalises by the batch and moves the blobs as Caffe does (tests in
    test_train_lowering.py check the arithmetic)."""
    text = (conv("num_output: 4 kernel_size: 3", shape=(2, 3, 6, 6))
            + one("BatchNorm", BN, bottoms=("y",), tops=("y",), name="bn")
            + one("Scale", "scale_param { bias_term: true }", bottoms=("y",), tops=("y",), name="scale")
            + one("ReLU", bottoms=("y",), tops=("y",), name="relu"))
    _, _, net = write_net(tmp_path, text)
    mean, var, factor = net.layer("bn").weights
    gamma, beta = net.layer("scale").weights
    module = load(net, fold=False)
    bn = module.bn
    assert type(bn).__name__ == "CaffeBatchNorm" and bn.eps == pytest.approx(0.001)
    assert {"bn.mean", "bn.variance", "bn.scale_factor", "scale.weight", "scale.bias"} <= set(module.state_dict())
    np.testing.assert_array_equal(bn.mean.numpy(), mean)
    np.testing.assert_array_equal(bn.variance.numpy(), var)
    np.testing.assert_array_equal(bn.scale_factor.numpy(), factor.reshape(1))
    np.testing.assert_array_equal(module.scale.weight.detach().numpy(), gamma)
    np.testing.assert_array_equal(module.scale.bias.detach().numpy(), beta)
    module.train()
    x = torch.randn(4, 3, 6, 6)
    module(x).square().sum().backward()          # (the ReLU after the Scale works in place)
    assert not torch.equal(bn.mean, torch.from_numpy(mean)) and bn.scale_factor.item() != factor[0]
    assert module.relu.inplace and module.scale.weight.grad is not None and module.y.weight.grad.abs().sum() > 0
    folded = load(net, fold=True)
    assert not any(type(m).__name__ == "CaffeBatchNorm" for m in folded.modules())
    assert set(folded.state_dict()) == {"y.weight", "y.bias"}


def test_batchnorm_scale_factor_zero_means_zero_statistics(tmp_path):
    _, _, net = write_net(tmp_path, data(2, 3, 4, 5) + one("BatchNorm", BN))
    layer = net.layers()[0]
    mean, var, _ = layer.weights
    net.replace(layer, layer.replace(weights=(mean, var, np.zeros(1, np.float32))))
    x = torch.randn(2, 3, 4, 5)
    for fold in (True, False):
        with torch.no_grad():
            np.testing.assert_allclose(load(net, fold=fold)(x).numpy(), (x / np.sqrt(0.001)).numpy(), rtol=1e-5)


def test_names_that_are_not_identifiers_are_mangled_reversibly(tmp_path):
    text = (data(1, 3, 5, 5, name="in/put")
            + one("Convolution", "convolution_param { num_output: 2 kernel_size: 1 }", bottoms=("in/put",),
                  tops=("conv1/7x7_s2",), name="conv1/7x7_s2")
            + one("ReLU", bottoms=("conv1/7x7_s2",), tops=("relu",), name="eval")
            + one("ReLU", bottoms=("relu",), tops=("out",), name="1x1"))
    _, _, net = write_net(tmp_path, text)
    module = load(net)
    assert module.caffe_names == {"conv1_7x7_s2": "conv1/7x7_s2", "eval_": "eval", "_1x1": "1x1"}
    assert set(module.state_dict()) == {"conv1_7x7_s2.weight", "conv1_7x7_s2.bias"}
    assert module.input_names == ["in/put"] and module.output_names == ["out"]
    assert module(torch.ones(1, 3, 5, 5)).shape == (1, 2, 5, 5)
    assert callable(module.eval)       # a layer named "eval" did not replace the method


def test_relu_is_in_place_only_where_nothing_else_reads_its_input(tmp_path):
    text = (data(1, 2, 5, 5) + one("ReLU", tops=("r0",))
            + one("Convolution", "convolution_param { num_output: 3 kernel_size: 3 }", bottoms=("r0",), tops=("c",))
            + one("ReLU", bottoms=("c",), tops=("r1",))
            + one("Eltwise", bottoms=("c", "r1"), tops=("s",))
            + one("ReLU", bottoms=("s",), tops=("s",), name="relu_s")
            + one("Convolution", "convolution_param { num_output: 3 kernel_size: 3 }", bottoms=("r0",), tops=("d",))
            + one("Eltwise", bottoms=("d", "s"), tops=("e",)))
    prototxt, caffemodel, net = write_net(tmp_path, text)
    inputs = random_inputs(net)
    module = load(net)
    assert (module.r0.inplace, module.r1.inplace, module.relu_s.inplace) == (False, False, True)
    adds = {node.name: node.target for node in module.graph.nodes if node.name in ("s", "e")}
    assert adds == {"s": operator.add, "e": "add_"}       # c is read twice; d only by e
    x = torch.from_numpy(inputs["data"].copy())
    with torch.no_grad():
        actual = module(x)
    assert torch.equal(x, torch.from_numpy(inputs["data"]))          # the caller's tensor is untouched
    assert_close(actual.numpy(), opencv_forward(net, prototxt, caffemodel, inputs)["e"], "in-place ReLU and add")


def test_several_outputs_come_back_as_a_tuple_in_output_names_order(tmp_path):
    _, _, net = build(tmp_path, data(2, 6, 4, 5) + one("Slice", "slice_param { axis: 1 }", tops=("a", "b", "c")))
    module = load(net)
    out = module(torch.arange(240.0).reshape(2, 6, 4, 5))
    assert module.output_names == ["a", "b", "c"] and isinstance(out, tuple) and len(out) == 3
    assert torch.equal(out[1], torch.arange(240.0).reshape(2, 6, 4, 5)[:, 2:4])
    assert copy.deepcopy(module).output_names == ["a", "b", "c"]      # deepcopy rebuilds a GraphModule


def _unpassed(net):
    """The net as if the pipeline had run without removing anything (to reach the backend's own check)."""
    from protodef.passes import run_pipeline
    return run_pipeline(net, passes=[])[0]


def test_missing_converters_are_reported_together(tmp_path):
    from converters.pytorch.lower import lower_torch
    text = data(2, 3) + one("MultiBoxLoss", bottoms=("data", "data"), tops=("loss",))
    net = read_net(_write(tmp_path, text), init="none")
    with pytest.raises(UnsupportedError, match="no converter for 1 layer type.*MultiBoxLoss"):
        lower_torch(_unpassed(net))


def test_weights_that_do_not_fit_name_the_layer(tmp_path):
    _, _, net = write_net(tmp_path, conv("num_output: 4 kernel_size: 3"))
    layer = net.layers()[0]
    net.replace(layer, layer.replace(weights=(np.zeros((4, 3, 3, 2), np.float32), layer.weights[1])))
    with pytest.raises(WeightsError, match="'y'.*weight"):
        load(net)
    bare = read_net(_write(tmp_path, conv("num_output: 4 kernel_size: 3")), init="none")
    with pytest.raises(WeightsError, match="'y'.*no weights"):
        load(bare)


def test_converters_register_once():
    with pytest.raises(ValueError, match="already registered"):
        torch_converter("Convolution")(lambda layer, ctx: None)
    assert "Convolution" in TORCH_CONVERTERS


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    return path


# ---- generated source, export, jit, compile, dtype, device ------------------------------------------------------
MIXED = (data(2, 3, 9, 9) + data(2, 4, 4, 4, name="ref")
         + one("Convolution", "convolution_param { num_output: 4 kernel_size: 3 pad: 1 }", tops=("conv",),
               name="conv1/3x3")
         + one("BatchNorm", BN, bottoms=("conv",), tops=("conv",), name="bn1")
         + one("Scale", "scale_param { bias_term: true }", bottoms=("conv",), tops=("conv",), name="scale1")
         + one("PReLU", bottoms=("conv",), tops=("conv",), name="relu1")
         + one("Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 2 }", bottoms=("conv",),
               tops=("pool",), name="pool1")
         + one("Crop", "crop_param { axis: 2 offset: 1 }", bottoms=("pool", "ref"), tops=("crop",), name="crop")
         + one("Eltwise", "eltwise_param { coeff: 0.5 coeff: -2 }", bottoms=("crop", "ref"), tops=("sum",),
               name="sum")
         + one("Scale", "scale_param { axis: 1 num_axes: 2 }", bottoms=("sum",), tops=("sum",), name="scale2")
         + one("Slice", "slice_param { axis: 1 slice_point: 1 }", bottoms=("sum",), tops=("a", "b"), name="slice")
         + one("Power", "power_param { power: 2 shift: 1 }", bottoms=("a",), tops=("a2",), name="square")
         + one("InnerProduct", "inner_product_param { num_output: 5 }", bottoms=("b",), tops=("fc",), name="fc")
         + one("ArgMax", "argmax_param { top_k: 2 }", bottoms=("fc",), tops=("top",), name="argmax"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mixed")
    prototxt, caffemodel, net = write_net(directory, 'name: "mixed-net_v2"\n' + MIXED)
    return net, random_inputs(net)


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "unfolded"])
def test_generated_source_runs_without_protodef_and_gives_the_same_bits(mixed, fold, tmp_path):
    net, inputs = mixed
    module = load(net, fold=fold)
    expected = run_torch(module, inputs)
    written = save_pytorch(net, tmp_path / "mixed.py", fold=fold)
    assert written == [str(tmp_path / "mixed.py"), str(tmp_path / "mixed.pt")]
    source = (tmp_path / "mixed.py").read_text()
    assert "class MixedNetV2(nn.Module):" in source and "protodef" not in source.split('"""', 2)[2]
    assert "self.conv1_3x3 = nn.Conv2d(3, 4, kernel_size=3, padding=1)" in source
    np.savez(tmp_path / "inputs.npz", *inputs.values())
    script = textwrap.dedent("""
        import importlib.util, sys
        import numpy as np
        for blocked in ("protodef", "converters"):
            sys.modules[blocked] = None          # any import of them fails
        import torch
        torch.set_num_threads(2)
        spec = importlib.util.spec_from_file_location("mixed", "mixed.py")
        generated = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generated)
        model = generated.load_model()
        arrays = np.load("inputs.npz")
        with torch.no_grad():
            out = model(*(torch.from_numpy(arrays[k]) for k in arrays.files))
        np.savez("outputs.npz", *(out if isinstance(out, tuple) else (out,)))
        print(list(model.output_names))
        """)
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == str(module.output_names)
    outputs = np.load(tmp_path / "outputs.npz")
    for name, want, key in zip(module.output_names, expected, outputs.files):
        assert np.array_equal(outputs[key], want), f"{name}: max diff {np.abs(outputs[key] - want).max()}"


def test_generated_source_reads_like_hand_written_code(mixed, tmp_path):
    net, _ = mixed
    save_pytorch(net, tmp_path / "m.py")
    source = (tmp_path / "m.py").read_text()
    forward = source.split("def forward(self, data, ref):\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert forward[0].strip() == "conv1_3x3 = self.conv1_3x3(data)"
    assert forward[-1].strip() == "return square, argmax"
    assert all(line.count("=") <= 1 for line in forward)      # one statement per step
    init = source.split("def __init__(self):", 1)[1].split("def forward", 1)[0]
    order = [line.split("=")[0].strip().removeprefix("self.") for line in init.splitlines() if "self." in line]
    assert order == [name for name in load(net).caffe_names]            # execution order
    compile(source, "m.py", "exec")


def test_export_form_saves_a_program_with_a_free_batch(mixed, tmp_path):
    net, inputs = mixed
    module = load(net)
    save_pytorch(net, tmp_path / "m.pt2", form="export")
    program = torch.export.load(tmp_path / "m.pt2")
    bigger = {k: np.concatenate([v, v, v[:1]]) for k, v in inputs.items()}      # batch 5, traced at 2
    for a, b in zip(run_torch(program.module(), bigger), run_torch(module, bigger)):
        assert_close(a, b, "exported program")


def test_save_refuses_a_weights_name_clash_and_leaves_nothing(mixed, tmp_path):
    from protodef.errors import OutputError
    net, _ = mixed
    with pytest.raises(OutputError):
        save_pytorch(net, tmp_path / "m.pt")
    with pytest.raises(ValueError):
        save_pytorch(net, tmp_path / "m.py", form="onnx")
    assert list(tmp_path.iterdir()) == []


def test_script_trace_export_and_compile_agree(mixed):
    net, inputs = mixed
    module = load(net)
    args = tuple(torch.from_numpy(a) for a in inputs.values())
    expected = run_torch(module, inputs)
    scripted = torch.jit.script(module)
    traced = torch.jit.trace(module, args)
    exported = torch.export.export(module, args).module()
    compiled = torch.compile(module, backend="eager")
    for what, other in [("script", scripted), ("trace", traced), ("export", exported), ("compile", compiled)]:
        for a, b in zip(run_torch(other, inputs), expected):
            assert_close(a, b, what)


def test_half_precision_and_other_devices(mixed):
    net, inputs = mixed
    module = load(net, fold=False)
    expected = run_torch(module, inputs)
    half = load(net, fold=False).half()
    with torch.no_grad():
        out = half(*(torch.from_numpy(a).half() for a in inputs.values()))
    for a, b in zip(out, expected):
        assert a.dtype == torch.float16
        np.testing.assert_allclose(a.float().numpy(), b, atol=0.05 * max(1, np.abs(b).max()))
    # The meta device runs every op without data: nothing in forward may make a tensor on the CPU.
    meta = load(net).to("meta")
    out = meta(*(torch.empty(a.shape, device="meta") for a in inputs.values()))
    assert all(o.device.type == "meta" for o in out)
    assert [tuple(o.shape) for o in out] == [b.shape for b in expected]


# ---- a real net ---------------------------------------------------------------------------------------------------
RESNET = CORPUS / "resnet_kaiminghe" / "prototxt_ResNet-50-deploy.prototxt"
SMALL = {"data": (1, 3, 200, 200)}


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    if not RESNET.exists():
        pytest.skip(f"corpus file {RESNET} is not there")
    directory = tmp_path_factory.mktemp("resnet")
    # 200 x 200 is about the smallest input whose last stage is still 7 x 7, which pool5's kernel needs.
    prototxt, caffemodel, net = write_net(directory, RESNET.read_text(), seed=3, input_shape=SMALL)
    inputs = random_inputs(net)
    return prototxt, caffemodel, net, inputs, opencv_forward(net, prototxt, caffemodel, inputs)


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "unfolded"])
def test_resnet50_matches_opencv(resnet, fold):
    prototxt, caffemodel, net, inputs, expected = resnet
    module = load(prototxt, caffemodel, fold=fold, input_shape=SMALL)
    (actual,) = run_torch(module, inputs)
    assert_close(actual, expected["prob"], "ResNet-50 prob")
    names = dict(module.named_children())
    keys = set(module.state_dict())
    assert {"conv1", "res2a_branch2a", "res5c_branch2c", "fc1000"} <= set(names)
    assert {"conv1.weight", "conv1.bias", "res2a_branch2a.weight", "fc1000.weight", "fc1000.bias"} <= keys
    assert isinstance(names["res2a_branch2b"], torch.nn.Conv2d) and isinstance(names["pool1"], torch.nn.MaxPool2d)
    if fold:
        assert not any(k.startswith(("bn", "scale")) for k in keys)
        assert names["res2a_branch2a"].bias is not None        # the folded BatchNorm's shift
    else:
        assert type(names["bn2a_branch2a"]).__name__ == "CaffeBatchNorm" and "scale2a_branch2a" in names
        assert {"bn_conv1.mean", "bn_conv1.variance", "bn_conv1.scale_factor", "scale_conv1.weight",
                "scale_conv1.bias"} <= keys


def test_load_reads_the_input_shape_and_phase(tmp_path):
    prototxt = _write(tmp_path, 'name: "small"\n' + conv("num_output: 2 kernel_size: 3", shape=(1, 3, 7, 7)))
    module = load(prototxt, input_shape={"data": (4, 3, 9, 9)})
    assert module(torch.zeros(4, 3, 9, 9)).shape == (4, 2, 7, 7)
    assert not module.training and type(module).__name__ == "Small"


def test_plugin_layers_use_their_torch_function(tmp_path):
    import protodef
    from protodef.plugins import unregister_layer

    class Double(torch.nn.Module):
        def forward(self, x):
            return x * 2

    protodef.register_layer("DoubleIt", shape=lambda inputs, fields: inputs[0], torch=lambda layer, ctx: Double())
    try:
        net = read_net(_write(tmp_path, data(1, 2) + one("DoubleIt")), init="none")
        assert torch.equal(load(net)(torch.ones(1, 2)), torch.full((1, 2), 2.0))
        with pytest.raises(UnsupportedError, match="plugins"):
            save_pytorch(net, tmp_path / "p.py")
    finally:
        unregister_layer("DoubleIt")


