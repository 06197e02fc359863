"""The long tail of layer types (forks' and rarer BVLC layers): onnxruntime and our torch module against
OpenCV dnn where it computes what Caffe does, against NumPy transcriptions of the Caffe sources
(reference_layers.py) everywhere; the specs' refusals; corpus nets that use these layers."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import reference_layers as ref
import torch
from support import CORPUS, assert_close, opencv_forward, random_inputs

from protodef import load, save_pytorch, to_onnx
from protodef.api import read_net
from protodef.errors import SchemaError, ShapeError, UnsupportedError
from protodef.weights import write_caffemodel

RNG_SEED = 7


# ------------------------------------------------------------------------------------------ helpers

def inputs_text(**shapes: tuple[int, ...]) -> str:
    return "".join(f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ '
                   + " ".join(f"dim: {d}" for d in shape) + " } } }\n" for name, shape in shapes.items())


def layer_text(name: str, kind: str, bottoms, params: str = "", top: str | None = None) -> str:
    bottoms = [bottoms] if isinstance(bottoms, str) else bottoms
    return (f'layer {{ name: "{name}" type: "{kind}" ' + " ".join(f'bottom: "{b}"' for b in bottoms)
            + f' top: "{top or name}" {params} }}\n')


def statistics_blobs(layer, rng):
    """The forks' BN blobs with a positive variance (random_weights draws any sign)."""
    c = layer.params.channels
    blobs = [rng.normal(1, 0.3, (1, c, 1, 1)), rng.normal(0, 0.3, (1, c, 1, 1))]
    if layer.params.fork == "pspnet":
        blobs += [rng.normal(0, 0.5, (1, c, 1, 1)), rng.uniform(0.5, 1.5, (1, c, 1, 1))]
    return [b.astype(np.float32) for b in blobs]


def make_net(tmp_path: Path, text: str, name: str = "net", **read_options):
    """Write `text` and a caffemodel of seeded random weights (BN statistics kept valid); return
    (prototxt, caffemodel or "" when no layer has weights, Net read back through it)."""
    prototxt = tmp_path / f"{name}.prototxt"
    prototxt.write_text(text)
    net = read_net(prototxt, init="random", seed=RNG_SEED, **read_options)
    rng = np.random.default_rng(RNG_SEED)
    blobs = [(layer.caffe_name, layer.type,
              statistics_blobs(layer, rng) if layer.type == "BN" else list(layer.weights))
             for layer in net.layers() if layer.weights]
    if not blobs:
        return prototxt, "", read_net(prototxt, init="none", **read_options)
    caffemodel = tmp_path / f"{name}.caffemodel"
    write_caffemodel(caffemodel, blobs)
    return prototxt, caffemodel, read_net(prototxt, caffemodel, **read_options)


def run_onnx(net, inputs, **options) -> dict[str, np.ndarray]:
    model = to_onnx(net, **options)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {k: v for k, v in inputs.items() if k in wanted})))


def run_torch(net, inputs, script: bool = False) -> dict[str, np.ndarray]:
    module = load(net)
    names, arguments = module.output_names, [torch.from_numpy(inputs[n]) for n in module.input_names]
    if script:
        module = torch.jit.script(module)
    with torch.no_grad():
        outputs = module(*arguments)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return {n: t.detach().numpy() for n, t in zip(names, outputs)}


def check_backends(net, inputs, expected: dict[str, np.ndarray], what: str, script: bool = False) -> None:
    """onnxruntime and torch both equal `expected` on every output it names."""
    for backend, outputs in (("onnxruntime", run_onnx(net, inputs)), ("torch", run_torch(net, inputs, script))):
        for name, value in expected.items():
            assert_close(outputs[name], value, f"{what}: {backend} {name}")


def first_layer(net, kind: str):
    return next(layer for layer in net.layers() if layer.type == kind)


# ------------------------------------------------------------------------------------------ Interp

INTERP_OPENCV = {"size": "height: 9 width: 8", "zoom": "zoom_factor: 3", "same_size": "height: 7 width: 9",
                 "one_row": "height: 1 width: 7"}
INTERP_CAFFE_ONLY = {"shrink": "shrink_factor: 2", "shrink_then_zoom": "zoom_factor: 3 shrink_factor: 2",
                     "crop": "zoom_factor: 2 pad_beg: -1 pad_end: -2"}


