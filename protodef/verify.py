"""`convert --verify` and `--fp16`: run what was written on seeded random inputs next to a second computation
of the same net, and report the largest difference.

Second backends: for an ONNX file, protodef's PyTorch lowering of the same net when torch is installed (a check
of the conversion itself), else onnx's reference evaluator (NumPy; a check that onnxruntime runs the file as
ONNX specifies); for PyTorch output, onnxruntime on the ONNX lowering. --fp16 compares with float32.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

Outputs = dict[str, np.ndarray]
Runner = Callable[[Mapping[str, np.ndarray]], Outputs]

FLOAT32_TOLERANCE = 1e-4   # the project's: max |difference| <= 1e-4 * max(1, |reference|)
FLOAT16_TOLERANCE = 1e-2   # float16 keeps about three significant digits


@dataclass(frozen=True)
class Comparison:
    subject: str            # what was written and run: "onnxruntime on net.onnx"
    reference: str          # what it was compared with
    output: str = ""        # the output that differs most, relative to its tolerance
    difference: float = 0.0
    magnitude: float = 0.0  # max |reference| of that output
    tolerance: float = FLOAT32_TOLERANCE
    problem: str = ""       # shapes or NaN/Inf that do not match: no number says it

    @property
    def agrees(self) -> bool:
        return not self.problem and self.difference <= self.tolerance * max(1.0, self.magnitude)

    def line(self) -> str:
        head = f"{self.subject} against {self.reference}"
        if self.problem:
            return f"{head}: {self.problem}"
        verdict = "agree" if self.agrees else f"differ (tolerance {self.tolerance:g} x max(1, |reference|))"
        return (f"{head}: largest difference {self.difference:.3g} in '{self.output}' (|reference| up to "
                f"{self.magnitude:.3g}): {verdict}")


def random_inputs(net, seed: int = 0) -> Outputs:
    """Standard normal float32 for every net input, by its ONNX/PyTorch name; an input that a ROI layer reads
    as its boxes gets valid ones instead (see `random_rois`). Named sizes (`--input-shape data=N,3,H,W`) take
    the numbers protodef.sizes.sizes_to_run picks."""
    from .sizes import sizes_to_run
    rng = np.random.default_rng(seed)
    sizes = sizes_to_run(net)
    inputs = {net.value_name(i.value): rng.standard_normal(_concrete(net.shape(i.value), sizes)).astype(np.float32)
              for i in net.inputs}
    for value, batch, image in _rois_inputs(net, sizes):
        name = net.value_name(value)
        inputs[name] = random_rois(rng, inputs[name].shape, batch, image)
    return inputs


def random_rois(rng: np.random.Generator, shape: tuple[int, ...], batch: int, image: tuple[float, float]) -> np.ndarray:
    """Boxes (batch index, x1, y1, x2, y2) as ROIPooling and PSROIPooling read them, `shape` (R, 5, ...): an
    integer batch index in [0, batch), corners within the image (height, width) in pixels, x1 <= x2 and
    y1 <= y2. Standard normal values there are negative or fractional batch indices, which Caffe's kernels read
    out of bounds and onnxruntime refuses."""
    count = shape[0]
    rois = np.empty((count, 5), np.float32)
    rois[:, 0] = rng.integers(0, batch, count)
    for axis, size in ((1, image[1]), (2, image[0])):     # x from the width, y from the height
        corners = np.sort(rng.uniform(0.0, max(size - 1.0, 0.0), (count, 2)), axis=1)
        rois[:, axis], rois[:, axis + 2] = corners[:, 0], corners[:, 1]
    return rois.reshape(shape)


def _concrete(shape, sizes: Mapping[str, int]) -> tuple[int, ...]:
    from .symbolic import evaluate
    return tuple(evaluate(dim, sizes) for dim in shape)


def _rois_inputs(net, sizes: Mapping[str, int]) -> list[tuple]:
    """(net input, batch size, image (height, width)) for each net input a ROI layer reads as its boxes: the
    image is the layer's feature map scaled back by its spatial_scale. Rois computed inside the net (a
    proposal layer) are left to it."""
    net_inputs = {i.value for i in net.inputs}
    found = {}
    for layer in net.layers():
        index = layer.spec.rois_input
        if index is None or layer.inputs[index] not in net_inputs or layer.inputs[index] in found:
            continue
        n, _, h, w = _concrete(net.shape(layer.inputs[0]), sizes)
        scale = float(layer.params.spatial_scale)
        found[layer.inputs[index]] = (n, (h / scale, w / scale) if scale > 0 else (h, w))
    return [(value, batch, image) for value, (batch, image) in found.items()]


def compare(subject: tuple[str, Runner], reference: tuple[str, Runner], inputs: Mapping[str, np.ndarray], *,
            tolerance: float = FLOAT32_TOLERANCE) -> Comparison:
    """Run both on `inputs`; the output that differs most relative to its tolerance."""
    found, expected = subject[1](inputs), reference[1](inputs)
    worst = Comparison(subject[0], reference[0], tolerance=tolerance)
    for name, want in expected.items():
        if name not in found:
            continue
        got = found[name]
        if got.shape != want.shape:
            return Comparison(subject[0], reference[0], name, tolerance=tolerance,
                              problem=f"'{name}' has shape {got.shape}, the reference {want.shape}")
        problem = _non_finite_mismatch(got, want)
        if problem:
            return Comparison(subject[0], reference[0], name, tolerance=tolerance, problem=f"'{name}' {problem}")
        difference, magnitude = _largest_difference(got, want)
        candidate = Comparison(subject[0], reference[0], name, difference, magnitude, tolerance)
        if _ratio(candidate) > _ratio(worst) or not worst.output:
            worst = candidate
    return worst


def _ratio(comparison: Comparison) -> float:
    return comparison.difference / max(1.0, comparison.magnitude)


def _non_finite_mismatch(got: np.ndarray, want: np.ndarray) -> str:
    got_bad, want_bad = ~np.isfinite(got.astype(np.float64)), ~np.isfinite(want.astype(np.float64))
    if np.array_equal(got_bad, want_bad):
        return ""
    if got_bad.any() and not want_bad[got_bad].all():
        return "is NaN or Inf where the reference is finite (float16 overflows beyond 65504)"
    return "is finite where the reference is NaN or Inf"


def _largest_difference(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    finite = np.isfinite(want.astype(np.float64))
    if not finite.any():
        return 0.0, 0.0
    got, want = got.astype(np.float64)[finite], want.astype(np.float64)[finite]
    return float(np.max(np.abs(got - want))), float(np.max(np.abs(want)))


# ---- runners --------------------------------------------------------------------------------------------------
def onnxruntime_runner(model: str | bytes) -> Runner:
    """onnxruntime on a model file (or serialized model); float inputs are given in the model's own type."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3      # its notes on constant folding are not the user's concern
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    types = {i.name: np.float16 if i.type == "tensor(float16)" else np.float32 for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]

    def run(inputs: Mapping[str, np.ndarray]) -> Outputs:
        feeds = {name: np.asarray(value, types.get(name, np.float32)) for name, value in inputs.items()}
        return dict(zip(names, session.run(names, feeds)))
    return run


