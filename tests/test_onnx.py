"""ONNX backend: per-layer parity against OpenCV dnn and NumPy transcriptions of Caffe's layers, shapes against
the IR and ONNX's own shape inference, opsets, --dynamic-batch, errors, and the corpus's deploy nets."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import CORPUS, REPO, assert_close, corpus_files, random_inputs
from support import write_net as write_weighted_net

from converters.onnx import DEFAULT_OPSET, MIN_OPSET
from protodef import lower, save_onnx, to_onnx
from protodef.api import read_net
from protodef.errors import ProtodefError, ShapeError, UnsupportedError
from protodef.weights import write_caffemodel

F32 = np.float32
FLT_MIN = np.finfo(F32).tiny


# ---------------------------------------------------------------------------------------------- harness
def write_net(tmp_path: Path, text: str, *, seed: int = 0, name: str = "net", **read_options):
    """support.write_net; a net without weights gets no caffemodel ("" for OpenCV): write_net would leave
    an empty file, which no reader takes for a caffemodel."""
    prototxt = Path(tmp_path) / f"{name}.prototxt"
    prototxt.write_text(text)
    net = read_net(prototxt, init="random", **read_options)
    if any(layer.weights for layer in net.layers()):
        return write_weighted_net(tmp_path, text, seed=seed, name=name, **read_options)
    return prototxt, "", net


def run_onnx(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))


def opencv_forward(net, prototxt, caffemodel, inputs: dict[str, np.ndarray], values=None) -> dict[str, np.ndarray]:
    """OpenCV dnn's values (by default the net's outputs) by value name. Like support.opencv_forward, but
    through forwardAndRetrieve, which also returns a layer's second and later tops (OpenCV 4.14 resolves no
    `layer.k` alias for them)."""
    import cv2
    cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cv_net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv_net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, array in inputs.items():
        cv_net.setInput(array, name)
    values = net.outputs() if values is None else values
    producers = [net.producer(v) for v in values]
    # OpenCV names a few layers after their top (openpose's last convolution), not as the prototxt does.
    known = set(cv_net.getLayerNames())
    layer_names = [p.caffe_name if p.caffe_name in known else v.blob for v, p in zip(values, producers)]
    unique = list(dict.fromkeys(layer_names))
    results = dict(zip(unique, cv_net.forwardAndRetrieve(unique)))
    return {net.value_name(v): np.asarray(results[name][p.outputs.index(v)])
            for v, p, name in zip(values, producers, layer_names)}


def dims(value_info: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_shapes(model: onnx.ModelProto, net) -> None:
    """Our value_info carries the IR's shapes; ONNX's strict shape inference, run on the model without it,
    must find the same ones (and the same output shapes)."""
    ours = {v.name: dims(v) for v in [*model.graph.value_info, *model.graph.output]}
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(bare, strict_mode=True)
    found = {v.name: dims(v) for v in [*inferred.graph.value_info, *inferred.graph.output]}
    for name, shape in ours.items():
        assert found.get(name) == shape, f"{name}: value_info {shape}, ONNX shape inference {found.get(name)}"
    for output in net.outputs():
        assert ours[net.value_name(output)] == list(net.shape(output))


def parity(tmp_path: Path, text: str, *, opencv: bool = True, reference=None, inputs=None, seed: int = 0,
           folds=(True, False), opsets=(None,), compare=assert_close, **read_options):
    """Write the net (seeded random weights, our writer), run it through OpenCV and/or a NumPy reference, and
    through onnxruntime for each fold/opset; every output must agree with every reference."""
    prototxt, caffemodel, net = write_net(tmp_path, textwrap.dedent(text), seed=seed, **read_options)
    inputs = inputs(net) if callable(inputs) else (inputs or random_inputs(net, seed))
    references = []
    if opencv:
        references.append(("OpenCV", opencv_forward(net, prototxt, caffemodel, inputs)))
    if reference is not None:
        references.append(("NumPy", reference(net, inputs)))
    assert references
    for fold in folds:
        for opset in opsets:
            model = to_onnx(net, fold=fold, opset=opset)
            check_shapes(model, net)
            outputs = run_onnx(model, inputs)
            for output in net.outputs():
                name = net.value_name(output)
                assert outputs[name].shape == net.shape(output)
                for source, expected in references:
                    compare(outputs[name], expected[name], f"{name} vs {source} (fold={fold}, opset={opset})")
    return net, inputs


def one_layer(layer: str, shape=(2, 3, 7, 9), *, extra_inputs: str = "") -> str:
    dim = " ".join(f"dim: {d}" for d in shape)
    return f"""
        name: "t"
        layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dim} }} }} }}
        {extra_inputs}
        {layer}
    """


def single_output(function):
    """A NumPy reference of one output, named by the net's only output."""
    def reference(net, inputs):
        (output,) = net.outputs()
        return {net.value_name(output): function(*inputs.values())}
    return reference


# ------------------------------------------------------------------------------------------- convolution
CONVOLUTIONS = [
    "num_output: 4 kernel_size: 3",
    "num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 3",
    "num_output: 4 kernel_size: 3 dilation: 2 pad: 2",
    "num_output: 5 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 stride_h: 2 stride_w: 1 bias_term: false",
    "num_output: 3 kernel_size: 5 stride: 3 pad: 2 group: 3",
]


@pytest.mark.parametrize("params", CONVOLUTIONS)
def test_convolution(tmp_path, params):
    parity(tmp_path, one_layer(f'layer {{ name: "c" type: "Convolution" bottom: "data" top: "c" '
                               f'convolution_param {{ {params} }} }}'))


def caffe_deconvolution(net, inputs):
    """deconv_layer.cpp: each input pixel scatters weight * value into the full output (col2im), of size
    s * (i - 1) + d * (k - 1) + 1, from which pad is cut on both sides."""
    (layer,) = net.layers()
    p, x = layer.params, inputs["data"].astype(np.float64)
    weight = layer.weights[0].astype(np.float64)
    n, c, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = p.kernel, p.stride, p.pad, p.dilation
    per_group_in, per_group_out = c // p.group, p.num_output // p.group
    full = np.zeros((n, p.num_output, sh * (height - 1) + dh * (kh - 1) + 1, sw * (width - 1) + dw * (kw - 1) + 1))
    for g in range(p.group):
        xs = x[:, g * per_group_in:(g + 1) * per_group_in]
        ws = weight[g * per_group_in:(g + 1) * per_group_in]
        for i in range(kh):
            for j in range(kw):
                contribution = np.einsum("nchw,co->nohw", xs, ws[:, :, i, j])
                full[:, g * per_group_out:(g + 1) * per_group_out,
                     i * dh: i * dh + sh * (height - 1) + 1: sh, j * dw: j * dw + sw * (width - 1) + 1: sw] += contribution
    y = full[:, :, ph: full.shape[2] - ph, pw: full.shape[3] - pw]
    if p.bias_term:
        y = y + layer.weights[1].reshape(1, -1, 1, 1)
    return {"d": y.astype(F32)}


