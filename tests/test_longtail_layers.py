"""The long tail of layer types (forks' and rarer BVLC layers) beyond per-layer parity (test_parity.py): opsets
and a symbolic batch, the batch-free and export forms, the specs' refusals, and corpus nets that use these
layers, against OpenCV dnn where it computes what Caffe does and across backends where it cannot load them."""
from __future__ import annotations

import re

import numpy as np
import pytest
import reference_layers as ref
import torch
from parity_cases import swap_axpy_operands
from support import CORPUS, assert_close, opencv_forward, random_inputs, write_net
from support import run_onnx as run_onnx_model
from support import run_torch as run_torch_module

from protodef import load, save_pytorch, to_onnx
from protodef.api import read_net
from protodef.errors import SchemaError, ShapeError, UnsupportedError

# ------------------------------------------------------------------------------------------ helpers

def inputs_text(**shapes: tuple[int, ...]) -> str:
    return "".join(f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ '
                   + " ".join(f"dim: {d}" for d in shape) + " } } }\n" for name, shape in shapes.items())


def layer_text(name: str, kind: str, bottoms, params: str = "", top: str | None = None) -> str:
    bottoms = [bottoms] if isinstance(bottoms, str) else bottoms
    return (f'layer {{ name: "{name}" type: "{kind}" ' + " ".join(f'bottom: "{b}"' for b in bottoms)
            + f' top: "{top or name}" {params} }}\n')


def make_net(tmp_path, text: str, name: str = "net", **read_options):
    return write_net(tmp_path, text, seed=7, name=name, **read_options)


def run_onnx(net, inputs, **options) -> dict[str, np.ndarray]:
    return run_onnx_model(to_onnx(net, **options), inputs)


def run_torch(net, inputs, script: bool = False) -> dict[str, np.ndarray]:
    module = load(net)
    return run_torch_module(module, inputs, torch.jit.script(module) if script else None)


def check_backends(net, inputs, expected: dict[str, np.ndarray], what: str, script: bool = False) -> None:
    """onnxruntime and torch both equal `expected` on every output it names."""
    for backend, outputs in (("onnxruntime", run_onnx(net, inputs)), ("torch", run_torch(net, inputs, script))):
        for name, value in expected.items():
            assert_close(outputs[name], value, f"{what}: {backend} {name}")


def first_layer(net, kind: str):
    return next(layer for layer in net.layers() if layer.type == kind)


# ------------------------------------------------------------------------------------------ opsets, batch

UNPOOL_CASES = {
    "segnet_scale": ((2, 3, 8, 10), 2, 2, "scale: 2"),
    "overlapping_windows": ((1, 2, 7, 7), 3, 2, "upsample_h: 7 upsample_w: 7"),
}


def unpool_text(shape, kernel, stride, params) -> str:
    return (inputs_text(data=shape)
            + f'layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask" pooling_param '
              f'{{ pool: MAX kernel_size: {kernel} stride: {stride} }} }}\n'
            + layer_text("shift", "Power", "pool", "power_param { scale: 2 shift: 1 }")
            + layer_text("up", "Upsample", ["shift", "mask"], f"upsample_param {{ {params} }}"))


def test_upsample_overlapping_mask_needs_opset_18(tmp_path):
    _, _, net = make_net(tmp_path, unpool_text(*UNPOOL_CASES["overlapping_windows"]))
    with pytest.raises(UnsupportedError, match="opset 18"):
        to_onnx(net, opset=13)
    _, _, plain = make_net(tmp_path, unpool_text(*UNPOOL_CASES["segnet_scale"]), name="plain")
    inputs = random_inputs(plain)
    assert_close(run_onnx(plain, inputs, opset=13)["up"], run_onnx(plain, inputs)["up"], "opset 13")


def test_roi_pooling_with_a_symbolic_batch(tmp_path):
    """A symbolic batch also frees the roi count: fewer rois on fewer images."""
    text = (inputs_text(input=(4, 3, 21, 17), rois=(100, 5))
            + layer_text("output", "ROIPooling", ["input", "rois"],
                         "roi_pooling_param { pooled_w: 6 pooled_h: 6 spatial_scale: 1 }"))
    _, _, net = make_net(tmp_path, text)
    rng = np.random.default_rng(3)
    rois = np.zeros((37, 5), np.float32)
    rois[:, 0] = rng.integers(0, 2, 37)
    rois[:, 1:] = rng.integers(-10, 30, (37, 4))
    fewer = {"input": rng.standard_normal((2, 3, 21, 17)).astype(np.float32), "rois": rois}
    assert_close(run_onnx(net, fewer, dynamic_batch=True)["output"],
                 ref.roi_pooling(fewer["input"], fewer["rois"], (6, 6), 1.0), "dynamic batch")


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

@pytest.mark.corpus
def test_shufflenet(tmp_path):
    path = CORPUS / "shufflenet" / "shufflenet_1x_g3_deploy.prototxt"
    prototxt, caffemodel, net = make_net(tmp_path, path.read_text(), input_shape={"data": (1, 3, 64, 64)})
    assert len(net.layers(type="ShuffleChannel")) == 15
    inputs = random_inputs(net)
    check_backends(net, inputs, opencv_forward(net, prototxt, caffemodel, inputs), "ShuffleNet")


@pytest.mark.corpus
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


@pytest.mark.corpus
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


@pytest.mark.corpus
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


@pytest.mark.corpus
def test_segnet_inference_shapes():
    """SegNet's decoder unpools to exactly the sizes its encoder pooled from (upsample_h/w at 360 x 480)."""
    net = read_net(CORPUS / "segnet" / "segnet_inference.prototxt", init="none",
                   input_shape={"data": (1, 3, 360, 480)})
    for layer in net.layers(type="Upsample"):
        pool = net.producer(layer.inputs[1])
        assert pool.type == "Pooling" and layer.params.unpool
        assert net.shape(layer.outputs[0]) == net.shape(pool.inputs[0]), layer.name
    assert all(layer.params.fork == "segnet" and not layer.params.batch_statistics for layer in net.layers(type="BN"))
