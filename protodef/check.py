"""`protodef check`: every available backend on the same seeded inputs, compared blob by blob.

The reference is OpenCV's dnn (an independent Caffe implementation) when it is installed and runs the net,
else onnxruntime (else PyTorch). Each backend runs the net as lowered without folding, so every Caffe blob the passes keep
can be compared; the folded ONNX and PyTorch models are compared on the net's outputs. The report says what
each backend was compared on, and claims agreement only over comparisons made. A backend that cannot load or
run the net is skipped with a one-line reason; the inputs are protodef.verify's `random_inputs`.
"""
from __future__ import annotations

import math
import os
import re
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
    reference: str = ""   # what the others were compared with: the report's reference, or onnxruntime where
                          # OpenCV is known not to be Caffe


@dataclass
class BackendSummary:
    """One backend against the reference: how many blobs it was compared on, its largest difference (outside
    near-ties) and where, and the first blob beyond the tolerance."""

    backend: str
    compared: int
    worst: BlobRow | None
    worst_diff: tuple[float, float]
    first_bad: BlobRow | None
    near_ties: int


@dataclass
class CheckReport:
    reference: str
    backends: list[str]
    rows: list[BlobRow]
    skipped: dict[str, str]
    first_disagreement: BlobRow | None = None

    @property
    def ok(self) -> bool:
        """Agreement needs something compared: a second implementation (folded onnxruntime against
        onnxruntime is one), and every backend compared on some blob."""
        return self.first_disagreement is None and len(self.implementations) > 1 and not self.uncompared

    @property
    def implementations(self) -> list[str]:
        """The libraries that ran ("onnxruntime" for onnxruntime and onnxruntime-folded), reference first."""
        return list(dict.fromkeys(name.split("-")[0] for name in [self.reference, *self.backends]))

    @property
    def uncompared(self) -> list[str]:
        """Backends that ran but were compared on no blob (their names match none of the reference's)."""
        return [summary.backend for summary in self.summaries() if summary.compared == 0]

    def summaries(self) -> list[BackendSummary]:
        return [_summary(backend, self.rows) for backend in self.backends]


def _summary(backend: str, rows: list[BlobRow]) -> BackendSummary:
    """A backend is compared on a blob where it differs from the blob's reference by some amount, and where it
    is that reference itself (onnxruntime, from a layer where OpenCV is not Caffe on) for the others."""
    compared = [row for row in rows if backend in row.diffs]
    counted = [row for row in compared if backend not in row.near_ties]
    worst = max(counted, key=lambda row: row.diffs[backend][0], default=None)
    as_reference = sum(1 for row in rows if row.reference == backend and row.diffs)
    return BackendSummary(backend, len(compared) + as_reference, worst,
                          worst.diffs[backend] if worst else (0.0, 0.0),
                          next((row for row in compared if backend in row.bad), None),
                          len(compared) - len(counted))


def check_net(net: Net, *, seed: int = 0, prototxt: str | None = None, weights: str | None = None) -> CheckReport:
    """Run `net` (with weights) through every backend that is available and compare."""
    from .api import lower
    from .verify import random_inputs

    lowered, folded = lower(net, fold=False), lower(net, fold=True)
    inputs = random_inputs(lowered, seed)
    results: dict[str, dict[str, np.ndarray]] = {}
    skipped: dict[str, str] = {}
    for name, run in (("opencv", _run_opencv), ("onnxruntime", _run_onnx), ("onnxruntime-folded", _run_onnx_folded),
                      ("pytorch", _run_torch), ("pytorch-folded", _run_torch_folded)):
        try:
            results[name] = run(net, lowered if not name.endswith("-folded") else folded, inputs, prototxt=prototxt,
                                weights=weights)
        except _Skip as reason:
            skipped[name] = str(reason)
    # A backend raising on this net is skipped, the reference too: then the next library that ran is.
    reference = next((name for name in ("opencv", "onnxruntime", "pytorch") if name in results), "onnxruntime")
    if reference not in results:
        return CheckReport(reference, [], [], skipped)
    rows = _compare(lowered, results, reference)
    first = next((row for row in rows if row.bad), None)
    return CheckReport(reference, [b for b in results if b != reference], rows, skipped, first)


class _Skip(Exception):
    """A backend that cannot run here (not installed, or it cannot take this net)."""


def _cannot_run(library: str, error: Exception) -> _Skip:
    """The skip for a backend library that raised while running a net protodef converted, with the first line
    of its message. A ProtodefError (from protodef code the backend called back into) is protodef's own: it is
    raised again, not skipped."""
    from .errors import ProtodefError
    if isinstance(error, ProtodefError):
        raise error
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = lines[0] if lines else type(error).__name__
    return _Skip(f"{library} cannot run this net: {_shortened(message)}")


