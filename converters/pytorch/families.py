"""Importing this module registers every built-in PyTorch converter: one module per layer family (FAMILIES)."""
from . import (  # noqa: F401
    activation,
    conv,
    dense,
    detection,
    loss,
    merge,
    misc,
    norm,
    pool,
    reshape,
    resize,
    softmax,
)
