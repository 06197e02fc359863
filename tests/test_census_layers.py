"""The layer types the census added (protodef/census.py, docs/layers.md): onnxruntime and our torch module
against NumPy transcriptions of their sources (reference_census.py), and against OpenCV dnn where it runs the
type (FlowWarp, PSROIPooling); the census's claims against the registry; the refusals.

Fork parameter blocks our schema lacks (psroi_pooling_param, resample_param, flow_warp_param, flip_param) are
read as users of those forks read them: with --proto and the fork's schema, here our caffe.proto plus the
fork's field and message, with the fork's own names and numbers."""
from __future__ import annotations

import numpy as np
import pytest
import reference_census as ref
import torch
from support import REPO, assert_close, opencv_forward, random_inputs
from test_longtail_layers import (
    check_backends,
    first_layer,
    inputs_text,
    layer_text,
    make_net,
    run_onnx,
    run_torch,
)

from protodef import load, save_pytorch
from protodef.api import read_net
from protodef.census import CENSUS, NOT_YET, OPENCV_IMPORTER_OPERATORS
from protodef.errors import SchemaError, ShapeError
from protodef.layers.registry import LAYER_SPECS

# The forks' blocks as their caffe.proto files declare them (R-FCN: daijifeng001/caffe-rfcn; FlowNet 2:
# lmb-freiburg/flownet2; caffe-windows: happynear/caffe-windows, ms branch): the LayerParameter field and its
# message. None of the numbers is taken in protodef's schema.
FORK_BLOCKS = (
    ("optional PSROIPoolingParameter psroi_pooling_param = 10001;", """
message PSROIPoolingParameter {
  required float spatial_scale = 1;
  required int32 output_dim = 2;
  required int32 group_size = 3;
}"""),
    ("optional ResampleParameter resample_param = 155;", """
message ResampleParameter {
  enum ResampleType { NEAREST = 1; LINEAR = 2; CUBIC = 3; AREA = 4; };
  optional bool antialias = 4 [default = true];
  optional uint32 width = 1;
  optional uint32 height = 2;
  optional ResampleType type = 3 [default = LINEAR];
  optional float factor = 5 [default = 1.0];
}"""),
    ("optional FlowWarpParameter flow_warp_param = 159;", """
message FlowWarpParameter {
  enum FillParameter { ZERO = 1; NOT_A_NUMBER = 2; }
  optional FillParameter fill_value = 1 [default = ZERO];
}"""),
    ("optional FlipParameter flip_param = 212;", """
message FlipParameter {
  optional bool flip_width = 1 [default = true];
  optional bool flip_height = 2 [default = false];
}"""),
)


@pytest.fixture(scope="module")
def fork_schema(tmp_path_factory):
    """protodef's caffe.proto plus the blocks it does not have yet (once it has them all, it is itself)."""
    text = (REPO / "caffe_proto" / "caffe.proto").read_text()
    anchor = "message LayerParameter {"
    for field, message in FORK_BLOCKS:
        if field.split()[2] not in text:
            text = text.replace(anchor, f"{anchor}\n  {field}", 1) + message + "\n"
    schema = tmp_path_factory.mktemp("fork") / "caffe.proto"
    schema.write_text(text)
    return schema


# ------------------------------------------------------------------------------------------ the census itself

def test_census_names_each_type_once_and_agrees_with_the_registry():
    from converters.onnx.registry import ONNX_CONVERTERS
    from converters.pytorch.registry import TORCH_CONVERTERS
    names = [entry.type for entry in CENSUS]
    assert len(names) == len(set(names)), "a type is listed twice"
    assert not set(names) & set(OPENCV_IMPORTER_OPERATORS)
    for entry in CENSUS:
        spec = LAYER_SPECS.get(entry.type)
        if entry.refusal is None:
            assert spec is not None, f"{entry.type} is marked implemented but has no spec"
            if not (spec.produces_input or spec.training_only):
                assert spec.type in ONNX_CONVERTERS and spec.type in TORCH_CONVERTERS, entry.type
        elif entry.refusal == NOT_YET:
            assert spec is None, f"{entry.type} is implemented now: update protodef/census.py"
        assert entry.refusal is None or entry.reason, f"{entry.type}: a refusal needs its reason"


# ------------------------------------------------------------------------------------------ FlowNet 2

