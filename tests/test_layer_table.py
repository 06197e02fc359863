"""docs/layers.md is generated from the registries and must be current; every layer type is lowered."""
from __future__ import annotations

from protodef.layer_table import render
from protodef.layers.registry import LAYER_SPECS
from support import REPO


def test_docs_layers_md_is_current():
    assert (REPO / "docs" / "layers.md").read_text() == render(), \
        "docs/layers.md is stale: run `python -m protodef.layer_table > docs/layers.md`"


def test_every_layer_type_has_an_onnx_converter_or_is_removed_before_lowering():
    from converters.onnx import registry
    missing = [t for t, spec in LAYER_SPECS.items()
               if not (spec.produces_input or spec.training_only or spec.plugin) and t not in registry.ONNX_CONVERTERS]
    assert missing == []
