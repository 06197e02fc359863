"""Importing this module registers every ONNX -> Caffe converter (one module per op family)."""
from . import activation, arith, conv, dense, norm, pad, pool, reduce, reshape, resize, softmax  # noqa: F401