@pytest.mark.parametrize("params", ["num_output: 4 kernel_size: 4 stride: 2 pad: 1",
                                    "num_output: 6 kernel_size: 3 stride: 2 group: 3",
                                    "num_output: 2 kernel_size: 3 stride: 3 pad: 1 bias_term: false",
                                    "num_output: 3 kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 1",
                                    "num_output: 3 kernel_size: 3 stride: 2 pad: 2 dilation: 2"])
def test_deconvolution(tmp_path, params):
    """Caffe's output size exactly; OpenCV 4.14 leaves dilation out of a deconvolution's output size."""
    parity(tmp_path, one_layer(f'layer {{ name: "d" type: "Deconvolution" bottom: "data" top: "d" '
                               f'convolution_param {{ {params} }} }}'),
           reference=caffe_deconvolution, opencv="dilation" not in params)


@pytest.mark.parametrize("fork_type", ["ConvolutionDepthwise", "DepthwiseConvolution"])
def test_depthwise_convolution(tmp_path, fork_type):
    """OpenCV does not know the forks' types: its reference is the same weights as a grouped Convolution."""
    layer = ('layer {{ name: "dw" type: "{}" bottom: "data" top: "dw" '
             'convolution_param {{ num_output: 3 kernel_size: 3 stride: 2 pad: 1 {} }} }}')
    fork, grouped = one_layer(layer.format(fork_type, "")), one_layer(layer.format("Convolution", "group: 3"))
    _, _, net = write_net(tmp_path, fork, seed=3, name="fork")
    prototxt, caffemodel, plain = write_net(tmp_path, grouped, seed=3, name="grouped")
    inputs = random_inputs(net)
    expected = opencv_forward(plain, prototxt, caffemodel, inputs)["dw"]
    for fold in (True, False):
        model = to_onnx(net, fold=fold)
        check_shapes(model, net)
        assert_close(run_onnx(model, inputs)["dw"], expected, "depthwise")


def test_convolution_axis_other_than_one_is_refused(tmp_path):
    _, _, net = write_net(tmp_path, one_layer('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                                              'convolution_param { num_output: 2 kernel_size: 1 axis: 2 } }',
                                              shape=(1, 2, 3, 4, 5)))
    with pytest.raises(UnsupportedError, match="axis"):
        to_onnx(net)


# ---------------------------------------------------------------------------------------------- pooling
def caffe_pooled_size(size, k, s, p, ceil):
    """pooling_layer.cpp Reshape, before its padding clip: ceil (or floor with round_mode FLOOR)."""
    span = size + 2 * p - k
    return (-(-span // s) if ceil else span // s) + 1


def caffe_pooling(x, method, kernel, stride, pad, ceil=True):
    """pooling_layer.cpp Forward_cpu (MAX with mask, AVE) and pooling_layer.cu StoPoolForwardTest."""
    n, c, height, width = x.shape
    outs = [caffe_pooled_size(size, k, s, p, ceil) for size, k, s, p in zip((height, width), kernel, stride, pad)]
    if pad[0] or pad[1]:
        outs = [o - 1 if (o - 1) * s >= size + p else o for o, size, s, p in zip(outs, (height, width), stride, pad)]
    top = np.zeros((n, c, *outs), F32)
    mask = np.full((n, c, *outs), -1, F32)
    for ph in range(outs[0]):
        for pw in range(outs[1]):
            if method == "STOCHASTIC":
                hs, ws = ph * stride[0], pw * stride[1]
                window = x[:, :, hs:min(hs + kernel[0], height), ws:min(ws + kernel[1], width)]
                total = FLT_MIN + window.sum(axis=(2, 3), dtype=F32)
                top[:, :, ph, pw] = (window * window).sum(axis=(2, 3), dtype=F32) / total
                continue
            hs, ws = ph * stride[0] - pad[0], pw * stride[1] - pad[1]
            he, we = min(hs + kernel[0], height + pad[0]), min(ws + kernel[1], width + pad[1])
            pool_size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, height), min(we, width)
            if method == "AVE":
                with np.errstate(invalid="ignore", divide="ignore"):
                    top[:, :, ph, pw] = x[:, :, hs:he, ws:we].sum(axis=(2, 3), dtype=F32) / F32(pool_size)
                continue
            top[:, :, ph, pw] = np.finfo(F32).min
            for h in range(hs, he):
                for w in range(ws, we):
                    better = x[:, :, h, w] > top[:, :, ph, pw]
                    top[:, :, ph, pw] = np.where(better, x[:, :, h, w], top[:, :, ph, pw])
                    mask[:, :, ph, pw] = np.where(better, h * width + w, mask[:, :, ph, pw])
    return top, mask


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


def pooling_text(method, kernel, stride, pad, mode, tops=("p",)):
    top_lines = " ".join(f'top: "{t}"' for t in tops)
    return (f'layer {{ name: "p" type: "Pooling" bottom: "data" {top_lines} pooling_param {{ pool: {method} '
            f'kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]} stride_w: {stride[1]} '
            f'pad_h: {pad[0]} pad_w: {pad[1]} round_mode: {mode} }} }}')


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("size,kernel,stride,pad,mode", POOLS)
def test_pooling(tmp_path, method, size, kernel, stride, pad, mode):
    ceil = mode == "CEIL"
    parity(tmp_path, one_layer(pooling_text(method, kernel, stride, pad, mode), shape=(2, 3, *size)),
           reference=single_output(lambda x: caffe_pooling(x, method, kernel, stride, pad, ceil)[0]),
           opencv=ceil)   # OpenCV's Caffe importer reads only the older ceil_mode flag


@pytest.mark.parametrize("size,kernel,stride,pad,mode", POOLS[:5])
def test_max_pooling_mask(tmp_path, size, kernel, stride, pad, mode):
    """The second top holds Caffe's argmax index h * W + w within each channel plane."""
    def reference(net, inputs):
        top, mask = caffe_pooling(inputs["data"], "MAX", kernel, stride, pad)
        return {"p": top, "mask": mask}

    parity(tmp_path, one_layer(pooling_text("MAX", kernel, stride, pad, mode, tops=("p", "mask")),
                               shape=(2, 3, *size)), reference=reference)


@pytest.mark.parametrize("size,kernel,stride,pad", [((7, 9), (3, 3), (2, 2), (0, 0)),
                                                    ((8, 7), (3, 2), (2, 2), (1, 1)),
                                                    ((9, 9), (2, 2), (3, 3), (1, 1)),
                                                    ((12, 12), (3, 3), (3, 3), (2, 2))])
def test_stochastic_pooling_test_phase(tmp_path, size, kernel, stride, pad):
    """Caffe's test phase weighs each value by itself: sum(x^2) / sum(x), over windows that ignore the pad.
    Inputs are non-negative, as after the ReLU Caffe's stochastic pooling expects."""
    parity(tmp_path, one_layer(pooling_text("STOCHASTIC", kernel, stride, pad, "CEIL"), shape=(2, 3, *size)),
           opencv=False, inputs=lambda net: {"data": np.abs(random_inputs(net)["data"])},
           reference=single_output(lambda x: caffe_pooling(x, "STOCHASTIC", kernel, stride, pad)[0]))


def test_pooling_window_past_the_input(tmp_path):
    """Stride beyond the kernel with ceil rounding: Caffe's last window starts past the input (MAX gives
    -FLT_MAX, AVE divides an empty sum by a zero or negative area); the end padding exceeds the kernel, which
    onnxruntime refuses as a `pads` attribute, so an explicit Pad is used."""
    for method in ("MAX", "AVE"):
        text = one_layer(pooling_text(method, (1, 2), (3, 3), (0, 0), "CEIL"), shape=(1, 2, 6, 7))
        net, _ = parity(tmp_path, text, opencv=False, compare=equal_with_nan,
                        reference=single_output(lambda x: caffe_pooling(x, method, (1, 2), (3, 3), (0, 0))[0]))
        assert net.shape(net.outputs()[0]) == (1, 2, 3, 3)
        assert "Pad" in {node.op_type for node in to_onnx(net).graph.node}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.tuples(st.integers(1, 12), st.integers(1, 12)), kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       stride=st.tuples(st.integers(1, 4), st.integers(1, 4)), pad=st.tuples(st.integers(0, 4), st.integers(0, 4)),
       method=st.sampled_from(["MAX", "AVE", "STOCHASTIC"]), mode=st.sampled_from(["CEIL", "FLOOR"]))
