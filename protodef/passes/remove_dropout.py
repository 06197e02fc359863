"""Dropout at test time: the identity, or a constant scale when it was trained without scaling."""
from __future__ import annotations

from ..ir import Net
from ..layers.activation import Power
from .edit import bypass_keeps_outputs, describe


def remove_dropout(net: Net) -> Net:
    """Bypass each Dropout that is the identity at test time; one trained with `scale_train: false` becomes a
    Power layer with scale 1 - ratio (Caffe dropout_layer.cpp multiplies by 1/scale_ = 1 - ratio in TEST)."""
    out = net.copy()
    for name in [layer.name for layer in out.layers(type="Dropout")]:
        layer = out.layer(name)         # fresh: bypassing an earlier Dropout may have rewired this one
        scale = layer.params.test_scale
        if scale == 1.0 and bypass_keeps_outputs(out, layer):
            out.bypass(layer)
            continue
        out.replace(layer, layer.replace(type="Power", params=Power(power=1.0, scale=scale, shift=0.0)))
        why = (f"scale_train is false, so Caffe scales by 1 - ratio = {scale:g} at test time" if scale != 1.0
               else "its output is a net output that bypassing it would lose")
        out.notes.append(f"Dropout {describe(layer)} became Power(scale={scale:g}): {why}")
    return out
