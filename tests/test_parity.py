"""One parity harness over every layer type (parity_cases.py): each case through onnxruntime and the PyTorch
module, folded and unfolded, equals OpenCV dnn where OpenCV is Caffe for the case, and the NumPy transcription of
Caffe where the case has one; the torch module also writes out as source, scripts and exports. Every type the
backends convert has converters in both and at least one case."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from parity_cases import CASES, CORPUS_CASES, Case
from support import (
    CORPUS,
    check_onnx_shapes,
    opencv_forward,
    random_inputs,
    run_onnx,
    run_torch,
    static_shape,
)

from converters.onnx import to_onnx
from converters.onnx.registry import ONNX_CONVERTERS
from converters.pytorch import save_pytorch, to_torch
from converters.pytorch.registry import TORCH_CONVERTERS
from protodef import Net, lower, read_net
from protodef.errors import UnsupportedError
from protodef.layers.registry import LAYER_SPECS
from protodef.passes.pipeline import FOLDING
from protodef.weights import write_caffemodel

torch.set_num_threads(2)

# torch 2.13 deprecates TorchScript, and its checker warns about GraphModule's own __init__; we test it anyway.
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning")]


# ---------------------------------------------------------------------------------------------- building
def prototxt_text(case: Case) -> str:
    return (CORPUS / case.corpus).read_text() if case.corpus else case.text


def write_case(directory: Path, case: Case):
    """The case's prototxt and a caffemodel of its seeded random weights (our writer); returns (prototxt,
    caffemodel or "" when no layer has weights, the Net read back through them). A 0-axis blob (a shared
    PReLU slope or Normalize scale) is written as (1,): OpenCV cannot make a 0-axis Mat, our reader takes
    (1,) for a scalar."""
    prototxt = directory / "net.prototxt"
    prototxt.write_text(prototxt_text(case))
    net = read_net(prototxt, init="random", seed=case.seed, **case.read_options)
    if case.weights:
        net = case.weights(net)
    blobs = [(layer.caffe_name, layer.type, [w.reshape(1) if w.ndim == 0 else w for w in layer.weights])
             for layer in net.layers() if layer.weights]
    if not blobs:
        return prototxt, "", net
    caffemodel = directory / "net.caffemodel"
    write_caffemodel(caffemodel, blobs)
    return prototxt, caffemodel, read_net(prototxt, caffemodel, **case.read_options)


def opencv_reference(case: Case, net) -> bool:
    """Whether OpenCV computes what Caffe does for this case: not where the case says otherwise, nor where a
    layer's spec says OpenCV differs for its parameters (unless the case gives OpenCV a net where it does not)."""
    if case.not_opencv:
        return False
    differs = [layer.name for layer in net.layers() if layer.spec.differs_in_opencv(layer.params)]
    return not differs or bool(case.opencv_despite_spec)


