"""The graph IR: layers as nodes of a networkx MultiDiGraph, blobs as SSA values.

An in-place layer (top == bottom) reads Value(blob, k) and writes Value(blob, k + 1), so the graph is a
DAG. Layer names are unique within a Net; `caffe_name` keeps the name as written (Caffe allows repeats).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import networkx as nx
import numpy as np

from .errors import GraphError, Location

# A blob's shape: Caffe's dims, outermost first (N, C, H, W for images).
Shape = tuple[int, ...]


@dataclass(frozen=True, order=True)
class Value:
    """One version of a Caffe blob: version k is what the k-th writer of that blob produced."""

    blob: str
    version: int = 0

    def __str__(self) -> str:
        return self.blob if self.version == 0 else f"{self.blob}@{self.version}"


def str_at(value: Value) -> str:
    return f"{value.blob}@{value.version}"


@dataclass(frozen=True)
class ParamSpec:
    """Caffe's ParamSpec of one weight blob. A multiplier the prototxt leaves unset is None: Caffe tells unset
    from 1 when it merges the specs of layers sharing a blob (net.cpp AppendParam)."""

    name: str = ""
    lr_mult: float | None = None
    decay_mult: float | None = None
    permissive: bool = False    # share_mode PERMISSIVE: a shared blob need only have as many elements


@dataclass(frozen=True, eq=False)
class Layer:
    """One layer: typed params, ordered inputs/outputs, weights (arrays in Caffe's blob order)."""

    name: str
    type: str
    params: Any
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]
    weights: tuple[np.ndarray, ...] = ()
    where: Location | None = None
    caffe_name: str = ""
    param_names: tuple[str, ...] = ()        # ParamSpec names: layers sharing a name share that blob
    param_specs: tuple[ParamSpec, ...] = ()   # as written, one per blob at most (training reads them)
    loss_weights: tuple[float, ...] = ()      # as written: none, or one per output
    extra: dict[str, Any] = field(default_factory=dict)   # unknown fork fields, as plain mappings

    @property
    def spec(self) -> "LayerSpec":
        spec = _registry.spec_of(self.type) or getattr(self.params, "spec", None)   # an opaque node brings its own
        if spec is None:  # only layers with a registered spec (or opaque ones, in lenient builds) get into a Net
            raise GraphError("unknown layer type", where=self.where, layer=self)
        return spec

    def replace(self, **changes: Any) -> "Layer":
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        ins = ", ".join(map(str, self.inputs))
        outs = ", ".join(map(str, self.outputs))
        return f"<Layer {self.name} ({self.type}): {ins} -> {outs}>"


@dataclass(frozen=True)
class NetInput:
    """A value the caller supplies, and where it was declared (`input:` field, Input or data layer)."""

    value: Value
    declared_by: str            # "input", or the name of the Input/data layer
    declared_type: str          # "input" or the layer type
    where: Location | None = None


