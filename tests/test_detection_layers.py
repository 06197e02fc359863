"""Detection layers of the SSD fork (Permute, Normalize, PriorBox, DetectionOutput) and the YOLO ports (Reorg,
YoloDetectionOutput, Yolov3DetectionOutput) beyond per-layer parity (test_parity.py): shapes against OpenCV on
the corpus nets, OpenCV's padded rows, adaptive NMS, a symbolic batch, generated source, and whole SSD and YOLO
nets through onnxruntime and torch against OpenCV and reference_detection.py (NumPy transcriptions of the fork
sources)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import reference_detection as reference
import torch
from parity_cases import detection_feeds, detection_net, detection_priors
from support import CORPUS, assert_close

from protodef import load, to_onnx
from protodef.api import read_net
from protodef.attach import random_weights
from protodef.errors import ShapeError, UnsupportedError
from protodef.weights import write_caffemodel

SSD_NETS = {"mobilenet_ssd": ("mobilenet_ssd/voc_MobileNetSSD_deploy.prototxt", 1.0),
            "face_detector": ("opencv_face_detector/deploy.prototxt", 0.5)}
DETECTION_INPUTS = ("mbox_loc", "mbox_conf_flatten", "mbox_priorbox")


# ---- harness ------------------------------------------------------------------------------------------


def build(directory: Path, text: str, *, name: str = "net", scale: float = 0.5, seed: int = 0, **read_options):
    """Write `text` and a caffemodel of seeded random weights (std `scale` / sqrt(fan-in): deep nets need a
    larger one than support.write_net's for their scores to reach the thresholds); return (prototxt,
    caffemodel or "" when the net has no weights, Net read back). A 0-axis blob (Normalize's shared scale)
    is written as (1,): OpenCV cannot make a 0-axis Mat, and our reader takes (1,) for a scalar."""
    prototxt = Path(directory) / f"{name}.prototxt"
    prototxt.write_text(text)
    net = random_weights(read_net(prototxt, init="none", **read_options), seed=seed, scale=scale)
    blobs = [(layer.caffe_name, layer.type, [w.reshape(-1) if w.ndim == 0 else w for w in layer.weights])
             for layer in net.layers() if layer.weights]
    if not blobs:
        return prototxt, "", net
    caffemodel = prototxt.with_suffix(".caffemodel")
    write_caffemodel(caffemodel, blobs)
    return prototxt, caffemodel, read_net(prototxt, caffemodel, **read_options)


def opencv(prototxt: Path, caffemodel, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cv_net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    for name, array in inputs.items():
        cv_net.setInput(array, name)
    return dict(zip(names, (np.asarray(r) for r in cv_net.forward(names))))


def run_onnx(net, inputs: dict[str, np.ndarray], also: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The net's outputs through onnxruntime, and the tensors named in `also` from the same run."""
    model = to_onnx(net)
    for name in also:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))


def run_torch(net, inputs: dict[str, np.ndarray], watch: str | None = None) -> dict[str, np.ndarray]:
    """The net's outputs through the torch module; with `watch`, also the inputs that module's layer got
    (as `watch:0`, `watch:1`, ...)."""
    module = load(net)
    seen: dict[str, np.ndarray] = {}
    if watch is not None:
        def record(_module, args):
            seen.update({f"{watch}:{i}": a.detach().numpy() for i, a in enumerate(args)})
        getattr(module, watch).register_forward_pre_hook(record)
    with torch.no_grad():
        result = module(*(torch.from_numpy(inputs[i.value.blob]) for i in net.inputs))
    results = result if isinstance(result, tuple) else (result,)
    return {**dict(zip(module.output_names, (r.numpy() for r in results))), **seen}


def detections_of(net, layer_name: str, loc, conf, prior) -> np.ndarray:
    """reference_detection.detection_output with the layer's prototxt settings."""
    p = net.layer(layer_name).params
    threshold = None if p.confidence_threshold == -np.finfo(np.float32).max else p.confidence_threshold
    return reference.detection_output(loc, conf, prior, num_classes=p.num_classes, share_location=p.share_location,
                                      background_label_id=p.background_label_id, code_type=p.code_type,
                                      variance_encoded_in_target=p.variance_encoded_in_target,
                                      keep_top_k=p.keep_top_k, confidence_threshold=threshold,
                                      nms_threshold=p.nms_threshold, top_k=p.top_k, eta=p.eta)