def flow_inputs(net, scale=3.0):
    inputs = random_inputs(net)
    inputs["flow"] = (inputs["flow"] * scale).astype(np.float32)    # some points land outside the image
    inputs["flow"][0, :, 0, 0] = (0.5, 0.25)                         # exactly representable fractions
    inputs["flow"][0, :, 1, 1] = (4.0, -1.0)                         # to the last column: right clamped
    return inputs


def test_flow_warp_equals_flownet_and_opencv(tmp_path):
    text = inputs_text(image=(2, 3, 5, 7), flow=(2, 2, 5, 7)) + layer_text("warp", "FlowWarp", ["image", "flow"])
    prototxt, caffemodel, net = make_net(tmp_path, text)
    inputs = flow_inputs(net)
    expected = {"warp": ref.flow_warp(inputs["image"], inputs["flow"])}
    assert (expected["warp"] == 0).any() and (expected["warp"] != 0).mean() > 0.3
    check_backends(net, inputs, expected, "FlowWarp", script=True)
    assert_close(opencv_forward(net, prototxt, caffemodel, inputs)["warp"], expected["warp"], "OpenCV")


def test_flow_warp_nan_fill(tmp_path, fork_schema):
    text = (inputs_text(image=(1, 2, 4, 6), flow=(1, 2, 4, 6))
            + layer_text("warp", "FlowWarp", ["image", "flow"], "flow_warp_param { fill_value: NOT_A_NUMBER }"))
    _, _, net = make_net(tmp_path, text, proto=fork_schema)
    inputs = flow_inputs(net)
    expected = ref.flow_warp(inputs["image"], inputs["flow"], fill=np.nan)
    assert np.isnan(expected).any()
    for backend, outputs in (("onnxruntime", run_onnx(net, inputs)), ("torch", run_torch(net, inputs))):
        got = outputs["warp"]
        assert np.array_equal(np.isnan(got), np.isnan(expected)), backend
        assert_close(np.nan_to_num(got), np.nan_to_num(expected), backend)


RESAMPLE_CASES = {   # name: (input shape, resample_param, reference arguments)
    "linear_up": ((1, 2, 5, 6), "width: 11 height: 9", (9, 11, "LINEAR", True)),
    "linear_down_antialias": ((2, 2, 12, 16), "width: 7 height: 5", (5, 7, "LINEAR", True)),
    "linear_down_plain": ((1, 2, 12, 16), "width: 7 height: 5 antialias: false", (5, 7, "LINEAR", False)),
    "cubic_mixed": ((1, 2, 9, 8), "width: 12 height: 4 type: CUBIC", (4, 12, "CUBIC", True)),
    "nearest": ((1, 3, 6, 8), "width: 4 height: 3 type: NEAREST", (3, 4, "NEAREST", True)),
}


@pytest.mark.parametrize("case", list(RESAMPLE_CASES))
def test_resample(tmp_path, fork_schema, case):
    shape, params, arguments = RESAMPLE_CASES[case]
    text = inputs_text(data=shape) + layer_text("resized", "Resample", "data", f"resample_param {{ {params} }}")
    _, _, net = make_net(tmp_path, text, proto=fork_schema)
    inputs = random_inputs(net)
    check_backends(net, inputs, {"resized": ref.resample(inputs["data"], *arguments)}, case)


def test_resample_to_a_reference_input_needs_no_fork_block(tmp_path):
    text = (inputs_text(data=(1, 2, 4, 5), like=(1, 1, 7, 9))
            + layer_text("resized", "Resample", ["data", "like"]))
    _, _, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    check_backends(net, inputs, {"resized": ref.resample(inputs["data"], 7, 9, "LINEAR")}, "two inputs")


CORRELATION_1D_CASES = {   # correlation_param; reference arguments (k, d, pad, s1, s2, single_direction, subtract)
    "dispnet": ("pad: 4 kernel_size: 1 max_displacement: 4 stride_1: 1 stride_2: 1", (1, 4, 4, 1, 1, 0, False)),
    "strided_patch": ("pad: 2 kernel_size: 3 max_displacement: 4 stride_1: 2 stride_2: 2", (3, 4, 2, 2, 2, 0, False)),
    "right_only": ("pad: 0 kernel_size: 1 max_displacement: 3 single_direction: 1", (1, 3, 0, 1, 1, 1, False)),
    "subtract": ("pad: 1 kernel_size: 3 max_displacement: 2 correlation_type: SUBTRACT", (3, 2, 1, 1, 1, 0, True)),
}


