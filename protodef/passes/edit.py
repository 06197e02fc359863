"""Graph edits the passes share that protodef.ir.Net has no verb for (yet)."""
from __future__ import annotations

from ..ir import Layer, Net, Value


def merge_pair(net: Net, first: Layer, second: Layer, merged: Layer) -> Layer:
    """Replace `first -> second` by one layer `merged` in place (`merged` takes `first`'s name and position in
    the prototxt order, reads `first`'s inputs, writes `second`'s outputs). `second` must be the only reader of
    `first`'s outputs. Keeping `second`'s output values leaves every reader downstream untouched."""
    order = net.graph.nodes[first.name]["order"]
    stand_in = merged.replace(name=second.name)
    net.replace(second, stand_in)       # first's outputs lose their only reader...
    net.remove(first)                   # ...so first can go,
    net.replace(stand_in, merged)       # and the merged layer takes first's name
    net.graph.nodes[merged.name]["order"] = order
    return merged


def drop_input(net: Net, value: Value) -> None:
    """Remove a net input that no layer reads."""
    if net.consumers(value):
        raise ValueError(f"net input '{value}' is still read")
    net.inputs = [i for i in net.inputs if i.value != value]
    net.shapes.pop(value, None)


def bypass_keeps_outputs(net: Net, layer: Layer) -> bool:
    """Whether bypassing a one-in one-out layer keeps the net's outputs: an unread output only survives as its
    input if nothing else reads that input and it is not a net input (net inputs are never outputs)."""
    (source,), (result,) = layer.inputs, layer.outputs
    if net.consumers(result):
        return True
    if net.producer(source) is None:
        return False
    return all(reader.name == layer.name for reader, _ in net.consumers(source))


def describe(layer: Layer) -> str:
    return f"'{layer.name}' ({layer.type})"
