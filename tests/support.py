"""Shared test helpers: the corpus, nets with seeded random weights written by our writer, OpenCV as oracle."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
SAMPLES = REPO / "samples"


def corpus_rows() -> list[dict[str, str]]:
    """The corpus manifest's rows (empty when ../shared is not there)."""
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with open(manifest, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def corpus_files(phase: str | None = None) -> list[Path]:
    return [CORPUS / row["file"] for row in corpus_rows() if phase is None or row["phase"] == phase]


def corpus_params(paths, marks=lambda path: []) -> list:
    """pytest params for corpus files, each marked `corpus` (conftest skips those without ../shared/corpus);
    one placeholder when the corpus is not there, so that the skip shows."""
    import pytest
    params = [pytest.param(p, id=str(p.relative_to(CORPUS)), marks=[pytest.mark.corpus, *marks(p)]) for p in paths]
    return params or [pytest.param(None, id="no-corpus", marks=pytest.mark.corpus)]


# Corpus nets protodef refuses to build, with (a pattern of) the error it gives.
CORPUS_REFUSED = {"models_pascal_voc_ZF_faster_rcnn_end2end_test.prototxt": "Python layer runs user code"}
# Corpus nets that declare no input shape, and one to read them with.
CORPUS_INPUT_SHAPES = {"reshape_and_slice_routines.prototxt": {"input": (2, 3, 4, 5)}}
# Corpus nets OpenCV 4.14 cannot load (docs/opencv-differences.md).
OPENCV_CANNOT_LOAD = {
    "enet_deploy_final.prototxt": "OpenCV 4.14 cannot load ENet (BN and Upsample of the SegNet fork)",
    "pspnet50_ADE20K_473.prototxt": "OpenCV 4.14 cannot load PSPNet (BN of the PSPNet fork)",
    "darknet19_deploy.prototxt": "OpenCV has no YoloDetectionOutput layer",
    "yolov3-tiny.prototxt": "OpenCV has no Yolov3DetectionOutput layer",
    "mobilenetv2_ssd_lite_deploy.prototxt": "OpenCV has no DepthwiseConvolution layer",
}


def refused_as_known(path: Path) -> bool:
    """Whether protodef refuses to build this corpus net as CORPUS_REFUSED says (checked: it must)."""
    if path.name not in CORPUS_REFUSED:
        return False
    import pytest

    from protodef.api import read_net
    from protodef.errors import ProtodefError
    with pytest.raises(ProtodefError, match=CORPUS_REFUSED[path.name]):
        read_net(path, init="none")
    return True


def tolerance(reference: np.ndarray) -> float:
    """DEVELOPERS.md: max abs diff <= 1e-4 * max(1, |ref|)."""
    return 1e-4 * max(1.0, float(np.max(np.abs(reference))) if reference.size else 1.0)


def assert_close(actual: np.ndarray, reference: np.ndarray, what: str = "") -> None:
    actual, reference = np.asarray(actual), np.asarray(reference)
    assert actual.shape == reference.shape, f"{what}: shape {actual.shape} != {reference.shape}"
    if reference.size == 0:
        return
    diff = float(np.max(np.abs(actual.astype(np.float64) - reference.astype(np.float64))))
    assert diff <= tolerance(reference), f"{what}: max abs diff {diff:.3g} > {tolerance(reference):.3g}"


def write_net(tmp_path: Path, text: str, *, seed: int = 0, name: str = "net", **read_options):
    """Write `text` as a prototxt and a caffemodel of seeded random weights (our writer); return
    (prototxt path, caffemodel path, Net read back through the caffemodel)."""
    from protodef.api import read_net
    from protodef.weights import write_caffemodel

    prototxt = Path(tmp_path) / f"{name}.prototxt"
    prototxt.write_text(text)
    caffemodel = Path(tmp_path) / f"{name}.caffemodel"
    net = read_net(prototxt, init="random", seed=seed, **read_options)
    weighted = [(layer.caffe_name, layer.type, list(layer.weights)) for layer in net.layers() if layer.weights]
    # A net without learned blobs still gets a caffemodel (OpenCV wants one); it names a layer with no blobs,
    # since a caffemodel holding no layer at all is refused as not being one.
    write_caffemodel(caffemodel, weighted or [(net.layers()[0].caffe_name, net.layers()[0].type, [])])
    return prototxt, caffemodel, read_net(prototxt, caffemodel if weighted else None, **read_options)


def random_inputs(net, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1000)
    return {net.value_name(i.value): rng.standard_normal(net.shape(i.value)).astype(np.float32)
            for i in net.inputs}


def assert_close_with_specials(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    """NaN where Caffe divides 0 by 0 and -FLT_MAX where a MAX window is empty, exactly; the rest close."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), f"{what}: NaN in other places"
    sentinel = np.abs(expected) == np.finfo(np.float32).max
    assert np.array_equal(actual[sentinel], expected[sentinel]), f"{what}: FLT_MAX sentinels differ"
    keep = ~np.isnan(expected) & ~sentinel
    assert_close(actual[keep], expected[keep], what)


def opencv_forward(net, prototxt, caffemodel, inputs: dict[str, np.ndarray], values=None, *,
                   fusion: bool = True) -> dict[str, np.ndarray]:
    """OpenCV dnn's values (by default the net's outputs) by value name: an independent Caffe implementation.
    Through forwardAndRetrieve, which also returns a layer's second and later tops (OpenCV 4.14 resolves no
    `layer.k` alias for them); `caffemodel` "" for a net without weights.

    `fusion=False` turns off OpenCV's layer fusion: OpenCV 4.14 fuses a grouped Deconvolution with a
    following BatchNorm + Scale wrongly (off by ~0.2), while its unfused result matches Caffe's arithmetic."""
    import cv2

    cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cv_net.enableFusion(fusion)
    cv_net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv_net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, array in inputs.items():
        cv_net.setInput(array, name)
    values = net.outputs() if values is None else values
    producers = [net.producer(v) for v in values]
    # OpenCV names a few layers after their top (openpose's last convolution), not as the prototxt does, and
    # makes a Convolution of several bottoms one layer per top, named after it: that layer's output 0.
    known = set(cv_net.getLayerNames())
    layer_names = [p.caffe_name if p.caffe_name in known else v.blob for v, p in zip(values, producers)]
    unique = list(dict.fromkeys(layer_names))
    results = dict(zip(unique, cv_net.forwardAndRetrieve(unique)))
    return {net.value_name(v): np.asarray(results[name][p.outputs.index(v) if name == p.caffe_name else 0])
            for v, p, name in zip(values, producers, layer_names)}