def as_set(rows: np.ndarray) -> np.ndarray:
    """Detection rows ordered by image, label and descending score (OpenCV orders rows otherwise)."""
    rows = rows.reshape(-1, 7)
    return rows[np.lexsort((-rows[:, 2], rows[:, 1], rows[:, 0]))]


def inputs(*shapes: tuple[int, ...], names=("data",)) -> str:
    return "".join(f'layer {{ name: "{n}" type: "Input" top: "{n}" input_param {{ shape {{ '
                   + " ".join(f"dim: {d}" for d in s) + " } } }\n" for n, s in zip(names, shapes))


# ---- the corpus nets: shapes and the specs --------------------------------------------------------------


@pytest.fixture(scope="module")
def ssd_net(tmp_path_factory):
    built = {}

    def get(key: str):
        if key not in built:
            path, scale = SSD_NETS[key]
            built[key] = build(tmp_path_factory.mktemp(key), (CORPUS / path).read_text(), name=key, scale=scale)
        return built[key]
    return get


@pytest.mark.corpus
@pytest.mark.parametrize("key", sorted(SSD_NETS))
def test_corpus_shapes_match_opencv(key, ssd_net):
    prototxt, caffemodel, net = ssd_net(key)
    cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    ids, _, outs = cv_net.getLayersShapes([list(net.shape(i.value)) for i in net.inputs])
    names = cv_net.getLayerNames()
    theirs = {names[i - 1]: [tuple(int(d) for d in np.asarray(o).ravel()) for o in out]
              for i, out in zip(np.asarray(ids).ravel(), outs)}
    checked = 0
    for layer in net.layers():
        if layer.type == "DetectionOutput":
            # OpenCV sizes it for keep_top_k rows; Caffe's Reshape gives one placeholder row, the count is dynamic.
            assert net.shape(layer.outputs[0]) == (1, 1, 1, 7)
            assert layer.spec.dynamic_axes == {0: {2: "detections"}}
            continue
        assert [net.shape(v) for v in layer.outputs] == theirs[layer.caffe_name], layer.name
        checked += layer.type in ("Permute", "Normalize", "PriorBox")
    assert checked >= 18


@pytest.mark.corpus
@pytest.mark.parametrize("path, layer, shape", [
    ("mobilenet_yolo/darknet19_deploy.prototxt", "reorg1", (1, 256, 13, 13)),
    ("mobilenet_yolo/darknet19_deploy.prototxt", "detection_out", (1, 1, 1, 7)),
    ("mobilenet_yolo/yolov3-tiny.prototxt", "layer24-yolo", (1, 1, 1, 7)),
    ("mobilenet_yolo/mobilenetv2_ssd_lite_deploy.prototxt", "detection_out", (1, 1, 1, 7)),
    ("mobilenet_yolo/mobilenetv2_ssd_lite_deploy.prototxt", "conv52_mbox_priorbox", (1, 2, 2904)),
])
def test_yolo_corpus_nets_have_shapes(path, layer, shape):
    """OpenCV cannot run these (no YOLO output layers, no DepthwiseConvolution); the shapes follow Caffe's rules:
    Reorg (1, 64, 26, 26) -> (1, 64 * 4, 13, 13); 11 x 11 cells x 6 priors x 4 for conv52 at 336 x 336."""
    net = read_net(CORPUS / path, init="none")
    assert net.shape(net.layer(layer).outputs[0]) == shape


@pytest.mark.corpus
@pytest.mark.parametrize("path", ["mobilenet_yolo/darknet19_deploy.prototxt", "mobilenet_yolo/yolov3-tiny.prototxt"])
def test_info_lists_the_yolo_nets(path, capsys):
    from protodef.cli import main
    assert main(["info", str(CORPUS / path)]) == 0
    assert "DetectionOutput" in capsys.readouterr().out


# ---- Normalize, Reorg, DetectionOutput -----------------------------------------------------------------


