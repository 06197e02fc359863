"""Importing this module registers every built-in ONNX converter: one module per layer family (FAMILIES)."""
from . import (  # noqa: F401
    activation,
    conv,
    dense,
    detection,
    merge,
    misc,
    norm,
    pool,
    reshape,
    resize,
    softmax,
)
