"""Building ONNX messages without the onnx package: the classes generated from wire.proto (ONNX's format, our
package name) and the few builders the converters use, in onnx.helper's spelling.

`import onnx` costs more than the rest of a conversion (ml_dtypes 0.7 registers its casts with NumPy on
import), so writing a model never imports it. What needs onnx itself (its checker, shape inference, operator
schemas, a `onnx.ModelProto` for the API) imports it there, and takes these messages as bytes: the wire format
is the same, only the Python classes differ.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .wire_pb2 import (
    AttributeProto,
    GraphProto,
    ModelProto,
    NodeProto,
    TensorProto,
    ValueInfoProto,
)

# NumPy dtype <-> ONNX element type (TensorProto.DataType); bool is stored one byte per value, as NumPy does.
_ELEMENT_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
                  np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.int64): TensorProto.INT64,
                  np.dtype(np.int32): TensorProto.INT32, np.dtype(np.int16): TensorProto.INT16,
                  np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8,
                  np.dtype(np.uint16): TensorProto.UINT16, np.dtype(np.uint32): TensorProto.UINT32,
                  np.dtype(np.uint64): TensorProto.UINT64, np.dtype(np.bool_): TensorProto.BOOL}
_DTYPES = {element: dtype for dtype, element in _ELEMENT_TYPES.items()}


def element_type(dtype: Any) -> int:
    """The ONNX element type of a NumPy dtype."""
    try:
        return _ELEMENT_TYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"no ONNX element type for NumPy dtype {np.dtype(dtype)}") from None


def numpy_dtype(element: int) -> np.dtype:
    """The NumPy dtype of an ONNX element type."""
    try:
        return _DTYPES[element]
    except KeyError:
        raise TypeError(f"no NumPy dtype for ONNX element type {element}") from None


@dataclass(frozen=True)
class Initializer:
    """A graph initializer kept as its array until the model is written: a writer streams the array's memory
    into the file, where a TensorProto would have copied every weight into a bytes object first."""

    name: str
    array: np.ndarray       # C-contiguous

    @classmethod
    def of(cls, tensor: Any) -> "Initializer":
        """An initializer from a TensorProto, ours or onnx's (a plugin may append one to ctx.initializers)."""
        tensor = ours(tensor, TensorProto)
        return cls(tensor.name, np.ascontiguousarray(to_array(tensor)))

    @property
    def nbytes(self) -> int:
        return self.array.nbytes

    def header(self) -> TensorProto:
        """The tensor without its data: name, element type and dims."""
        return TensorProto(name=self.name, data_type=element_type(self.array.dtype), dims=self.array.shape)

    def data(self) -> memoryview:
        """The bytes ONNX stores (little-endian), without a copy where the array holds them already."""
        return memoryview(_little_endian(self.array).reshape(-1)).cast("B")

    def tensor(self) -> TensorProto:
        tensor = self.header()
        tensor.raw_data = bytes(self.data())
        return tensor


def from_array(array: np.ndarray, name: str = "") -> TensorProto:
    """A tensor holding `array` (raw little-endian data)."""
    array = np.asarray(array)
    tensor = TensorProto(name=name, data_type=element_type(array.dtype), dims=array.shape)
    tensor.raw_data = _little_endian(np.ascontiguousarray(array)).tobytes()
    return tensor


def to_array(tensor: TensorProto) -> np.ndarray:
    """The values of a tensor that from_array (or onnx) wrote with raw data or a typed field."""
    dtype = numpy_dtype(tensor.data_type)
    shape = tuple(tensor.dims)
    if tensor.HasField("raw_data"):
        return np.frombuffer(tensor.raw_data, dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    if dtype == np.float16:   # ONNX keeps float16 bit patterns in int32_data
        return np.asarray(tensor.int32_data, np.uint16).view(np.float16).reshape(shape)
    field = {np.dtype(np.float32): "float_data", np.dtype(np.float64): "double_data",
             np.dtype(np.int64): "int64_data", np.dtype(np.uint64): "uint64_data",
             np.dtype(np.uint32): "uint64_data"}.get(dtype, "int32_data")
    return np.asarray(getattr(tensor, field), dtype).reshape(shape)


def make_tensor(name: str, element: int, dims: Sequence[int], values: Iterable[Any]) -> TensorProto:
    return from_array(np.asarray(list(values), numpy_dtype(element)).reshape(tuple(dims)), name)


def make_node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str | None = None,
              domain: str | None = None, **attributes: Any) -> NodeProto:
    """A node; attributes are sorted by name, as onnx.helper does, so that a model is the same bytes each time."""
    node = NodeProto(op_type=op_type, input=list(inputs), output=list(outputs))
    if name:
        node.name = name
    if domain is not None:
        node.domain = domain
    node.attribute.extend(make_attribute(key, value) for key, value in sorted(attributes.items())
                          if value is not None)
    return node


