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


def opencv_forward(net, prototxt: Path, caffemodel: Path, inputs: dict[str, np.ndarray], *,
                   fusion: bool = True) -> dict[str, np.ndarray]:
    """Run OpenCV dnn (an independent Caffe implementation) and return the net's outputs by blob name.

    `fusion=False` turns off OpenCV's layer fusion: OpenCV 4.14 fuses a grouped Deconvolution with a
    following BatchNorm + Scale wrongly (off by ~0.2), while its unfused result matches Caffe's arithmetic."""
    import cv2

    cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cv_net.enableFusion(fusion)
    cv_net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv_net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, array in inputs.items():
        cv_net.setInput(array, name)
    outputs = net.outputs()
    names = []
    for value in outputs:
        producer = net.producer(value)
        index = producer.outputs.index(value)
        names.append(producer.caffe_name if index == 0 else f"{producer.caffe_name}.{index}")
    results = cv_net.forward(names)
    return {net.value_name(v): np.asarray(r) for v, r in zip(outputs, results)}