def test_pooling_property(tmp_path, size, kernel, stride, pad, method, mode):
    """Any valid Caffe pooling (pad < kernel, windows that fit): the IR's shape, ONNX's shape inference and
    onnxruntime's output equal the Caffe transcription's shape and values."""
    pad = tuple(min(p, k - 1) for p, k in zip(pad, kernel))
    if any(k > s_ + 2 * p for k, s_, p in zip(kernel, size, pad)):
        return
    text = textwrap.dedent(one_layer(pooling_text(method, kernel, stride, pad, mode), shape=(1, 2, *size)))
    try:
        net = read_net(write_text(tmp_path, text), init="none")
    except ShapeError:   # Caffe's rule left no window (the IR refuses it as Caffe would fail)
        return
    x = np.abs(np.random.default_rng(0).standard_normal((1, 2, *size)).astype(F32))
    expected = caffe_pooling(x, method, kernel, stride, pad, mode == "CEIL")[0]
    model = to_onnx(net)
    check_shapes(model, net)
    (found,) = run_onnx(model, {"data": x}).values()
    assert net.shape(net.outputs()[0]) == expected.shape
    equal_with_nan(found, expected, f"{method} {mode} size {size} kernel {kernel} stride {stride} pad {pad}")


def equal_with_nan(actual, expected, what):
    """NaN where Caffe divides 0 by 0 and -FLT_MAX where a MAX window is empty, exactly; the rest close."""
    assert actual.shape == expected.shape, what
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), what
    sentinel = np.abs(expected) == np.finfo(F32).max
    assert np.array_equal(actual[sentinel], expected[sentinel]), what
    keep = ~np.isnan(expected) & ~sentinel
    assert_close(actual[keep], expected[keep], what)


@pytest.mark.parametrize("method", ["MAX", "AVE", "STOCHASTIC"])
def test_global_pooling(tmp_path, method):
    parity(tmp_path, one_layer(f'layer {{ name: "g" type: "Pooling" bottom: "data" top: "g" '
                               f'pooling_param {{ pool: {method} global_pooling: true }} }}'),
           opencv=method != "STOCHASTIC", inputs=lambda net: {"data": np.abs(random_inputs(net)["data"])},
           reference=single_output(lambda x: caffe_pooling(x, method, x.shape[2:], (1, 1), (0, 0))[0]))


# ----------------------------------------------------------------------------------------- inner product
@pytest.mark.parametrize("params,shape", [("num_output: 5", (2, 3, 4, 5)),
                                          ("num_output: 4 axis: 2", (2, 3, 4, 5)),
                                          ("num_output: 3 transpose: true", (2, 6)),
                                          ("num_output: 3 bias_term: false axis: -1", (2, 3, 6))])
def test_inner_product(tmp_path, params, shape):
    """OpenCV 4.14 ignores `transpose` (it multiplies by the stored (K, N) matrix as if it were (N, K));
    the NumPy reference is inner_product_layer.cpp's gemm."""
    def reference(net, inputs):
        (layer,) = net.layers()
        p, x = layer.params, inputs["data"].astype(np.float64)
        matrix = x.reshape(math.prod(x.shape[:p.axis]), -1)
        weight = layer.weights[0].astype(np.float64)
        y = matrix @ (weight if p.transpose else weight.T)
        if p.bias_term:
            y = y + layer.weights[1]
        return {"fc": y.reshape(*x.shape[:p.axis], -1).astype(F32)}

    parity(tmp_path, one_layer(f'layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                               f'inner_product_param {{ {params} }} }}', shape=shape),
           reference=reference, opencv="transpose" not in params)


# --------------------------------------------------------------------------------------------- norms
def batch_norm_reference(mean, variance, factor, eps, global_stats):
    def reference(x):
        if global_stats:
            s = 0.0 if factor == 0 else 1.0 / factor
            m, v = mean * s, variance * s
        else:
            axes = (0, *range(2, x.ndim))
            m = x.mean(axis=axes, dtype=np.float64)
            v = ((x - m.reshape(-1, *(1,) * (x.ndim - 2))) ** 2).mean(axis=axes)
        shape = (-1, *(1,) * (x.ndim - 2))
        return ((x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + eps)).astype(F32)
    return reference


@pytest.mark.parametrize("factor", [1.0, 4.0, 0.0])
@pytest.mark.parametrize("global_stats,eps,shape", [(True, 1e-5, (2, 3, 4, 5)), (False, 1e-3, (3, 4, 5, 2)),
                                                    (True, 0.01, (3, 5))])