@pytest.mark.parametrize("params", [pytest.param(v, id=k) for k, v in {**INTERP_OPENCV, **INTERP_CAFFE_ONLY}.items()])
def test_interp(tmp_path, params):
    text = inputs_text(data=(2, 3, 7, 9)) + layer_text("interp", "Interp", "data", f"interp_param {{ {params} }}")
    prototxt, caffemodel, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    p = first_layer(net, "Interp").params
    expected = {"interp": ref.interp(inputs["data"], p.size, p.crop)}
    check_backends(net, inputs, expected, params)
    if params in INTERP_OPENCV.values():   # OpenCV ignores pad_beg/pad_end and has no shrink-then-zoom
        assert_close(opencv_forward(net, prototxt, caffemodel, inputs)["interp"], expected["interp"], "OpenCV")


def test_interp_corpus_net(tmp_path):
    text = (CORPUS / "opencv_dnn_testdata" / "layer_interp.prototxt").read_text()
    prototxt, caffemodel, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    expected = opencv_forward(net, prototxt, caffemodel, inputs)
    assert_close(ref.interp(ref.interp(inputs["input"], (9, 8)), (17, 15)), expected["output"], "reference")
    check_backends(net, inputs, expected, "layer_interp")


# ------------------------------------------------------------------------------------------ Upsample

UNPOOL_CASES = {
    "segnet_scale": ((2, 3, 8, 10), 2, 2, "scale: 2"),
    "pad_out": ((1, 2, 7, 9), 2, 2, "scale: 2 pad_out_h: true"),
    "explicit_size": ((1, 2, 8, 8), 2, 2, "upsample_h: 8 upsample_w: 8"),
    "overlapping_windows": ((1, 2, 7, 7), 3, 2, "upsample_h: 7 upsample_w: 7"),
}


def unpool_text(shape, kernel, stride, params) -> str:
    return (inputs_text(data=shape)
            + f'layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask" pooling_param '
              f'{{ pool: MAX kernel_size: {kernel} stride: {stride} }} }}\n'
            + layer_text("shift", "Power", "pool", "power_param { scale: 2 shift: 1 }")
            + layer_text("up", "Upsample", ["shift", "mask"], f"upsample_param {{ {params} }}"))


@pytest.mark.parametrize("case", list(UNPOOL_CASES))
def test_upsample_unpool(tmp_path, case):
    shape, kernel, stride, params = UNPOOL_CASES[case]
    _, _, net = make_net(tmp_path, unpool_text(shape, kernel, stride, params))
    inputs = random_inputs(net)
    pool = net.layer("pool")
    pooled, mask = ref.caffe_pool(inputs["data"], "MAX", pool.params.kernel, pool.params.stride, pool.params.pad,
                                  net.shape(pool.outputs[0])[2:])
    if case == "overlapping_windows":   # the case this tests: one position named by two windows
        assert len(np.unique(mask[0, 0])) < mask[0, 0].size
    expected = {"up": ref.upsample_unpool(pooled * 2 + 1, mask, first_layer(net, "Upsample").params.size)}
    check_backends(net, inputs, expected, case)


def test_upsample_overlapping_mask_needs_opset_18(tmp_path):
    _, _, net = make_net(tmp_path, unpool_text(*UNPOOL_CASES["overlapping_windows"]))
    with pytest.raises(UnsupportedError, match="opset 18"):
        to_onnx(net, opset=13)
    _, _, plain = make_net(tmp_path, unpool_text(*UNPOOL_CASES["segnet_scale"]), name="plain")
    inputs = random_inputs(plain)
    assert_close(run_onnx(plain, inputs, opset=13)["up"], run_onnx(plain, inputs)["up"], "opset 13")


@pytest.mark.parametrize("scale, shape", [(2, (1, 3, 4, 5)), (3, (2, 2, 3)), (1, (1, 1, 2, 2))])
def test_upsample_nearest(tmp_path, scale, shape):
    text = inputs_text(data=shape) + layer_text("up", "Upsample", "data", f"upsample_param {{ scale: {scale} }}")
    _, _, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    check_backends(net, inputs, {"up": ref.upsample_nearest(inputs["data"], scale)}, f"scale {scale}")


# ------------------------------------------------------------------------------------------ activations

ACTIVATIONS = {   # name: (type, params, reference, OpenCV computes the same)
    "relu6": ("ReLU6", "", lambda x: ref.relu6(x), True),
    "relu6_slope": ("ReLU6", "relu6_param { negative_slope: 0.1 }", lambda x: ref.relu6(x, 0.1), False),
    "clip": ("Clip", "clip_param { min: -1 max: 2 }", lambda x: ref.clip(x, -1, 2), False),
    "clip_inverted": ("Clip", "clip_param { min: 2 max: -1 }", lambda x: ref.clip(x, 2, -1), False),
    "swish": ("Swish", "", lambda x: ref.swish(x, 1.0), True),
    "swish_beta": ("Swish", "swish_param { beta: 0.5 }", lambda x: ref.swish(x, 0.5), False),
    "mish": ("Mish", "", ref.mish, True),
}


