"""Writing an ONNX model. Large weights go from their tensors straight into the file instead of through one
serialization of the whole model (for ResNet-50, 100 MB copied three more times); past protobuf's 2 GiB limit
they go to an external data file beside the model, ONNX's external-data format.

The checker sees the model with each large weight declared as a graph input of its type and shape: what the
checker and shape inference look at, without the data (they cannot take a model over 2 GiB at all).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import onnx
from onnx import helper

from protodef.errors import UnsupportedError
from protodef.weights import (  # the protobuf wire format, as our caffemodel writer writes it
    _LEN,
    _key,
    _varint,
)
from protodef.write import atomic_open

PROTOBUF_LIMIT = 2 ** 31 - 1   # a serialized protobuf message holds at most 2 GiB
LARGE = 1024                   # bytes: smaller tensors (shapes, axes, scalars) stay inline, where shape
                               # inference reads their values
ALIGNMENT = 4096               # external tensors start on a page, so a runtime can map them


@dataclass
class Weight:
    """A large initializer taken out of the model: its TensorProto without data, and the data."""

    tensor: onnx.TensorProto
    data: bytes


def save_model(model: onnx.ModelProto, path: str | os.PathLike, *, initializers: Sequence[onnx.TensorProto] = (),
               where: str | None = None) -> list[str]:
    """Check `model` and write it to `path` atomically; returns the files written (the model, and its
    `<name>.data` when the weights do not fit in one protobuf). `initializers` are more of the graph's
    (build_model_apart keeps them out of it). Takes the large weights' data out of the tensors."""
    weights = detach_weights(model, initializers)
    check_model(model, weights, where=where)
    size = model.ByteSize() + sum(len(w.data) + 64 for w in weights)
    if size >= PROTOBUF_LIMIT:
        return _write_external(model, weights, Path(path))
    _write_inline(model, weights, Path(path))
    return [str(path)]


def detach_weights(model: onnx.ModelProto, initializers: Sequence[onnx.TensorProto] = ()) -> list[Weight]:
    """Take the initializers of LARGE bytes or more, from the graph and from `initializers`, apart from their
    data; the graph keeps the small ones of both."""
    graph = model.graph
    tensors = [*graph.initializer, *initializers]
    large = [_is_large(tensor) for tensor in tensors]
    weights = [_detached(tensor) for tensor, is_large in zip(tensors, large) if is_large]
    small = [tensor.SerializeToString() for tensor, is_large in zip(tensors, large) if not is_large]
    del graph.initializer[:]
    for serialized in small:
        graph.initializer.add().ParseFromString(serialized)
    return weights


def _detached(tensor: onnx.TensorProto) -> Weight:
    data = tensor.raw_data          # a copy: reading raw_data copies it out of the message
    tensor.ClearField("raw_data")
    header = onnx.TensorProto()
    header.CopyFrom(tensor)
    return Weight(header, data)


def check_model(model: onnx.ModelProto, weights: list[Weight] = (), *, where: str | None = None) -> None:
    """onnx's full check (strict shape inference included) of `model`, whose large initializers may have been
    detached (`weights`) or not: either way the checker sees them as typed inputs, so size does not matter."""
    skeleton = skeleton_of(model, weights)
    try:
        onnx.checker.check_model(skeleton.SerializeToString(), full_check=True)
    except onnx.checker.ValidationError as error:   # e.g. a blob named "" (Caffe allows it; ONNX does not)
        reason = str(error).strip().splitlines()[0]
        raise UnsupportedError(f"the ONNX checker refuses the converted model: {reason}", where=where) from None


def _is_large(tensor: onnx.TensorProto) -> bool:
    """From the shape: len(tensor.raw_data) would copy the data out of the message."""
    if not tensor.HasField("raw_data"):
        return False
    itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return math.prod(tensor.dims) * itemsize >= LARGE


def skeleton_of(model: onnx.ModelProto, weights: Sequence[Weight] = ()) -> onnx.ModelProto:
    """A copy of `model` in which its large initializers, and the detached `weights`, are typed graph inputs
    without data (the caller's model stays as it is)."""
    skeleton = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _copy_field(skeleton, field, value)
    for field, value in model.graph.ListFields():
        if field.name == "initializer":
            skeleton.graph.initializer.extend(t for t in value if not _is_large(t))
        else:
            _copy_field(skeleton.graph, field, value)
    declared = [w.tensor for w in weights] + [t for t in model.graph.initializer if _is_large(t)]
    skeleton.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in declared)
    return skeleton


def _copy_field(target, field, value) -> None:
    if field.is_repeated:
        getattr(target, field.name).extend(value)
    elif field.message_type is not None:
        getattr(target, field.name).CopyFrom(value)
    else:
        setattr(target, field.name, value)


def _write_inline(model: onnx.ModelProto, weights: list[Weight], path: Path) -> None:
    """One file: the model's own fields, then its graph (field 7) holding the detached initializers (field 5)
    after the rest. Protobuf fields may come in any order, so this parses as the model it was."""
    graph = model.graph.SerializeToString()
    pieces = []
    for weight in weights:
        header = weight.tensor.SerializeToString()
        data_field = _key(9, _LEN) + _varint(len(weight.data))     # TensorProto.raw_data
        tensor_size = len(header) + len(data_field) + len(weight.data)
        pieces.append((_key(5, _LEN) + _varint(tensor_size) + header + data_field, weight.data))
    graph_size = len(graph) + sum(len(head) + len(data) for head, data in pieces)
    model.ClearField("graph")
    with atomic_open(path, "wb") as out:
        out.write(model.SerializeToString())
        out.write(_key(7, _LEN) + _varint(graph_size))
        out.write(graph)
        for head, data in pieces:
            out.write(head)
            out.write(data)


def _write_external(model: onnx.ModelProto, weights: list[Weight], path: Path) -> list[str]:
    """The model, and `<name>.data` holding each large tensor at a page-aligned offset. The data file is
    complete and in place before the model that points into it."""
    data_path = path.with_name(path.name + ".data")
    offset = 0
    with atomic_open(path, "wb") as model_file:
        with atomic_open(data_path, "wb") as data_file:
            for weight in weights:
                padding = -offset % ALIGNMENT
                data_file.write(b"\0" * padding)
                offset += padding
                data_file.write(weight.data)
                tensor = model.graph.initializer.add()
                tensor.CopyFrom(weight.tensor)
                tensor.data_location = onnx.TensorProto.EXTERNAL
                for key, value in (("location", data_path.name), ("offset", offset), ("length", len(weight.data))):
                    tensor.external_data.add(key=key, value=str(value))
                offset += len(weight.data)
        model_file.write(model.SerializeToString())
    return [str(path), str(data_path)]
