"""The deploy view of a train/test net: no losses, no Accuracy, no Silence, no unread labels."""
from __future__ import annotations

from ..errors import GraphError
from ..ir import Layer, Net
from .edit import describe, drop_input


def remove_training_layers(net: Net) -> Net:
    """Drop training-only layers (their inputs become net outputs, as in a deploy net), then Silence layers
    (with the layers that only fed them), then net inputs no layer reads any more (a data layer's label)."""
    out = net.copy()
    training = [layer for layer in out.layers() if layer.spec.training_only]
    silences = out.layers(type="Silence")
    _remove_all(out, training + silences)
    out.notes.extend(f"dropped training-only layer {describe(layer)}" for layer in training)
    _remove_silenced_producers(net, out, silences)
    _keep_silencing(out, silences)
    out.notes.extend(f"dropped Silence layer {describe(layer)}" for layer in silences if layer.name not in out)
    read_before = {v for layer in net.layers() for v in layer.inputs}
    read_now = {v for layer in out.layers() for v in layer.inputs}
    for net_input in list(out.inputs):
        if net_input.value in read_before and net_input.value not in read_now:
            drop_input(out, net_input.value)
            out.notes.append(f"dropped net input '{net_input.value}' (declared by '{net_input.declared_by}' "
                             f"({net_input.declared_type})): no layer reads it any more")
    return out


def _remove_all(net: Net, doomed: list[Layer]) -> None:
    going = {layer.name for layer in doomed}
    for layer in doomed:
        for value in layer.outputs:
            keeps = [reader for reader, _ in net.consumers(value) if reader.name not in going]
            if keeps:
                raise GraphError(f"cannot make a deploy view: {describe(keeps[0])} reads '{value}', which only "
                                 "training needs", layer=layer, where=layer.where)
    for layer in reversed(net.layers()):      # readers go before the layers they read
        if layer.name in going:
            net.remove(layer)


def _remove_silenced_producers(before: Net, net: Net, silences: list[Layer]) -> None:
    """A value Caffe silences is not a net output; the layers that computed only such values go too, or they
    would become outputs."""
    gone = {layer.name for layer in silences}
    pending = [v for layer in silences for v in layer.inputs]
    while pending:
        producer = net.producer(pending.pop())
        if producer is None or producer.name in gone:
            continue
        # Only when every output had readers, all gone: an output no one read is one Caffe gives, and stays.
        if all(before.consumers(v) and all(r.name in gone for r, _ in before.consumers(v))
               for v in producer.outputs):
            net.remove(producer)
            gone.add(producer.name)
            net.notes.append(f"dropped {describe(producer)}: it only fed Silence layers")
            pending.extend(producer.inputs)


def _keep_silencing(net: Net, silences: list[Layer]) -> None:
    """A silenced value whose producer stays (it also computes values that are read) is still no net output:
    a Silence goes on reading it."""
    for layer in silences:
        unread = tuple(v for v in layer.inputs if net.producer(v) is not None and not net.consumers(v))
        if unread:
            net.add(layer.replace(inputs=unread))