def test_activations(tmp_path):
    """One net, one output per variant (inputs spread over [-12, 12] to reach ReLU6's and Clip's limits)."""
    text = inputs_text(data=(2, 3, 4, 5)) + "".join(
        layer_text(name, kind, "data", params) for name, (kind, params, _, _) in ACTIVATIONS.items())
    prototxt, caffemodel, net = make_net(tmp_path, text)
    inputs = {"data": (random_inputs(net)["data"] * 4).astype(np.float32)}
    expected = {name: function(inputs["data"]) for name, (_, _, function, _) in ACTIVATIONS.items()}
    check_backends(net, inputs, expected, "activations")
    # OpenCV has ReLU6, Swish and Mish but not Clip; its ReLU6 and Swish take no slope or beta.
    opencv_text = inputs_text(data=(2, 3, 4, 5)) + "".join(
        layer_text(name, kind, "data", params) for name, (kind, params, _, same) in ACTIVATIONS.items() if same)
    prototxt.write_text(opencv_text)
    opencv_net = read_net(prototxt, init="none")
    for name, value in opencv_forward(opencv_net, prototxt, "", inputs).items():
        assert_close(value, expected[name], f"OpenCV {name}")


# ------------------------------------------------------------------------------------------ ShuffleChannel, Axpy, Tile

@pytest.mark.parametrize("group, shape, opencv", [(3, (2, 6, 4, 5), True), (2, (2, 6, 3), False),
                                                  (1, (1, 4, 2, 2), True)])
def test_shuffle_channel(tmp_path, group, shape, opencv):
    text = inputs_text(data=shape) + layer_text("shuffle", "ShuffleChannel", "data",
                                                f"shuffle_channel_param {{ group: {group} }}")
    prototxt, caffemodel, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    expected = {"shuffle": ref.shuffle_channel(inputs["data"], group)}
    check_backends(net, inputs, expected, f"group {group}")
    if opencv:
        assert_close(opencv_forward(net, prototxt, caffemodel, inputs)["shuffle"], expected["shuffle"], "OpenCV")


def swap_axpy_operands(text: str) -> str:
    """OpenCV computes Axpy as a * bottom[2] + bottom[1] (its importer scales the third input); SENet's Caffe
    computes a * bottom[1] + bottom[2]. Swapping the two gives OpenCV the net Caffe means."""
    def swap(match: re.Match) -> str:
        block = match.group(0)
        _, x, y = re.findall(r'bottom:\s*"([^"]+)"', block)
        return (block.replace(f'bottom: "{x}"', "\0").replace(f'bottom: "{y}"', f'bottom: "{x}"')
                .replace("\0", f'bottom: "{y}"'))
    return re.sub(r'layer \{[^{}]*type: "Axpy"[^{}]*\}', swap, text)


@pytest.mark.parametrize("factor_shape", [(1, 3, 1, 1), (2, 3, 1, 1), (2, 3)])
def test_axpy(tmp_path, factor_shape):
    n = factor_shape[0]
    text = inputs_text(a=factor_shape, x=(n, 3, 4, 5), y=(n, 3, 4, 5)) + layer_text("axpy", "Axpy", ["a", "x", "y"])
    prototxt, caffemodel, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    expected = {"axpy": ref.axpy(inputs["a"], inputs["x"], inputs["y"])}
    check_backends(net, inputs, expected, f"a {factor_shape}")
    if factor_shape == (1, 3, 1, 1):   # OpenCV's Axpy runs with batch 1 only
        swapped = tmp_path / "swapped.prototxt"
        swapped.write_text(swap_axpy_operands(text))
        assert_close(opencv_forward(net, swapped, caffemodel, inputs)["axpy"], expected["axpy"], "OpenCV")


def test_tile(tmp_path):
    cases = {"tile_axis1": (1, 3), "tile_last": (-1, 2), "tile_axis0": (0, 2)}
    text = inputs_text(data=(2, 3, 4)) + "".join(
        layer_text(name, "Tile", "data", f"tile_param {{ axis: {axis} tiles: {tiles} }}")
        for name, (axis, tiles) in cases.items())
    _, _, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    check_backends(net, inputs, {name: ref.tile(inputs["data"], axis % 3, tiles)
                                 for name, (axis, tiles) in cases.items()}, "Tile")


# ------------------------------------------------------------------------------ Reduction, MVN, Embed, Parameter