def test_batch_norm(tmp_path, factor, global_stats, eps, shape):
    """Stored statistics divided by the scale factor (0 means 0), or each batch's own statistics."""
    text = one_layer(f'layer {{ name: "bn" type: "BatchNorm" bottom: "data" top: "data" batch_norm_param {{ '
                     f'use_global_stats: {str(global_stats).lower()} eps: {eps} }} }}', shape=shape)
    net = read_net(write_text(tmp_path, text), init="random", seed=2)
    (bn,) = net.layers()
    mean, variance = bn.weights[0] * 3, bn.weights[1] * 2
    net.replace(bn, bn.replace(weights=(mean, variance, np.asarray([factor], F32))))
    reference = batch_norm_reference(mean.astype(np.float64), variance.astype(np.float64), factor, eps,
                                     global_stats)
    inputs = random_inputs(net)
    for fold in (True, False):
        for opset in sorted({MIN_OPSET, DEFAULT_OPSET, 18, onnx.defs.onnx_opset_version()}):   # ReduceMean's axes became an input at 18
            model = to_onnx(net, fold=fold, opset=opset)
            check_shapes(model, net)
            (output,) = run_onnx(model, inputs).values()
            assert_close(output, reference(inputs["data"]), f"fold={fold} opset={opset}")


def write_text(tmp_path, text, name="net"):
    path = Path(tmp_path) / f"{name}.prototxt"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("params,shape", [("bias_term: true", (2, 3, 4, 5)),
                                          ("axis: 1 num_axes: 2", (2, 3, 4, 5)),
                                          ("axis: 2 num_axes: 1 bias_term: true", (2, 3, 4, 5)),
                                          ("axis: -1", (2, 3, 4)),
                                          ("axis: 0 num_axes: -1", (2, 3))])
def test_scale(tmp_path, params, shape):
    parity(tmp_path, one_layer(f'layer {{ name: "s" type: "Scale" bottom: "data" top: "s" scale_param {{ {params} }} }}',
                               shape=shape), reference=scale_reference, opencv="axis: -1" not in params)


def scale_reference(net, inputs):
    """scale_layer.cpp / bias_layer.cpp: the parameter covers axes [axis, axis + its rank) of x."""
    (layer,) = net.layers()
    p = layer.params
    x = inputs["data"].astype(np.float64)
    weights = [w.astype(np.float64) for w in layer.weights]
    operand = inputs[net.value_name(layer.inputs[1])].astype(np.float64) if p.two_inputs else weights.pop(0)
    trailing = (1,) * (x.ndim - p.axis - operand.ndim)
    if layer.type == "Bias":
        return {net.value_name(layer.outputs[0]): (x + operand.reshape(*operand.shape, *trailing)).astype(F32)}
    y = x * operand.reshape(*operand.shape, *trailing)
    if p.bias_term:
        y = y + weights[0].reshape(*weights[0].shape, *trailing)
    return {net.value_name(layer.outputs[0]): y.astype(F32)}


@pytest.mark.parametrize("layer_type", ["Scale", "Bias"])
@pytest.mark.parametrize("second,axis", [((3,), 1), ((3, 4), 1), ((4, 5), 2)])
def test_scale_and_bias_by_second_input(tmp_path, layer_type, second, axis):
    extra = ('layer { name: "factor" type: "Input" top: "factor" input_param { shape { '
             + " ".join(f"dim: {d}" for d in second) + " } } }")
    param = "scale_param" if layer_type == "Scale" else "bias_param"
    parity(tmp_path, one_layer(f'layer {{ name: "s" type: "{layer_type}" bottom: "data" bottom: "factor" top: "s" '
                               f'{param} {{ axis: {axis} }} }}', shape=(2, 3, 4, 5), extra_inputs=extra),
           reference=scale_reference, opencv=layer_type == "Scale")   # OpenCV has no Bias layer


@pytest.mark.parametrize("params", ["", "axis: 1 num_axes: 2", "axis: 3"])
def test_bias(tmp_path, params):
    parity(tmp_path, one_layer(f'layer {{ name: "b" type: "Bias" bottom: "data" top: "b" bias_param {{ {params} }} }}',
                               shape=(2, 3, 4, 5)), reference=scale_reference, opencv=False)


def batch_norm_then_scale(shape=(2, 3, 5, 4)):
    return one_layer("""
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
        layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
        layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
        layer { name: "bn2" type: "BatchNorm" bottom: "conv" top: "bn2" }
        layer { name: "sc2" type: "Scale" bottom: "bn2" top: "bn2" scale_param { bias_term: false } }
        layer { name: "relu" type: "ReLU" bottom: "bn2" top: "bn2" }
        layer { name: "mix" type: "Eltwise" bottom: "bn2" bottom: "conv" top: "mix" }
    """, shape=shape)


def test_folded_batch_norm_and_scale(tmp_path):
    """Folding turns BatchNorm + Scale into one ChannelAffine, and into the convolution where it can: the
    folded model has fewer nodes and computes the same."""
    net, _ = parity(tmp_path, batch_norm_then_scale())
    folded, plain = to_onnx(net, fold=True), to_onnx(net, fold=False)
    assert "BatchNormalization" not in {n.op_type for n in folded.graph.node}
    assert "BatchNormalization" in {n.op_type for n in plain.graph.node}
    assert len(folded.graph.node) < len(plain.graph.node)


def lrn_reference(size, alpha, beta, k, region):
    def reference(x):
        x64 = x.astype(np.float64)
        half = (size - 1) // 2
        if region == "ACROSS_CHANNELS":
            padded = np.pad(x64 ** 2, ((0, 0), (half, half), (0, 0), (0, 0)))
            total = sum(padded[:, i:i + x.shape[1]] for i in range(size))
            return (x64 / (k + alpha / size * total) ** beta).astype(F32)
        padded = np.pad(x64 ** 2, ((0, 0), (0, 0), (half, half), (half, half)))
        total = sum(padded[:, :, i:i + x.shape[2], j:j + x.shape[3]] for i in range(size) for j in range(size))
        return (x64 * (1 + alpha * total / size ** 2) ** -beta).astype(F32)
    return reference


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.6, 2.0)])
@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_lrn(tmp_path, size, alpha, beta, k, region):
    text = one_layer(f'layer {{ name: "n" type: "LRN" bottom: "data" top: "n" lrn_param {{ local_size: {size} '
                     f'alpha: {alpha} beta: {beta} k: {k} norm_region: {region} }} }}', shape=(2, 7, 6, 5))
    # OpenCV 4.14 reads no `k` for Caffe's LRN (it uses 1), where Caffe adds k in ACROSS_CHANNELS.
    parity(tmp_path, text, reference=single_output(lrn_reference(size, alpha, beta, k, region)),
           opencv=k == 1 or region == "WITHIN_CHANNEL")


# -------------------------------------------------------------------------------------------- activations
def caffe_bnll(x):
    x = x.astype(np.float64)
    positive = x + np.log1p(np.exp(-np.abs(x)))
    return np.where(x > 0, positive, np.log1p(np.exp(np.minimum(x, 0)))).astype(F32)