def run_onnx(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime's outputs by name, fed the inputs the model takes. Basic graph optimizations only: the
    extended ones (fusions) cost more time than they save on one run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {i.name: inputs[i.name] for i in session.get_inputs()}
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def onnx_dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def static_shape(net, value):
    """The IR's shape of a value, or None where its size depends on the data (detections)."""
    producer = net.producer(value)
    if producer is not None and producer.spec.dynamic_axes.get(producer.outputs.index(value)):
        return None
    return net.shape(value)


def check_onnx_shapes(model, net) -> None:
    """Our value_info carries the IR's shapes; ONNX's strict shape inference, run on the model without it,
    must find the same ones, and the model's outputs have the net's shapes."""
    import onnx

    ours = {v.name: onnx_dims(v) for v in [*model.graph.value_info, *model.graph.output]}
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(bare, strict_mode=True)
    found = {v.name: onnx_dims(v) for v in [*inferred.graph.value_info, *inferred.graph.output]}
    for name, shape in ours.items():
        assert found.get(name) == shape, f"{name}: value_info {shape}, ONNX shape inference {found.get(name)}"
    for output in net.outputs():
        shape = static_shape(net, output)
        assert shape is None or ours[net.value_name(output)] == list(shape), net.value_name(output)


def run_torch(module, inputs: dict[str, np.ndarray], form=None) -> dict[str, np.ndarray]:
    """A protodef GraphModule's outputs by name, or those of another `form` of it (scripted, exported, generated
    source), which may lack the module's input_names and output_names."""
    import torch

    with torch.no_grad():
        out = (module if form is None else form)(*(torch.from_numpy(inputs[name]) for name in module.input_names))
    outputs = out if isinstance(out, (tuple, list)) else (out,)
    return {name: o.detach().numpy() for name, o in zip(module.output_names, outputs)}