def test_reduction(tmp_path):
    cases = {f"{op.lower()}_{axis % 4}": (op, axis) for op in ("SUM", "ASUM", "SUMSQ", "MEAN") for axis in (0, 1, -1)}
    text = inputs_text(data=(2, 3, 4, 5)) + "".join(
        layer_text(name, "Reduction", "data", f"reduction_param {{ operation: {op} axis: {axis} coeff: 0.5 }}")
        for name, (op, axis) in cases.items())
    _, _, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    expected = {name: ref.reduction(inputs["data"], op, axis % 4, 0.5) for name, (op, axis) in cases.items()}
    assert expected["sum_0"].shape == ()
    check_backends(net, inputs, expected, "Reduction")


MVN_CASES = {"variance": (True, False, 0.1), "variance_across": (True, True, 0.1), "mean_only": (False, False, 0.1),
             "mean_across": (False, True, 0.1), "default_eps": (True, False, 1e-9)}


def test_mvn(tmp_path):
    text = inputs_text(data=(2, 3, 4, 5)) + "".join(
        layer_text(name, "MVN", "data", f"mvn_param {{ normalize_variance: {str(nv).lower()} "
                                        f"across_channels: {str(ac).lower()} eps: {eps} }}")
        for name, (nv, ac, eps) in MVN_CASES.items())
    prototxt, caffemodel, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    expected = {name: ref.mvn(inputs["data"], *case) for name, case in MVN_CASES.items()}
    check_backends(net, inputs, expected, "MVN")
    # OpenCV divides by sqrt(var + eps), Caffe by sqrt(var) + eps: they agree only where eps does not count.
    opencv = opencv_forward(net, prototxt, caffemodel, inputs)
    for name in ("mean_only", "mean_across", "default_eps"):
        assert_close(opencv[name], expected[name], f"OpenCV {name}")


@pytest.mark.parametrize("shape, across", [((2, 3), False), ((2, 3), True), ((2, 3, 6), False)])
def test_mvn_few_axes(tmp_path, shape, across):
    text = inputs_text(data=shape) + layer_text("mvn", "MVN", "data",
                                                f"mvn_param {{ across_channels: {str(across).lower()} }}")
    _, _, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    check_backends(net, inputs, {"mvn": ref.mvn(inputs["data"], True, across, 1e-9)}, f"MVN {shape}")


def test_mvn_corpus_net(tmp_path):
    text = (CORPUS / "opencv_dnn_testdata" / "layer_mvn.prototxt").read_text()
    _, _, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    check_backends(net, inputs, {"output": ref.mvn(inputs["input"], True, False, np.float32(0.1))}, "layer_mvn")


@pytest.mark.parametrize("bias", [True, False])
def test_embed(tmp_path, bias):
    text = inputs_text(data=(2, 3)) + layer_text(
        "embed", "Embed", "data", f"embed_param {{ num_output: 4 input_dim: 7 bias_term: {str(bias).lower()} }}")
    _, _, net = make_net(tmp_path, text)
    inputs = {"data": np.random.default_rng(1).integers(0, 7, (2, 3)).astype(np.float32)}
    weights = first_layer(net, "Embed").weights
    check_backends(net, inputs, {"embed": ref.embed(inputs["data"], weights[0], weights[1] if bias else None)},
                   "Embed")


def test_parameter(tmp_path):
    text = 'layer { name: "blob" type: "Parameter" top: "blob" parameter_param { shape { dim: 2 dim: 3 } } }\n'
    _, _, net = make_net(tmp_path, text)
    check_backends(net, {}, {"blob": first_layer(net, "Parameter").weights[0]}, "Parameter")


# ------------------------------------------------------------------------------------------ BN

BN_CASES = {   # name: (bn_param and param entries, phase, fork, batch statistics)
    "segnet_inference": ("bn_param { bn_mode: INFERENCE }", "TEST", "segnet", False),
    "segnet_learn": ("bn_param { bn_mode: LEARN }", "TEST", "segnet", True),
    "segnet_by_params": ("param { lr_mult: 1 } param { lr_mult: 1 }", "TEST", "segnet", True),
    "pspnet_frozen": ("bn_param { frozen: true momentum: 0.95 }", "TEST", "pspnet", False),
    "pspnet_test_phase": ("bn_param { eps: 0.001 }", "TEST", "pspnet", False),
    "pspnet_train_phase": ("bn_param { eps: 0.001 }", "TRAIN", "pspnet", True),
    "pspnet_frozen_train": ("bn_param { frozen: true eps: 0.01 }", "TRAIN", "pspnet", False),
    "pspnet_by_params": ("param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 0 } param { lr_mult: 0 }",
                         "TEST", "pspnet", False),
}


