"""`protodef check`: every available backend on the same seeded inputs, compared blob by blob.

The reference is OpenCV's dnn (an independent Caffe implementation) when it is installed and loads the net,
else onnxruntime. Each backend runs the net as lowered without folding, so every Caffe blob the passes keep
can be compared; the folded ONNX and PyTorch models are compared on the net's outputs.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from .ir import Net


def tolerance(reference: np.ndarray) -> float:
    """The project's tolerance: max abs diff <= 1e-4 * max(1, |ref|)."""
    return 1e-4 * max(1.0, float(np.max(np.abs(reference))) if reference.size else 1.0)


@dataclass
class BlobRow:
    name: str
    layer: str
    shape: tuple[int, ...]
    diffs: dict[str, tuple[float, float]] = field(default_factory=dict)   # backend -> (max abs, max rel)
    bad: list[str] = field(default_factory=list)                          # backends beyond tolerance
    near_ties: list[str] = field(default_factory=list)    # indices/detections that differ (see _discrete)


@dataclass
class CheckReport:
    reference: str
    backends: list[str]
    rows: list[BlobRow]
    skipped: dict[str, str]
    first_disagreement: BlobRow | None = None
    uncompared: list[str] = field(default_factory=list)    # backends that ran but matched no reference blob

    @property
    def ok(self) -> bool:
        return self.first_disagreement is None and len(self.backends) > 0 and not self.uncompared


def check_net(net: Net, *, seed: int = 0, prototxt: str | None = None, weights: str | None = None) -> CheckReport:
    """Run `net` (with weights) through every backend that is available and compare."""
    from .api import lower

    lowered, folded = lower(net, fold=False), lower(net, fold=True)
    rng = np.random.default_rng(seed)
    inputs = {lowered.value_name(i.value): rng.standard_normal(lowered.shape(i.value)).astype(np.float32)
              for i in lowered.inputs}
    results: dict[str, dict[str, np.ndarray]] = {}
    skipped: dict[str, str] = {}
    for name, run in (("opencv", _run_opencv), ("onnxruntime", _run_onnx), ("onnxruntime-folded", _run_onnx_folded),
                      ("pytorch", _run_torch), ("pytorch-folded", _run_torch_folded)):
        try:
            results[name] = run(net, lowered if not name.endswith("-folded") else folded, inputs, prototxt=prototxt,
                                weights=weights)
        except _Skip as reason:
            skipped[name] = str(reason)
    reference = "opencv" if "opencv" in results else "onnxruntime"
    if reference not in results:
        return CheckReport(reference, [], [], skipped)
    rows = _compare(lowered, results, reference)
    first = next((row for row in rows if row.bad), None)
    backends = [b for b in results if b != reference]
    # A backend that ran but matched no blob of the reference agrees with nothing.
    uncompared = [b for b in backends if not any(b in row.diffs for row in rows)]
    return CheckReport(reference, [b for b in backends if b not in uncompared], rows, skipped, first, uncompared)


class _Skip(Exception):
    """A backend that cannot run here (not installed, or it cannot take this net)."""


def _discrete(layer, index: int) -> bool:
    """Outputs that are indices or detections: a rounding-level difference in the values before them can
    change them (near-ties), so they are shown but do not count as a disagreement."""
    if layer.type == "Pooling" and index == 1:
        return True
    if layer.type == "ArgMax" and not getattr(layer.params, "out_max_val", True):
        return True
    return bool(layer.spec.dynamic_axes)


def _compare(net: Net, results: dict[str, dict[str, np.ndarray]], reference: str) -> list[BlobRow]:
    rows = []
    tainted: set = set()
    for layer in net.layers():
        if layer.spec.differs_in_opencv(layer.params) or any(v in tainted for v in layer.inputs):
            tainted.update(layer.outputs)
    # backend family ("pytorch" for pytorch and pytorch-folded) -> values computed from a near-tie index
    after_near_tie: dict[str, set] = {}
    for layer in net.layers():
        for values in after_near_tie.values():
            if any(v in values for v in layer.inputs):
                values.update(layer.outputs)
        for index, value in enumerate(layer.outputs):
            name = net.value_name(value)
            row_reference = reference
            if reference == "opencv" and (value in tainted or name not in results["opencv"]):
                row_reference = "onnxruntime"
            if row_reference not in results or name not in results[row_reference]:
                continue
            expected = np.asarray(results[row_reference][name], dtype=np.float64)
            row = BlobRow(name, layer.name, net.shape(value))
            for backend, values in results.items():
                if backend == row_reference or name not in values or (backend == "opencv" and value in tainted):
                    continue
                actual = np.asarray(values[name], dtype=np.float64)
                if actual.shape != expected.shape and actual.size == expected.size:
                    actual = actual.reshape(expected.shape)
                if actual.shape != expected.shape:
                    row.diffs[backend] = (math.inf, math.inf)
                else:
                    diff = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
                    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
                    row.diffs[backend] = (diff, diff / scale if scale else diff)
                    if diff <= tolerance(expected):
                        continue
                family = backend.split("-")[0]
                if _discrete(layer, index) or value in after_near_tie.get(family, ()):
                    row.near_ties.append(backend)
                    after_near_tie.setdefault(family, set()).add(value)
                else:
                    row.bad.append(backend)
            if row.diffs:
                rows.append(row)
    return rows


