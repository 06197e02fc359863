"""Importing this module registers every ONNX -> Caffe converter (one module per op family)."""
from . import (  # noqa: F401
    activation,
    arith,
    conv,
    dense,
    norm,
    pad,
    pool,
    reduce,
    reshape,
    resize,
    softmax,
)
