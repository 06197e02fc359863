"""Loss layers written without a top: Caffe makes one (LossLayer::AutoTopBlobs)."""
from __future__ import annotations

from ..ir import Net, Value


def name_automatic_loss_tops(net: Net) -> Net:
    """A loss layer given no top gets one from Caffe (LossLayer::AutoTopBlobs, "(automatic)"); here it is
    named after the layer, so that the module returns it."""
    out = net.copy()
    blobs = {v.blob for v in out.shapes} | {i.value.blob for i in out.inputs}
    for layer in out.layers():
        if layer.spec.loss_layer and not layer.outputs:
            name = layer.name if layer.name not in blobs else f"{layer.name}_top"
            top = Value(name)
            out.replace(layer, layer.replace(outputs=(top,)))
            out.shapes[top] = ()
            blobs.add(name)
            out.notes.append(f"loss layer '{layer.name}' has no top: its automatic top is named '{name}'")
    return out
