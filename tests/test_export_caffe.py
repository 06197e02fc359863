"""ONNX -> Caffe export, op by op: what onnxruntime computes on the ONNX model, OpenCV (an independent Caffe)
and protodef's own lowering compute on the exported prototxt + caffemodel. Refusals, targets and the CLI."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from export_support import assert_export_matches, layer_types, onnx_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper
from support import REPO

from converters.caffe import TARGETS, to_caffe
from protodef.cli import main
from protodef.errors import ShapeError, UnsupportedError

N = helper.make_node
RNG = np.random.default_rng(7)


def R(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def scalar(value):
    return np.float32(value)


def pool_model(op, size, kernel, stride, pads, ceil, count_include_pad=0):
    attributes = dict(kernel_shape=[kernel, kernel], strides=[stride, stride], pads=pads, ceil_mode=ceil)
    if op == "AveragePool":
        attributes["count_include_pad"] = count_include_pad
    return onnx_model([N(op, ["x"], ["y"], **attributes)], {"x": [1, 2, size, size + 1]}, ["y"])


# ---------------------------------------------------------------------------------------------- pooling
@pytest.mark.parametrize("target", ["bvlc", "opencv"])
def test_torchvision_max_pooling_floors(tmp_path, target):
    """ResNet's stem pool (3, 2, 1) floors; Caffe rounds up: BVLC 1.0 gets a Slice, OpenCV ceil_mode false."""
    export = assert_export_matches(tmp_path, pool_model("MaxPool", 8, 3, 2, [1, 1, 1, 1], 0), target=target)
    pooling = export.param.layer[1].pooling_param
    if target == "bvlc":
        assert "Slice" in layer_types(export) and pooling.ceil_mode
    else:
        assert layer_types(export) == ["Input", "Pooling"] and not pooling.ceil_mode


def test_floor_rounding_is_round_mode_on_bvlc_master(tmp_path):
    export = assert_export_matches(tmp_path, pool_model("MaxPool", 8, 3, 2, [1, 1, 1, 1], 0), target="bvlc-master",
                                   opencv=False)   # OpenCV's own proto has no round_mode
    assert layer_types(export) == ["Input", "Pooling"]
    assert export.param.layer[1].pooling_param.round_mode == export.param.layer[1].pooling_param.FLOOR


@pytest.mark.parametrize("op, size, kernel, stride, pads, ceil, include", [
    ("AveragePool", 7, 3, 2, [1, 1, 1, 1], 0, 0),     # border windows: ONNX counts only the input
    ("AveragePool", 7, 3, 2, [1, 1, 1, 1], 1, 1),     # ceil: the last window overhangs the padding
    ("AveragePool", 6, 2, 2, [0, 0, 1, 1], 0, 0),     # asymmetric padding, end only
    ("MaxPool", 6, 3, 2, [0, 0, 1, 1], 0, 0),
    ("MaxPool", 5, 2, 3, [1, 1, 1, 1], 0, 0),
])
def test_pooling_windows_and_divisors(tmp_path, op, size, kernel, stride, pads, ceil, include):
    assert_export_matches(tmp_path, pool_model(op, size, kernel, stride, pads, ceil, include))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(3, 9), kernel=st.integers(1, 4), stride=st.integers(1, 3), begin=st.integers(0, 3),
       end=st.integers(0, 3), ceil=st.integers(0, 1), op=st.sampled_from(["MaxPool", "AveragePool"]),
       include=st.integers(0, 1), target=st.sampled_from(["bvlc", "opencv"]))
def test_pooling_property(tmp_path, size, kernel, stride, begin, end, ceil, op, include, target):
    """Any valid pool either exports and computes what onnxruntime does, or is refused by name. (A kernel
    larger than the input is left out: Caffe pools it, OpenCV 4.14 fails to size it.)"""
    if begin >= kernel or end >= kernel or size < kernel:
        return
    model = pool_model(op, size, kernel, stride, [begin, begin, end, end], ceil, include)
    try:
        assert_export_matches(tmp_path, model, target=target)
    except UnsupportedError as error:
        assert f"node 'y' ({op})" in str(error)
        assert "symmetric Caffe padding" in str(error) or "disagree" in str(error)


