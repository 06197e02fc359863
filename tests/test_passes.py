"""Passes: structure after each pass, and unchanged numerics (a NumPy evaluator of our own, and OpenCV dnn)."""
from __future__ import annotations

import copy
import functools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import CORPUS, assert_close, opencv_forward, random_inputs, write_net

from protodef.api import read_net
from protodef.attach import random_weights
from protodef.build import build_net
from protodef.errors import GraphError, UnsupportedError
from protodef.passes import (
    PassReport,
    batchnorm_scale_to_affine,
    default_passes,
    fold_affine,
    fold_affine_into_producer,
    remove_dropout,
    remove_split,
    remove_training_layers,
    run_pipeline,
)
from protodef.source import parse_prototxt
from protodef.weights import write_caffemodel

# ------------------------------------------------------------------------------------- NumPy evaluator
# Written from Caffe's layer sources, independently of the passes: float64 throughout.


def conv_forward(x, w, b, p):
    n, c, h, wd = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), g = p.kernel, p.stride, p.pad, p.dilation, p.group
    o = w.shape[0]
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xg = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).reshape(n, g, c // g, h + 2 * ph, wd + 2 * pw)
    wg = w.reshape(g, o // g, c // g, kh, kw)
    y = np.zeros((n, g, o // g, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xg[..., i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            y += np.einsum("ngchw,goc->ngohw", patch, wg[..., i, j])
    y = y.reshape(n, o, oh, ow)
    return y + b.reshape(1, o, 1, 1) if b is not None else y


def deconv_forward(x, w, b, p):
    """Caffe's deconvolution: each input pixel scatters its kernel into the (uncropped) output, then pad crops."""
    n, c, h, wd = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), g = p.kernel, p.stride, p.pad, p.dilation, p.group
    per = w.shape[1]
    fh, fw = sh * (h - 1) + dh * (kh - 1) + 1, sw * (wd - 1) + dw * (kw - 1) + 1
    xg, wg = x.reshape(n, g, c // g, h, wd), w.reshape(g, c // g, per, kh, kw)
    y = np.zeros((n, g, per, fh, fw))
    for i in range(kh):
        for j in range(kw):
            y[..., i * dh: i * dh + sh * (h - 1) + 1: sh, j * dw: j * dw + sw * (wd - 1) + 1: sw] += \
                np.einsum("ngchw,gco->ngohw", xg, wg[..., i, j])
    y = y.reshape(n, g * per, fh, fw)[:, :, ph: fh - ph, pw: fw - pw]
    return y + b.reshape(1, -1, 1, 1) if b is not None else y


def channel(vector, rank):
    return np.asarray(vector, np.float64).reshape((1, -1) + (1,) * (rank - 2))


def batchnorm_forward(x, blobs, p):
    s = float(blobs[2].reshape(-1)[0])
    factor = 0.0 if s == 0 else 1.0 / s
    mean, var = blobs[0] * factor, blobs[1] * factor
    return (x - channel(mean, x.ndim)) / np.sqrt(channel(var, x.ndim) + p.eps)


def scale_forward(x, blobs, p):
    shape = (1,) * p.axis + tuple(p.param_shape) + (1,) * (x.ndim - p.axis - len(p.param_shape))
    y = x * np.asarray(blobs[0], np.float64).reshape(shape)
    return y + np.asarray(blobs[1], np.float64).reshape(shape) if p.bias_term else y


def layer_forward(layer, xs):
    p, w = layer.params, [np.asarray(a, np.float64) for a in layer.weights]
    bias = w[1] if getattr(p, "bias_term", False) else None
    x = xs[0]
    if layer.type in ("Convolution", "ConvolutionDepthwise"):   # each input with the same weights
        return [conv_forward(x, w[0], bias, p) for x in xs]
    if layer.type == "Deconvolution":
        return [deconv_forward(x, w[0], bias, p) for x in xs]
    if layer.type == "InnerProduct":
        flat = x.reshape(x.shape[0], -1)
        y = flat @ (w[0] if p.transpose else w[0].T)
        return [y + bias if bias is not None else y]
    if layer.type == "BatchNorm":
        return [batchnorm_forward(x, w, p)]
    if layer.type == "Scale":
        return [scale_forward(x, w, p)]
    if layer.type == "ChannelAffine":
        return [x * channel(w[0], x.ndim) + channel(w[1], x.ndim)]
    if layer.type == "ReLU":
        return [np.maximum(x, 0) + p.negative_slope * np.minimum(x, 0)]
    if layer.type == "Power":
        return [(p.shift + p.scale * x) ** p.power]
    if layer.type == "Dropout":     # Caffe dropout_layer.cpp, TEST: a copy, times 1 - ratio without scale_train
        return [x if p.scale_train else x * (1.0 - p.ratio)]
    if layer.type == "Split":
        return [x] * len(layer.outputs)
    raise NotImplementedError(layer.type)


def evaluate(net, inputs):
    """The net's outputs by value name, from {input name: array}."""
    values = {i.value: np.asarray(inputs[net.value_name(i.value)], np.float64) for i in net.inputs}
    for layer in net.layers():
        values.update(zip(layer.outputs, layer_forward(layer, [values[v] for v in layer.inputs])))
    return {net.value_name(v): values[v] for v in net.outputs()}


def assert_same_outputs(actual, reference, what):
    assert sorted(actual) == sorted(reference), what
    for name, ref in reference.items():
        assert_close(actual[name], ref, f"{what}: {name}")


# ---------------------------------------------------------------------------------------------- helpers

def build(text, **options):
    param, source = parse_prototxt(text, path="t.prototxt")
    return build_net(param, source, **options)


def checked(step):
    """The pass, then the invariants every pass keeps, and the purity of the pass."""
    @functools.wraps(step)
    def run(net):
        before = [(layer.name, layer) for layer in net.layers()]
        inputs, notes = list(net.inputs), list(net.notes)
        result = step(net)
        assert [(layer.name, layer) for layer in net.layers()] == before, f"{step.__name__} changed its input"
        assert net.inputs == inputs and net.notes == notes, f"{step.__name__} changed its input"
        result.validate()
        return result
    return run


def lower(net, fold=True):
    return run_pipeline(net, passes=[checked(p) for p in default_passes(fold=fold)])


def types(net):
    return [layer.type for layer in net.layers()]


def with_weights(net, name, weights):
    out = net.copy()
    layer = out.layer(name)
    out.replace(layer, layer.replace(weights=tuple(np.asarray(w, np.float32) for w in weights)))
    return out


def save_weights(net, path):
    write_caffemodel(path, [(layer.caffe_name, layer.type, list(layer.weights)) for layer in net.layers()
                            if layer.weights])


def bn_statistics(net, name, factor, seed=0):
    """Caffe stores mean and variance times a factor s (the moving-average normaliser), and s itself; s == 0
    makes Caffe ignore the stored statistics (taken as 0), which are left nonzero here so that shows."""
    rng = np.random.default_rng(seed)
    channels = net.layer(name).params.channels
    mean, var = rng.normal(0, 1, channels), rng.uniform(0.2, 2.0, channels)
    return with_weights(net, name, stored_statistics(mean, var, factor))


def stored_statistics(mean, var, factor):
    times = factor if factor else 1.0
    return [mean * times, var * times, [factor]]


def input_layer(*shape, top="data"):
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{top}" type: "Input" top: "{top}" input_param {{ shape {{ {dims} }} }} }}\n'


BN_SCALE = """
layer {{ name: "bn" type: "BatchNorm" bottom: "{x}" top: "{x}" }}
layer {{ name: "sc" type: "Scale" bottom: "{x}" top: "{x}" scale_param {{ bias_term: {bias} }} }}
"""

# ------------------------------------------------------------------------------------------ fold_affine


def test_fold_affine_scales_each_output_channel_of_a_convolution_weight():
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(4, 3, 2, 2)), rng.normal(size=4)
    scale, shift = rng.normal(size=4), rng.normal(size=4)
    new_w, new_b = fold_affine(w, b, scale, shift, out_axis=0)
    assert new_w.dtype == np.float32 and new_b.dtype == np.float32
    for o in range(4):
        np.testing.assert_allclose(new_w[o], w[o] * scale[o], rtol=1e-6)
        np.testing.assert_allclose(new_b[o], b[o] * scale[o] + shift[o], rtol=1e-6)
    _, no_bias = fold_affine(w, None, scale, shift, out_axis=0)
    np.testing.assert_allclose(no_bias, shift, rtol=1e-6)


def test_fold_affine_maps_deconvolution_groups_to_output_channels():
    rng = np.random.default_rng(2)
    groups, c_in, per = 2, 6, 5                       # weight (C_in, C_out/groups, kh, kw); C_out = 10
    w = rng.normal(size=(c_in, per, 3, 3))
    scale, shift = rng.normal(size=groups * per), rng.normal(size=groups * per)
    new_w, _ = fold_affine(w, None, scale, shift, out_axis=1, groups=groups)
    for i in range(c_in):
        for j in range(per):
            out_channel = (i // (c_in // groups)) * per + j
            np.testing.assert_allclose(new_w[i, j], w[i, j] * scale[out_channel], rtol=1e-6)
    with pytest.raises(ValueError):
        fold_affine(w, None, scale[:5], shift[:5], out_axis=1, groups=groups)


# ------------------------------------------------------------------------- folding, with OpenCV as oracle

CONV_NET = input_layer(2, 4, 7, 7) + """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2 group: 2 bias_term: false } }
""" + BN_SCALE.format(x="conv", bias="true") + """
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
"""


@pytest.mark.parametrize("factor", [1.0, 2.5, 0.0])
def test_conv_batchnorm_scale_relu_folds_into_the_conv(tmp_path, factor):
    prototxt, caffemodel, net = write_net(tmp_path, CONV_NET, seed=3)
    net = bn_statistics(net, "bn", factor, seed=4)
    save_weights(net, caffemodel)
    lowered, report = lower(net)
    assert types(lowered) == ["Convolution", "ReLU"]
    conv = lowered.layer("conv")
    assert conv.params.bias_term and len(conv.weights) == 2 and conv.weights[1].shape == (6,)
    assert [lowered.value_name(v) for v in lowered.outputs()] == ["conv"]
    inputs = random_inputs(net, seed=5)
    ours = evaluate(lowered, inputs)
    assert_same_outputs(ours, evaluate(net, inputs), "folded vs unfolded (NumPy)")
    assert_same_outputs(ours, opencv_forward(net, prototxt, caffemodel, inputs), "folded (NumPy) vs OpenCV")
    by_pass = {r.name: r for r in report.passes}
    assert by_pass["batchnorm_scale_to_affine"].removed == [("sc", "Scale")]
    assert by_pass["batchnorm_scale_to_affine"].changed == [("bn", "BatchNorm", "ChannelAffine")]
    assert by_pass["fold_affine_into_producer"].removed == [("bn", "ChannelAffine")]
    assert by_pass["fold_affine_into_producer"].changed == [("conv", "Convolution", "Convolution")]


def test_inner_product_batchnorm_scale_folds_into_the_inner_product(tmp_path):
    text = input_layer(3, 2, 3, 3) + """
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 5 } }
""" + BN_SCALE.format(x="ip", bias="true")
    prototxt, caffemodel, net = write_net(tmp_path, text, seed=6)
    net = bn_statistics(net, "bn", 0.5, seed=7)
    save_weights(net, caffemodel)
    lowered, _ = lower(net)
    assert types(lowered) == ["InnerProduct"]
    inputs = random_inputs(net, seed=8)
    ours = evaluate(lowered, inputs)
    assert_same_outputs(ours, evaluate(net, inputs), "folded vs unfolded (NumPy)")
    assert_same_outputs(ours, opencv_forward(net, prototxt, caffemodel, inputs), "folded (NumPy) vs OpenCV")


def opencv_unfused_forward(net, prototxt, caffemodel, inputs):
    """OpenCV dnn with its own layer fusion off: OpenCV 4.x folds BatchNorm/Scale into a *grouped*
    Deconvolution with the wrong channel mapping (off by ~0.2 here; with fusion off it matches Caffe's formula)."""
    import cv2

    (value,) = net.outputs()
    cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cv_net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv_net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    cv_net.enableFusion(False)
    for name, array in inputs.items():
        cv_net.setInput(array, name)
    return {net.value_name(value): np.asarray(cv_net.forward(net.producer(value).caffe_name))}


def test_grouped_deconvolution_batchnorm_scale_folds_per_group(tmp_path):
    text = input_layer(2, 4, 4, 4) + """
layer { name: "up" type: "Deconvolution" bottom: "data" top: "up"
        convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2 } }
""" + BN_SCALE.format(x="up", bias="true")
    prototxt, caffemodel, net = write_net(tmp_path, text, seed=9)
    net = bn_statistics(net, "bn", 3.0, seed=10)
    save_weights(net, caffemodel)
    lowered, _ = lower(net)
    assert types(lowered) == ["Deconvolution"]
    inputs = random_inputs(net, seed=11)
    ours = evaluate(lowered, inputs)
    assert_same_outputs(ours, evaluate(net, inputs), "folded vs unfolded (NumPy)")
    assert_same_outputs(ours, opencv_unfused_forward(net, prototxt, caffemodel, inputs), "folded (NumPy) vs OpenCV")


# ---------------------------------------------------------------------- folding: what must not fold


def test_scale_without_bias_folds_and_gives_the_conv_a_bias():
    text = input_layer(1, 3, 5, 5) + """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 bias_term: false } }
layer { name: "sc" type: "Scale" bottom: "conv" top: "scaled" }
"""
    net = random_weights(build(text), seed=12)
    lowered, _ = lower(net)
    assert types(lowered) == ["Convolution"]
    conv = lowered.layer("conv")
    assert conv.params.bias_term and not np.any(conv.weights[1])
    assert [lowered.value_name(v) for v in lowered.outputs()] == ["scaled"]     # readers downstream keep names
    inputs = random_inputs(net, seed=13)
    assert_same_outputs(evaluate(lowered, inputs), evaluate(net, inputs), "Scale without bias")


def test_batchnorm_scale_after_a_relu_stays_one_channel_affine():
    text = input_layer(2, 3, 4, 4) + """
layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }
""" + BN_SCALE.format(x="r", bias="false")
    net = bn_statistics(random_weights(build(text), seed=14), "bn", 2.0, seed=15)
    lowered, _ = lower(net)
    assert types(lowered) == ["ReLU", "ChannelAffine"]
    affine = lowered.layer("bn")
    assert [w.shape for w in affine.weights] == [(3,), (3,)] and all(w.dtype == np.float32 for w in affine.weights)
    assert affine.inputs == lowered.layer("relu").outputs and affine.outputs == net.layer("sc").outputs
    inputs = random_inputs(net, seed=16)
    assert_same_outputs(evaluate(lowered, inputs), evaluate(net, inputs), "ChannelAffine after ReLU")


def test_affine_after_one_top_of_a_two_bottom_conv_is_not_folded():
    """Caffe convolves each bottom with the same weights: folding into them would scale the other top too."""
    text = input_layer(1, 2, 5, 5) + input_layer(1, 2, 5, 5).replace('"data"', '"data2"') + """
layer { name: "conv" type: "Convolution" bottom: "data" bottom: "data2" top: "c0" top: "c1"
        convolution_param { num_output: 3 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "c0" top: "c0" }
layer { name: "sc" type: "Scale" bottom: "c0" top: "c0" scale_param { bias_term: true } }
"""
    net = bn_statistics(random_weights(build(text), seed=19), "bn", 1.0, seed=20)
    lowered, report = lower(net)
    assert types(lowered) == ["Convolution", "ChannelAffine"]
    assert lowered.layer("conv") is net.layer("conv")
    assert report.passes[-1].notes == [
        "ChannelAffine 'bn' (ChannelAffine) not folded into 'conv' (Convolution): its weights also compute 'c1'"]
    inputs = random_inputs(net, seed=21)
    assert_same_outputs(evaluate(lowered, inputs), evaluate(net, inputs), "affine after a two-bottom conv")


def test_conv_output_read_twice_is_not_folded():
    text = input_layer(1, 2, 5, 5) + """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 3 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "bn" }
layer { name: "sc" type: "Scale" bottom: "bn" top: "bn" scale_param { bias_term: true } }
layer { name: "side" type: "ReLU" bottom: "conv" top: "side" }
"""
    net = bn_statistics(random_weights(build(text), seed=17), "bn", 1.0, seed=18)
    lowered, report = lower(net)
    assert types(lowered) == ["Convolution", "ChannelAffine", "ReLU"]
    assert lowered.layer("conv") is net.layer("conv")
    assert any("not folded" in note and "'side'" in note for note in report.passes[-1].notes)
    inputs = random_inputs(net, seed=19)
    assert_same_outputs(evaluate(lowered, inputs), evaluate(net, inputs), "conv read twice")


def test_batchnorm_read_twice_does_not_merge_with_its_scale():
    text = input_layer(1, 2, 5, 5) + """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 3 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "bn" }
layer { name: "sc" type: "Scale" bottom: "bn" top: "sc" }
layer { name: "side" type: "ReLU" bottom: "bn" top: "side" }
"""
    net = bn_statistics(random_weights(build(text), seed=20), "bn", 4.0, seed=21)
    lowered, _ = lower(net)
    # bn folds into conv (its output's only reader); sc stays, as bn's output is read twice.
    assert types(lowered) == ["Convolution", "ChannelAffine", "ReLU"]
    assert lowered.layer("sc").type == "ChannelAffine"
    inputs = random_inputs(net, seed=22)
    assert_same_outputs(evaluate(lowered, inputs), evaluate(net, inputs), "BatchNorm read twice")


def test_batchnorm_with_batch_statistics_is_left_alone():
    text = input_layer(2, 3, 4, 4) + """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" batch_norm_param { use_global_stats: false } }
layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
"""
    net = random_weights(build(text), seed=23)
    lowered, report = lower(net)
    assert types(lowered) == ["Convolution", "BatchNorm", "ChannelAffine"]
    assert lowered.layer("bn") is net.layer("bn")
    assert any("use_global_stats is false" in note for note in report.passes[3].notes)


def test_fold_false_keeps_batchnorm_and_scale():
    net = random_weights(build(CONV_NET), seed=24)
    lowered, report = lower(net, fold=False)
    assert types(lowered) == ["Convolution", "BatchNorm", "Scale", "ReLU"]
    assert [r.name for r in report.passes] == ["remove_training_layers", "remove_split", "remove_dropout"]


def test_scale_over_several_axes_is_not_a_channel_affine():
    text = input_layer(2, 3, 4, 4) + """
layer { name: "sc" type: "Scale" bottom: "data" top: "sc" scale_param { num_axes: 2 } }
layer { name: "sc2" type: "Scale" bottom: "sc" top: "sc2" scale_param { axis: 2 } }
"""
    net = random_weights(build(text), seed=25)
    lowered = batchnorm_scale_to_affine(net)
    assert types(lowered) == ["Scale", "Scale"]


# ------------------------------------------------------------------------------ the cleanup passes


def test_dropout_is_bypassed_or_becomes_power_without_scale_train():
    text = input_layer(2, 6) + """
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1" inner_product_param { num_output: 5 } }
layer { name: "drop1" type: "Dropout" bottom: "ip1" top: "ip1" dropout_param { dropout_ratio: 0.3 scale_train: false } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param { num_output: 4 } }
layer { name: "drop2" type: "Dropout" bottom: "ip2" top: "ip2" dropout_param { dropout_ratio: 0.5 } }
"""
    net = random_weights(build(text), seed=26)
    lowered = checked(remove_dropout)(net)
    assert types(lowered) == ["InnerProduct", "Power", "InnerProduct"]
    power = lowered.layer("drop1").params
    assert (power.power, power.shift) == (1.0, 0.0) and power.scale == pytest.approx(0.7)
    assert [lowered.value_name(v) for v in lowered.outputs()] == ["ip2"]
    assert any("drop1" in note and "scale_train" in note for note in lowered.notes)
    inputs = random_inputs(net, seed=27)
    assert_same_outputs(evaluate(lowered, inputs), evaluate(net, inputs), "Dropout")


def test_chained_dropouts_and_splits_all_go():
    text = input_layer(2, 3) + """
layer { name: "d1" type: "Dropout" bottom: "data" top: "d1" }
layer { name: "d2" type: "Dropout" bottom: "d1" top: "d2" dropout_param { scale_train: false } }
layer { name: "d3" type: "Dropout" bottom: "d2" top: "d3" }
layer { name: "s1" type: "Split" bottom: "d3" top: "s1a" top: "s1b" }
layer { name: "s2" type: "Split" bottom: "s1a" top: "s2a" top: "s2b" }
layer { name: "r1" type: "ReLU" bottom: "s2a" top: "r1" }
layer { name: "r2" type: "ReLU" bottom: "s2b" top: "r2" }
layer { name: "r3" type: "ReLU" bottom: "s1b" top: "r3" }
"""
    net = build(text)
    lowered, _ = lower(net)
    assert types(lowered) == ["Power", "ReLU", "ReLU", "ReLU"]
    power = lowered.layer("d2")
    assert [str(v) for v in power.inputs] == ["data"]
    assert all(lowered.layer(r).inputs == power.outputs for r in ("r1", "r2", "r3"))
    inputs = random_inputs(net, seed=34)
    assert_same_outputs(evaluate(lowered, inputs), evaluate(net, inputs), "chained Dropout and Split")


def test_split_readers_read_its_input_and_unread_tops_stay_outputs():
    text = input_layer(1, 2, 3, 3) + """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "split" type: "Split" bottom: "conv" top: "a" top: "b" }
layer { name: "r1" type: "ReLU" bottom: "a" top: "r1" }
layer { name: "r2" type: "ReLU" bottom: "b" top: "r2" relu_param { negative_slope: 0.1 } }
layer { name: "copy" type: "Split" bottom: "r2" top: "r2_copy" top: "r2_kept" }
layer { name: "r3" type: "ReLU" bottom: "r2_copy" top: "r3" }
"""
    net = random_weights(build(text), seed=28)
    lowered = checked(remove_split)(net)
    assert "split" not in lowered
    assert lowered.layer("r1").inputs == lowered.layer("r2").inputs == net.layer("conv").outputs
    kept = lowered.layer("copy")        # r2_kept is read by no one: a net output, which a Split keeps giving
    assert [str(v) for v in kept.outputs] == ["r2_kept"] and kept.params.outputs == 1
    inputs = random_inputs(net, seed=29)
    assert_same_outputs(evaluate(lowered, inputs), evaluate(net, inputs), "Split")


TRAINING_NET = input_layer(2, 3, 5, 5) + """
layer { name: "labels" type: "Input" top: "label" input_param { shape { dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "side" type: "Convolution" bottom: "conv" top: "side" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "side_relu" type: "ReLU" bottom: "side" top: "side" }
layer { name: "mute" type: "Silence" bottom: "side" }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy" }
"""


def test_training_layers_silence_and_unread_labels_go_with_notes():
    net = random_weights(build(TRAINING_NET), seed=30)
    lowered, report = lower(net)
    assert types(lowered) == ["Convolution", "InnerProduct"]
    assert [lowered.value_name(v) for v in lowered.outputs()] == ["ip"]
    assert [i.value.blob for i in lowered.inputs] == ["data"]
    first = report.passes[0]
    assert first.name == "remove_training_layers"
    assert sorted(first.removed) == sorted([("loss", "SoftmaxWithLoss"), ("accuracy", "Accuracy"),
                                            ("mute", "Silence"), ("side", "Convolution"), ("side_relu", "ReLU")])
    for word in ("'loss'", "'accuracy'", "'mute'", "'side'", "'side_relu'", "'label'"):
        assert any(word in note for note in first.notes), word
        assert any(word in note for note in lowered.notes), word


def test_a_silenced_top_of_a_layer_that_stays_is_no_net_output():
    """A Slice whose second piece is silenced stays for its first: the Silence stays too, or that piece would
    become a net output Caffe does not have."""
    net = build(input_layer(2, 6, 4, 5) + """
layer { name: "slice" type: "Slice" bottom: "data" top: "a" top: "b" slice_param { slice_point: 2 } }
layer { name: "mute" type: "Silence" bottom: "b" }
layer { name: "relu" type: "ReLU" bottom: "a" top: "r" }
""")
    lowered, report = lower(net)
    assert [lowered.value_name(v) for v in lowered.outputs()] == ["r"] == [net.value_name(v) for v in net.outputs()]
    assert types(lowered) == ["Slice", "ReLU", "Silence"] and report.passes[0].removed == []


def test_a_kept_layer_reading_a_loss_is_an_error():
    text = input_layer(2, 3) + input_layer(2, top="label") + """
layer { name: "loss" type: "EuclideanLoss" bottom: "data" bottom: "data" top: "loss" }
layer { name: "twice" type: "Power" bottom: "loss" top: "twice" power_param { scale: 2 } }
"""
    with pytest.raises(GraphError, match="twice.*only training needs"):
        remove_training_layers(build(text))


@pytest.mark.corpus
@pytest.mark.parametrize("name, shape, output", [("mnist_lenet_train_test", (64, 1, 28, 28), "ip2"),
                                                  ("bvlc_alexnet_train_val", (10, 3, 227, 227), "fc8")])
def test_train_val_nets_become_their_deploy_view(name, shape, output):
    path = CORPUS / "bvlc_caffe" / f"{name}.prototxt"
    net = read_net(path, init="none", input_shape={"data": shape})
    lowered, report = lower(net)
    assert [lowered.value_name(v) for v in lowered.outputs()] == [output]
    assert [i.value.blob for i in lowered.inputs] == ["data"]
    assert "label" not in {v.blob for layer in lowered.layers() for v in layer.inputs}
    assert not any(layer.spec.training_only or layer.type == "Dropout" for layer in lowered.layers())


@pytest.mark.corpus
def test_resnet50_folds_every_batchnorm_and_scale():
    net = read_net(CORPUS / "resnet_kaiminghe" / "prototxt_ResNet-50-deploy.prototxt", init="random")
    lowered, report = lower(net)
    counts = {t: types(lowered).count(t) for t in ("BatchNorm", "Scale", "ChannelAffine", "Convolution")}
    assert counts == {"BatchNorm": 0, "Scale": 0, "ChannelAffine": 0, "Convolution": 53}
    assert all(layer.params.bias_term for layer in lowered.layers(type="Convolution"))
    assert len(lowered) == len(net) - 2 * 53
    assert [lowered.value_name(v) for v in lowered.outputs()] == ["prob"]
    json.dumps(report.as_dicts())
    assert "fold_affine_into_producer" in report.format()


# ---------------------------------------------------------------------------------------- pipeline


def test_report_lists_each_pass_and_is_json_data():
    net = random_weights(build(TRAINING_NET + BN_SCALE.format(x="conv", bias="true")
                               .replace('bottom: "conv" top: "conv"', 'bottom: "ip" top: "ip"')), seed=31)
    lowered, report = run_pipeline(net)
    assert isinstance(report, PassReport) and report.layers_in == len(net)
    data = json.loads(json.dumps(report.as_dicts()))
    assert [d["pass"] for d in data] == ["remove_training_layers", "remove_split", "remove_dropout",
                                        "batchnorm_scale_to_affine", "fold_affine_into_producer"]
    assert data[-1]["layers_after"] == len(lowered) == 2
    assert {"name": "sc", "type": "Scale"} in data[3]["removed"]
    text = report.format()
    for shown in ("remove_training_layers", "accuracy (Accuracy)", "bn (BatchNorm -> ChannelAffine)"):
        assert shown in text


def test_a_failing_pass_is_named_with_the_passes_before_it():
    def explode(net):
        raise GraphError("something is off")

    def crash(net):
        raise KeyError("bug")

    net = build(CONV_NET)
    with pytest.raises(GraphError, match=r"explode.*remove_split.*something is off"):
        run_pipeline(net, passes=[remove_split, explode])
    with pytest.raises(KeyError) as info:
        run_pipeline(net, passes=[remove_split, remove_dropout, crash])
    assert any("crash" in note and "remove_dropout" in note for note in info.value.__notes__)


def test_channel_affine_cannot_come_from_a_prototxt():
    text = input_layer(1, 2, 3, 3) + 'layer { name: "a" type: "ChannelAffine" bottom: "data" top: "a" }\n'
    with pytest.raises(UnsupportedError, match="internal"):
        build(text)


def test_passes_do_not_touch_weights_of_their_input():
    net = bn_statistics(random_weights(build(CONV_NET), seed=32), "bn", 2.0, seed=33)
    saved = {layer.name: copy.deepcopy(layer.weights) for layer in net.layers()}
    fold_affine_into_producer(batchnorm_scale_to_affine(net))
    for layer in net.layers():
        for a, b in zip(layer.weights, saved[layer.name]):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------ property

@st.composite
def conv_bn_nets(draw):
    deconv = draw(st.booleans())
    group = draw(st.sampled_from([1, 2]))
    c_in = group * draw(st.integers(1, 3))
    c_out = group * draw(st.integers(1, 3))
    kernel, stride, pad = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 1))
    size = draw(st.integers(kernel, 6))
    if not deconv and (size + 2 * pad - kernel) < 0:
        pad = 0
    if deconv and stride * (size - 1) + kernel - 2 * pad <= 0:
        pad = 0
    kind = "Deconvolution" if deconv else "Convolution"
    text = input_layer(2, c_in, size, size) + f"""
layer {{ name: "conv" type: "{kind}" bottom: "data" top: "conv"
        convolution_param {{ num_output: {c_out} kernel_size: {kernel} stride: {stride} pad: {pad} group: {group}
                             bias_term: {str(draw(st.booleans())).lower()} }} }}
layer {{ name: "bn" type: "BatchNorm" bottom: "conv" top: "conv"
        batch_norm_param {{ eps: {draw(st.sampled_from([1e-5, 1e-3, 0.1]))} }} }}
"""
    if draw(st.booleans()):
        bias = str(draw(st.booleans())).lower()
        text += f'layer {{ name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param {{ bias_term: {bias} }} }}\n'

    factor = draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0.05, 20.0)))
    mean_scale = draw(st.floats(0.0, 10.0))
    return text, factor, mean_scale, draw(st.integers(0, 2 ** 16))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_bn_nets())
def test_folding_keeps_outputs_for_random_statistics_and_weights(case):
    text, factor, mean_scale, seed = case
    net = random_weights(build(text), seed=seed)
    rng = np.random.default_rng(seed)
    channels = net.layer("bn").params.channels
    mean, var = rng.normal(0, mean_scale, channels), rng.uniform(0.01, 5.0, channels)
    net = with_weights(net, "bn", stored_statistics(mean, var, factor))
    lowered, _ = lower(net)
    assert {"BatchNorm", "Scale", "ChannelAffine"}.isdisjoint(types(lowered))
    inputs = random_inputs(net, seed=seed)
    assert_same_outputs(evaluate(lowered, inputs), evaluate(net, inputs), text)