@pytest.mark.parametrize("case", list(CORRELATION_1D_CASES))
def test_correlation_1d(tmp_path, case):
    params, arguments = CORRELATION_1D_CASES[case]
    text = (inputs_text(a=(2, 3, 5, 9), b=(2, 3, 5, 9))
            + layer_text("corr", "Correlation1D", ["a", "b"], f"correlation_param {{ {params} }}"))
    _, _, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    check_backends(net, inputs, {"corr": ref.correlation_1d(inputs["a"], inputs["b"], *arguments)}, case)


def test_elementwise_census_types(tmp_path):
    """ChannelNorm, NegReLU (with and without a slope), NormL2, SpatialProduct, Flip: one net."""
    text = (inputs_text(data=(2, 3, 4, 5), mask=(2, 1, 4, 5))
            + layer_text("norm", "ChannelNorm", "data")
            + layer_text("neg", "NegReLU", "data")
            + layer_text("neg_slope", "NegReLU", "data", "relu_param { negative_slope: 0.2 }")
            + layer_text("l2", "NormL2", "data")
            + layer_text("product", "SpatialProduct", ["data", "mask"])
            + layer_text("mirror", "Flip", "data"))
    _, _, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    x = inputs["data"]
    expected = {"norm": ref.channel_norm(x), "neg": ref.neg_relu(x, 0), "neg_slope": ref.neg_relu(x, 0.2),
                "l2": ref.norm_l2(x), "product": ref.spatial_product(x, inputs["mask"]), "mirror": ref.flip(x)}
    check_backends(net, inputs, expected, "element-wise", script=True)


def test_flip_both_axes_with_the_fork_block(tmp_path, fork_schema):
    text = (inputs_text(data=(1, 2, 3, 4))
            + layer_text("upside_down", "Flip", "data", "flip_param { flip_width: false flip_height: true }")
            + layer_text("both", "Flip", "data", "flip_param { flip_height: true }")
            + layer_text("none", "Flip", "data", "flip_param { flip_width: false }"))
    _, _, net = make_net(tmp_path, text, proto=fork_schema)
    inputs = random_inputs(net)
    x = inputs["data"]
    check_backends(net, inputs, {"upside_down": ref.flip(x, False, True), "both": ref.flip(x, True, True),
                             "none": x}, "flip")


# ------------------------------------------------------------------------------------------ R-FCN

PSROI_ROIS = np.array([[0, 0, 0, 47, 31],          # the whole image
                       [1, 8.5, 4.49, 20.5, 15.5],  # halves round away from zero
                       [0, -6, -3, 5, 4],           # partly outside
                       [1, 30, 20, 30, 20],         # one pixel: most bins empty
                       [0, 60, 50, 70, 60],         # wholly outside: every bin empty
                       [1, 3.2, 1.7, 44.9, 28.3]], np.float32)


def psroi_text(output_dim: int, group_size: int, scale: float) -> str:
    return (inputs_text(maps=(2, output_dim * group_size ** 2, 8, 12), rois=(len(PSROI_ROIS), 5))
            + layer_text("psroi", "PSROIPooling", ["maps", "rois"],
                         f"psroi_pooling_param {{ spatial_scale: {scale} output_dim: {output_dim} "
                         f"group_size: {group_size} }}"))


@pytest.mark.parametrize("output_dim, group_size", [(2, 3), (3, 2)])
def test_psroi_pooling_equals_rfcn_and_opencv(tmp_path, fork_schema, output_dim, group_size):
    prototxt, caffemodel, net = make_net(tmp_path, psroi_text(output_dim, group_size, 0.25), proto=fork_schema)
    inputs = {"maps": random_inputs(net)["maps"], "rois": PSROI_ROIS}
    expected = {"psroi": ref.psroi_pooling(inputs["maps"], PSROI_ROIS, output_dim, group_size, 0.25)}
    assert (expected["psroi"][4] == 0).all() and (expected["psroi"][0] != 0).all()
    check_backends(net, inputs, expected, "PSROIPooling", script=True)
    # OpenCV's schema has psroi_pooling_param too; its pooling takes the same bins.
    opencv_net = read_net(prototxt, proto=fork_schema, init="none")
    assert_close(opencv_forward(opencv_net, prototxt, "", inputs)["psroi"], expected["psroi"], "OpenCV")


# ------------------------------------------------------------------------------------------ BVLC