@pytest.mark.parametrize("case", list(BN_CASES))
def test_bn(tmp_path, case):
    params, phase, fork, batch = BN_CASES[case]
    text = inputs_text(data=(2, 3, 4, 5)) + layer_text("bn", "BN", "data", params)
    _, _, net = make_net(tmp_path, text, phase=phase)
    p, weights = first_layer(net, "BN").params, first_layer(net, "BN").weights
    assert (p.fork, p.batch_statistics) == (fork, batch)
    inputs = random_inputs(net)
    x = inputs["data"]
    expected = ref.bn_segnet(x, *weights, batch) if fork == "segnet" else ref.bn_pspnet(x, *weights, p.eps, batch)
    check_backends(net, inputs, {"bn": expected}, case)
    assert_close(run_onnx(net, inputs, fold=False)["bn"], expected, f"{case} unfolded")


# ------------------------------------------------------------------------------------------ SPP, ROIPooling

@pytest.mark.parametrize("shape, height, method", [((2, 3, 8, 8), 3, "MAX"), ((1, 2, 7, 9), 3, "AVE"),
                                                   ((1, 2, 5, 6), 1, "MAX"), ((1, 2, 13, 11), 3, "AVE"),
                                                   ((1, 2, 6, 6), 2, "STOCHASTIC")])
def test_spp(tmp_path, shape, height, method):
    text = inputs_text(data=shape) + layer_text("spp", "SPP", "data",
                                                f"spp_param {{ pyramid_height: {height} pool: {method} }}")
    _, _, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    if method == "STOCHASTIC":   # test-phase stochastic pooling weighs by activations, which are >= 0
        inputs["data"] = np.abs(inputs["data"])
    check_backends(net, inputs, {"spp": ref.spp(inputs["data"], height, method)}, f"SPP {method} {height}")


def roi_inputs(rng):
    rois = np.zeros((100, 5), np.float32)
    rois[:, 0] = rng.integers(0, 4, 100)
    rois[:, 1:] = rng.integers(-10, 30, (100, 4))
    rois[:6, 1:] = [[0.5, 1.5, 2.5, 3.5], [-0.5, -1.5, 16.5, 40], [7, 9, 3, 2], [2.49, 2.51, 9.5, 10.5],
                    [16, 20, 16, 20], [-30, -30, -20, -25]]   # halves, inverted and outside boxes
    return {"input": rng.standard_normal((4, 3, 21, 17)).astype(np.float32), "rois": rois}


@pytest.mark.parametrize("scale", ["0.0625", "0.5", "1"])
def test_roi_pooling(tmp_path, scale):
    text = (CORPUS / "opencv_dnn_testdata" / "net_roi_pooling.prototxt").read_text().replace("0.0625", scale)
    prototxt, caffemodel, net = make_net(tmp_path, text)
    inputs = roi_inputs(np.random.default_rng(3))
    expected = {"output": ref.roi_pooling(inputs["input"], inputs["rois"], (6, 6), float(scale))}
    check_backends(net, inputs, expected, f"ROIPooling scale {scale}")
    assert_close(opencv_forward(net, prototxt, caffemodel, inputs)["output"], expected["output"], "OpenCV")
    if scale == "1":   # a symbolic batch also frees the roi count: fewer rois on fewer images
        fewer = {"input": inputs["input"][:2], "rois": inputs["rois"][inputs["rois"][:, 0] < 2][:37]}
        assert_close(run_onnx(net, fewer, dynamic_batch=True)["output"],
                     ref.roi_pooling(fewer["input"], fewer["rois"], (6, 6), 1.0), "dynamic batch")


# ------------------------------------------------------------------------------------------ Accum, Correlation

ACCUM_CASES = {   # name: (accum_param, input shapes, OpenCV computes the same)
    "largest": ("", [(1, 2, 2, 3), (1, 3, 8, 12)], True),
    "reference": ("have_reference: true", [(1, 2, 3, 4), (1, 1, 5, 7), (1, 9, 6, 9)], True),
    "divisible": ("size_divisible_by: 8", [(1, 2, 3, 4), (1, 1, 5, 7)], False),
    "top_size": ("top_height: 9 top_width: 11", [(1, 2, 3, 4), (1, 1, 5, 7)], True),
    "batch2": ("", [(2, 2, 3, 4), (2, 1, 5, 7)], False),   # OpenCV's Accum reads past the first sample
}


@pytest.mark.parametrize("case", list(ACCUM_CASES))
def test_accum(tmp_path, case):
    params, shapes, opencv = ACCUM_CASES[case]
    names = [f"in{i}" for i in range(len(shapes))]
    text = inputs_text(**dict(zip(names, shapes))) + layer_text("accum", "Accum", names,
                                                                f"accum_param {{ {params} }}")
    prototxt, caffemodel, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    p = first_layer(net, "Accum").params
    expected = {"accum": ref.accum([inputs[n] for n in names], p.size, p.have_reference)}
    check_backends(net, inputs, expected, case)
    if opencv:   # OpenCV ignores size_divisible_by
        assert_close(opencv_forward(net, prototxt, caffemodel, inputs)["accum"], expected["accum"], "OpenCV")


