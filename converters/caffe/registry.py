"""The ONNX-op -> Caffe converter table, and the context converters build Caffe layers with.

A converter is `(node, ctx) -> list[CaffeLayer]`: it returns the layers it made; `lower.py` collects them.
Blob names are ONNX value names (`ctx.blob`); a converter may look ahead at the one node that reads its
output and `absorb` it (a BatchNormalization folded into its Conv), or look back through `ctx.producer`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import onnx
from onnx import helper

from caffe_proto import caffe_pb2
from protodef.errors import UnsupportedError
from protodef.layers.registry import Registry

from .graph import OnnxGraph
from .targets import Target

Converter = Callable[[onnx.NodeProto, "ExportContext"], list["CaffeLayer"]]

# The same Registry type as the layer specs' and the other backends' tables, keyed by ONNX op type here.
CAFFE_CONVERTERS: Registry[Converter] = Registry("Caffe converter", "converters.caffe", families=(
    "activation", "arith", "conv", "dense", "norm", "pad", "pool", "reduce", "reshape", "resize", "softmax"))


def caffe_converter(*op_types: str) -> Callable[[Converter], Converter]:
    """Register the Caffe converter of ONNX ops `op_types` (once each: a second one is an error)."""

    def register(function: Converter) -> Converter:
        for op_type in op_types:
            CAFFE_CONVERTERS.register(op_type, function)
        return function

    return register


@dataclass
class CaffeLayer:
    """One Caffe layer: its LayerParameter (name, type, bottoms, tops, parameters) and its weight blobs."""

    proto: caffe_pb2.LayerParameter
    blobs: list[np.ndarray] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.proto.name

    @property
    def type(self) -> str:
        return self.proto.type

    @property
    def bottoms(self) -> list[str]:
        return list(self.proto.bottom)

    @property
    def tops(self) -> list[str]:
        return list(self.proto.top)


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def node_label(node: onnx.NodeProto) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


class ExportContext:
    """What a converter may ask for: shapes, constants, blob and layer names, the target, its neighbours."""

    def __init__(self, graph: OnnxGraph, target: Target, *, fold_batchnorm: bool):
        self.graph = graph
        self.target = target
        self.fold_batchnorm = fold_batchnorm
        self.producers = {name: node for node in graph.nodes for name in node.output if name}
        self._aliases: dict[str, str] = {}
        self._deferred: set[str] = set()            # outputs of nodes a reader takes in (a Pad into its Conv)
        self._absorbed: set[int] = set()
        self._layer_names: set[str] = set()
        self._blob_names: set[str] = set(graph.shapes) | set(graph.constants) | set(graph.inputs)

    # ---- the ONNX side -------------------------------------------------------------------------------
    def shape(self, value: str) -> tuple[int, ...]:
        shape = self.graph.shapes.get(value) if value not in self.graph.constants else self.graph.shape(value)
        if shape is None:
            raise UnsupportedError(f"the shape of '{value}' is not static after constant folding, and a Caffe "
                                   "net's shapes are", where=self.graph.source)
        return shape

    def is_constant(self, value: str) -> bool:
        return value in self.graph.constants

    def constant(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray:
        """Input `index` of `node` as an array; refused when it is computed at run time."""
        if index >= len(node.input) or not node.input[index]:
            raise self.refuse(node, f"{what} (input {index}) is missing")
        name = node.input[index]
        if name not in self.graph.constants:
            raise self.refuse(node, f"{what} (input {index}, '{name}') is computed at run time; Caffe needs it "
                                    "constant")
        return self.graph.constants[name]

    def optional_constant(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
        if index >= len(node.input) or not node.input[index]:
            return None
        return self.constant(node, index, what)

    def producer(self, value: str) -> onnx.NodeProto | None:
        return self.producers.get(value)

    def readers(self, value: str) -> list[onnx.NodeProto]:
        return self.graph.readers_of(value)

    def sole_reader(self, value: str, op_types: Iterable[str]) -> onnx.NodeProto | None:
        """The one node reading `value`, when it is of one of `op_types` and `value` is not a graph output."""
        readers = self.readers(value)
        if len(readers) != 1 or value in self.graph.outputs or readers[0].op_type not in set(op_types):
            return None
        if list(readers[0].input).count(value) != 1:
            return None
        return readers[0]

    # ---- absorbing neighbours ------------------------------------------------------------------------
    def absorb(self, node: onnx.NodeProto) -> None:
        """`node` is computed by the layers of the node that absorbs it; the driver skips it."""
        self._absorbed.add(id(node))

    def absorbed(self, node: onnx.NodeProto) -> bool:
        return id(node) in self._absorbed

    def defer(self, node: onnx.NodeProto) -> None:
        """`node` makes no layer: every reader takes it in, looking back through `producer`."""
        self._deferred.update(node.output)

    def deferred(self, value: str) -> bool:
        return value in self._deferred

    # ---- the Caffe side --------------------------------------------------------------------------------
    def blob(self, value: str) -> str:
        """The Caffe blob holding ONNX value `value` (its own name, unless an Identity-like node aliased it)."""
        if value in self.graph.constants:
            raise UnsupportedError(f"'{value}' is a constant where Caffe wants a computed blob",
                                   where=self.graph.source)
        return self._aliases.get(value, value)

    def alias(self, value: str, blob: str) -> None:
        """`value` is the same data as `blob` (Identity, Dropout at inference, a no-op Reshape)."""
        self._aliases[value] = blob

    def intermediate(self, node: onnx.NodeProto, what: str) -> str:
        """A fresh blob name for a value inside `node`'s layers."""
        return self._fresh(f"{node_label(node)}/{what}", self._blob_names)

    def layer(self, node: onnx.NodeProto, layer_type: str, bottoms: Sequence[str], tops: Sequence[str], *,
              blobs: Sequence[np.ndarray] = (), what: str | None = None) -> CaffeLayer:
        """A layer named after `node` (`node/what` for a helper layer); the target must have its type."""
        self.require(node, layer_type)
        base = node_label(node) if what is None else f"{node_label(node)}/{what}"
        proto = caffe_pb2.LayerParameter(name=self._fresh(base, self._layer_names), type=layer_type)
        proto.bottom.extend(bottoms)
        proto.top.extend(tops)
        return CaffeLayer(proto, [np.asarray(b, np.float32) for b in blobs])

    def require(self, node: onnx.NodeProto, layer_type: str, why: str = "") -> None:
        if not self.target.has(layer_type):
            from .targets import TARGETS
            reason = f"{why}: " if why else ""
            others = ", ".join(name for name, target in TARGETS.items() if target.has(layer_type))
            hint = f" (--target {others} {'have' if ',' in others else 'has'} it)" if others else ""
            raise self.refuse(node, f"{reason}needs a {layer_type} layer, which target '{self.target.name}' does not "
                                    f"have{hint}")

    def refuse(self, node: onnx.NodeProto, why: str, *, expected: Any = None, found: Any = None
               ) -> UnsupportedError:
        """The error for a node with no exact Caffe form in this target (the caller raises it)."""
        return UnsupportedError(f"node '{node_label(node)}' ({node.op_type}): {why}", where=self.graph.source,
                                expected=expected, found=found)

    @staticmethod
    def _fresh(base: str, taken: set[str]) -> str:
        return unique_name(base, taken)


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base_1`, `base_2`, ... : the first not in `taken` (which then holds it)."""
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name
