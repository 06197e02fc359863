"""Caffe's protobuf schema (BVLC plus common fork additions) and its bindings.

``caffe_proto.caffe_pb2`` is generated from ``caffe.proto`` by
``python -m caffe_proto.regenerate``; see FORKS.md for the fork additions.

The bindings are imported lazily so that ``python -m caffe_proto.regenerate``
still runs when caffe_pb2.py is missing or was generated for another runtime.
"""

from typing import TYPE_CHECKING

__all__ = ["caffe_pb2"]

if TYPE_CHECKING:  # pragma: no cover
    from caffe_proto import caffe_pb2


def __getattr__(name):
    if name == "caffe_pb2":
        import importlib

        module = importlib.import_module("caffe_proto.caffe_pb2")
        globals()["caffe_pb2"] = module
        return module
    raise AttributeError(f"module 'caffe_proto' has no attribute {name!r}")
