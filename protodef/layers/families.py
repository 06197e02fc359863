"""Importing this module registers every built-in layer type: one module per family (FAMILIES)."""
from . import (  # noqa: F401
    activation,
    conv,
    data,
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