def test_normalize_without_scale_filler_starts_at_one():
    net = read_net_text('layer { name: "n" type: "Normalize" bottom: "data" top: "y" }', (1, 3, 2, 2))
    assert net.layer("n").weights[0].shape == () and float(net.layer("n").weights[0]) == 1.0


def read_net_text(body: str, shape: tuple[int, ...], tmp=None, **options):
    import tempfile
    directory = Path(tmp or tempfile.mkdtemp())
    path = directory / "net.prototxt"
    path.write_text(inputs(shape) + body)
    return read_net(path, **options)


def test_reorg_rejects_channels_not_divisible_by_stride_squared():
    with pytest.raises(ShapeError, match="divisible by stride"):
        read_net_text('layer { name: "r" type: "Reorg" bottom: "data" top: "y" reorg_param { stride: 2 } }',
                      (1, 6, 4, 4), init="none")


def test_detection_output_rows_are_opencvs_without_its_padding(tmp_path):
    """OpenCV pads to keep_top_k rows (zeros) and orders rows its own way; the rows themselves are Caffe's."""
    settings = ("code_type: CENTER_SIZE nms_param { nms_threshold: 0.45 top_k: 30 } keep_top_k: 20 "
                "confidence_threshold: 0.93 background_label_id: 0")
    prototxt, caffemodel, net = build(tmp_path, detection_net(1, 3, True, settings))
    feeds = detection_feeds(1, 3, True, 0.5, False)
    theirs = opencv(prototxt, caffemodel, feeds, ["det"])["det"].reshape(-1, 7)
    ours = run_onnx(net, feeds)["y"]
    assert theirs.shape[0] == 20 and 3 < ours.shape[2] < 20
    assert_close(as_set(theirs[theirs[:, 2] > 0]), as_set(ours), "OpenCV rows")


def test_adaptive_nms_is_exact_in_torch_and_refused_by_onnx(tmp_path):
    settings = "code_type: CENTER_SIZE nms_param { nms_threshold: 0.7 eta: 0.8 } confidence_threshold: 0.2"
    _, _, net = build(tmp_path, detection_net(1, 3, True, settings))
    feeds = detection_feeds(1, 3, True, 0.5, False)
    priors = detection_priors()
    expected = detections_of(net, "det", feeds["loc"], feeds["conf"], priors)
    fixed = reference.detection_output(feeds["loc"], feeds["conf"], priors, num_classes=3, code_type="CENTER_SIZE",
                                       nms_threshold=0.7, confidence_threshold=0.2)
    assert fixed.shape[2] > expected.shape[2], "eta should suppress more as boxes are kept"
    assert_close(run_torch(net, feeds)["y"], expected, "torch")
    with pytest.raises(UnsupportedError, match="eta"):
        to_onnx(net)


# ---- whole SSD nets -----------------------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.parametrize("key", sorted(SSD_NETS))
def test_ssd_net_end_to_end(key, ssd_net):
    """Everything before DetectionOutput (its three inputs) equals OpenCV's; the detections equal the reference
    run on the same backend's inputs to it; OpenCV's rows, without its padding, are the reference's rows on
    OpenCV's inputs."""
    prototxt, caffemodel, net = ssd_net(key)
    rng = np.random.default_rng(7)
    feeds = {i.value.blob: rng.standard_normal(net.shape(i.value)).astype(np.float32) for i in net.inputs}
    theirs = opencv(prototxt, caffemodel, feeds, [*DETECTION_INPUTS, "detection_out"])
    caffe_rows = detections_of(net, "detection_out", *(theirs[name] for name in DETECTION_INPUTS))
    assert caffe_rows.shape[2] > 20, "random weights should give detections"
    found = theirs["detection_out"].reshape(-1, 7)
    assert_close(as_set(found[found[:, 2] > 0]), as_set(caffe_rows), "OpenCV rows")
    backends = [("onnxruntime", run_onnx(net, feeds, also=DETECTION_INPUTS)),
                ("torch", run_torch(net, feeds, watch="detection_out"))]
    for backend, outputs in backends:
        given = [outputs[name] if name in outputs else outputs[f"detection_out:{i}"]
                 for i, name in enumerate(DETECTION_INPUTS)]
        for name, ours in zip(DETECTION_INPUTS, given):
            assert_close(ours.reshape(theirs[name].shape), theirs[name], f"{backend} {name}")
        assert_close(outputs["detection_out"], detections_of(net, "detection_out", *given), f"{backend} detections")