ACTIVATIONS = [
    ('type: "ReLU"', None),
    ('type: "ReLU" relu_param { negative_slope: 0.1 }', lambda x: np.where(x > 0, x, F32(0.1) * x)),
    ('type: "ELU" elu_param { alpha: 0.7 }', lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)).astype(F32)),
    ('type: "Sigmoid"', None),
    ('type: "TanH"', None),
    ('type: "AbsVal"', np.abs),
    ('type: "BNLL"', caffe_bnll),
    ('type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }', lambda x: (1 + 0.5 * x) ** 2),
    ('type: "Power" power_param { scale: -3 shift: 0.5 }', lambda x: 0.5 - 3 * x),
    ('type: "Power" power_param { power: 0 scale: 2 }', np.ones_like),
    ('type: "Power" power_param { power: 3 scale: 0 shift: 2 }', lambda x: np.full_like(x, 8.0)),
    ('type: "Exp"', np.exp),
    ('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }', lambda x: 2.0 ** (1 + 0.5 * x)),
    ('type: "Exp" exp_param { scale: -1 shift: 0.25 }', lambda x: np.exp(0.25 - x)),
    ('type: "Threshold" threshold_param { threshold: 0.3 }', lambda x: (x > F32(0.3)).astype(F32)),
    ('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', lambda x: x),
]


@pytest.mark.parametrize("params,reference", ACTIVATIONS, ids=[a.split('"')[1] + str(i) for i, (a, _) in
                                                              enumerate(ACTIVATIONS)])
def test_activation(tmp_path, params, reference):
    """Values up to +-40 (BNLL must not overflow); OpenCV as well where it has the layer."""
    text = one_layer(f'layer {{ name: "a" {params} bottom: "data" top: "a" }}', shape=(2, 3, 4, 5))
    scaled = lambda net: {"data": (random_inputs(net)["data"] * (1 if "Exp" in params else 10)).astype(F32)}
    opencv = not any(t in params for t in ("Threshold", "Exp", "BNLL"))
    parity(tmp_path, text, inputs=scaled, opencv=opencv,
           reference=single_output(reference) if reference is not None else None)


@pytest.mark.parametrize("params,reference", [
    ("", np.log),
    ("log_param { base: 10 scale: 2 shift: 0.5 }", lambda x: np.log10(0.5 + 2 * x.astype(np.float64))),
    ("log_param { base: 2 }", np.log2)])
def test_log(tmp_path, params, reference):
    text = one_layer(f'layer {{ name: "l" type: "Log" bottom: "data" top: "l" {params} }}')
    parity(tmp_path, text, opencv=False, inputs=lambda net: {"data": np.abs(random_inputs(net)["data"]) + F32(0.1)},
           reference=single_output(lambda x: reference(x).astype(F32)))


@pytest.mark.parametrize("shared", [False, True])
def test_prelu(tmp_path, shared):
    def reference(net, inputs):
        x, slope = inputs["data"], net.layers()[0].weights[0]
        slope = slope.reshape(-1) if shared else slope.reshape(-1, 1, 1)
        return {"p": np.where(x > 0, x, x * slope).astype(F32)}

    # OpenCV 4.14 cannot load a channel_shared slope (a 0-d blob)
    parity(tmp_path, one_layer(f'layer {{ name: "p" type: "PReLU" bottom: "data" top: "p" '
                               f'prelu_param {{ channel_shared: {str(shared).lower()} }} }}'),
           reference=reference, opencv=not shared)


def test_dropout_without_scale_train(tmp_path):
    """Trained without scale_train, Caffe multiplies by 1 - ratio at test time."""
    text = one_layer('layer { name: "d" type: "Dropout" bottom: "data" top: "d" '
                     'dropout_param { dropout_ratio: 0.25 scale_train: false } }')
    parity(tmp_path, text, opencv=False, reference=single_output(lambda x: x * F32(0.75)))


# ------------------------------------------------------------------------------------------ merge, reshape
TWO_MORE = """
    layer { name: "b" type: "Convolution" bottom: "data" top: "b" convolution_param { num_output: 3 kernel_size: 1 } }
    layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 3 kernel_size: 1 } }
"""


@pytest.mark.parametrize("params", ["operation: SUM", "operation: SUM coeff: 1 coeff: -1 coeff: 0.5",
                                    "operation: PROD", "operation: MAX"])
def test_eltwise(tmp_path, params):
    parity(tmp_path, one_layer(TWO_MORE + f'layer {{ name: "e" type: "Eltwise" bottom: "data" bottom: "b" '
                                          f'bottom: "c" top: "e" eltwise_param {{ {params} }} }}'))


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_concat(tmp_path, axis):
    parity(tmp_path, one_layer(TWO_MORE + f'layer {{ name: "cat" type: "Concat" bottom: "data" bottom: "b" '
                                          f'bottom: "c" top: "cat" concat_param {{ axis: {axis} }} }}'))


@pytest.mark.parametrize("params,tops", [("axis: 1 slice_point: 1", 2), ("axis: 3 slice_point: 2 slice_point: 7", 3),
                                         ("slice_dim: 2", 7), ("axis: -1", 3)])
def test_slice(tmp_path, params, tops):
    def reference(net, inputs):
        (layer,) = net.layers()
        x = inputs["data"]
        return {net.value_name(v): np.take(x, range(a, b), axis=layer.params.axis)
                for v, a, b in zip(layer.outputs, layer.params.points, layer.params.points[1:])}

    names = " ".join(f'top: "s{i}"' for i in range(tops))
    # OpenCV 4.14 reads no legacy slice_dim (it slices axis 1) and no negative axis
    parity(tmp_path, one_layer(f'layer {{ name: "s" type: "Slice" bottom: "data" {names} slice_param {{ {params} }} }}'),
           opsets=(MIN_OPSET, None), reference=reference, opencv="slice_dim" not in params and "-1" not in params)


def test_split_copies_are_outputs(tmp_path):
    """An explicit Split whose copies are read by two layers and, unread, are net outputs. (OpenCV turns a
    Split into aliases of its input and returns no unread copy.)"""
    def reference(net, inputs):
        x = inputs["data"]
        return {"x3": x, "r": np.maximum(x, 0), "t": np.tanh(x)}

    net, _ = parity(tmp_path, one_layer("""
        layer { name: "split" type: "Split" bottom: "data" top: "x1" top: "x2" top: "x3" }
        layer { name: "r" type: "ReLU" bottom: "x1" top: "r" }
        layer { name: "t" type: "TanH" bottom: "x2" top: "t" }
    """), reference=reference, opencv=False)
    assert {net.value_name(v) for v in net.outputs()} == {"x3", "r", "t"}


