"""The units a drawing shows: a layer plus the in-place chain that follows it (Convolution -> BatchNorm ->
Scale -> ReLU), so a chain that Caffe runs on one blob is one node, not four boxes."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import networkx as nx

from protodef.ir import Layer, Net, NetInput, Value


@dataclass(frozen=True)
class Stack:
    """A head layer and the one-in one-out layers stacked on its single output."""

    layers: tuple[Layer, ...]

    @property
    def head(self) -> Layer:
        return self.layers[0]

    @property
    def name(self) -> str:
        return self.head.name

    @property
    def inputs(self) -> tuple[Value, ...]:
        return self.head.inputs

    @property
    def outputs(self) -> tuple[Value, ...]:
        return self.layers[-1].outputs


@dataclass(frozen=True)
class StackGraph:
    """Stacks and net inputs as the nodes of a DAG; an edge per read, keyed by the value read."""

    stacks: dict[str, Stack]            # by head name, in execution order
    inputs: dict[str, NetInput]         # node id -> net input
    graph: nx.MultiDiGraph              # nodes: stack names and input node ids; edge attribute `value`
    producer: dict[Value, str]          # value -> node id (stack or input) that makes it


def input_node_id(net_input: NetInput) -> str:
    # Layer names may collide with blob names, so inputs get their own namespace.
    return f"input:{net_input.value.blob}"


def stack_layers(net: Net) -> StackGraph:
    """Group the net's layers into stacks and connect them."""
    stacks: dict[str, Stack] = {}
    owner: dict[str, str] = {}
    layers = net.layers()
    reads = Counter(value for layer in layers for value in layer.inputs)
    for layer in layers:
        head = _stack_to_join(net, layer, owner, reads)
        if head is None:
            stacks[layer.name] = Stack((layer,))
            owner[layer.name] = layer.name
        else:
            stacks[head] = Stack(stacks[head].layers + (layer,))
            owner[layer.name] = head

    graph = nx.MultiDiGraph()
    producer: dict[Value, str] = {}
    inputs: dict[str, NetInput] = {}
    for net_input in net.inputs:
        node = input_node_id(net_input)
        inputs[node] = net_input
        graph.add_node(node)
        producer[net_input.value] = node
    for stack in stacks.values():
        graph.add_node(stack.name)
        for value in stack.outputs:
            producer[value] = stack.name
    for stack in stacks.values():
        for value in stack.inputs:
            source = producer.get(value)
            if source is not None:
                graph.add_edge(source, stack.name, value=value)
    return StackGraph(stacks, inputs, graph, producer)


def _stack_to_join(net: Net, layer: Layer, owner: dict[str, str], reads: Counter) -> str | None:
    """The stack `layer` belongs on, or None when it starts its own."""
    if len(layer.inputs) != 1 or len(layer.outputs) != 1:
        return None
    (value,) = layer.inputs
    before = net.producer(value)
    if before is None or len(before.outputs) != 1 or reads[value] != 1:
        return None
    in_place = layer.outputs[0].blob == value.blob
    if not (in_place or layer.spec.family == "activation" or layer.spec.stacks_in_drawing):
        return None
    return owner[before.name]