@dataclass
class Built:
    """A case's files, net and inputs, and the net as the pass pipeline leaves it (folded or not)."""

    directory: Path
    prototxt: Path
    caffemodel: Path | str
    net: Net
    inputs: dict[str, np.ndarray]
    _lowered: dict[bool, Net] = field(default_factory=dict)
    _modules: dict[bool, torch.fx.GraphModule] = field(default_factory=dict)

    def lowered(self, fold: bool) -> Net:
        if fold not in self._lowered:
            self._lowered[fold] = lower(self.net, fold=fold)
        return self._lowered[fold]

    def folds(self) -> tuple[bool, ...]:
        """Folded, and unfolded where that is another net (the folding passes changed something)."""
        names = {p.__name__ for p in FOLDING}
        changed = any(r.removed or r.added or r.changed or r.rewired
                      for r in self.lowered(True).pass_report.passes if r.name in names)
        return (True, False) if changed else (True,)

    def module(self, fold: bool) -> torch.fx.GraphModule:
        if fold not in self._modules:
            self._modules[fold] = to_torch(self.lowered(fold))
        return self._modules[fold]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each case built once for all the tests that read it."""
    cache: dict[str, Built] = {}

    def get(case: Case) -> Built:
        if case.id not in cache:
            directory = tmp_path_factory.mktemp("case")
            prototxt, caffemodel, net = write_case(directory, case)
            inputs = random_inputs(net, case.seed)
            cache[case.id] = Built(directory, prototxt, caffemodel, net, case.inputs(inputs) if case.inputs else inputs)
        return cache[case.id]
    return get


def references(case: Case, built: Built) -> list[tuple[str, dict]]:
    """(source, outputs by value name) for OpenCV and the NumPy transcription, where they apply. A NumPy
    reference names outputs by Caffe blob, which is the value name but for a layer in place on an input."""
    found = []
    net, inputs = built.net, built.inputs
    if opencv_reference(case, net):
        prototxt = built.prototxt
        if case.opencv_view:
            prototxt = built.directory / "opencv.prototxt"
            prototxt.write_text(case.opencv_view(prototxt_text(case)))
        found.append(("OpenCV", opencv_forward(net, prototxt, built.caffemodel, inputs)))
    if case.reference:
        by_blob = case.reference(net, inputs)
        blobs = sorted(v.blob for v in net.outputs())
        assert sorted(by_blob) == blobs, f"{case.id}: NumPy gives {sorted(by_blob)}, the net outputs {blobs}"
        found.append(("NumPy", {net.value_name(v): by_blob[v.blob] for v in net.outputs()}))
    assert found, f"{case.id}: no reference (neither OpenCV nor a NumPy transcription)"
    return found


# ---------------------------------------------------------------------------------------------- backends
def backend_outputs(case: Case, built: Built):
    """(what, outputs) for onnxruntime at the default opset and the case's others, and for the torch module,
    on the folded net and, where folding changed it, on the unfolded one."""
    inputs = built.inputs
    for fold, lowered in [(fold, built.lowered(fold)) for fold in built.folds()]:
        for opset in (None, *case.opsets):
            model = to_onnx(lowered, opset=opset)
            check_onnx_shapes(model, lowered)
            yield f"onnxruntime (fold={fold}, opset={opset or 'default'})", run_onnx(model, inputs)
        if case.torch_refuses:
            with pytest.raises(UnsupportedError, match=case.torch_refuses):
                to_torch(lowered)
        else:
            yield f"torch (fold={fold})", run_torch(built.module(fold), inputs)


def case_params(cases):
    return [pytest.param(c, id=c.id, marks=[pytest.mark.corpus] if c.corpus else []) for c in cases]


# ---------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("case", case_params(CASES + CORPUS_CASES))
def test_layer_matches_caffe(case, built):
    entry = built(case)
    net = entry.net
    expected = references(case, entry)
    names = [net.value_name(v) for v in net.outputs()]
    first = None
    for backend, outputs in backend_outputs(case, entry):
        assert sorted(outputs) == sorted(names), f"{case.id}: {backend} outputs {sorted(outputs)}"
        for value, name in zip(net.outputs(), names):
            shape = static_shape(net, value)
            assert shape is None or outputs[name].shape == shape, f"{case.id} {name}: {backend} shape"
            for source, reference in expected:
                case.compare(outputs[name], reference[name], f"{case.id} {name}: {backend} vs {source}")
            if first is not None:
                case.compare(outputs[name], first[1][name], f"{case.id} {name}: {backend} vs {first[0]}")
        first = first or (backend, outputs)


def code_signature(module) -> tuple:
    """What code a GraphModule runs: its submodules' classes and the functions and methods its graph calls."""
    calls = {str(node.target) for node in module.graph.nodes if node.op in ("call_function", "call_method")}
    return tuple(sorted({type(child).__name__ for _, child in module.named_children()})), tuple(sorted(calls))


@pytest.fixture(scope="module")
def compiled_code():
    """The code signatures TorchScript and torch.export have compiled so far: they compile the code a module
    runs (~0.15 s a case), and a case whose module runs the same code as one done already, with other numbers,
    adds nothing to compile."""
    return set()


