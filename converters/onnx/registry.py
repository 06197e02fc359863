"""The ONNX converter table, and the context a converter builds its nodes with.

A converter is `(layer, ctx) -> list[NodeProto]`: it returns the nodes it made and never touches the
graph; `lower.py` appends them. Initializers and names come from the context, so they are unique and named
after their layer (`conv1.weight`, `conv1.bias`, `pool1.correction`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from protodef.errors import UnsupportedError
from protodef.ir import Layer, Net, Shape, Value
from protodef.layers.registry import NetContext, Registry
from protodef.symbolic import Dim

from .proto import Initializer, NodeProto, make_node

Converter = Callable[[Layer, "OnnxContext"], list[NodeProto]]

# Built-in converters and plugins' alike, keyed by the spec's type (an alias finds its spec's converter).
ONNX_CONVERTERS: Registry[Converter] = Registry("ONNX converter", "converters.onnx")

# Which of a layer's weight blobs a plain initializer name means (Caffe's blob order).
_BLOB_INDEX = {"weight": 0, "bias": 1}


def onnx_converter(type_name: str) -> Callable[[Converter], Converter]:
    """Register the ONNX converter of Caffe layer type `type_name` (once: a second one is an error)."""
    return ONNX_CONVERTERS.decorator(type_name)


def converter_for(layer: Layer) -> Converter | None:
    return ONNX_CONVERTERS.get(layer.spec.type)


def value_names(net: Net) -> dict[Value, str]:
    """The ONNX name of every value: net.value_name, which is unique (`blob@k` for overwritten versions)."""
    values = [*net.input_values(), *(v for layer in net.layers() for v in layer.outputs)]
    return {v: net.value_name(v) for v in values}


class OnnxContext(NetContext):
    """What a converter may ask for: value names, initializers, fresh names, opset-dependent node builders."""

    def __init__(self, net: Net, *, opset: int, dynamic_batch: bool):
        super().__init__(net)
        self.opset = opset
        self.dynamic_batch = dynamic_batch
        self.initializers: list[Initializer] = []
        self._node_names: set[str] = set()
        self._value_names = value_names(net)
        self._names: set[str] = set(self._value_names.values())
        self._sizes = None    # converters.onnx.sizes.RuntimeSizes, made when a size is symbolic

    # ---- values of the net --------------------------------------------------------------------------
    def value(self, value: Value) -> str:
        """The ONNX name of an IR value: the Caffe blob name (`blob@k` for overwritten versions)."""
        return self._value_names[value]

    # ---- names ----------------------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """A tensor name used nowhere else in the model."""
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def tensor(self, layer: Layer, what: str) -> str:
        """A name for an intermediate tensor inside `layer`'s subgraph."""
        return self.fresh(f"{layer.name}/{what}")

    def node_name(self, layer: Layer, what: str | None = None) -> str:
        base = layer.name if what is None else f"{layer.name}/{what}"
        name, k = base, 1
        while name in self._node_names:
            name, k = f"{base}_{k}", k + 1
        self._node_names.add(name)
        return name

    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], layer: Layer, what: str | None = None,
             **attributes: Any) -> NodeProto:
        """One node, named after its layer (the layer's name alone for its main node, `layer/what` otherwise)."""
        return make_node(op, list(inputs), list(outputs), name=self.node_name(layer, what), **attributes)

    # ---- initializers ----------------------------------------------------------------------------------
    def initializer(self, layer: Layer, what: str, array: np.ndarray | None = None, *,
                    dtype: Any = np.float32) -> str:
        """Store `array` (by default the layer's weight blob `what` names: weight, bias) as `layer.what`."""
        if array is None:
            if what not in _BLOB_INDEX or _BLOB_INDEX[what] >= len(layer.weights):
                raise UnsupportedError(f"the layer has no '{what}' weight blob to convert", layer=layer,
                                       where=layer.where)
            array = layer.weights[_BLOB_INDEX[what]]
        name = self.fresh(f"{layer.name}.{what}")
        array = np.asarray(array, dtype=dtype, order="C")   # keeps 0-d arrays 0-d (ascontiguousarray would not)
        self.initializers.append(Initializer(name, array))
        return name

    def ints(self, layer: Layer, what: str, values: Iterable[int]) -> str:
        """A 1-D int64 initializer (shapes, axes, starts ...); computed from the inputs' shapes at run time
        where a value is a symbolic size (see sizes.py)."""
        values = list(values)
        if any(isinstance(v, Dim) for v in values):
            return self.runtime_sizes().vector(layer, what, values)
        return self.initializer(layer, what, np.asarray(values, dtype=np.int64), dtype=np.int64)

    def runtime_sizes(self):
        if self._sizes is None:
            from .sizes import RuntimeSizes
            self._sizes = RuntimeSizes(self)
        return self._sizes

    def take_size_nodes(self) -> list[NodeProto]:
        """The nodes computing symbolic sizes made since the last call (they go before the layer's own)."""
        return self._sizes.take() if self._sizes is not None else []

    def scalar(self, layer: Layer, what: str, value: float) -> str:
        """A float32 scalar initializer (broadcasts against any tensor)."""
        return self.initializer(layer, what, np.asarray(value, dtype=np.float32))

    # ---- shapes under --dynamic-batch -------------------------------------------------------------------
    def require_batch_axis_kept(self, layer: Layer, axis: int, what: str) -> None:
        """With a symbolic batch, axis 0 must stay the batch: a layer that works across it cannot be exported."""
        if self.dynamic_batch and axis == 0:
            raise UnsupportedError(f"{what} works on axis 0, the batch axis, which --dynamic-batch makes "
                                   "symbolic; convert with a fixed batch instead", layer=layer, where=layer.where)

    def reshape_target(self, shape: Shape) -> list[int]:
        """The `shape` input of a Reshape to `shape` (from the IR). With a symbolic batch, dim 0 is -1: every
        other dim is the static size the IR knows, so Reshape infers the batch (0, "copy", would copy the
        input's dim 0, which is not the batch after a Flatten that merged it with other axes)."""
        target = [d if isinstance(d, Dim) else int(d) for d in shape]
        if self.dynamic_batch and target:
            target[0] = -1
        return target

    def reshape(self, layer: Layer, what: str, source: str, shape: Shape, output: str | None = None
                ) -> tuple[list[NodeProto], str]:
        """Reshape `source` to `shape` (an IR shape); returns the node and its output name."""
        output = output or self.tensor(layer, what)
        target = self.ints(layer, f"{what}_shape", self.reshape_target(shape))
        return [self.node("Reshape", [source, target], [output], layer, what)], output

    # ---- opset-dependent builders --------------------------------------------------------------------------
    def reduce(self, op: str, layer: Layer, what: str, source: str, axes: Sequence[int], output: str | None = None,
               keepdims: bool = True) -> tuple[list[NodeProto], str]:
        """ReduceMean/ReduceMax/ReduceSum over `axes`: axes are an input from opset 18 (13 for ReduceSum)."""
        output = output or self.tensor(layer, what)
        axes_as_input = self.opset >= (13 if op == "ReduceSum" else 18)
        if axes_as_input:
            node = self.node(op, [source, self.ints(layer, f"{what}_axes", axes)], [output], layer, what,
                             keepdims=int(keepdims))
        else:
            node = self.node(op, [source], [output], layer, what, axes=list(axes), keepdims=int(keepdims))
        return [node], output

    def split(self, layer: Layer, source: str, outputs: Sequence[str], axis: int, sizes: Sequence[int]
              ) -> list[NodeProto]:
        """Split along `axis` into pieces of `sizes` (the sizes are an input from opset 13 on)."""
        return [self.node("Split", [source, self.ints(layer, "split", sizes)], list(outputs), layer, axis=axis)]