def reference_runner(model_path: str) -> Runner:
    """onnx's reference evaluator: the operators as ONNX specifies them, in NumPy (slow, independent)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(model_path)
    evaluator = ReferenceEvaluator(model)
    types = {i.name: np.float16 if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 else np.float32
             for i in model.graph.input}
    names = [o.name for o in model.graph.output]

    def run(inputs: Mapping[str, np.ndarray]) -> Outputs:
        feeds = {name: np.asarray(value, types.get(name, np.float32)) for name, value in inputs.items()}
        return dict(zip(names, evaluator.run(names, feeds)))
    return run


def torch_runner(module, dtype: str = "float32", *, input_names=None, output_names=None) -> Runner:
    """A torch module taking the net's inputs in order: protodef's GraphModule or a generated class (both
    name them in `input_names`/`output_names`), or a torch.export program's module (names given)."""
    import torch

    torch_dtype = getattr(torch, dtype)
    input_names = input_names or module.input_names
    output_names = output_names or module.output_names

    def run(inputs: Mapping[str, np.ndarray]) -> Outputs:
        arguments = [torch.from_numpy(np.asarray(inputs[name], np.float32)).to(torch_dtype) for name in input_names]
        with torch.inference_mode():
            result = module(*arguments)
        results = result if isinstance(result, (tuple, list)) else (result,)
        return {name: value.float().numpy() for name, value in zip(output_names, results)}
    return run


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def generated_module(path: str | Path):
    """The model of a generated .py file (its load_model(): the weights beside it), as written."""
    path = Path(path)
    name = f"protodef_verify_{path.stem}"
    # An explicit source loader: `-o model.pytorch` is Python source too, whatever the suffix says.
    spec = importlib.util.spec_from_loader(name, importlib.machinery.SourceFileLoader(name, str(path)))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_model()


def exported_module(path: str | Path):
    """The module of a torch.export program (.pt2)."""
    import torch

    return torch.export.load(str(path)).module()
