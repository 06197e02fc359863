"""Symbolic sizes: the size algebra against plain int arithmetic, Caffe's shape rules on named sizes, and nets
converted once with named sizes against the same nets converted at fixed sizes (and OpenCV), in onnxruntime,
PyTorch and torch.export, at several image sizes, odd ones included."""
from __future__ import annotations

import json
import operator
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support import assert_close, opencv_forward, write_net

from converters.pytorch.lower import lower_torch
from converters.pytorch.save import export_program
from protodef import load, lower, to_onnx
from protodef.api import read_net
from protodef.cli import main
from protodef.errors import ShapeError
from protodef.layers.pool import _pooled
from protodef.symbolic import (
    Condition,
    ceildiv,
    compare,
    evaluate,
    maximum,
    minimum,
    symbol,
    where,
)

H, W = symbol("H"), symbol("W")
SIZES = [(17, 23), (32, 29), (40, 41)]   # odd sizes take Caffe's ceil rounding and its last-window rule


# ---------------------------------------------------------------------------------------- the algebra
OPS = st.sampled_from(["add", "sub", "mul", "floordiv", "ceildiv", "mod", "min", "max", "where"])


def apply(op: str, value, other, k: int, h: int):
    """The same step on an expression (other: an expression of H) and, in `h`, on plain ints."""
    if op == "add":
        return value + k, other + k
    if op == "sub":
        return value - k, other - k
    if op == "mul":
        return value * k, other * k
    if op == "floordiv":
        return value // k, other // k
    if op == "ceildiv":
        return ceildiv(value, k), -(-other // k)
    if op == "mod":
        return value % k, other % k
    if op == "min":
        return minimum(value, H - k), min(other, h - k)
    if op == "max":
        return maximum(value, H // k), max(other, h // k)
    condition = value >= H // k
    return where(condition, value, value + k), other if other >= h // k else other + k


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(OPS, st.integers(1, 7)), min_size=1, max_size=6), h=st.integers(1, 300))
def test_expressions_compute_what_ints_compute(steps, h):
    expression, number = H, h
    for op, k in steps:
        expression, number = apply(op, expression, number, k, h)
    assert evaluate(expression, {"H": h}) == number


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(OPS, st.integers(1, 7)), min_size=1, max_size=4),
       other=st.lists(st.tuples(OPS, st.integers(1, 7)), max_size=4),
       op=st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
def test_a_decided_comparison_holds_for_every_size(steps, other, op):
    """Soundness: where a comparison of sizes answers yes or no, that is the answer at every size >= 1."""
    left, right = H, H
    for step, k in steps:
        left, _ = apply(step, left, 0, k, 0)
    for step, k in other:
        right, _ = apply(step, right, 0, k, 0)
    answer = compare(left, op, right)
    if isinstance(answer, Condition):
        return
    function = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
                "!=": operator.ne}[op]
    for h in range(1, 400):
        assert function(evaluate(left, {"H": h}), evaluate(right, {"H": h})) == answer, (left, op, right, h)