@pytest.mark.parametrize("params,shape", [("", (2, 3, 4, 5)), ("axis: 2", (2, 3, 4, 5)),
                                          ("axis: 1 end_axis: 2", (2, 3, 4, 5)), ("end_axis: -2", (2, 3, 4, 5))])
def test_flatten(tmp_path, params, shape):
    parity(tmp_path, one_layer(f'layer {{ name: "f" type: "Flatten" bottom: "data" top: "f" '
                               f'flatten_param {{ {params} }} }}', shape=shape))


@pytest.mark.parametrize("params", ["shape { dim: 0 dim: -1 }", "shape { dim: 0 dim: 3 dim: 2 dim: -1 }",
                                    "shape { dim: 2 dim: 2 } axis: 2 num_axes: 1",
                                    "shape { dim: -1 } axis: 1"])
def test_reshape(tmp_path, params):
    parity(tmp_path, one_layer(f'layer {{ name: "r" type: "Reshape" bottom: "data" top: "r" '
                               f'reshape_param {{ {params} }} }}', shape=(2, 3, 4, 5)))


@pytest.mark.parametrize("params,reference_shape", [("axis: 2 offset: 1 offset: 2", (1, 1, 3, 4)),
                                                    ("axis: 1 offset: 1", (1, 2, 2, 3)),
                                                    ("axis: 3 offset: 4", (1, 1, 1, 5))])
def test_crop(tmp_path, params, reference_shape):
    extra = ('layer { name: "ref" type: "Input" top: "ref" input_param { shape { '
             + " ".join(f"dim: {d}" for d in reference_shape) + " } } }")
    parity(tmp_path, one_layer(f'layer {{ name: "c" type: "Crop" bottom: "data" bottom: "ref" top: "c" '
                               f'crop_param {{ {params} }} }}', shape=(1, 3, 5, 9), extra_inputs=extra))


# ----------------------------------------------------------------------------------------- softmax, argmax
@pytest.mark.parametrize("axis", [1, 2, -1])
def test_softmax(tmp_path, axis):
    parity(tmp_path, one_layer(f'layer {{ name: "s" type: "Softmax" bottom: "data" top: "s" '
                               f'softmax_param {{ axis: {axis} }} }}'), opsets=(MIN_OPSET, None))


def caffe_argmax(x, top_k, out_max_val, axis):
    """argmax_layer.cpp: a descending sort of (value, index) pairs (equal values: larger index first)."""
    if axis is None:
        flat = x.reshape(x.shape[0], -1)
        order = np.argsort(-flat, axis=1, kind="stable")[:, :top_k]
        values = np.take_along_axis(flat, order, 1)
        rows = [order.astype(F32), values] if out_max_val else [order.astype(F32)]
        out = np.stack(rows, axis=1)
        return out.reshape(*out.shape, *(1,) * (x.ndim - 3))
    order = np.argsort(-x, axis=axis, kind="stable").take(range(top_k), axis=axis)
    return np.take_along_axis(x, order, axis) if out_max_val else order.astype(F32)


@pytest.mark.parametrize("top_k,out_max_val,axis", [(1, False, None), (3, True, None), (2, False, 1),
                                                    (1, True, 2), (4, False, 3)])
def test_argmax(tmp_path, top_k, out_max_val, axis):
    axis_text = f"axis: {axis}" if axis is not None else ""
    text = one_layer(f'layer {{ name: "a" type: "ArgMax" bottom: "data" top: "a" argmax_param {{ top_k: {top_k} '
                     f'out_max_val: {str(out_max_val).lower()} {axis_text} }} }}')
    parity(tmp_path, text, opencv=False, opsets=(MIN_OPSET, None),
           reference=single_output(lambda x: caffe_argmax(x, top_k, out_max_val, axis)))


# ------------------------------------------------------------------------------------ opsets, batch, errors
KITCHEN_SINK = """
    name: "sink"
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 dim: 9 dim: 11 } } }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 6 kernel_size: 3 } }
    layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" batch_norm_param { use_global_stats: false } }
    layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
    layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" top: "mask"
            pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
    layer { name: "ave" type: "Pooling" bottom: "conv" top: "ave" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
    layer { name: "sto" type: "Pooling" bottom: "conv" top: "sto" pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 3 } }
    layer { name: "slice" type: "Slice" bottom: "pool" top: "s1" top: "s2" slice_param { slice_point: 2 } }
    layer { name: "lrn" type: "LRN" bottom: "s2" top: "lrn" lrn_param { local_size: 3 norm_region: WITHIN_CHANNEL } }
    layer { name: "bnll" type: "BNLL" bottom: "s1" top: "bnll" }
    layer { name: "cat" type: "Concat" bottom: "bnll" bottom: "lrn" top: "cat" }
    layer { name: "fc" type: "InnerProduct" bottom: "cat" top: "fc" inner_product_param { num_output: 7 } }
    layer { name: "arg" type: "ArgMax" bottom: "fc" top: "arg" argmax_param { top_k: 2 out_max_val: true } }
    layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def test_every_opset_from_13_computes_the_same(tmp_path):
    """Layers whose ONNX form changed across opsets (ReduceMean, Split, Pad, TopK, Softmax) give the same
    outputs at every opset from 13 to the default, and onnx's checker accepts each model."""
    _, _, net = write_net(tmp_path, textwrap.dedent(KITCHEN_SINK), seed=5)
    inputs = random_inputs(net)
    baseline = run_onnx(to_onnx(net), inputs)
    for opset in range(MIN_OPSET, onnx.defs.onnx_opset_version() + 1):
        model = to_onnx(net, opset=opset)
        assert model.opset_import[0].version == opset
        check_shapes(model, net)
        for name, value in run_onnx(model, inputs).items():
            assert_close(value, baseline[name], f"{name} at opset {opset}")


def test_kitchen_sink_against_references(tmp_path):
    """The sink's outputs against Caffe transcriptions: max pooling with mask and stochastic pooling."""
    _, _, net = write_net(tmp_path, textwrap.dedent(KITCHEN_SINK), seed=5)
    inputs = random_inputs(net)
    outputs = run_onnx(to_onnx(net, opset=MIN_OPSET), inputs)
    conv = net.layer("conv")
    x = inputs["data"].astype(np.float64)
    w, b = conv.weights[0].astype(np.float64), conv.weights[1].astype(np.float64)
    y = np.zeros((2, 6, 7, 9)) + b.reshape(1, -1, 1, 1)
    for i in range(3):
        for j in range(3):
            y += np.einsum("nchw,oc->nohw", x[:, :, i:i + 7, j:j + 9], w[:, :, i, j])
    y = np.maximum(batch_norm_reference(None, None, 1.0, 1e-5, False)(y.astype(F32)), 0)
    top, mask = caffe_pooling(y, "MAX", (3, 3), (2, 2), (0, 0))
    assert_close(outputs["mask"], mask, "mask")
    assert_close(outputs["sto"], caffe_pooling(y, "STOCHASTIC", (2, 2), (3, 3), (0, 0))[0], "stochastic")
    assert_close(outputs["ave"], caffe_pooling(y, "AVE", (3, 3), (2, 2), (1, 1))[0], "ave")


