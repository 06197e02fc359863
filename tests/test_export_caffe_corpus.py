"""Round trip: each corpus deploy net whose layers BVLC Caffe 1.0 has goes prototxt -> protodef's ONNX ->
Caffe again, and the exported net computes what the original computes in OpenCV's dnn, both in OpenCV and in
protodef's own ONNX lowering of the exported files (random weights, our writer); the blob names of the
outputs and the names of the weighted layers come back as they were."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from export_support import run_export
from support import (
    CORPUS,
    assert_close,
    corpus_files,
    opencv_forward,
    random_inputs,
    run_onnx,
)
from test_onnx import INPUT_SHAPES

from converters.caffe import to_caffe
from converters.caffe.targets import BVLC_1_0
from protodef.api import read_net, to_onnx
from protodef.errors import ProtodefError
from protodef.weights import write_caffemodel

# Smaller inputs where the net allows (global pooling at the end); nets with a fixed-size pooling or
# InnerProduct keep the sizes the ONNX corpus test uses.
ROUND_TRIP_SHAPES = {
    **INPUT_SHAPES,
    "ResNet10_cvgj_deploy.prototxt": {"data": (1, 3, 64, 64)},
    "DenseNet_121.prototxt": {"data": (1, 3, 64, 64)},
    "mobilenet_deploy.prototxt": {"data": (1, 3, 64, 64)},
    "deploy_dpn68-extra.prototxt": {"data": (1, 3, 64, 64)},
    "deploy_resnext50-32x4d.prototxt": {"data": (1, 3, 64, 64)},
    "deploy_inception-v3.prototxt": {"data": (1, 3, 107, 107)},
    "SqueezeNet_v1.0_deploy.prototxt": {"data": (1, 3, 67, 67)},
}

# Over CI's time budget: tens of millions of random weights (InnerProducts that do not shrink with the input,
# or large inputs) written, read and run three times over take 5-45 s each. PROTODEF_SLOW_TESTS=1 runs them.
HEAVY = {
    "voc-fcn8s_deploy.prototxt", "yolo_small_train_val.prototxt", "deploy_vgg16_places365.prototxt",
    "pose_coco_pose_deploy_linevec.prototxt", "hand_pose_deploy.prototxt", "VGG_ILSVRC_19_layers_deploy.prototxt",
    "imagenet_imagenet_deploy.prototxt",
}


def unsupported_by_opencv(net) -> str | None:
    """Why OpenCV's result could not be Caffe's for this net (a layer where it is known to differ), or None."""
    for layer in net.layers():
        if layer.spec.differs_in_opencv(layer.params):
            return f"{layer.type}: {layer.spec.opencv_differs.reason}"
    return None


def corpus_case(path: Path):
    marks = [pytest.mark.skipif(path.name in HEAVY and not os.environ.get("PROTODEF_SLOW_TESTS"),
                                reason="heavy net: set PROTODEF_SLOW_TESTS=1 to run it")]
    return pytest.param(path, id=str(path.relative_to(CORPUS)), marks=marks)


def original_outputs(net, path: Path, tmp_path: Path, inputs):
    """The original prototxt with our caffemodel of its random weights, run by OpenCV."""
    original = tmp_path / "original.caffemodel"
    write_caffemodel(original, [(layer.caffe_name, layer.type, list(layer.weights)) for layer in net.layers()
                                if layer.weights])
    return opencv_forward(net, path, original, inputs)


def weighted_layer_names(layers) -> set[str]:
    return {layer.name for layer in layers if layer.type in ("Convolution", "Deconvolution", "InnerProduct")}


def round_trip(tmp_path: Path, path: Path, *, fold: bool = True, target: str = "bvlc"):
    """Export protodef's ONNX of the net at `path` back to Caffe; check outputs, names; return the export."""
    try:
        net = read_net(path, init="random", input_shape=ROUND_TRIP_SHAPES.get(path.name, {}), seed=1)
    except ProtodefError as error:   # a Python layer: refused in one line, not this test's subject
        assert "\n" not in str(error), error
        pytest.skip(f"does not build: {error}")
    others = sorted({layer.type for layer in net.layers()} - BVLC_1_0)
    if others and target == "bvlc":
        pytest.skip(f"layers BVLC Caffe 1.0 does not have: {', '.join(others)}")
    inputs = random_inputs(net)
    model = to_onnx(net, fold=fold)
    # Where OpenCV is not Caffe (MVN), protodef's lowering of the original, checked against a NumPy
    # transcription of Caffe in test_onnx, is the reference; OpenCV cannot load the exported Bias layer there.
    opencv = unsupported_by_opencv(net) is None
    expected = original_outputs(net, path, tmp_path, inputs) if opencv else run_onnx(model, inputs)

    export = to_caffe(model, fold_batchnorm=fold, target=target)
    prototxt, caffemodel = export.save(tmp_path / "exported.prototxt")
    assert export.outputs == list(expected)                        # blob names survive
    assert weighted_layer_names(net.layers()) <= weighted_layer_names(export.param.layer)   # and layer names
    for source, outputs in run_export(Path(prototxt), Path(caffemodel), inputs, opencv=opencv).items():
        for name, value in expected.items():
            assert_close(outputs[name], value, f"{path.name}: {name}, exported, in {source}")
    return export


@pytest.mark.skipif(not corpus_files("deploy"), reason="the corpus (../shared/corpus) is not there")
@pytest.mark.parametrize("path", [corpus_case(p) for p in corpus_files("deploy")] or [None])
def test_corpus_round_trip(tmp_path, path):
    round_trip(tmp_path, path)


UNFOLDED = ["cvjena_cnn_models/ResNet10_cvgj_deploy.prototxt", "caffe_yolo/yolo_tiny_deploy.prototxt",
            "opencv_dnn_testdata/layer_batch_norm.prototxt"]


@pytest.mark.skipif(not corpus_files("deploy"), reason="the corpus (../shared/corpus) is not there")
@pytest.mark.parametrize("name", UNFOLDED)
def test_corpus_round_trip_keeps_batchnorm_unfolded(tmp_path, name):
    """Without folding, ONNX's BatchNormalization comes back as BatchNorm, its Mul and Add as a Scale."""
    export = round_trip(tmp_path, CORPUS / name, fold=False)
    assert "BatchNorm" in {layer.type for layer in export.param.layer}


FORK_NETS = [("shufflenet/shufflenet_1x_g3_deploy.prototxt", "opencv"),
             ("opencv_dnn_testdata/layer_interp.prototxt", "opencv")]


@pytest.mark.skipif(not corpus_files("deploy"), reason="the corpus (../shared/corpus) is not there")
@pytest.mark.parametrize("name, target", FORK_NETS)
def test_corpus_round_trip_through_a_fork_target(tmp_path, name, target):
    """Fork layers come back as what the target has: ShuffleChannel as Reshape + Permute + Flatten, the
    depthwise type as a grouped Convolution, Interp as Interp."""
    round_trip(tmp_path, CORPUS / name, target=target)