@pytest.mark.parametrize("params, shape", [
    ("kernel_size: 3 pad: 1 stride: 2", (2, 3, 7, 8)),
    ("kernel_h: 2 kernel_w: 3 dilation: 2 stride_h: 1 stride_w: 2 pad_w: 2", (1, 2, 6, 9)),
])
def test_im2col(tmp_path, params, shape):
    text = inputs_text(data=shape) + layer_text("cols", "Im2col", "data", f"convolution_param {{ {params} }}")
    _, _, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    p = first_layer(net, "Im2col").params
    check_backends(net, inputs, {"cols": ref.im2col(inputs["data"], p.kernel, p.stride, p.pad, p.dilation)}, params)


def test_batch_reindex_and_lstm_unit(tmp_path):
    text = (inputs_text(data=(3, 2, 4), index=(5,), c_prev=(1, 4, 3), gates=(1, 4, 12), cont=(1, 4))
            + layer_text("picked", "BatchReindex", ["data", "index"])
            + 'layer { name: "unit" type: "LSTMUnit" bottom: "c_prev" bottom: "gates" bottom: "cont" top: "c" '
              'top: "h" }\n')
    _, _, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    inputs["index"] = np.array([2, 0, 2.7, 1, 0.2], np.float32)       # truncated, repeated
    inputs["cont"] = np.array([[1, 0, 1, 0.5]], np.float32)            # 0 resets, a fraction scales
    c, h = ref.lstm_unit(inputs["c_prev"], inputs["gates"], inputs["cont"])
    expected = {"picked": ref.batch_reindex(inputs["data"], inputs["index"]), "c": c, "h": h}
    check_backends(net, inputs, expected, "BatchReindex, LSTMUnit", script=True)


# ------------------------------------------------------------------------------------------ generated source

def test_generated_source_carries_the_census_modules(tmp_path, fork_schema):
    text = (inputs_text(image=(1, 3, 6, 8), flow=(1, 2, 6, 8))
            + layer_text("warp", "FlowWarp", ["image", "flow"])
            + layer_text("cols", "Im2col", "warp", "convolution_param { kernel_size: 2 }")
            + layer_text("resized", "Resample", "cols", "resample_param { width: 5 height: 4 }")
            + layer_text("corr", "Correlation1D", ["warp", "image"],
                         "correlation_param { kernel_size: 1 max_displacement: 2 pad: 2 }"))
    _, _, net = make_net(tmp_path, text, proto=fork_schema)
    inputs = flow_inputs(net)
    graph_outputs = run_torch(net, inputs)
    save_pytorch(net, tmp_path / "census.py")
    namespace = {"__file__": str(tmp_path / "census.py"), "__name__": "generated_census"}
    exec(compile((tmp_path / "census.py").read_text(), "census.py", "exec"), namespace)
    generated = namespace["load_model"]()
    with torch.no_grad():
        results = generated(*(torch.from_numpy(inputs[n]) for n in load(net).input_names))
    for name, value in zip(load(net).output_names, results):
        assert np.array_equal(value.numpy(), graph_outputs[name]), f"generated source differs: {name}"


# ------------------------------------------------------------------------------------------ refusals

def test_psroi_pooling_needs_its_three_fields(tmp_path):
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(psroi_text(2, 3, 0.25))
    assert read_net(prototxt, init="none").layer("psroi").params.spatial_scale == 0.25
    prototxt.write_text(inputs_text(maps=(1, 18, 8, 8), rois=(2, 5))
                        + layer_text("psroi", "PSROIPooling", ["maps", "rois"]))
    with pytest.raises(SchemaError, match="requires all three"):
        read_net(prototxt, init="none")