@pytest.mark.corpus
def test_yolov3_tiny_end_to_end(tmp_path):
    """The corpus YOLOv3-tiny at 96 x 96 (OpenCV has no Yolov3DetectionOutput): each backend's detections equal
    the fork's, computed from the heads that backend fed the layer; the heads agree across backends."""
    path = CORPUS / "mobilenet_yolo/yolov3-tiny.prototxt"
    _, _, net = build(tmp_path, path.read_text(), scale=1.0, input_shape={"data": (1, 3, 96, 96)})
    layer = net.layer("layer24-yolo")
    p = layer.params
    heads = [net.value_name(v) for v in layer.inputs]
    feeds = {"data": np.random.default_rng(8).standard_normal((1, 3, 96, 96)).astype(np.float32)}
    ours = {"onnxruntime": run_onnx(net, feeds, also=tuple(heads)),
            "torch": run_torch(net, feeds, watch="layer24_yolo")}
    given = {"onnxruntime": [ours["onnxruntime"][h] for h in heads],
             "torch": [ours["torch"][f"layer24_yolo:{i}"] for i in range(len(heads))]}
    for head, a, b in zip(heads, given["onnxruntime"], given["torch"]):
        assert_close(b, a, f"torch vs onnxruntime {head}")
    for backend, outputs in ours.items():
        expected = reference.yolov3_detection_output(
            given[backend], num_classes=p.num_classes, num_box=p.num_box, biases=p.biases,
            anchors_scale=p.anchors_scale, mask=p.mask, mask_group_num=p.mask_group_num,
            confidence_threshold=p.confidence_threshold, nms_threshold=p.nms_threshold)
        assert expected.shape[2] > 5
        assert_close(outputs["layer24-yolo"], expected, f"{backend} detections")


def test_detection_output_with_a_symbolic_batch(tmp_path):
    """--dynamic-batch: the fallback rows and the keep_top_k table follow the batch the model is run with."""
    settings = ("code_type: CENTER_SIZE nms_param { nms_threshold: 0.45 top_k: 30 } keep_top_k: 12 "
                "confidence_threshold: 0.4")
    _, _, net = build(tmp_path, detection_net(2, 3, True, settings))
    session = ort.InferenceSession(to_onnx(net, dynamic_batch=True).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        feeds = detection_feeds(batch, 3, True, 0.5, False, seed=batch)
        expected = detections_of(net, "det", feeds["loc"], feeds["conf"], detection_priors())
        assert_close(session.run(["y"], feeds)[0], expected, f"batch {batch}")
        feeds["conf"][:] = 0
        assert session.run(["y"], feeds)[0].tolist() == [[[[i, -1, -1, -1, -1, -1, -1] for i in range(batch)]]]


def test_generated_source_and_torchscript_detect_the_same(tmp_path):
    import importlib.util

    from protodef import save_pytorch
    settings = ("code_type: CENTER_SIZE nms_param { nms_threshold: 0.45 top_k: 30 } keep_top_k: 20 "
                "confidence_threshold: 0.5 background_label_id: 0")
    text = detection_net(2, 3, True, settings) + (
        'layer { name: "n" type: "Normalize" bottom: "image" top: "n" norm_param { channel_shared: true } }')
    _, _, net = build(tmp_path, text)
    feeds = detection_feeds(2, 3, True, 0.5, False)
    feeds["image"] = np.random.default_rng(9).standard_normal(feeds["image"].shape).astype(np.float32)
    source = save_pytorch(net, tmp_path / "generated.py")[0]
    spec = importlib.util.spec_from_file_location("generated", source)
    generated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generated)
    args = [torch.from_numpy(feeds[i.value.blob]) for i in net.inputs]
    expected = run_torch(net, feeds)
    with torch.no_grad():
        for what, module in (("source", generated.load_model()), ("TorchScript", torch.jit.script(load(net)))):
            for name, value in zip(("y", "n"), module(*args)):
                assert_close(value.numpy(), expected[name], f"{what} {name}")