def _run_opencv(net: Net, lowered: Net, inputs, *, prototxt, weights) -> dict[str, np.ndarray]:
    try:
        import cv2
    except ImportError:
        raise _Skip("OpenCV is not installed (pip install 'opencv-python-headless<5')") from None
    if prototxt is None:
        raise _Skip("needs the prototxt path")
    with tempfile.TemporaryDirectory() as tmp:
        model = weights
        if model is None:
            from .weights import write_caffemodel
            model = os.path.join(tmp, "weights.caffemodel")
            write_caffemodel(model, [(l.caffe_name, l.type, list(l.weights)) for l in net.layers() if l.weights])
        try:
            cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(model))
            cv_net.enableFusion(False)   # fused layers would hide the blobs in between
            for name, array in inputs.items():
                cv_net.setInput(array, name)
            names = _opencv_layer_names(lowered)
            outputs = cv_net.forward(list(names))
        except cv2.error as error:
            raise _Skip(f"OpenCV cannot run this net: {str(error).strip().splitlines()[-1][:160]}") from None
    return {value_name: np.asarray(out) for value_name, out in zip(names.values(), outputs)}


def _opencv_layer_names(net: Net) -> dict[str, str]:
    """OpenCV layer name -> our value name, for layers with one output and a name used once."""
    counts: dict[str, int] = {}
    for layer in net.layers():
        counts[layer.caffe_name] = counts.get(layer.caffe_name, 0) + 1
    return {layer.caffe_name: net.value_name(layer.outputs[0]) for layer in net.layers()
            if len(layer.outputs) == 1 and counts[layer.caffe_name] == 1 and layer.caffe_name == layer.name}


def _run_onnx(net: Net, lowered: Net, inputs, *, every_blob: bool = True, **_) -> dict[str, np.ndarray]:
    try:
        import onnxruntime
        from converters.onnx import to_onnx
    except ImportError as error:
        raise _Skip(f"onnxruntime is not installed ({error})") from None
    from .errors import UnsupportedError
    try:
        model = to_onnx(lowered)
    except UnsupportedError as error:
        raise _Skip(str(error)) from None
    if every_blob:
        known = {o.name for o in model.graph.output}
        model.graph.output.extend([v for v in model.graph.value_info if v.name not in known])
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def _run_onnx_folded(net: Net, folded: Net, inputs, **options) -> dict[str, np.ndarray]:
    """Folding changes the blobs inside the net; only the outputs are compared."""
    return _run_onnx(net, folded, inputs, every_blob=False)


def _run_torch(net: Net, lowered: Net, inputs, *, every_blob: bool = True, **_) -> dict[str, np.ndarray]:
    try:
        import torch
        from converters.pytorch import to_torch
    except ImportError as error:
        raise _Skip(f"torch is not installed ({error})") from None
    from .errors import UnsupportedError
    try:
        module = to_torch(lowered)
    except UnsupportedError as error:
        raise _Skip(str(error)) from None
    arguments = [torch.from_numpy(inputs[lowered.value_name(i.value)]) for i in lowered.inputs]
    captured: dict[str, np.ndarray] = {}
    value_nodes = getattr(module, "value_nodes", {}) if every_blob else {}
    wanted = {node: value for value, node in value_nodes.items()}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            if node.name in wanted and isinstance(result, torch.Tensor):
                captured[wanted[node.name]] = result.detach().numpy().copy()
            return result

    with torch.no_grad():
        result = Recorder(module).run(*arguments)
    results = result if isinstance(result, tuple) else (result,)
    for name, tensor in zip(module.output_names, results):
        captured[name] = tensor.detach().numpy()
    return captured


def _run_torch_folded(net: Net, folded: Net, inputs, **options) -> dict[str, np.ndarray]:
    return _run_torch(net, folded, inputs, every_blob=False)


def format_report(report: CheckReport) -> str:
    lines = []
    if not report.backends:
        lines.append(f"no backend to compare with {report.reference}")
    else:
        lines.append(f"reference: {report.reference}; compared: {', '.join(report.backends)}")
        header = ["blob", "layer", "shape"] + [f"{b} abs / rel" for b in report.backends]
        body = []
        for row in report.rows:
            cells = [row.name, row.layer, "x".join(map(str, row.shape))]
            for backend in report.backends:
                if backend in row.diffs:
                    a, r = row.diffs[backend]
                    mark = " !" if backend in row.bad else (" ~" if backend in row.near_ties else "")
                    cells.append(f"{a:.2e} / {r:.2e}{mark}")
                else:
                    cells.append("-")
            body.append(cells)
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        for index, cells in enumerate([header, *body]):
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
            if index == 0:
                lines.append("  ".join("-" * w for w in widths))
    for backend, reason in report.skipped.items():
        lines.append(f"skipped {backend}: {reason}")
    for backend in report.uncompared:
        lines.append(f"FAILED {backend}: it ran, but none of its blobs matched one of the reference by name")
    if report.first_disagreement is not None:
        row = report.first_disagreement
        lines.append(f"FIRST DISAGREEMENT: blob '{row.name}' of layer '{row.layer}' ({', '.join(row.bad)} beyond "
                     f"1e-4 x max(1, |ref|) of {report.reference})")
    elif report.backends and not report.uncompared:
        lines.append(f"all {len(report.rows)} compared blobs agree within 1e-4 x max(1, |ref|)")
    elif not report.backends:
        lines.append(f"nothing was compared: no backend ran besides the reference ({report.reference})")
    if any(row.near_ties for row in report.rows):
        lines.append("~ indices or detections that differ where the values before them tie to float rounding, "
                     "and what is computed from them; not counted as a disagreement")
    if report.reference == "opencv":
        lines.append("from layers where OpenCV is known not to be Caffe (" + ", ".join(_opencv_differences())
                     + ") on, the reference is onnxruntime")
    return "\n".join(lines)


def _opencv_differences() -> list[str]:
    from .layers.registry import LAYER_SPECS
    return sorted(name for name, spec in LAYER_SPECS.items() if spec.opencv_differs is not None)


__all__ = ["check_net", "format_report", "CheckReport", "BlobRow", "tolerance"]
