"""ONNX backend beyond per-layer parity (test_parity.py): refusals, pooling windows as a property, folding's
structure, opsets, --dynamic-batch, errors, metadata, and the corpus's deploy nets against OpenCV."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import reference_layers as ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parity_cases import (
    BATCHNORM_THEN_SCALE,
    TWO_CONVOLUTIONS,
    data,
    pooling_text,
    swap_axpy_operands,
)
from support import (
    CORPUS_INPUT_SHAPES,
    OPENCV_CANNOT_LOAD,
    REPO,
    assert_close,
    assert_close_with_specials,
    check_onnx_shapes,
    corpus_files,
    corpus_params,
    onnx_dims,
    opencv_forward,
    random_inputs,
    refused_as_known,
    run_onnx,
    write_net,
)

from converters.onnx import DEFAULT_OPSET, MIN_OPSET
from protodef import lower, save_onnx, to_onnx
from protodef.api import read_net
from protodef.errors import ShapeError, UnsupportedError
from protodef.weights import write_caffemodel

F32 = np.float32


def one_layer(text: str, shape=(2, 3, 7, 9)) -> str:
    return data(*shape) + text


def write_text(tmp_path, text, name="net"):
    path = Path(tmp_path) / f"{name}.prototxt"
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------------------------------------- refusals
def test_convolution_axis_other_than_one_is_refused(tmp_path):
    _, _, net = write_net(tmp_path, one_layer('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                                              'convolution_param { num_output: 2 kernel_size: 1 axis: 2 } }',
                                              shape=(1, 2, 3, 4, 5)))
    with pytest.raises(UnsupportedError, match="axis"):
        to_onnx(net)


def test_pooling_window_past_the_input_is_padded_explicitly(tmp_path):
    """The end padding exceeds the kernel, which onnxruntime refuses as a `pads` attribute, so an explicit Pad is
    used (its values: test_parity's cases of a window that starts past the input)."""
    _, _, net = write_net(tmp_path, one_layer(pooling_text("MAX", (1, 2), (3, 3), (0, 0), "CEIL"), shape=(1, 2, 6, 7)))
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
    text = one_layer(pooling_text(method, kernel, stride, pad, mode), shape=(1, 2, *size))
    sizes = [ref.caffe_pooled_size(n, k, s_, p, mode == "CEIL", any(pad))
             for n, k, s_, p in zip(size, kernel, stride, pad)]
    if min(sizes) <= 0:   # Caffe's rule left no window: the IR refuses it, as Caffe would fail
        with pytest.raises(ShapeError, match="pooled size"):
            read_net(write_text(tmp_path, text), init="none")
        return
    net = read_net(write_text(tmp_path, text), init="none")
    x = np.abs(np.random.default_rng(0).standard_normal((1, 2, *size)).astype(F32))
    expected = ref.caffe_pool(x, method, kernel, stride, pad, ceil=mode == "CEIL")[0]
    model = to_onnx(net)
    check_onnx_shapes(model, net)
    (found,) = run_onnx(model, {"data": x}).values()
    assert net.shape(net.outputs()[0]) == expected.shape
    assert_close_with_specials(found, expected,
                               f"{method} {mode} size {size} kernel {kernel} stride {stride} pad {pad}")


def test_folding_removes_batch_normalization_nodes(tmp_path):
    """Folding turns BatchNorm + Scale into one ChannelAffine, and into the convolution where it can: the folded
    model has fewer nodes (that it computes the same: test_parity)."""
    _, _, net = write_net(tmp_path, BATCHNORM_THEN_SCALE)
    folded, plain = to_onnx(net, fold=True), to_onnx(net, fold=False)
    assert "BatchNormalization" not in {n.op_type for n in folded.graph.node}
    assert "BatchNormalization" in {n.op_type for n in plain.graph.node}
    assert len(folded.graph.node) < len(plain.graph.node)


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
    _, _, net = write_net(tmp_path, KITCHEN_SINK, seed=5)
    inputs = random_inputs(net)
    baseline = run_onnx(to_onnx(net), inputs)
    for opset in range(MIN_OPSET, onnx.defs.onnx_opset_version() + 1):
        model = to_onnx(net, opset=opset)
        assert model.opset_import[0].version == opset
        check_onnx_shapes(model, net)
        for name, value in run_onnx(model, inputs).items():
            assert_close(value, baseline[name], f"{name} at opset {opset}")


def test_kitchen_sink_against_references(tmp_path):
    """The sink's outputs against Caffe transcriptions: max pooling with mask and stochastic pooling."""
    _, _, net = write_net(tmp_path, KITCHEN_SINK, seed=5)
    inputs = random_inputs(net)
    outputs = run_onnx(to_onnx(net, opset=MIN_OPSET), inputs)
    conv = net.layer("conv")
    x = inputs["data"].astype(np.float64)
    w, b = conv.weights[0].astype(np.float64), conv.weights[1].astype(np.float64)
    y = np.zeros((2, 6, 7, 9)) + b.reshape(1, -1, 1, 1)
    for i in range(3):
        for j in range(3):
            y += np.einsum("nchw,oc->nohw", x[:, :, i:i + 7, j:j + 9], w[:, :, i, j])
    y = np.maximum(ref.batch_norm(y.astype(F32), None, None, 1.0, 1e-5, False), 0)
    top, mask = ref.caffe_pool(y, "MAX", (3, 3), (2, 2), (0, 0))
    assert_close(outputs["mask"], mask, "mask")
    assert_close(outputs["sto"], ref.caffe_pool(y, "STOCHASTIC", (2, 2), (3, 3), (0, 0))[0], "stochastic")
    assert_close(outputs["ave"], ref.caffe_pool(y, "AVE", (3, 3), (2, 2), (1, 1))[0], "ave")


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
    _, _, net = write_net(tmp_path, DYNAMIC)
    model = to_onnx(net, dynamic_batch=True)
    for info in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        assert onnx_dims(info)[0] == "batch", info.name
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert all(onnx_dims(v)[0] == "batch" for v in inferred.graph.output)
    static = to_onnx(net)
    batch = np.random.default_rng(7).standard_normal((3, 3, 8, 7)).astype(F32)
    together = run_onnx(model, {"data": batch})
    for item in range(3):
        alone = run_onnx(static, {"data": batch[item:item + 1]})
        for name in alone:
            assert_close(together[name][item:item + 1], alone[name], f"{name}[{item}]")


def test_dynamic_batch_refuses_layers_across_the_batch(tmp_path):
    _, _, net = write_net(tmp_path, one_layer(TWO_CONVOLUTIONS + 'layer { name: "cat" type: "Concat" bottom: "b" '
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


def test_a_second_converter_for_a_type_is_refused():
    from converters.onnx import onnx_converter
    with pytest.raises(ValueError, match="already registered"):
        onnx_converter("Convolution")(lambda layer, ctx: [])


def test_saved_model_metadata(tmp_path):
    prototxt, _, net = write_net(tmp_path, DYNAMIC)
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
    **CORPUS_INPUT_SHAPES,
}


# Too slow for CI's budget whatever the input size: 115 M and 134 M parameters of convolutions (random
# weights, OpenCV and onnxruntime take ~20 s each). PROTODEF_SLOW_TESTS=1 runs them.
HEAVY = {"SENet-154.prototxt", "voc-fcn8s_deploy.prototxt"}


# Too slow for CI's budget whatever the input size: 115 M and 134 M parameters of convolutions (random
# weights, OpenCV and onnxruntime take ~20 s each). PROTODEF_SLOW_TESTS=1 runs them.
HEAVY = {"SENet-154.prototxt", "voc-fcn8s_deploy.prototxt"}


def skipped(path: Path) -> list:
    """Nets this test does not run: those OpenCV cannot load (test_parity, test_longtail_layers and
    test_detection_layers compare their layers otherwise), and heavy ones."""
    if path.name in OPENCV_CANNOT_LOAD:
        return [pytest.mark.skip(reason=OPENCV_CANNOT_LOAD[path.name])]
    if path.name in HEAVY and not os.environ.get("PROTODEF_SLOW_TESTS"):
        return [pytest.mark.skip(reason="heavy net: set PROTODEF_SLOW_TESTS=1 to run it")]
    return []


# Where OpenCV differs from Caffe but the test works around it: it compares DetectionOutput's inputs instead of
# its rows, and lets OpenCV read Axpy with its operands swapped.
WORKED_AROUND = {"DetectionOutput", "Axpy"}


def compared_values(net):
    """The net's outputs, except that DetectionOutput's inputs stand in for its output (its row count is
    data-dependent in Caffe; OpenCV pads to keep_top_k rows)."""
    detections = net.layers(type="DetectionOutput")
    values = [v for v in net.outputs() if net.producer(v).type != "DetectionOutput"]
    return values + [v for layer in detections for v in layer.inputs if v not in values]


def opencv_view(path: Path, net, tmp_path: Path) -> Path:
    """The prototxt OpenCV should read to compute what Caffe computes: OpenCV computes Axpy(a, x, y) as
    a * y + x, Caffe's axpy_layer.cpp as a * x + y, so OpenCV reads a copy with x and y swapped."""
    if not net.layers(type="Axpy"):
        return path
    view = tmp_path / path.name
    view.write_text(swap_axpy_operands(path.read_text()))
    return view


def run_onnx_values(model, inputs, names):
    """Run with `names` as the outputs (intermediate values have value_info, so they can be exposed)."""
    known = {v.name: v for v in [*model.graph.value_info, *model.graph.output]}
    chosen = [onnx.ValueInfoProto() for _ in names]
    for info, name in zip(chosen, names):
        info.CopyFrom(known[name])
    del model.graph.output[:]
    model.graph.output.extend(chosen)
    return run_onnx(model, inputs)


@pytest.mark.parametrize("path", corpus_params(corpus_files("deploy"), skipped))
def test_corpus_deploy_net(tmp_path, path):
    """Each corpus deploy net that protodef builds and OpenCV runs: onnxruntime equals OpenCV (random
    weights, our writer), folded and (where there is something to fold) unfolded."""
    from converters.onnx.lower import unsupported_layers
    if refused_as_known(path):
        return
    net = read_net(path, init="random", input_shape=INPUT_SHAPES.get(path.name, {}), seed=1)
    assert unsupported_layers(lower(net, fold=True)) == []
    differs = [layer for layer in net.layers()
               if layer.type not in WORKED_AROUND and layer.spec.differs_in_opencv(layer.params)]
    if differs:
        pytest.skip(f"OpenCV is not Caffe here: {differs[0].type} {differs[0].spec.opencv_differs.reason}")
    caffemodel = tmp_path / "weights.caffemodel"
    write_caffemodel(caffemodel, [(layer.caffe_name, layer.type, list(layer.weights)) for layer in net.layers()
                                  if layer.weights])
    inputs = random_inputs(net)
    expected = opencv_forward(net, opencv_view(path, net, tmp_path), caffemodel, inputs, compared_values(net))
    foldable = any(layer.type in ("BatchNorm", "Scale") for layer in net.layers())
    for fold in (True, False) if foldable else (True,):
        outputs = run_onnx_values(to_onnx(net, fold=fold), inputs, list(expected))
        for name, value in expected.items():
            assert_close(outputs[name], value, f"{path.name}: {name} (fold={fold})")


@pytest.mark.corpus
def test_corpus_has_resnet50():
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
        check_onnx_shapes(model, net)
