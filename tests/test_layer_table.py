"""docs/layers.md is generated from the registries and must be current; every layer type is lowered."""
from __future__ import annotations

from support import REPO

from protodef.layer_table import render
from protodef.layers.registry import LAYER_SPECS


def test_docs_layers_md_is_current():
    assert (REPO / "docs" / "layers.md").read_text() == render(), \
        "docs/layers.md is stale: run `python -m protodef.layer_table > docs/layers.md`"


def test_every_layer_type_has_an_onnx_converter_or_is_removed_before_lowering():
    from converters.onnx import registry
    missing = [t for t, spec in LAYER_SPECS.items()
               if not (spec.produces_input or spec.training_only or spec.plugin) and t not in registry.ONNX_CONVERTERS]
    assert missing == []


def test_each_type_is_defined_and_converted_in_its_family_module():
    """A spec, its ONNX converter and its PyTorch converter sit in same-named modules: the type's family."""
    from converters.onnx.registry import ONNX_CONVERTERS
    from converters.pytorch.registry import TORCH_CONVERTERS
    misplaced = []
    for name, spec in LAYER_SPECS.items():
        if spec.plugin:
            continue
        places = {"spec": spec.params.__module__}
        for backend, table in (("onnx", ONNX_CONVERTERS), ("pytorch", TORCH_CONVERTERS)):
            if table.get(name) is not None:
                places[backend] = table.get(name).__module__
        wrong = {what: module for what, module in places.items() if module.rsplit(".", 1)[1] != spec.family}
        if wrong:
            misplaced.append((name, spec.family, wrong))
    assert misplaced == []


def test_every_family_is_one_module_in_each_package():
    from protodef.layers.registry import FAMILIES
    for package in ("protodef/layers", "converters/onnx", "converters/pytorch"):
        families = {path.stem for path in (REPO / package).glob("*.py")} & set(FAMILIES)
        used = {spec.family for _, spec in LAYER_SPECS.items() if not spec.plugin}
        assert used - {"data", "loss"} <= families, package
    assert not [p for p in REPO.glob("**/*_extra.py") if ".venv" not in p.parts]


def test_every_type_an_onnx_converter_lowers_the_pytorch_backend_lowers_too():
    """The backends cover the same deploy-time types (training-only ones are PyTorch's alone: TRAIN phase)."""
    from converters.onnx.registry import ONNX_CONVERTERS
    from converters.pytorch.registry import TORCH_CONVERTERS
    deploy = {name for name, spec in LAYER_SPECS.items()
              if not (spec.plugin or spec.produces_input or spec.training_only)}
    assert {name for name in ONNX_CONVERTERS if name in deploy} == {name for name in TORCH_CONVERTERS
                                                                    if name in deploy}
    assert not set(ONNX_CONVERTERS) - deploy