def _shortened(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _opencv_reason(text: str) -> str:
    """OpenCV's multi-line cv2.error text as one line: its kind and message, and the function that raised.

        OpenCV(4.14.0) .../net_impl.cpp:1193: error: (-2:Unspecified error) in function 'void cv::dnn::\
        dnn4_v20260709::Net::Impl::getLayerShapesRecursively(int, LayersShapesMap&)'
        >  (expected: 'total(os[i]) > 0'), where
        >     'total(os[i])' is 0
        ...
    becomes "Unspecified error: expected 'total(os[i]) > 0', where 'total(os[i])' is 0, must be greater than
    '0' is 0 (in cv::dnn::Net::Impl::getLayerShapesRecursively)"; an assertion's message is its condition.
    Text in no such form gives its first line."""
    match = re.search(r"error: \((-?\d+):([^)]*)\)(.*?)\bin function '([^']*)'(.*)", text, re.DOTALL)
    if not match:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return _shortened(lines[0] if lines else "no message")
    kind, before, function, after = match.group(2).strip(), match.group(3), match.group(4), match.group(5)
    detail = " ".join(line.strip().lstrip(">").strip() for line in (before + "\n" + after).splitlines())
    detail = " ".join(detail.split())
    detail = re.sub(r"^\(expected: ('[^']*')\)", r"expected \1", detail)     # CV_Check's form...
    detail = detail.replace(" must be ", ", must be ")                             # ...with its second value
    return f"{kind}: {_shortened(detail, 200) or 'no message'} (in {_function_name(function)})"


def _function_name(signature: str) -> str:
    """'virtual bool cv::dnn::dnn4_v20260709::PoolingLayerImpl::getMemoryShapes(...) const' ->
    'cv::dnn::PoolingLayerImpl::getMemoryShapes' (no return type, arguments, or dnn's versioned namespace)."""
    name = signature.split("(")[0].split()[-1] if signature.split("(")[0].split() else signature
    return re.sub(r"::dnn4_v\d+", "", name)


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
            expected = np.asarray(results[row_reference][name])
            scale = float(np.max(np.abs(expected))) if expected.size else 0.0
            row = BlobRow(name, layer.name, net.shape(value), reference=row_reference)
            for backend, values in results.items():
                if backend == row_reference or name not in values or (backend == "opencv" and value in tainted):
                    continue
                row.diffs[backend] = _difference(values[name], expected, scale)
                if row.diffs[backend][0] <= 1e-4 * max(1.0, scale):     # tolerance(expected)
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


def _difference(actual: np.ndarray, expected: np.ndarray, scale: float) -> tuple[float, float]:
    """The largest absolute difference, and that over the reference's largest magnitude `scale`; inf when the
    shapes differ. Float32 blobs are subtracted in float32: its rounding of a difference is 1e-7 of it, far
    below the tolerance, while copying every blob of every backend to float64 took a fifth of a large net's
    check."""
    actual = np.asarray(actual)
    if actual.shape != expected.shape and actual.size == expected.size:
        actual = actual.reshape(expected.shape)
    if actual.shape != expected.shape:
        return math.inf, math.inf
    if not expected.size:
        return 0.0, 0.0
    if actual.dtype != np.float32 or expected.dtype != np.float32:
        actual, expected = actual.astype(np.float64), expected.astype(np.float64)
    difference = np.subtract(actual, expected)
    diff = float(np.max(np.abs(difference, out=difference)))
    return diff, diff / scale if scale else diff


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
        log = _opencv_log()
        try:
            with log:
                cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(model))
                cv_net.enableFusion(False)   # fused layers would hide the blobs in between
                for name, array in inputs.items():
                    cv_net.setInput(array, name)
                names = _opencv_layer_names(lowered)
                outputs = cv_net.forward(list(names))
        except cv2.error as error:
            raise _Skip(f"OpenCV cannot run this net: {_opencv_reason(str(error))}{log.layer()}") from None
        except Exception as error:   # noqa: BLE001 - whatever else OpenCV raises is a skip too
            raise _cannot_run("OpenCV", error) from None
    return {value_name: np.asarray(out) for value_name, out in zip(names.values(), outputs)}


class _opencv_log:
    """OpenCV's log (written by its C++ code to file descriptor 2) kept out of check's output while it runs:
    its ERROR lines repeat, over several lines, the cv2.error that the skip reason gives. What they add, the
    layer it failed on, is `layer()`. Where descriptor 2 cannot be redirected, the log is left as it is."""

    def __init__(self) -> None:
        self.text = ""
        self.saved: int | None = None
        self.file = None

    def __enter__(self) -> _opencv_log:
        import sys
        try:
            sys.stderr.flush()
            self.file = tempfile.TemporaryFile()
            self.saved = os.dup(2)
            os.dup2(self.file.fileno(), 2)
        except (OSError, ValueError):
            self._close()
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            os.dup2(self.saved, 2)
            self.file.seek(0)
            self.text = self.file.read().decode("utf-8", "replace")
        self._close()

    def _close(self) -> None:
        if self.saved is not None:
            os.close(self.saved)
            self.saved = None
        if self.file is not None:
            self.file.close()
            self.file = None

    def layer(self) -> str:
        """", at layer 'pool' (Pooling)" from OpenCV's "[Pooling]:(pool): getMemoryShapes() ...", else ""."""
        found = re.findall(r"\[(\w+)\]:\(([^)]*)\):", self.text)
        return f", at layer '{found[-1][1]}' ({found[-1][0]})" if found else ""