@pytest.mark.parametrize("case", case_params([c for c in CASES if not c.torch_refuses]))
def test_layer_writes_out_as_source_scripts_and_exports(case, built, tmp_path, compiled_code):
    """The unfolded torch module's generated source (run here, in a namespace of its own) with the same state
    dict gives the GraphModule's outputs bit for bit; once per distinct code, so do torch.jit.script and
    torch.export (batch-free where the net allows), to the tolerance."""
    entry = built(case)
    fold = entry.folds()[-1]          # unfolded, unless that is the same net
    inputs, lowered, module = entry.inputs, entry.lowered(fold), entry.module(fold)
    expected = run_torch(module, inputs)
    save_pytorch(lowered, tmp_path / "case.py")
    namespace = {"__file__": str(tmp_path / "case.py"), "__name__": "generated_case"}
    exec(compile((tmp_path / "case.py").read_text(), "case.py", "exec"), namespace)
    generated = namespace["load_model"]()
    for name, value in run_torch(module, inputs, generated).items():
        assert np.array_equal(value, expected[name], equal_nan=True), f"{case.id} {name}: generated source differs"
    if code_signature(module) in compiled_code:
        return
    compiled_code.add(code_signature(module))
    for name, value in run_torch(module, inputs, torch.jit.script(module)).items():
        case.compare(value, expected[name], f"{case.id} {name}: script")
    if case.no_export:
        with pytest.raises(UnsupportedError, match="torch.export failed"):
            save_pytorch(lowered, tmp_path / "case.pt2", form="export")
        return
    save_pytorch(lowered, tmp_path / "case.pt2", form="export")
    exported = torch.export.load(tmp_path / "case.pt2").module()
    for name, value in run_torch(module, inputs, exported).items():
        case.compare(value, expected[name], f"{case.id} {name}: export")


# ------------------------------------------------------------------------------------------------ coverage
def converted_types() -> set[str]:
    """The types that reach a backend: all but those the front end turns into inputs and the passes drop, and
    plugins (each brings its own converters)."""
    return {t for t, spec in LAYER_SPECS.items() if not (spec.produces_input or spec.training_only or spec.plugin)}


def test_every_converted_type_has_an_onnx_and_a_pytorch_converter():
    # Training-only types (losses, Accuracy) are PyTorch's alone: they are computed by the TRAIN-phase lowering.
    deploy = {t for t, spec in LAYER_SPECS.items() if not (spec.plugin or spec.training_only)}
    builtin_onnx = {t for t in ONNX_CONVERTERS if t in deploy}
    builtin_torch = {t for t in TORCH_CONVERTERS if t in deploy}
    assert sorted(builtin_onnx ^ builtin_torch) == [], "a type converts to ONNX or to PyTorch but not to both"
    assert sorted(converted_types() - builtin_onnx) == [], "types with no converter"


def case_types(case: Case, built: Built) -> set[str]:
    """The types a case exercises: as spelled in its prototxt (aliases too), as read, and as the passes leave
    them folded and unfolded (protodef's own ChannelAffine)."""
    spelled = set(re.findall(r'type:\s*"(\w+)"', prototxt_text(case)))
    lowered = {layer.type for fold in (True, False) for layer in built.lowered(fold).layers()}
    return spelled | {layer.type for layer in built.net.layers()} | lowered


def test_every_type_and_alias_has_a_parity_case(built):
    """Adding a layer type means adding its cases to parity_cases.py (corpus cases do not count: CI may lack
    ../shared/corpus)."""
    covered = set().union(*(case_types(case, built(case)) for case in CASES))
    wanted = converted_types() | {alias for t in converted_types() for alias in LAYER_SPECS[t].aliases}
    # The census's types run the same backends against NumPy transcriptions in test_census_layers.py (its cases
    # join this table when they next change).
    census = set(re.findall(r'"(\w+)"', (Path(__file__).parent / "test_census_layers.py").read_text()))
    assert sorted(wanted - covered - census) == []


def test_case_ids_are_unique():
    ids = [case.id for case in CASES + CORPUS_CASES]
    assert len(ids) == len(set(ids))


def test_opencv_is_not_caffe_wherever_a_spec_says_so(built):
    """A spec's opencv_differs makes `protodef check` take onnxruntime as the reference from that layer on, and
    keeps OpenCV out of these tests: every case it applies to must show the difference, against the NumPy
    transcription of Caffe (OpenCV refusing the net counts), or the condition is wider than the truth."""
    import cv2

    flagged, agreeing = [], []
    for case in CASES:
        if case.opencv_despite_spec or not case.reference:
            continue
        entry = built(case)
        layers = [layer for layer in entry.net.layers() if layer.spec.differs_in_opencv(layer.params)]
        if not layers:
            continue
        flagged.append(case.id)
        try:
            outputs = opencv_forward(entry.net, entry.prototxt, entry.caffemodel, entry.inputs)
        except (cv2.error, KeyError, ValueError):
            continue
        expected = case.reference(entry.net, entry.inputs)
        try:
            for value in entry.net.outputs():
                case.compare(outputs[entry.net.value_name(value)], expected[value.blob])
        except AssertionError:
            continue
        agreeing.append(f"{case.id} ({', '.join(sorted({layer.type for layer in layers}))})")
    assert len(flagged) >= 10 and agreeing == []