def make_attribute(name: str, value: Any) -> AttributeProto:
    """An attribute whose type follows from the value, as in onnx.helper: int (and bool), float, str or bytes,
    tensor, graph, or a non-empty sequence of one of those (ints with a float among them are floats)."""
    attribute = AttributeProto(name=name)
    if isinstance(value, (bool, int, np.integer, np.bool_)):
        attribute.type, attribute.i = AttributeProto.INT, int(value)
    elif isinstance(value, (float, np.floating)):
        attribute.type, attribute.f = AttributeProto.FLOAT, float(value)
    elif isinstance(value, (str, bytes)):
        attribute.type, attribute.s = AttributeProto.STRING, _bytes(value)
    elif isinstance(value, TensorProto):
        attribute.type = AttributeProto.TENSOR
        attribute.t.CopyFrom(value)
    elif isinstance(value, GraphProto):
        attribute.type = AttributeProto.GRAPH
        attribute.g.CopyFrom(value)
    else:
        values = list(value)
        if not values:
            raise ValueError(f"attribute '{name}': an empty list has no ONNX type")
        if all(isinstance(v, (bool, int, np.integer, np.bool_)) for v in values):
            attribute.type = AttributeProto.INTS
            attribute.ints.extend(int(v) for v in values)
        elif all(isinstance(v, (bool, int, float, np.integer, np.floating)) for v in values):
            attribute.type = AttributeProto.FLOATS
            attribute.floats.extend(float(v) for v in values)
        elif all(isinstance(v, (str, bytes)) for v in values):
            attribute.type = AttributeProto.STRINGS
            attribute.strings.extend(_bytes(v) for v in values)
        elif all(isinstance(v, TensorProto) for v in values):
            attribute.type = AttributeProto.TENSORS
            attribute.tensors.extend(values)
        elif all(isinstance(v, GraphProto) for v in values):
            attribute.type = AttributeProto.GRAPHS
            attribute.graphs.extend(values)
        else:
            raise TypeError(f"attribute '{name}': no ONNX type holds {values!r}")
    return attribute


def make_tensor_value_info(name: str, element: int, shape: Sequence[int | str | None] | None) -> ValueInfoProto:
    """A typed value: `shape` None leaves the rank unknown; a dim that is a str is symbolic, None unknown."""
    info = ValueInfoProto(name=name)
    tensor_type = info.type.tensor_type
    tensor_type.elem_type = element
    if shape is not None:
        tensor_type.shape.SetInParent()   # a rank-0 shape is a scalar, not an unknown shape
        for size in shape:
            dim = tensor_type.shape.dim.add()
            if isinstance(size, str):
                dim.dim_param = size
            elif size is not None:
                dim.dim_value = int(size)
    return info


def make_graph(nodes: Sequence[NodeProto], name: str, inputs: Sequence[ValueInfoProto],
               outputs: Sequence[ValueInfoProto], initializer: Sequence[TensorProto] = ()) -> GraphProto:
    graph = GraphProto(name=name)
    graph.node.extend(nodes)
    graph.input.extend(inputs)
    graph.output.extend(outputs)
    graph.initializer.extend(initializer)
    return graph


def ours(message: Any, kind: type) -> Any:
    """A message of onnx's own classes (a plugin's converter may build its nodes with onnx.helper) as ours."""
    return message if isinstance(message, kind) else kind.FromString(message.SerializeToString())


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _little_endian(array: np.ndarray) -> np.ndarray:
    return array.astype(array.dtype.newbyteorder("<"), copy=False)


__all__ = [
    "AttributeProto",
    "GraphProto",
    "Initializer",
    "ModelProto",
    "NodeProto",
    "TensorProto",
    "ValueInfoProto",
    "element_type",
    "from_array",
    "make_attribute",
    "make_graph",
    "make_node",
    "make_tensor",
    "make_tensor_value_info",
    "numpy_dtype",
    "ours",
    "to_array",
]