def test_opset_out_of_range_is_refused(tmp_path):
    _, _, net = write_net(tmp_path, one_layer('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }'))
    for opset in (MIN_OPSET - 1, onnx.defs.onnx_opset_version() + 1):
        with pytest.raises(UnsupportedError, match="opset"):
            to_onnx(net, opset=opset)


def test_the_default_opset_is_fixed_and_deployable(tmp_path):
    """One prototxt gives the same model on every machine: the default opset is a constant that today's
    deployment runtimes accept (at most 18), whatever onnxruntime is installed."""
    _, _, net = write_net(tmp_path, one_layer('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }'))
    assert MIN_OPSET <= DEFAULT_OPSET <= 18
    assert to_onnx(net).opset_import[0].version == DEFAULT_OPSET


DYNAMIC = """
    name: "dyn"
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 7 } } }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
    layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
    layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
    layer { name: "flat" type: "Flatten" bottom: "pool" top: "flat" flatten_param { axis: 2 } }
    layer { name: "fc" type: "InnerProduct" bottom: "flat" top: "fc" inner_product_param { num_output: 5 axis: 2 } }
    layer { name: "shape" type: "Reshape" bottom: "fc" top: "shape" reshape_param { shape { dim: 0 dim: -1 } } }
    layer { name: "arg" type: "ArgMax" bottom: "shape" top: "arg" argmax_param { top_k: 3 } }
    layer { name: "prob" type: "Softmax" bottom: "shape" top: "prob" }
"""


def test_dynamic_batch(tmp_path):
    """With --dynamic-batch every tensor's dim 0 is "batch"; a batch of 3 gives what three runs of 1 give."""
    _, _, net = write_net(tmp_path, textwrap.dedent(DYNAMIC))
    model = to_onnx(net, dynamic_batch=True)
    for info in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        assert dims(info)[0] == "batch", info.name
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert all(dims(v)[0] == "batch" for v in inferred.graph.output)
    static = to_onnx(net)
    batch = np.random.default_rng(7).standard_normal((3, 3, 8, 7)).astype(F32)
    together = run_onnx(model, {"data": batch})
    for item in range(3):
        alone = run_onnx(static, {"data": batch[item:item + 1]})
        for name in alone:
            assert_close(together[name][item:item + 1], alone[name], f"{name}[{item}]")


def test_dynamic_batch_refuses_layers_across_the_batch(tmp_path):
    _, _, net = write_net(tmp_path, one_layer(TWO_MORE + 'layer { name: "cat" type: "Concat" bottom: "b" '
                                                         'bottom: "c" top: "cat" concat_param { axis: 0 } }'))
    to_onnx(net)
    with pytest.raises(UnsupportedError, match="batch"):
        to_onnx(net, dynamic_batch=True)


def test_unsupported_layers_are_named_before_anything_is_written(tmp_path):
    from protodef.plugins import register_layer, unregister_layer
    register_layer("NoOnnxHere", shape=lambda shapes, fields: shapes[0])
    try:
        prototxt = write_text(tmp_path, one_layer("""
            layer { name: "first" type: "NoOnnxHere" bottom: "data" top: "a" }
            layer { name: "relu" type: "ReLU" bottom: "a" top: "a" }
            layer { name: "second" type: "NoOnnxHere" bottom: "a" top: "b" }
        """))
        net = read_net(prototxt, init="none")
        target = tmp_path / "out.onnx"
        with pytest.raises(UnsupportedError) as raised:
            save_onnx(net, target)
        message = str(raised.value)
        assert "'first' (NoOnnxHere" in message and "'second' (NoOnnxHere" in message and "relu" not in message
        assert not target.exists() and list(tmp_path.glob("*.onnx*")) == []
    finally:
        unregister_layer("NoOnnxHere")


def test_every_layer_type_has_an_onnx_converter():
    """Data layers become net inputs and the passes drop training-only layers; every other type converts."""
    from converters.onnx.registry import ONNX_CONVERTERS
    from protodef.layers.registry import LAYER_SPECS
    missing = [t for t, spec in LAYER_SPECS.items()
               if not (spec.produces_input or spec.training_only or spec.plugin) and t not in ONNX_CONVERTERS]
    assert missing == []


def test_a_second_converter_for_a_type_is_refused():
    from converters.onnx import onnx_converter
    with pytest.raises(ValueError, match="already registered"):
        onnx_converter("Convolution")(lambda layer, ctx: [])


def test_saved_model_metadata(tmp_path):
    prototxt, _, net = write_net(tmp_path, textwrap.dedent(DYNAMIC))
    target = tmp_path / "dyn.onnx"
    save_onnx(net, target)
    model = onnx.load(target)
    assert model.producer_name == "protodef"
    assert {p.key: p.value for p in model.metadata_props}["source"] == str(prototxt)
    assert [i.name for i in model.graph.input] == ["data"]
    assert sorted(o.name for o in model.graph.output) == ["arg", "prob"]
    assert {t.name for t in model.graph.initializer} >= {"conv.weight", "conv.bias", "fc.weight", "fc.bias"}