class Net:
    """A Caffe net as a DAG. Mutating verbs keep the graph and indexes consistent; passes copy first."""

    def __init__(self, name: str = "", source: str | None = None):
        self.name = name
        self.source = source                      # the prototxt path, when there is one
        self.graph = nx.MultiDiGraph()
        self.inputs: list[NetInput] = []
        self.shapes: dict[Value, Shape] = {}
        self.notes: list[str] = []
        # Outputs whose Caffe blob a pass bypassed (a last Split or Dropout): the value that carries each one
        # now, and the blob name it stands for. Every backend names its outputs by value_name, which reads this.
        self.output_aliases: dict[Value, str] = {}
        self.pass_report: Any = None    # set by passes.run_pipeline: the net as the backends take it
        self.metadata: dict[str, str] = {}         # protodef.<key> in an ONNX model: weights, seed, preprocessing
        self._producer: dict[Value, str] = {}
        self._final: dict[str, int] | None = None    # cache: the last version of each blob
        self._sorted: tuple[str, ...] | None = None  # cache: layer names in topological order
        self._order = 0

    # ---- reading -------------------------------------------------------------------------------
    def layers(self, type: str | Iterable[str] | None = None) -> list[Layer]:
        """Layers in topological order (ties broken by prototxt order)."""
        wanted = {type} if isinstance(type, str) else (set(type) if type is not None else None)
        if self._sorted is None:   # every edit of the graph goes through _connect or _disconnect, which drop it
            order = nx.get_node_attributes(self.graph, "order")
            self._sorted = tuple(nx.lexicographical_topological_sort(self.graph, key=order.__getitem__))
        nodes = self.graph.nodes
        layers = [nodes[name]["layer"] for name in self._sorted]
        return layers if wanted is None else [layer for layer in layers if layer.type in wanted]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers())

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __contains__(self, name: str) -> bool:
        return name in self.graph

    def layer(self, name: str) -> Layer:
        return self.graph.nodes[name]["layer"]

    def shape(self, value: Value) -> Shape:
        return self.shapes[value]

    def input_by_value(self, value: Value) -> NetInput | None:
        return next((i for i in self.inputs if i.value == value), None)

    def input_values(self) -> list[Value]:
        return [i.value for i in self.inputs]

    def producer(self, value: Value) -> Layer | None:
        name = self._producer.get(value)
        return None if name is None else self.layer(name)

    def consumers(self, value: Value) -> list[tuple[Layer, int]]:
        """(layer, input index) for every read of `value`, in prototxt order."""
        producer = self._producer.get(value)
        if producer is not None:
            names = {v for _, v, data in self.graph.out_edges(producer, data=True) if data["value"] == value}
        else:   # a net input: no producer node to start from
            names = {name for name, layer in self.graph.nodes(data="layer") if value in layer.inputs}
        nodes = self.graph.nodes
        ordered = sorted(names, key=lambda name: nodes[name]["order"])
        return [(nodes[n]["layer"], i) for n in ordered for i, v in enumerate(nodes[n]["layer"].inputs) if v == value]

    def outputs(self) -> list[Value]:
        """Values some layer writes and no layer reads: Caffe's net outputs."""
        read = {v for layer in self.graph.nodes.values() for v in layer["layer"].inputs}
        return [v for layer in self.layers() for v in layer.outputs if v not in read]

    def value_name(self, value: Value) -> str:
        """A stable, unique name for a value: the blob's own name for a net input and for the final version
        of any other blob; `blob@k` for the versions in-place layers overwrite. An output that stands for a
        bypassed blob has that blob's name (and a value that would share it is `blob@k`)."""
        alias = self.output_aliases.get(value)
        if alias is not None:
            return alias
        if value.blob in self._input_blobs():
            natural = value.blob if value.version == 0 else f"{value.blob}@{value.version}"
        else:
            natural = value.blob if value.version == self._final_versions().get(value.blob, 0) else str_at(value)
        if self.output_aliases and natural in self.output_aliases.values():
            return str_at(value)
        return natural

    def _input_blobs(self) -> set[str]:
        return {i.value.blob for i in self.inputs}

    def _final_versions(self) -> dict[str, int]:
        if self._final is None:
            final: dict[str, int] = {}
            for value in self._producer:
                final[value.blob] = max(final.get(value.blob, 0), value.version)
            self._final = final
        return self._final

    # ---- building and editing ---------------------------------------------------------------------
    def add_input(self, net_input: NetInput, shape: Shape | None) -> None:
        self.inputs.append(net_input)
        if shape is not None:
            self.shapes[net_input.value] = shape

    def add(self, layer: Layer) -> Layer:
        """Append a layer; its inputs must already be produced (or be net inputs)."""
        if layer.name in self.graph:
            raise GraphError("layer name used twice in one net", layer=layer, where=layer.where)
        self.graph.add_node(layer.name, layer=layer, order=self._order)
        self._order += 1
        self._connect(layer)
        return layer

    def _connect(self, layer: Layer) -> None:
        self._final = self._sorted = None
        for index, value in enumerate(layer.inputs):
            producer = self._producer.get(value)
            if producer is not None:
                self.graph.add_edge(producer, layer.name, value=value, index=index)
        for value in layer.outputs:
            self._producer[value] = layer.name

    def _disconnect(self, layer: Layer) -> None:
        self._final = self._sorted = None
        self.graph.remove_edges_from(list(self.graph.in_edges(layer.name, keys=True)))
        for value in layer.outputs:
            if self._producer.get(value) == layer.name:
                del self._producer[value]

    def replace(self, old: Layer, new: Layer) -> Layer:
        """Put `new` where `old` was (same position); outputs it no longer writes lose their readers' edges."""
        if new.name != old.name and new.name in self.graph:
            raise GraphError("layer name used twice in one net", layer=new, where=new.where)
        order = self.graph.nodes[old.name]["order"]
        out_edges = list(self.graph.out_edges(old.name, data=True))
        self._disconnect(old)
        if new.name != old.name:
            self.graph.remove_node(old.name)
            self.graph.add_node(new.name, layer=new, order=order)
        else:
            self.graph.remove_edges_from(list(self.graph.out_edges(old.name, keys=True)))
            self.graph.nodes[new.name]["layer"] = new
        self._connect(new)
        for value in old.outputs:
            if value not in new.outputs:
                self.shapes.pop(value, None)
        for _, consumer, data in out_edges:
            if data["value"] in new.outputs:
                self.graph.add_edge(new.name, consumer, **data)
        return new

    def remove(self, layer: Layer) -> None:
        """Remove a layer whose outputs nobody reads (any more)."""
        for value in layer.outputs:
            if self.consumers(value):
                raise GraphError(f"cannot remove a layer whose output '{value}' is still read", layer=layer)
        self._disconnect(layer)
        self.graph.remove_node(layer.name)
        for value in layer.outputs:
            self.shapes.pop(value, None)

    def rewire(self, old: Value, new: Value) -> None:
        """Every reader of `old` reads `new` instead."""
        for consumer, _ in self.consumers(old):
            current = self.layer(consumer.name)
            inputs = tuple(new if v == old else v for v in current.inputs)
            self.replace(current, current.replace(inputs=inputs))

    def bypass(self, layer: Layer) -> None:
        """Remove a one-in one-out identity layer: its readers read its input instead. When its output was a
        net output and its input becomes one, the input keeps the output's name (see output_aliases)."""
        (source,), (result,) = layer.inputs, layer.outputs
        was_output = not self.consumers(result)
        name = self.value_name(result)
        self.rewire(result, source)
        self.remove(layer)
        self.output_aliases.pop(result, None)
        if was_output and self.producer(source) is not None and not self.consumers(source):
            self.output_aliases[source] = name

    def unique_name(self, base: str) -> str:
        name, k = base, 1
        while name in self.graph:
            name, k = f"{base}_{k}", k + 1
        return name

    def copy(self) -> "Net":
        other = Net(self.name, self.source)
        other.graph = self.graph.copy()
        other.inputs = list(self.inputs)
        other.shapes = dict(self.shapes)
        other.notes = list(self.notes)
        other.output_aliases = dict(self.output_aliases)
        other.pass_report = self.pass_report
        other.metadata = dict(self.metadata)
        other._producer = dict(self._producer)
        other._final = None
        other._sorted = self._sorted
        other._order = self._order
        return other

    def require_input_shapes(self) -> None:
        """Every net input has a shape (an input no layer reads may lack one; backends need it)."""
        from .errors import ShapeError
        from .symbolic import is_known
        for net_input in self.inputs:
            if not is_known(self.shapes.get(net_input.value)):
                blob = net_input.value.blob
                raise ShapeError(f"input '{blob}' declared by '{net_input.declared_by}' has no known shape; give "
                                 f"--input-shape {blob}=N,C,H,W (input_shape= in Python)", where=net_input.where)

    def require_outputs(self) -> None:
        """A net the backends lower must compute something."""
        if not self.outputs():
            raise GraphError("the net has no outputs (no layers, or every value it computes is read by a later "
                             "layer or Silence)", where=self.source)

    def require_lowered(self) -> None:
        """Backends take the net as the pass pipeline leaves it (protodef.lower / passes.run_pipeline)."""
        if self.pass_report is None:
            raise ValueError("backends take a lowered net: call protodef.lower(net) (passes.run_pipeline) first")

    def validate(self) -> None:
        """Check the invariants every pass must keep (our Graph.lint)."""
        if not nx.is_directed_acyclic_graph(self.graph):
            raise GraphError("the net has a cycle")
        known = {i.value for i in self.inputs}
        for layer in self.layers():
            for index, value in enumerate(layer.inputs):
                if value not in known:
                    raise GraphError(f"input {index} '{value}' is not produced before it is read", layer=layer,
                                     where=layer.where)
            for value in layer.outputs:
                if value in known:
                    raise GraphError(f"output '{value}' is written twice", layer=layer, where=layer.where)
                if self._producer.get(value) != layer.name:
                    raise GraphError(f"producer index is stale for '{value}'", layer=layer)
                known.add(value)
        for value in known:
            if value not in self.shapes:
                raise GraphError(f"value '{value}' has no shape")


from .layers import registry as _registry  # noqa: E402  (the registry imports Shape from here)

if TYPE_CHECKING:
    from .layers.registry import LayerSpec