def _opencv_layer_names(net: Net) -> dict[str, str]:
    """OpenCV layer name -> our value name, for layers with one output and a name used once, and for each top
    of a Convolution of several bottoms: OpenCV 4.14 makes it one layer per top, named after that top."""
    counts: dict[str, int] = {}
    for layer in net.layers():
        counts[layer.caffe_name] = counts.get(layer.caffe_name, 0) + 1
    names = {layer.caffe_name: net.value_name(layer.outputs[0]) for layer in net.layers()
             if len(layer.outputs) == 1 and counts[layer.caffe_name] == 1 and layer.caffe_name == layer.name}
    for layer in net.layers(type="Convolution"):
        if len(layer.inputs) > 1 and counts[layer.caffe_name] == 1 and layer.caffe_name == layer.name:
            names.update({v.blob: net.value_name(v) for v in layer.outputs if v.blob not in counts})
    return names


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
    options.log_severity_level = 4    # its errors are raised, and become the skip reason; its log repeats them
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, inputs)))
    except Exception as error:   # noqa: BLE001 - onnxruntime's errors have no common base but Exception
        raise _cannot_run("onnxruntime", error) from None


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

    try:
        with torch.no_grad():    # the interpreter only where blobs are wanted: it costs time on every node
            result = Recorder(module).run(*arguments) if wanted else module(*arguments)
    except Exception as error:   # noqa: BLE001 - torch's RuntimeError, and what its operators raise
        raise _cannot_run("PyTorch", error) from None
    results = result if isinstance(result, tuple) else (result,)
    for name, tensor in zip(module.output_names, results):
        captured[name] = tensor.detach().numpy()
    return captured


def _run_torch_folded(net: Net, folded: Net, inputs, **options) -> dict[str, np.ndarray]:
    return _run_torch(net, folded, inputs, every_blob=False)


TOLERANCE_TEXT = "1e-4 x max(1, |ref|)"


def format_report(report: CheckReport, *, every_blob: bool = False) -> str:
    """A line per backend (blobs compared, the largest difference and where, the first blob beyond the
    tolerance), what was skipped, and the verdict; `every_blob` adds the blob-by-blob table."""
    lines = [f"reference: {report.reference}"]
    if report.backends:
        lines += _summary_table(report)
        if every_blob:
            lines += [""] + _blob_table(report) + [""]
    for backend, reason in report.skipped.items():
        lines.append(f"skipped {backend}: {reason}")
    lines += _verdict(report)
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


def _summary_table(report: CheckReport) -> list[str]:
    header = ["backend", "blobs", "worst abs / rel", "at blob", f"first beyond {TOLERANCE_TEXT}"]
    body = []
    for summary in report.summaries():
        absolute, relative = summary.worst_diff
        worst = f"{absolute:.2e} / {relative:.2e}" if summary.worst else "-"
        first = summary.first_bad.name if summary.first_bad else ("none" if summary.compared else "-")
        ties = f" (+{summary.near_ties} ~)" if summary.near_ties else ""
        body.append([summary.backend, f"{summary.compared}{ties}", worst,
                     summary.worst.name if summary.worst else "-", first])
    return _aligned([header, *body])


def _blob_table(report: CheckReport) -> list[str]:
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
    return _aligned([header, *body])


def _aligned(table: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for index, cells in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _verdict(report: CheckReport) -> list[str]:
    """Agreement is claimed only over comparisons made: never with one backend, nor for one compared on
    nothing."""
    if not report.backends:
        if report.reference in report.skipped:
            return ["NOTHING COMPARED: neither OpenCV, onnxruntime nor PyTorch could run the net (see the skips)"]
        return [f"NOTHING COMPARED: only {report.reference} ran, so there is nothing to compare it with"]
    lines = []
    if len(report.implementations) < 2:
        forms = ", ".join([report.reference, *report.backends])
        lines.append(f"ONE IMPLEMENTATION: only {report.reference} ran ({forms}), which compared with itself shows "
                     "nothing: see why the others were skipped")
    lines += [f"NOT COMPARED: {backend} ran, but no blob it gave has a name {report.reference}'s results have"
              for backend in report.uncompared]
    if report.first_disagreement is not None:
        row = report.first_disagreement
        lines.append(f"FIRST DISAGREEMENT: blob '{row.name}' of layer '{row.layer}' ({', '.join(row.bad)} beyond "
                     f"{TOLERANCE_TEXT} of {report.reference})")
    elif not lines:
        lines.append(f"all {len(report.rows)} compared blobs agree within {TOLERANCE_TEXT}: "
                     f"{', '.join(report.backends)} against {report.reference}")
    return lines


__all__ = ["check_net", "format_report", "CheckReport", "BackendSummary", "BlobRow", "tolerance"]
