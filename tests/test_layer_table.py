"""docs/layers.md is generated from the registries and must be current (that every layer type converts:
test_parity.py)."""
from __future__ import annotations

from support import REPO

from protodef.layer_table import render


def test_docs_layers_md_is_current():
    assert (REPO / "docs" / "layers.md").read_text() == render(), \
        "docs/layers.md is stale: run `python -m protodef.layer_table > docs/layers.md`"
