"""Writing an ONNX model. Large weights go from their arrays straight into the file: no TensorProto holds their
data, so no weight is copied on the way (for ResNet-50, 100 MB). Past protobuf's 2 GiB limit they go to an
external data file beside the model, ONNX's external-data format.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from protodef.weights import (  # the protobuf wire format, as our caffemodel writer writes it
    _LEN,
    _key,
    _varint,
)
from protodef.write import atomic_open

from .checker import LARGE, check_model
from .proto import Initializer, ModelProto, TensorProto

PROTOBUF_LIMIT = 2 ** 31 - 1   # a serialized protobuf message holds at most 2 GiB
ALIGNMENT = 4096               # external tensors start on a page, so a runtime can map them


def save_model(model: ModelProto, path: str | os.PathLike, *, initializers: Sequence[Initializer] = (),
               where: str | None = None, check: bool = False) -> list[str]:
    """Write `model` with its `initializers` to `path` atomically (the small ones go into `model`'s graph);
    returns the files written: the model, and its `<name>.data` when the weights do not fit in one protobuf.
    `check` runs onnx's full checker first (which imports onnx)."""
    if check:
        check_model(model, initializers, where=where)
    large = [i for i in initializers if i.nbytes >= LARGE]
    model.graph.initializer.extend(i.tensor() for i in initializers if i.nbytes < LARGE)
    size = model.ByteSize() + sum(i.nbytes + 64 for i in large)
    if size >= PROTOBUF_LIMIT:
        return _write_external(model, large, Path(path))
    _write_inline(model, large, Path(path))
    return [str(path)]


def _write_inline(model: ModelProto, weights: list[Initializer], path: Path) -> None:
    """One file: the model's own fields, then its graph (field 7) holding the large initializers (field 5)
    after the rest. Protobuf fields may come in any order, so this parses as the model with them inside."""
    graph = model.graph.SerializeToString()
    pieces = []
    for weight in weights:
        header = weight.header().SerializeToString()
        data_field = _key(9, _LEN) + _varint(weight.nbytes)     # TensorProto.raw_data
        tensor_size = len(header) + len(data_field) + weight.nbytes
        pieces.append((_key(5, _LEN) + _varint(tensor_size) + header + data_field, weight))
    graph_size = len(graph) + sum(len(head) + weight.nbytes for head, weight in pieces)
    rest = ModelProto()
    rest.CopyFrom(model)
    rest.ClearField("graph")
    with atomic_open(path, "wb") as out:
        out.write(rest.SerializeToString())
        out.write(_key(7, _LEN) + _varint(graph_size))
        out.write(graph)
        for head, weight in pieces:
            out.write(head)
            out.write(weight.data())


def _write_external(model: ModelProto, weights: list[Initializer], path: Path) -> list[str]:
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
                data_file.write(weight.data())
                tensor = model.graph.initializer.add()
                tensor.CopyFrom(weight.header())
                tensor.data_location = TensorProto.EXTERNAL
                for key, value in (("location", data_path.name), ("offset", offset), ("length", weight.nbytes)):
                    tensor.external_data.add(key=key, value=str(value))
                offset += weight.nbytes
        model_file.write(model.SerializeToString())
    return [str(path), str(data_path)]