CORRELATION_CASES = {   # name: (correlation_param, shape, OpenCV computes the same)
    "corpus": ("pad: 1 kernel_size: 1 max_displacement: 1 stride_1: 1 stride_2: 1", (1, 3, 2, 2), True),
    "kernel3_stride2": ("pad: 4 kernel_size: 3 max_displacement: 4 stride_1: 1 stride_2: 2", (2, 3, 7, 8), True),
    "stride1_2": ("pad: 2 kernel_size: 1 max_displacement: 2 stride_1: 2 stride_2: 1", (1, 4, 9, 9), True),
    "subtract": ("pad: 3 kernel_size: 3 max_displacement: 2 stride_1: 2 correlation_type: SUBTRACT", (1, 2, 8, 7),
                 False),
}


@pytest.mark.parametrize("case", list(CORRELATION_CASES))
def test_correlation(tmp_path, case):
    params, shape, opencv = CORRELATION_CASES[case]
    text = inputs_text(a=shape, b=shape) + layer_text("corr", "Correlation", ["a", "b"],
                                                       f"correlation_param {{ {params} }}")
    prototxt, caffemodel, net = make_net(tmp_path, text)
    inputs = random_inputs(net)
    p = first_layer(net, "Correlation").params
    expected = {"corr": ref.correlation(inputs["a"], inputs["b"], p.kernel_size, p.max_displacement, p.pad,
                                        p.stride_1, p.stride_2, p.subtract)}
    check_backends(net, inputs, expected, case)
    if opencv:   # OpenCV only multiplies
        assert_close(opencv_forward(net, prototxt, caffemodel, inputs)["corr"], expected["corr"], "OpenCV")


@pytest.mark.parametrize("name", ["accum.prototxt", "correlation.prototxt"])
def test_flownet_corpus_nets(tmp_path, name):
    prototxt, caffemodel, net = make_net(tmp_path, (CORPUS / "opencv_dnn_testdata" / name).read_text())
    inputs = random_inputs(net)
    check_backends(net, inputs, opencv_forward(net, prototxt, caffemodel, inputs), name)


# ------------------------------------------------------------------------------------------ batch and export forms

def test_batch_free_forms(tmp_path):
    """A net of the batch-agnostic layers: exported to ONNX with a symbolic batch and run at another batch size
    (opset 13 and the newest); the torch module under torch.jit.script, torch.export and as generated source
    (the last bit for bit)."""
    text = (inputs_text(data=(2, 6, 5, 7), mask_source=(2, 6, 8, 10))
            + layer_text("interp", "Interp", "data", "interp_param { zoom_factor: 2 pad_beg: -1 }")
            + layer_text("shuffle", "ShuffleChannel", "interp", "shuffle_channel_param { group: 3 }")
            + layer_text("mvn", "MVN", "shuffle", "mvn_param { eps: 0.01 }")
            + layer_text("near", "Upsample", "mvn", "upsample_param { scale: 2 }")
            + layer_text("bn", "BN", "near", "bn_param { bn_mode: LEARN }")
            + 'layer { name: "pool" type: "Pooling" bottom: "mask_source" top: "pool" top: "mask" '
              'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
            + layer_text("unpool", "Upsample", ["pool", "mask"], "upsample_param { scale: 2 }")
            + layer_text("spp", "SPP", "unpool", "spp_param { pyramid_height: 2 pool: AVE }")
            + layer_text("corr", "Correlation", ["unpool", "mask_source"],
                         "correlation_param { pad: 1 kernel_size: 3 max_displacement: 1 }")
            + layer_text("accum", "Accum", ["data", "corr"], "accum_param { have_reference: true }"))
    _, _, net = make_net(tmp_path, text)
    bn = first_layer(net, "BN").weights

    def expected(inputs):
        p = first_layer(net, "Interp").params
        y = ref.interp(inputs["data"], p.size, p.crop)
        y = ref.upsample_nearest(ref.mvn(ref.shuffle_channel(y, 3), True, False, np.float32(0.01)), 2)
        x = inputs["mask_source"]
        pooled, mask = ref.caffe_pool(x, "MAX", (2, 2), (2, 2), (0, 0), (4, 5))
        unpooled = ref.upsample_unpool(pooled, mask, (8, 10))
        correlated = ref.correlation(unpooled, x, 3, 1, 1, 1, 1)
        return {"bn": ref.bn_segnet(y, *bn, True), "spp": ref.spp(unpooled, 2, "AVE"),
                "accum": ref.accum([inputs["data"], correlated], correlated.shape[2:], True)}

    inputs = random_inputs(net)
    check_backends(net, inputs, expected(inputs), "batch 2", script=True)
    rng = np.random.default_rng(5)
    other = {"data": rng.standard_normal((3, 6, 5, 7)).astype(np.float32),
             "mask_source": rng.standard_normal((3, 6, 8, 10)).astype(np.float32)}
    for opset in (13, None):
        outputs = run_onnx(net, other, dynamic_batch=True, opset=opset)
        for name, value in expected(other).items():
            assert_close(outputs[name], value, f"batch 3, opset {opset}: {name}")
    graph_outputs = run_torch(net, inputs)
    save_pytorch(net, tmp_path / "longtail.pt2", form="export")
    exported = torch.export.load(tmp_path / "longtail.pt2").module()
    names = load(net).output_names
    with torch.no_grad():
        results = exported(*(torch.from_numpy(other[n]) for n in load(net).input_names))
    for name, value in zip(names, results):
        assert_close(value.numpy(), expected(other)[name], f"torch.export at batch 3: {name}")
    save_pytorch(net, tmp_path / "longtail.py")
    namespace = {"__file__": str(tmp_path / "longtail.py"), "__name__": "generated_longtail"}
    exec(compile((tmp_path / "longtail.py").read_text(), "longtail.py", "exec"), namespace)
    generated = namespace["load_model"]()
    with torch.no_grad():
        results = generated(*(torch.from_numpy(inputs[n]) for n in load(net).input_names))
    for name, value in zip(names, results):
        assert np.array_equal(value.numpy(), graph_outputs[name]), f"generated source differs: {name}"