def test_pad_node_is_taken_into_pooling_and_convolution(tmp_path):
    pads = np.array([0, 0, 0, 1, 0, 0, 2, 1], np.int64)
    model = onnx_model([N("Pad", ["x", "pads"], ["padded"], mode="constant"),
                        N("Conv", ["padded", "w"], ["y"], kernel_shape=[3, 3], strides=[2, 2]),
                        N("AveragePool", ["padded"], ["z"], kernel_shape=[3, 3], strides=[2, 2])],
                       {"x": [1, 2, 8, 9]}, ["y", "z"], {"pads": pads, "w": R(3, 2, 3, 3)})
    assert "Pad" not in layer_types(assert_export_matches(tmp_path, model))


def test_global_pooling_and_spatial_means(tmp_path):
    model = onnx_model([N("GlobalMaxPool", ["x"], ["a"]), N("ReduceMean", ["x"], ["b"], axes=[2, 3], keepdims=0),
                        N("GlobalAveragePool", ["x"], ["c"]), N("ReduceMax", ["x"], ["d"], axes=[2, 3])],
                       {"x": [2, 3, 5, 4]}, ["a", "b", "c", "d"])
    assert set(layer_types(assert_export_matches(tmp_path, model))[1:]) == {"Pooling", "Flatten"}


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1"])
@pytest.mark.parametrize("axes, keepdims", [([3], 0), ([1, 2, 3], 1), ([2, 3], 0)])
def test_reductions_over_trailing_axes(tmp_path, op, axes, keepdims):
    model = onnx_model([N(op, ["x", "axes"], ["y"], keepdims=keepdims)], {"x": [2, 3, 5, 4]}, ["y"],
                       {"axes": np.array(axes, np.int64)}, opset=18)
    export = assert_export_matches(tmp_path, model, opencv=False)   # OpenCV has no Reduction layer
    assert "Reduction" in layer_types(export) or op == "ReduceMean" and axes == [2, 3]


# ------------------------------------------------------------------------------------------ convolution
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(4, 9), kernel=st.integers(1, 3), stride=st.integers(1, 3), dilation=st.integers(1, 2),
       pads=st.tuples(*[st.integers(0, 3)] * 4), groups=st.sampled_from([1, 2]))