def test_conversion_never_imports_torch():
    code = textwrap.dedent(f"""
        import sys
        from protodef.api import read_net, to_onnx
        to_onnx(read_net({str(REPO / "samples" / "tiny" / "tiny.prototxt")!r}, init="random"))
        assert "torch" not in sys.modules, "torch was imported"
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------------ corpus
# Smaller inputs keep the corpus test fast: an InnerProduct's weights shrink with the image it flattens.
INPUT_SHAPES = {
    "bvlc_alexnet_deploy.prototxt": {"data": (1, 3, 67, 67)},
    "imagenet_imagenet_deploy.prototxt": {"data": (1, 3, 67, 67)},
    "age_deploy.prototxt": {"data": (1, 3, 67, 67)},
    "deploy_vgg16_places365.prototxt": {"data": (1, 3, 32, 32)},
    "VGG_ILSVRC_19_layers_deploy.prototxt": {"data": (1, 3, 32, 32)},
    "yolo_small_train_val.prototxt": {"data": (1, 3, 64, 64)},
    "yolo_tiny_deploy.prototxt": {"data": (1, 3, 64, 64)},
    "voc-fcn8s_deploy.prototxt": {"data": (1, 3, 64, 64)},
    "bvlc_googlenet_deploy.prototxt": {"data": (1, 3, 224, 224)},
    "SqueezeNet_v1.0_deploy.prototxt": {"data": (1, 3, 227, 227)},
    "mnist_lenet.prototxt": {"data": (1, 1, 28, 28)},
    "hand_pose_deploy.prototxt": {"image": (1, 3, 64, 64)},
    "pose_coco_pose_deploy_linevec.prototxt": {"image": (1, 3, 64, 64)},
    "darknet19_deploy.prototxt": {"data": (1, 3, 64, 64)},
    "yolov3-tiny.prototxt": {"data": (1, 3, 64, 64)},
    "enet_deploy_final.prototxt": {"data": (1, 3, 64, 128)},
    "reshape_and_slice_routines.prototxt": {"input": (2, 3, 4, 5)},   # declares no shape
}


# Too slow for CI's budget whatever the input size: 115 M and 134 M parameters of convolutions (random
# weights, OpenCV and onnxruntime take ~20 s each). PROTODEF_SLOW_TESTS=1 runs them.
HEAVY = {"SENet-154.prototxt", "voc-fcn8s_deploy.prototxt"}


def corpus_case(path: Path):
    marks = [pytest.mark.skipif(path.name in HEAVY and not os.environ.get("PROTODEF_SLOW_TESTS"),
                                reason="heavy net: set PROTODEF_SLOW_TESTS=1 to run it")]
    return pytest.param(path, id=str(path.relative_to(CORPUS)), marks=marks)


# Where OpenCV 4.14 is not Caffe, the corpus test works around it or says why it cannot compare.
OPENCV_SWAPS_AXPY = ("OpenCV computes Axpy(a, x, y) as a * y + x; Caffe's axpy_layer.cpp as a * x + y, so OpenCV "
                     "reads a copy of the prototxt with x and y swapped")
DETECTION_ROWS = ("DetectionOutput's row count is data-dependent in Caffe; OpenCV pads to keep_top_k rows, so the "
                  "layer's inputs are compared instead")


def unsupported_by_opencv(net) -> str | None:
    """Why OpenCV's result could not be Caffe's for this net, or None."""
    for layer in net.layers():
        if layer.type == "MVN" and layer.params.normalize_variance:
            return "MVN normalize_variance: Caffe divides by sqrt(var) + eps, OpenCV by sqrt(var + eps)"
        if layer.type == "ROIPooling":
            return "ROIPooling reads boxes (batch index, x1, y1, x2, y2) that random inputs do not make"
    return None


def compared_values(net):
    """The net's outputs, except that DetectionOutput's inputs stand in for its output."""
    detections = net.layers(type="DetectionOutput")
    values = [v for v in net.outputs() if net.producer(v).type != "DetectionOutput"]
    return values + [v for layer in detections for v in layer.inputs if v not in values]


def opencv_view(path: Path, net, tmp_path: Path) -> Path:
    """The prototxt OpenCV should read to compute what Caffe computes (see OPENCV_SWAPS_AXPY)."""
    if not net.layers(type="Axpy"):
        return path
    from google.protobuf import text_format

    from protodef.source import read_prototxt
    param, _ = read_prototxt(path)
    for layer in param.layer:
        if layer.type == "Axpy":
            layer.bottom[1], layer.bottom[2] = layer.bottom[2], layer.bottom[1]
    view = tmp_path / path.name
    view.write_text(text_format.MessageToString(param))
    return view


def run_onnx_values(model, inputs, names):
    """Run with `names` as the outputs (intermediate values have value_info, so they can be exposed)."""
    known = {v.name: v for v in [*model.graph.value_info, *model.graph.output]}
    chosen = [onnx.ValueInfoProto() for _ in names]
    for info, name in zip(chosen, names):
        info.CopyFrom(known[name])
    del model.graph.output[:]
    model.graph.output.extend(chosen)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, inputs)))


@pytest.mark.skipif(not corpus_files("deploy"), reason="the corpus (../shared/corpus) is not there")
@pytest.mark.parametrize("path", [corpus_case(p) for p in corpus_files("deploy")] or [None])
def test_corpus_deploy_net(tmp_path, path):
    """Each corpus deploy net that protodef builds and OpenCV loads: onnxruntime equals OpenCV (random
    weights, our writer), folded and (where there is something to fold) unfolded."""
    from converters.onnx.lower import unsupported_layers
    try:
        net = read_net(path, init="random", input_shape=INPUT_SHAPES.get(path.name, {}), seed=1)
    except ProtodefError as error:
        # What convert cannot lower (a Python layer) it refuses in one line, naming the layer.
        assert isinstance(error, UnsupportedError) and "\n" not in str(error) and "layer '" in str(error), error
        pytest.skip(f"convert refuses it: {error}")
    missing = sorted({layer.type for layer in unsupported_layers(lower(net, fold=True))})
    if missing:
        pytest.skip(f"no ONNX lowering for {', '.join(missing)}")
    differs = unsupported_by_opencv(net)
    if differs:
        pytest.skip(f"OpenCV is not Caffe here: {differs}")
    caffemodel = tmp_path / "weights.caffemodel"
    write_caffemodel(caffemodel, [(layer.caffe_name, layer.type, list(layer.weights)) for layer in net.layers()
                                  if layer.weights])
    inputs = random_inputs(net)
    values = compared_values(net)
    import cv2
    try:
        expected = opencv_forward(net, opencv_view(path, net, tmp_path), caffemodel, inputs, values)
    except cv2.error as error:   # OpenCV cannot run this net (a fork's layer it does not know)
        pytest.skip(f"OpenCV cannot run it: {str(error).strip().splitlines()[-1][:200]}")
    foldable = any(layer.type in ("BatchNorm", "Scale") for layer in net.layers())
    for fold in (True, False) if foldable else (True,):
        outputs = run_onnx_values(to_onnx(net, fold=fold), inputs, list(expected))
        for name, value in expected.items():
            assert_close(outputs[name], value, f"{path.name}: {name} (fold={fold})")


def test_corpus_has_resnet50():
    if not corpus_files("deploy"):
        pytest.skip("the corpus is not there")
    assert any(p.name == "prototxt_ResNet-50-deploy.prototxt" for p in corpus_files("deploy"))


@pytest.mark.parametrize("tail", [
    'layer { name: "output" type: "Split" bottom: "fc" top: "output" }',
    'layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" }',
    'layer { name: "drop" type: "Dropout" bottom: "fc" top: "dropped" }'])
def test_outputs_keep_caffe_names_when_a_pass_bypasses_their_writer(tmp_path, tail):
    _, _, net = write_net(tmp_path, one_layer('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                                              'inner_product_param { num_output: 3 } }\n' + tail))
    names = sorted(net.value_name(v) for v in net.outputs())
    for fold in (True, False):
        model = to_onnx(net, fold=fold)
        assert sorted(o.name for o in model.graph.output) == names
        check_shapes(model, net)
