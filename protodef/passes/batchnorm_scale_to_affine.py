"""BatchNorm (test phase) and per-channel Scale as one internal ChannelAffine each; BatchNorm + Scale as one."""
from __future__ import annotations

import numpy as np

from ..ir import Layer, Net
from ..layers.norm import ChannelAffine
from .edit import describe, merge_pair

Affine = tuple[np.ndarray, np.ndarray]   # (scale, shift), float64


def batchnorm_scale_to_affine(net: Net) -> Net:
    """Each foldable BatchNorm, and each one-input Scale of the channel axis, becomes a ChannelAffine; a
    BatchNorm whose only reader is such a Scale merges with it into one."""
    out = net.copy()
    for name in [layer.name for layer in out.layers(type="BatchNorm")]:
        layer = out.layer(name)
        affine = batchnorm_affine(out, layer)
        if affine is None:
            continue
        (value,) = layer.outputs
        readers = out.consumers(value)
        following = readers[0][0] if len(readers) == 1 else None
        then = scale_affine(out, following) if following is not None and following.type == "Scale" else None
        if then is None:
            out.replace(layer, _affine_layer(layer, affine, layer.outputs))
            continue
        merged = (affine[0] * then[0], affine[1] * then[0] + then[1])
        merge_pair(out, layer, following, _affine_layer(layer, merged, following.outputs))
    for name in [layer.name for layer in out.layers(type="Scale")]:
        layer = out.layer(name)
        affine = scale_affine(out, layer)
        if affine is not None:
            out.replace(layer, _affine_layer(layer, affine, layer.outputs))
    return out


def batchnorm_affine(net: Net, layer: Layer) -> Affine | None:
    """Caffe batch_norm_layer.cpp, use_global_stats: y = (x - mean) / sqrt(var + eps)."""
    p = layer.params
    if not p.use_global_stats:
        net.notes.append(f"BatchNorm {describe(layer)} left as is: use_global_stats is false, so it normalises "
                         "by each batch's own statistics")
        return None
    if len(layer.weights) != 3:
        net.notes.append(f"BatchNorm {describe(layer)} left as is: it has no weights")
        return None
    mean, var = p.statistics(layer.weights)
    scale = 1.0 / np.sqrt(var + p.eps)
    return scale, -mean * scale


def scale_affine(net: Net, layer: Layer) -> Affine | None:
    """A Scale with a learned per-channel scale on axis 1 (y = x * gamma[c] (+ beta[c])), else None."""
    p = layer.params
    if p.two_inputs or len(layer.inputs) != 1 or p.axis != 1:
        return None
    shape = net.shape(layer.inputs[0])
    if len(shape) < 2 or tuple(p.param_shape) != (shape[1],) or len(layer.weights) != 1 + p.bias_term:
        return None
    gamma = np.asarray(layer.weights[0], np.float64)
    beta = np.asarray(layer.weights[1], np.float64) if p.bias_term else np.zeros_like(gamma)
    return gamma, beta


def _affine_layer(like: Layer, affine: Affine, outputs: tuple) -> Layer:
    scale, shift = affine
    return like.replace(type="ChannelAffine", params=ChannelAffine(len(scale)), outputs=outputs,
                        weights=(scale.astype(np.float32), shift.astype(np.float32)), param_names=())