def test_convolution_property(tmp_path, size, kernel, stride, dilation, pads, groups):
    """Asymmetric padding becomes a larger symmetric pad and a Slice: the windows stay ONNX's."""
    extent = dilation * (kernel - 1) + 1
    if size + pads[0] + pads[2] < extent or size + 1 + pads[1] + pads[3] < extent:
        return
    model = onnx_model([N("Conv", ["x", "w", "b"], ["y"], kernel_shape=[kernel, kernel], strides=[stride, stride],
                          dilations=[dilation, dilation], pads=list(pads), group=groups)],
                       {"x": [1, 4, size, size + 1]}, ["y"], {"w": R(6, 4 // groups, kernel, kernel), "b": R(6)})
    assert_export_matches(tmp_path, model)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_convolution_auto_pad(tmp_path, auto_pad):
    model = onnx_model([N("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], strides=[2, 2], auto_pad=auto_pad)],
                       {"x": [1, 2, 8, 7]}, ["y"], {"w": R(3, 2, 3, 3)})
    assert_export_matches(tmp_path, model)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(2, 5), kernel=st.integers(1, 4), stride=st.integers(1, 3), begin=st.integers(0, 2),
       end=st.integers(0, 2), output_padding=st.integers(0, 2), groups=st.sampled_from([1, 2]))
def test_conv_transpose_property(tmp_path, size, kernel, stride, begin, end, output_padding, groups):
    """output_padding (bias only there) comes from zero kernel taps; uneven pads from a Slice."""
    if output_padding >= stride or begin >= kernel or end >= kernel or \
            stride * (size - 1) + output_padding + kernel - begin - end < 1:
        return
    model = onnx_model([N("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[kernel, kernel],
                          strides=[stride, stride], pads=[begin, end, end, begin],
                          output_padding=[output_padding, output_padding], group=groups)],
                       {"x": [1, 4, size, size + 1]}, ["y"], {"w": R(4, 6 // groups, kernel, kernel), "b": R(6)})
    assert_export_matches(tmp_path, model)


def batchnorm_constants(channels):
    return {"g": R(channels), "b": R(channels), "m": R(channels), "v": np.abs(R(channels)) + 0.5}


@pytest.mark.parametrize("fold", [True, False])
def test_batch_normalization_folds_into_convolution_or_stays(tmp_path, fold):
    model = onnx_model([N("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
                        N("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], epsilon=1e-3)],
                       {"x": [1, 3, 6, 6]}, ["y"], {"w": R(4, 3, 3, 3), **batchnorm_constants(4)})
    export = assert_export_matches(tmp_path, model, fold_batchnorm=fold)
    expected = ["Input", "Convolution"] if fold else ["Input", "Convolution", "BatchNorm", "Scale"]
    assert layer_types(export) == expected


def test_batch_normalization_alone_is_batchnorm_and_scale(tmp_path):
    model = onnx_model([N("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"])], {"x": [2, 4, 3, 3]}, ["y"],
                       batchnorm_constants(4))
    export = assert_export_matches(tmp_path, model)
    norm = export.param.layer[1]
    assert norm.batch_norm_param.use_global_stats and layer_types(export)[1:] == ["BatchNorm", "Scale"]
    assert export.weights[0][2][2].tolist() == [1.0]   # Caffe's scale factor blob: statistics stored as they are


# ------------------------------------------------------------------------------------------- dense layers
def test_gemm_with_transposes_alpha_and_beta(tmp_path):
    model = onnx_model([N("Flatten", ["x"], ["flat"], axis=1),
                        N("Gemm", ["flat", "w", "c"], ["y"], transB=1, alpha=0.5, beta=2.0),
                        N("Gemm", ["y", "v", "d"], ["z"])],
                       {"x": [2, 3, 2, 2]}, ["z"], {"w": R(5, 12), "c": R(5), "v": R(5, 4), "d": R(1, 4)})
    export = assert_export_matches(tmp_path, model)
    assert layer_types(export) == ["Input", "InnerProduct", "InnerProduct"]   # InnerProduct flattens itself


def test_matmul_and_add_is_one_inner_product(tmp_path):
    model = onnx_model([N("MatMul", ["x", "w"], ["m"]), N("Add", ["m", "b"], ["y"])], {"x": [2, 5, 6]}, ["y"],
                       {"w": R(6, 4), "b": R(4)})
    export = assert_export_matches(tmp_path, model)
    assert layer_types(export) == ["Input", "InnerProduct"] and export.param.layer[1].inner_product_param.axis == 2


# -------------------------------------------------------------------------------- activations and arithmetic
@pytest.mark.parametrize("bounds, target, expected", [
    ((0.0, 6.0), "bvlc", ["ReLU", "Power", "ReLU", "Power"]),      # 6 - relu(6 - relu(x))
    ((0.0, 6.0), "opencv", ["ReLU6"]),
    ((-0.5, 0.7), "bvlc", ["Power", "ReLU", "Power", "ReLU", "Power"]),
    ((-0.5, None), "bvlc", ["Power", "ReLU", "Power"]),
    ((None, 0.5), "bvlc", ["Power", "ReLU", "Power"]),
    ((0.0, None), "bvlc", ["ReLU"]),
])
def test_clip(tmp_path, bounds, target, expected):
    names = ["lo" if bounds[0] is not None else "", "hi" if bounds[1] is not None else ""]
    constants = {name: scalar(bound) for name, bound in zip(names, bounds) if name}
    model = onnx_model([N("Clip", ["x", *names], ["y"])], {"x": [2, 3, 4, 5]}, ["y"], constants)
    assert layer_types(assert_export_matches(tmp_path, model, target=target))[1:] == expected


def test_clip_is_clip_on_bvlc_master(tmp_path):
    model = onnx_model([N("Clip", ["x", "lo", "hi"], ["y"])], {"x": [2, 3, 4, 5]}, ["y"],
                       {"lo": scalar(-0.5), "hi": scalar(0.7)})
    assert layer_types(assert_export_matches(tmp_path, model, target="bvlc-master", opencv=False))[1:] == ["Clip"]


def test_activations(tmp_path):
    model = onnx_model([N("Sigmoid", ["x"], ["a"]), N("Tanh", ["a"], ["b"]), N("Abs", ["b"], ["c"]),
                        N("Exp", ["c"], ["d"]), N("Log", ["d"], ["e"]), N("Softplus", ["e"], ["f"]),
                        N("Elu", ["f"], ["g"], alpha=0.5), N("Neg", ["g"], ["h"]), N("Sqrt", ["d"], ["i"]),
                        N("Reciprocal", ["i"], ["j"]), N("Pow", ["j", "p"], ["k"]),
                        N("LeakyRelu", ["h"], ["l"], alpha=0.2),
                        N("PRelu", ["l", "slopes"], ["m"]), N("PRelu", ["l", "shared"], ["n"])],
                       {"x": [2, 3, 4, 5]}, ["k", "m", "n"],
                       {"p": scalar(1.5), "slopes": R(3, 1, 1), "shared": np.float32([0.3])})
    export = assert_export_matches(tmp_path, model)
    assert {"Sigmoid", "TanH", "AbsVal", "Exp", "Log", "BNLL", "ELU", "PReLU"} <= set(layer_types(export))


def test_arithmetic_with_constants(tmp_path):
    """A number: Power; a per-channel or per-position constant: Scale (Mul then Add: one Scale with bias)."""
    model = onnx_model([N("Add", ["x", "c"], ["a"]), N("Sub", ["c", "a"], ["b"]), N("Mul", ["b", "c"], ["d"]),
                        N("Div", ["d", "c"], ["e"]), N("Mul", ["e", "s"], ["f"]), N("Add", ["f", "t"], ["g"]),
                        N("Sub", ["t", "g"], ["h"]), N("Div", ["h", "s"], ["i"]), N("Mul", ["i", "map"], ["j"]),
                        N("Add", ["j", "row"], ["y"])],
                       {"x": [2, 3, 4, 5]}, ["y"],
                       {"c": scalar(2.5), "s": R(3, 1, 1) + 3, "t": R(1, 3, 1, 1), "map": R(4, 5),
                        "row": R(1, 1, 1, 5)})
    export = assert_export_matches(tmp_path, model)
    assert set(layer_types(export)[1:]) == {"Power", "Scale"}


def test_elementwise_between_computed_tensors(tmp_path):
    """Eltwise SUM (a Mul by a number becomes a coefficient), PROD, MAX; Min as -max(-a, -b)."""
    model = onnx_model([N("Relu", ["x"], ["r"]), N("Mul", ["x", "half"], ["xh"]), N("Add", ["xh", "r"], ["a"]),
                        N("Sub", ["a", "r"], ["b"]), N("Mul", ["b", "x"], ["c"]), N("Max", ["c", "x", "r"], ["d"]),
                        N("Min", ["d", "x"], ["e"]), N("Sum", ["e", "x", "r"], ["f"]), N("Mean", ["f", "x"], ["g"]),
                        N("Add", ["r", "one"], ["r1"]), N("Div", ["g", "r1"], ["y"])],
                       {"x": [2, 3, 4, 5]}, ["y"], {"half": scalar(0.5), "one": scalar(1.0)})
    export = assert_export_matches(tmp_path, model)
    assert export.param.layer[2].eltwise_param.coeff[:] == [0.5, 1.0]


def test_squeeze_excitation_product(tmp_path):
    """x * sigmoid(pool(x)): a two-bottom Scale, the gate reshaped to (N, C)."""
    model = onnx_model([N("GlobalAveragePool", ["x"], ["p"]), N("Sigmoid", ["p"], ["s"]), N("Mul", ["x", "s"], ["y"])],
                       {"x": [2, 3, 4, 5]}, ["y"])
    assert layer_types(assert_export_matches(tmp_path, model))[-1] == "Scale"


def test_broadcast_sum_is_bias(tmp_path):
    model = onnx_model([N("GlobalAveragePool", ["x"], ["p"]), N("Sub", ["x", "p"], ["y"])], {"x": [2, 3, 4, 5]}, ["y"])
    export = assert_export_matches(tmp_path, model, opencv=False)   # OpenCV has no Bias layer
    assert layer_types(export)[-1] == "Bias"


# --------------------------------------------------------------------------------------- data movement
def test_reshape_flatten_squeeze_and_folded_shape_arithmetic(tmp_path):
    model = onnx_model([N("Shape", ["x"], ["shape"]), N("Gather", ["shape", "zero"], ["n"], axis=0),
                        N("Unsqueeze", ["n", "axis0"], ["n1"]), N("Concat", ["n1", "minus1"], ["target"], axis=0),
                        N("Reshape", ["x", "target"], ["flat"]), N("Reshape", ["x", "s"], ["a"]),
                        N("Flatten", ["a"], ["b"], axis=2), N("Unsqueeze", ["b", "axis1"], ["c"]),
                        N("Squeeze", ["c", "axis1"], ["d"])],
                       {"x": [2, 3, 4, 5]}, ["flat", "d"],
                       {"zero": np.array(0, np.int64), "axis0": np.array([0], np.int64),
                        "minus1": np.array([-1], np.int64), "s": np.array([2, 12, 5, 1], np.int64),
                        "axis1": np.array([1], np.int64)})
    export = assert_export_matches(tmp_path, model)
    assert {"Shape", "Gather"}.isdisjoint(layer_types(export))


def test_split_slice_and_concat(tmp_path):
    model = onnx_model([N("Split", ["x", "sizes"], ["a", "b"], axis=1),
                        N("Slice", ["x", "starts", "ends", "axes"], ["c"]), N("Concat", ["c", "c"], ["d"], axis=1)],
                       {"x": [2, 3, 4, 5]}, ["b", "d"],
                       {"sizes": np.array([1, 2], np.int64), "starts": np.array([1, -3], np.int64),
                        "ends": np.array([3, 100], np.int64), "axes": np.array([2, 3], np.int64)})
    assert_export_matches(tmp_path, model)


@pytest.mark.parametrize("target", ["opencv", "ssd"])
def test_transpose_is_permute_where_the_target_has_it(tmp_path, target):
    model = onnx_model([N("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], {"x": [2, 3, 4, 5]}, ["y"])
    assert layer_types(assert_export_matches(tmp_path, model, target=target))[1:] == ["Permute"]


def test_transpose_of_unit_axes_is_a_reshape(tmp_path):
    model = onnx_model([N("GlobalAveragePool", ["x"], ["p"]), N("Transpose", ["p"], ["y"], perm=[0, 2, 1, 3])],
                       {"x": [2, 3, 4, 5]}, ["y"])
    assert layer_types(assert_export_matches(tmp_path, model))[-1] == "Reshape"


@pytest.mark.parametrize("opset", [11, 17])
def test_softmax(tmp_path, opset):
    model = onnx_model([N("Softmax", ["x"], ["y"], axis=1), N("Softmax", ["x"], ["z"], axis=-1)],
                       {"x": [2, 3, 4, 5]}, ["y", "z"], opset=opset)
    assert_export_matches(tmp_path, model)


def test_lrn_and_identities(tmp_path):
    model = onnx_model([N("LRN", ["x"], ["l"], size=3, alpha=1e-2, beta=0.6), N("Dropout", ["l"], ["d"]),
                        N("Identity", ["x"], ["y"])], {"x": [2, 7, 4, 5]}, ["d", "y"])
    assert_export_matches(tmp_path, model)


# --------------------------------------------------------------------------------------------- resizing
def resize_model(mode, transform, size, **extra):
    attributes = dict(mode=mode, coordinate_transformation_mode=transform, **extra)
    return onnx_model([N("Resize", ["x", "", "", "size"], ["y"], **attributes)], {"x": [1, 3, 4, 5]}, ["y"],
                      {"size": np.array([1, 3, *size], np.int64)})


@pytest.mark.parametrize("transform, rounding", [("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"),
                                                 ("pytorch_half_pixel", "round_prefer_ceil")])
def test_nearest_resize_by_integer_factors_is_a_deconvolution(tmp_path, transform, rounding):
    export = assert_export_matches(tmp_path, resize_model("nearest", transform, (8, 15), nearest_mode=rounding))
    assert layer_types(export)[1:] == ["Deconvolution"]


def test_nearest_resize_is_upsample_on_mobilenet_yolo(tmp_path):
    export = to_caffe(resize_model("nearest", "asymmetric", (8, 10), nearest_mode="floor"), target="mobilenet-yolo")
    assert layer_types(export)[1:] == ["Upsample"] and export.param.layer[1].upsample_param.scale == 2


def test_bilinear_resize_with_aligned_corners(tmp_path):
    """s * (in - 1) + 1 outputs: a fixed tent-kernel Deconvolution in BVLC; any size: Interp in OpenCV."""
    export = assert_export_matches(tmp_path, resize_model("linear", "align_corners", (7, 13)))
    assert layer_types(export)[1:] == ["Deconvolution"]
    export = assert_export_matches(tmp_path, resize_model("linear", "align_corners", (9, 7)), target="opencv")
    assert layer_types(export)[1:] == ["Interp"]


# --------------------------------------------------------------------------------------------- refusals
REFUSALS = [
    (resize_model("linear", "half_pixel", (8, 10)), "node 'y' (Resize): bilinear resizing is exported with aligned "
                                                    "corners only"),
    (resize_model("nearest", "asymmetric", (6, 7), nearest_mode="floor"), "node 'y' (Resize): nearest-neighbour"),
    (onnx_model([N("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1], name="to_nhwc")], {"x": [1, 2, 3, 4]}, ["y"]),
     "node 'to_nhwc' (Transpose): a transpose that reorders data: needs a Permute layer, which target 'bvlc' "
     "does not have (--target opencv, ssd, mobilenet-yolo have it)"),
    (onnx_model([N("Pad", ["x", "pads"], ["y"], mode="reflect", name="pad")], {"x": [1, 2, 3, 4]}, ["y"],
                {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}),
     "node 'pad' (Pad): 'reflect' padding has no Caffe form"),
    (onnx_model([N("Pad", ["x", "pads", "value"], ["p"]), N("MaxPool", ["p"], ["y"], kernel_shape=[2, 2], name="pool")],
                {"x": [1, 2, 4, 4]}, ["y"], {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "value": scalar(0)}),
     "node 'pool' (MaxPool): reads a Pad (node 'p') that fills with 0"),
    (onnx_model([N("Pad", ["x", "pads", "value"], ["p"]), N("MaxPool", ["p"], ["y"], kernel_shape=[2, 2], name="pool")],
                {"x": [1, 2, 4, 4]}, ["y"], {"pads": np.array([0, 0, 2, 2, 0, 0, 0, 0], np.int64),
                                             "value": scalar(-np.inf)}),
     "node 'pool' (MaxPool): no symmetric Caffe padding below the kernel size"),
    (onnx_model([N("MatMul", ["x", "y"], ["z"], name="attention")], {"x": [2, 3], "y": [3, 4]}, ["z"]),
     "node 'attention' (MatMul): a MatMul is exported as an InnerProduct"),
    (onnx_model([N("LRN", ["x"], ["y"], size=4, name="norm")], {"x": [1, 6, 3, 3]}, ["y"]),
     "node 'norm' (LRN): an even LRN size"),
    (onnx_model([N("Clip", ["x", "lo", "hi"], ["y"], name="clip")], {"x": [1, 2]}, ["y"],
                {"lo": scalar(1), "hi": scalar(0)}), "node 'clip' (Clip): Clip with min above max"),
    (onnx_model([N("Slice", ["x", "s", "e", "a", "st"], ["y"], name="every_other")], {"x": [1, 6]}, ["y"],
                {"s": np.array([0], np.int64), "e": np.array([6], np.int64), "a": np.array([1], np.int64),
                 "st": np.array([2], np.int64)}), "node 'every_other' (Slice): a Slice with a step other than 1"),
    (onnx_model([N("LogSoftmax", ["x"], ["y"], name="log_probs"), N("Gelu", ["y"], ["z"], name="gelu")],
                {"x": [1, 6]}, ["z"], opset=20),
     "2 node(s) have no Caffe equivalent: 'log_probs' (LogSoftmax), 'gelu' (Gelu)"),
]


@pytest.mark.parametrize("model, message", REFUSALS, ids=[m.split("(")[1].split(")")[0] + str(i)
                                                          for i, (_, m) in enumerate(REFUSALS)])
def test_a_node_without_an_exact_caffe_form_is_refused_by_name(model, message):
    with pytest.raises(UnsupportedError) as caught:
        to_caffe(model)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_symbolic_dimensions_need_a_shape():
    model = onnx_model([N("Relu", ["x"], ["y"])], {"x": ["batch", 3, "height", 4]}, ["y"])
    with pytest.raises(ShapeError, match="symbolic size at axis 2"):
        to_caffe(model)
    export = to_caffe(model, input_shape={"x": (2, 3, 5, 4)})
    assert list(export.param.layer[0].input_param.shape[0].dim) == [2, 3, 5, 4]


# ---------------------------------------------------------------------------------- names and targets
def test_names_come_from_nodes_and_values_and_activations_run_in_place(tmp_path):
    """The in-place blob carries the last value's name (protodef's own ONNX names Convolution -> ReLU
    `conv1@0` -> `conv1`, so a Caffe net comes back with its own names)."""
    model = onnx_model([N("Conv", ["data", "w"], ["conv1"], kernel_shape=[3, 3], name="conv1"),
                        N("Relu", ["conv1"], ["relu1_out"], name="relu1"),
                        N("MaxPool", ["relu1_out"], ["pool1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1")],
                       {"data": [1, 3, 8, 8]}, ["pool1"], {"w": R(4, 3, 3, 3)})
    layers = assert_export_matches(tmp_path, model).param.layer
    assert [(layer.name, list(layer.bottom), list(layer.top)) for layer in layers[1:]] == [
        ("conv1", ["data"], ["relu1_out"]), ("relu1", ["relu1_out"], ["relu1_out"]),
        ("pool1", ["relu1_out"], ["pool1"])]


def test_targets_are_data():
    assert TARGETS["bvlc"].has("Convolution") and not TARGETS["bvlc"].has("Permute")
    assert not TARGETS["bvlc"].has("Clip") and TARGETS["bvlc-master"].has("Clip")
    assert TARGETS["opencv"].reads("ceil_mode") and not TARGETS["opencv"].reads("lrn_k")


def test_lrn_bias_is_refused_where_the_target_ignores_it():
    model = onnx_model([N("LRN", ["x"], ["y"], size=3, bias=2.0)], {"x": [1, 6, 3, 3]}, ["y"])
    to_caffe(model)
    with pytest.raises(UnsupportedError, match="ignores LRN's k"):
        to_caffe(model, target="opencv")


# -------------------------------------------------------------------------------------------------- CLI
def test_cli_writes_prototxt_and_caffemodel(tmp_path, capsys):
    import onnx
    model = onnx_model([N("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])], {"x": [1, 2, 3, 3]}, ["y"],
                       {"w": R(2, 2, 1, 1)})
    onnx.save(model, tmp_path / "model.onnx")
    assert main(["convert", str(tmp_path / "model.onnx"), "--to", "caffe"]) == 0
    assert (tmp_path / "model.prototxt").exists() and (tmp_path / "model.caffemodel").exists()
    assert main(["convert", str(tmp_path / "model.onnx"), "--to", "caffe", "--target", "opencv",
                 "-o", str(tmp_path / "other.prototxt")]) == 0
    assert (tmp_path / "other.caffemodel").exists()


def test_cli_refusal_is_one_line_and_writes_nothing(tmp_path, capsys):
    import onnx
    onnx.save(REFUSALS[2][0], tmp_path / "model.onnx")
    assert main(["convert", str(tmp_path / "model.onnx"), "--to", "caffe"]) == UnsupportedError.exit_code
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "node 'to_nhwc' (Transpose)" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_export_never_imports_torch():
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from onnx import helper
        from export_support import onnx_model
        from converters.caffe import to_caffe
        to_caffe(onnx_model([helper.make_node("Relu", ["x"], ["y"])], {"x": [1, 2]}, ["y"]))
        assert "torch" not in sys.modules, "torch was imported"
    """)
    env_path = f"{REPO}:{REPO / 'tests'}"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