def test_one_size_computed_two_ways_is_one_expression():
    assert (H + 2 * 1 - 3) // 1 + 1 == H                             # a 3x3 convolution, pad 1
    assert str((H - 1) // 2 + 1) == "(H + 1) // 2" == str(ceildiv(H, 2))
    assert str(((H - 1) // 2 + 1 - 1) // 2 + 1) == "(H + 3) // 4"    # two stride-2 steps are one stride-4 one
    assert str(ceildiv(H - 3, 2) + 1) == "H // 2"
    assert (3 * H * W) // (H * W) == 3 and str(H * W * 2 // W) == "2*H"


def test_undecided_questions_are_refused_not_guessed():
    assert H >= 1 and not H <= 0 and H != H + 1
    assert isinstance(H > 5, Condition) and isinstance(H == W, Condition)
    with pytest.raises(ShapeError, match="give H as a number with --input-shape"):
        bool(H > 5)
    with pytest.raises(ShapeError, match="a fixed number is needed, but the size is H // 2"):
        int(H // 2)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 80), kernel=st.integers(1, 7), stride=st.integers(1, 4), pad=st.integers(0, 6),
       ceil=st.booleans())
def test_pooled_size_on_a_name_is_caffes_at_every_size(size, kernel, stride, pad, ceil):
    """pooling_layer.cpp Reshape, transcribed: round (up by default), then drop a last window that starts in
    the padding; the symbolic rule evaluated at the size gives the same."""
    pad = min(pad, kernel - 1)
    span = size + 2 * pad - kernel
    if span < 0:
        return
    caffe = (-(-span // stride) if ceil else span // stride) + 1
    if pad and (caffe - 1) * stride >= size + pad:
        caffe -= 1
    if caffe <= 0:
        return
    assert evaluate(_pooled(H, kernel, stride, pad, bool(pad), ceil), {"H": size}) == caffe


# ------------------------------------------------------------------------- nets converted once, run at any size
FCN = """\
name: "tiny_fcn"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 pad: 1 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "score2" type: "Convolution" bottom: "pool2" top: "score2" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "up2" type: "Deconvolution" bottom: "score2" top: "up2" convolution_param { num_output: 2 kernel_size: 4 stride: 2 bias_term: false } }
layer { name: "score1" type: "Convolution" bottom: "pool1" top: "score1" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "crop1" type: "Crop" bottom: "up2" bottom: "score1" top: "crop1" crop_param { axis: 2 offset: 1 } }
layer { name: "fuse" type: "Eltwise" bottom: "score1" bottom: "crop1" top: "fuse" }
layer { name: "up1" type: "Deconvolution" bottom: "fuse" top: "up1" convolution_param { num_output: 2 kernel_size: 4 stride: 2 bias_term: false } }
layer { name: "score" type: "Crop" bottom: "up1" bottom: "data" top: "score" crop_param { axis: 2 offset: 1 } }
"""

# SegNet's unpooling by the pooling mask, DeepLab/PSPNet's Interp by zoom and shrink factors.
SEGMENTER = """\
name: "tiny_segmenter"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" top: "mask1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "unpool" type: "Upsample" bottom: "conv2" bottom: "mask1" top: "unpool" upsample_param { scale: 2 } }
layer { name: "zoom" type: "Interp" bottom: "conv2" top: "zoom" interp_param { zoom_factor: 2 } }
layer { name: "shrink" type: "Interp" bottom: "unpool" top: "shrink" interp_param { shrink_factor: 2 } }
layer { name: "cat" type: "Concat" bottom: "shrink" bottom: "conv2" top: "cat" }
layer { name: "score" type: "Convolution" bottom: "cat" top: "score" convolution_param { num_output: 2 kernel_size: 1 } }
"""


# Windows whose end padding, or the part of it that AVE counts, depends on the size's remainder (max/min
# expressions computed at run time).
WINDOWS = """\
name: "tiny_windows"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 } } }
layer { name: "ave" type: "Pooling" bottom: "data" top: "ave" pooling_param { pool: AVE kernel_size: 3 stride: 3 pad: 1 } }
layer { name: "max" type: "Pooling" bottom: "data" top: "max" pooling_param { pool: MAX kernel_size: 2 stride: 3 pad: 1 } }
layer { name: "wide" type: "Pooling" bottom: "data" top: "wide"
        pooling_param { pool: AVE kernel_size: 4 stride: 4 pad: 2 } }
"""


@pytest.fixture(scope="module", params=["fcn", "segmenter", "windows"])
def weighted(request, tmp_path_factory):
    """(prototxt, caffemodel of seeded random weights, the net read with data = 1 x 3 x H x W)."""
    text = {"fcn": FCN, "segmenter": SEGMENTER, "windows": WINDOWS}[request.param]
    prototxt, caffemodel, _ = write_net(tmp_path_factory.mktemp(request.param), text, seed=5)
    return prototxt, caffemodel, read_net(prototxt, caffemodel, input_shape={"data": (1, 3, "H", "W")})


def fixed(weighted, h: int, w: int):
    prototxt, caffemodel, _ = weighted
    return read_net(prototxt, caffemodel, input_shape={"data": (1, 3, h, w)})


def image(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(h * 1000 + w).standard_normal((1, 3, h, w)).astype(np.float32)


def run(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"data": x})))


def as_dict(module, outputs) -> dict[str, np.ndarray]:
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return {name: value.detach().numpy() for name, value in zip(module.output_names, outputs)}


def test_onnx_model_with_named_sizes_equals_the_fixed_ones(weighted):
    model = to_onnx(weighted[2])
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input]
    assert dims == [[1, 3, "H", "W"]]
    for h, w in SIZES:
        x = image(h, w)
        expected = run(to_onnx(fixed(weighted, h, w)), x)
        got = run(model, x)
        for name, value in expected.items():
            assert_close(got[name], value, f"{name} at {h}x{w}")


def test_at_any_size_it_is_what_opencv_computes(weighted):
    """OpenCV runs the prototxt reshaped to each size, as Caffe would; it has no SegNet Upsample."""
    prototxt, caffemodel, net = weighted
    if net.layers(type="Upsample"):
        pytest.skip("OpenCV has no SegNet Upsample")
    model = to_onnx(net)
    for h, w in SIZES:
        x = image(h, w)
        reference = opencv_forward(fixed(weighted, h, w), prototxt, caffemodel, {"data": x})
        got = run(model, x)
        for name, value in reference.items():
            assert_close(got[name], value, f"{name} at {h}x{w}")


def test_torch_module_with_named_sizes_equals_the_fixed_ones(weighted):
    module = load(weighted[2])
    for h, w in SIZES:
        x = image(h, w)
        static = load(fixed(weighted, h, w))
        with torch.no_grad():
            got, expected = as_dict(module, module(torch.from_numpy(x))), as_dict(static, static(torch.from_numpy(x)))
        for name, value in expected.items():
            assert_close(got[name], value, f"{name} at {h}x{w}")


def test_torch_export_keeps_one_dim_per_name(weighted):
    net = weighted[2]
    program = export_program(lower_torch(lower(net, fold=True)), net)
    (placeholder,) = [n for n in program.graph.nodes if n.op == "placeholder" and n.name == "data"]
    height, width = placeholder.meta["val"].shape[2:]
    assert not isinstance(height, int) and not isinstance(width, int) and str(height) != str(width)
    module = load(net)
    for h, w in SIZES:
        x = torch.from_numpy(image(h, w))
        with torch.no_grad():
            got, expected = as_dict(module, program.module()(x)), as_dict(module, module(x))
        for name, value in expected.items():
            assert_close(got[name], value, f"{name} at {h}x{w}")


# ----------------------------------------------------------------------- what needs a size fixed says which
def text_file(tmp_path, body: str):
    path = tmp_path / "net.prototxt"
    path.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 '
                    'dim: 8 } } }\n' + textwrap.dedent(body))
    return path


@pytest.mark.parametrize("body, layer, names", [
    ('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 4 } }',
     "fc", "H and W"),
    ('layer { name: "flat" type: "Reshape" bottom: "data" top: "flat" reshape_param { shape { dim: 1 dim: 192 } } }',
     "flat", "H and W"),
    ('layer { name: "pb" type: "PriorBox" bottom: "data" bottom: "data" top: "pb"\n'
     '  prior_box_param { min_size: 4 } }', "pb", "H"),
])
def test_a_layer_needing_fixed_sizes_is_named_with_them(tmp_path, capsys, body, layer, names):
    path = text_file(tmp_path, body)
    code = main(["convert", str(path), "--input-shape", "data=1,3,H,W", "-o", str(tmp_path / "out.onnx")])
    err = capsys.readouterr().err
    assert code == ShapeError.exit_code, err
    assert f"layer '{layer}'" in err and f"give {names}" in err and err.count("\n") == 1
    assert not (tmp_path / "out.onnx").exists()


# ------------------------------------------------------------------------------------------------ the CLI
def test_cli_converts_with_named_sizes_and_shows_them(tmp_path, capsys):
    path = tmp_path / "fcn.prototxt"
    path.write_text(FCN)
    out = tmp_path / "fcn.onnx"
    assert main(["convert", str(path), "--input-shape", "data=N,3,H,W", "-o", str(out)]) == 0
    model = onnx.load(out)
    assert [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == ["N", 2, "H", "W"]
    capsys.readouterr()
    assert main(["info", str(path), "--input-shape", "data=N,3,H,W"]) == 0
    table = capsys.readouterr().out
    assert "Nx4x(H // 2 + 1)x(W // 2 + 1)" in table and "Nx2xHxW" in table and "108*H*N*W" in table
    assert main(["info", str(path), "--input-shape", "data=1,3,H,W", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["layers"]}
    assert rows["pool2"]["shapes"] == [[1, 6, "(H + 2) // 4 + 1", "(W + 2) // 4 + 1"]]
    assert rows["conv1"]["macs"] == "108*H*W" and rows["conv1"]["params"] == 112
    dot = tmp_path / "fcn.dot"
    assert main(["draw", str(path), "--input-shape", "data=1,3,H,W", "--format", "dot", "-o", str(dot)]) == 0
    assert "4×(H // 2 + 1)×(W // 2 + 1)" in dot.read_text()


@pytest.mark.parametrize("text", ["data=1,a", "data=1,3,h,W", "data=0,3,H,W", "data=", "=1,3"])
def test_size_names_start_with_a_capital(capsys, text):
    with pytest.raises(SystemExit) as exit_info:
        main(["info", "net.prototxt", "--input-shape", text])
    assert exit_info.value.code == 2