# ------------------------------------------------------------------------------------------ refusals

REFUSALS = {   # name: (layer text on a (1, 4, 6, 6) input "data", error, message fragment)
    "interp_positive_pad": (layer_text("l", "Interp", "data", "interp_param { zoom_factor: 2 pad_beg: 1 }"),
                            SchemaError, "only crops"),
    "interp_no_size": (layer_text("l", "Interp", "data", "interp_param { height: 4 }"), SchemaError,
                       "zoom_factor, shrink_factor"),
    "upsample_mask_shape": (layer_text("l", "Upsample", ["data", "other"]), ShapeError, "mask input"),
    "upsample_scale_and_scale_h": (layer_text("l", "Upsample", ["data", "data"],
                                              "upsample_param { scale: 2 scale_h: 2 scale_w: 2 }"),
                                   SchemaError, "scale_h"),
    "upsample_height_only": (layer_text("l", "Upsample", ["data", "data"], "upsample_param { upsample_h: 12 }"),
                             SchemaError, "both upsample_h and upsample_w"),
    "upsample_nearest_pad_out": (layer_text("l", "Upsample", "data", "upsample_param { scale: 2 pad_out_h: true }"),
                                 SchemaError, "pad_out_h"),
    "bn_mixed_forks": (layer_text("l", "BN", "data", "bn_param { bn_mode: INFERENCE frozen: true }"), SchemaError,
                       "mixes"),
    "bn_unknown_fork": (layer_text("l", "BN", "data"), SchemaError, "which fork"),
    "clip_without_limits": (layer_text("l", "Clip", "data"), SchemaError, "min and max"),
    "relu6_relu_param": (layer_text("l", "ReLU6", "data", "relu_param { negative_slope: 0.1 }"), SchemaError,
                         "relu6_param"),
    "shuffle_indivisible": (layer_text("l", "ShuffleChannel", "data", "shuffle_channel_param { group: 3 }"),
                            ShapeError, "divisible"),
    "spp_too_many_levels": (layer_text("l", "SPP", "data", "spp_param { pyramid_height: 4 }"), ShapeError,
                            "too small"),
    "tile_without_tiles": (layer_text("l", "Tile", "data", "tile_param { axis: 1 }"), SchemaError, "tiles"),
    "correlation_even_kernel": (layer_text("l", "Correlation", ["data", "data"],
                                           "correlation_param { kernel_size: 2 max_displacement: 1 }"),
                                SchemaError, "odd"),
    "accum_one_pixel": (layer_text("l", "Accum", "one"), ShapeError, "at least 2"),
    "roi_without_size": (layer_text("l", "ROIPooling", ["data", "rois"]), SchemaError, "pooled_h"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals(tmp_path, case):
    text, error, fragment = REFUSALS[case]
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(inputs_text(data=(1, 4, 6, 6), other=(1, 4, 3, 3), one=(1, 2, 1, 5), rois=(3, 5)) + text)
    with pytest.raises(error, match=fragment) as raised:
        read_net(prototxt, init="none")
    assert raised.value.layer_name == "l" and "net.prototxt:" in str(raised.value)


# ------------------------------------------------------------------------------------------ corpus nets

def test_shufflenet(tmp_path):
    path = CORPUS / "shufflenet" / "shufflenet_1x_g3_deploy.prototxt"
    prototxt, caffemodel, net = make_net(tmp_path, path.read_text(), input_shape={"data": (1, 3, 64, 64)})
    assert len(net.layers(type="ShuffleChannel")) == 15
    inputs = random_inputs(net)
    check_backends(net, inputs, opencv_forward(net, prototxt, caffemodel, inputs), "ShuffleNet")


def test_se_resnet_stage2(tmp_path):
    """SE-ResNet-50 up to its second stage (three Axpy blocks) against OpenCV given SENet's operand order."""
    text = (CORPUS / "senet" / "SE-ResNet-50.prototxt").read_text()
    cut = text.index('name: "conv3_1_1x1_reduce"')
    text = text[:text.rindex("layer {", 0, cut)]
    prototxt, caffemodel, net = make_net(tmp_path, text)
    assert len(net.layers(type="Axpy")) == 3
    inputs = random_inputs(net)
    swapped = tmp_path / "swapped.prototxt"
    swapped.write_text(swap_axpy_operands(text))
    check_backends(net, inputs, opencv_forward(net, swapped, caffemodel, inputs), "SE-ResNet-50 stage 2")


@pytest.mark.parametrize("path, shapes", [
    ("enet/enet_deploy_final.prototxt", {"data": (1, 3, 64, 128)}),
    # H / 8 odd: pool4 rounds up and pad_out_h takes the extra row back off, as at SegNet's 360 x 480
    ("segnet/segnet_basic_train.prototxt", {"data": (1, 3, 40, 48), "label": (1, 1, 40, 48)}),
])
def test_segmentation_nets(tmp_path, path, shapes):
    """ENet (BN INFERENCE, unpooling) and SegNet-basic (BN LEARN, unpooling with pad_out_h): onnxruntime
    against torch (OpenCV has neither BN nor SegNet's Upsample)."""
    _, _, net = make_net(tmp_path, (CORPUS / path).read_text(), input_shape=shapes)
    assert net.layers(type="BN") and net.layers(type="Upsample")
    inputs = random_inputs(net)
    onnx_outputs, torch_outputs = run_onnx(net, inputs), run_torch(net, inputs)
    assert onnx_outputs.keys() == torch_outputs.keys()
    for name, value in onnx_outputs.items():
        assert np.abs(value).max() > 0.1
        assert_close(torch_outputs[name], value, f"{path}: {name}")


def test_pspnet_thin(tmp_path):
    """PSPNet-50 at its own 473 x 473 (its pyramid pools have fixed kernels) with every num_output cut by
    32: BN (PSPNet form, frozen) and Interp (fixed size and zoom 8) through the whole topology."""
    text = (CORPUS / "pspnet" / "pspnet50_ADE20K_473.prototxt").read_text()
    thin = re.sub(r"num_output: (\d+)", lambda m: f"num_output: {max(2, int(m.group(1)) // 32)}", text)
    _, _, net = make_net(tmp_path, thin)
    bn = net.layers(type="BN")
    assert len(bn) == 60 and all(layer.params.fork == "pspnet" and not layer.params.batch_statistics
                                 for layer in bn)
    assert [layer.params.size for layer in net.layers(type="Interp")] == [(60, 60)] * 4 + [(473, 473)]
    inputs = random_inputs(net)
    onnx_outputs, torch_outputs = run_onnx(net, inputs), run_torch(net, inputs)
    assert_close(torch_outputs["conv6_interp"], onnx_outputs["conv6_interp"], "PSPNet")


def test_segnet_inference_shapes():
    """SegNet's decoder unpools to exactly the sizes its encoder pooled from (upsample_h/w at 360 x 480)."""
    net = read_net(CORPUS / "segnet" / "segnet_inference.prototxt", init="none",
                   input_shape={"data": (1, 3, 360, 480)})
    for layer in net.layers(type="Upsample"):
        pool = net.producer(layer.inputs[1])
        assert pool.type == "Pooling" and layer.params.unpool
        assert net.shape(layer.outputs[0]) == net.shape(pool.inputs[0]), layer.name
    assert all(layer.params.fork == "segnet" and not layer.params.batch_statistics for layer in net.layers(type="BN"))