REFUSALS = {   # name: (net text, error, message fragment)
    "correlation_1d_left_only": (
        inputs_text(a=(1, 2, 4, 9), b=(1, 2, 4, 9)) + layer_text(
            "c", "Correlation1D", ["a", "b"], "correlation_param { kernel_size: 1 max_displacement: 2 "
                                              "single_direction: -1 }"), SchemaError, "single_direction"),
    "correlation_1d_too_small": (
        inputs_text(a=(1, 2, 4, 5), b=(1, 2, 4, 5)) + layer_text(
            "c", "Correlation1D", ["a", "b"], "correlation_param { kernel_size: 1 max_displacement: 3 }"),
        ShapeError, "do not fit"),
    "flow_warp_flow_shape": (inputs_text(image=(1, 3, 4, 5), flow=(1, 3, 4, 5))
                             + layer_text("w", "FlowWarp", ["image", "flow"]), ShapeError, "(N, 2, H, W)"),
    "im2col_axis": (inputs_text(data=(1, 2, 3, 6, 6))
                    + layer_text("c", "Im2col", "data", "convolution_param { kernel_size: 2 axis: 2 }"),
                    SchemaError, "axis 1"),
    "lstm_unit_gates": (inputs_text(c=(1, 2, 3), x=(1, 2, 6), cont=(1, 2))
                        + 'layer { name: "u" type: "LSTMUnit" bottom: "c" bottom: "x" bottom: "cont" top: "c1" '
                          'top: "h" }\n', ShapeError, "4 \\* D"),
    "resample_one_input_without_size": (inputs_text(data=(1, 2, 4, 4)) + layer_text("r", "Resample", "data"),
                                        SchemaError, "resample_param"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals(tmp_path, case):
    text, error, fragment = REFUSALS[case]
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(text)
    with pytest.raises(error, match=fragment):
        read_net(prototxt, init="none")


def test_nearest_resample_that_would_read_outside_is_refused(tmp_path, fork_schema):
    # fx = 4 and fy = 0.25: the x offset uses fy, so the last column's centre rounds past the input.
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(inputs_text(data=(1, 1, 2, 8))
                        + layer_text("r", "Resample", "data", "resample_param { width: 2 height: 8 type: NEAREST }"))
    with pytest.raises(ShapeError, match="reads outside"):
        read_net(prototxt, proto=fork_schema, init="none")


RECURRENT_CASES = {   # name: (type, extra inputs (after x, cont) with shapes, expose_hidden)
    "lstm": ("LSTM", {}, False),
    "lstm_static_exposed": ("LSTM", {"static": (3, 2, 2), "h0": (1, 3, 4), "c0": (1, 3, 4)}, True),
    "rnn": ("RNN", {"static": (3, 5)}, False),
    "rnn_exposed": ("RNN", {"h0": (1, 3, 4)}, True),
}


@pytest.mark.parametrize("case", list(RECURRENT_CASES))
def test_recurrent(tmp_path, case):
    kind, extra, expose = RECURRENT_CASES[case]
    tops = ["seq"] + (["h_last", "c_last"][:2 if kind == "LSTM" else 1] if expose else [])
    text = (inputs_text(x=(5, 3, 2, 3), cont=(5, 3), **extra)
            + f'layer {{ name: "rec" type: "{kind}" '
            + " ".join(f'bottom: "{b}"' for b in ["x", "cont", *extra]) + " "
            + " ".join(f'top: "{t}"' for t in tops)
            + f' recurrent_param {{ num_output: 4 expose_hidden: {str(expose).lower()} '
              'weight_filler { type: "uniform" min: -0.5 max: 0.5 } bias_filler { type: "uniform" min: -0.5 max: 0.5 } } }\n')
    _, _, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    # Sequences start (cont 0) at step 0 for every stream and again at step 3 for stream 1.
    inputs["cont"] = np.ones((5, 3), np.float32)
    inputs["cont"][0] = 0
    inputs["cont"][3, 1] = 0
    weights = list(first_layer(net, kind).weights)
    static = inputs.get("static")
    if kind == "LSTM":
        results = ref.lstm(inputs["x"], inputs["cont"], weights, static, inputs.get("h0"), inputs.get("c0"))
    else:
        results = ref.rnn(inputs["x"], inputs["cont"], weights, static, inputs.get("h0"))
    check_backends(net, inputs, dict(zip(tops, results)), case, script=True)


def test_a_type_the_census_refuses_is_refused_with_its_reason_not_as_unknown(tmp_path):
    """FlowNet 2's DataAugmentation and SphereFace's MarginInnerProduct are known and refused on purpose: the
    error says why (and does not send the user to --proto, which would not help)."""
    from protodef.errors import UnsupportedError
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(inputs_text(data=(1, 3, 4, 4), label=(1,))
                        + layer_text("aug", "DataAugmentation", "data", top="augmented")
                        + layer_text("fc6", "MarginInnerProduct", ["augmented", "label"]))
    with pytest.raises(UnsupportedError) as caught:
        read_net(prototxt, init="none")
    message = str(caught.value)
    assert message.startswith("2 layer(s) protodef does not convert:") and "--proto" not in message
    assert "DataAugmentation (FlowNet 2) is not supported yet: at test time it subtracts a mean" in message
    assert "MarginInnerProduct (SphereFace) is training-only: its output depends on the ground-truth label" in message
