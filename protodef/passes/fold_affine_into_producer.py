"""A ChannelAffine after a convolution or an inner product folds into that layer's weights and bias."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import Layer, Net
from ..layers.conv import Convolution, Deconvolution
from ..layers.dense import InnerProduct
from .edit import describe, merge_pair


def fold_affine_into_producer(net: Net) -> Net:
    """Fold each ChannelAffine into the Convolution/Deconvolution/depthwise/InnerProduct that writes its input,
    when no other layer reads that output (another reader needs the unscaled values) and the layer writes no
    other output (a convolution of several bottoms computes each top with the same weights)."""
    out = net.copy()
    for name in [layer.name for layer in out.layers(type="ChannelAffine")]:
        affine = out.layer(name)
        producer = out.producer(affine.inputs[0])
        axes = output_axis(producer) if producer is not None else None
        if axes is None or len(affine.weights) != 2 or not producer.weights:
            continue
        if len(producer.outputs) > 1:   # a convolution of several bottoms: its weights compute every top
            others = ", ".join(f"'{v}'" for v in producer.outputs if v != affine.inputs[0])
            out.notes.append(f"ChannelAffine {describe(affine)} not folded into {describe(producer)}: its weights "
                             f"also compute {others}")
            continue
        others = [reader for reader, _ in out.consumers(affine.inputs[0]) if reader.name != affine.name]
        if others:
            out.notes.append(f"ChannelAffine {describe(affine)} not folded into {describe(producer)}: "
                             f"{describe(others[0])} also reads '{affine.inputs[0]}'")
            continue
        merge_pair(out, producer, affine, folded(producer, affine, *axes).replace(outputs=affine.outputs))
    return out


def output_axis(layer: Layer) -> tuple[int, int] | None:
    """(axis of the weight that indexes output channels, groups) for a layer a per-channel affine can fold
    into, when its output channels are axis 1 of its output; else None."""
    p = layer.params
    if isinstance(p, Deconvolution):
        return (1, p.group) if p.axis == 1 else None    # weight (C_in, num_output / group, *kernel)
    if isinstance(p, Convolution):
        return (0, 1) if p.axis == 1 else None          # weight (num_output, C_in / group, *kernel)
    if isinstance(p, InnerProduct):
        return ((1 if p.transpose else 0), 1) if p.axis == 1 else None
    return None


def folded(producer: Layer, affine: Layer, out_axis: int, groups: int) -> Layer:
    weight, bias = producer.weights[0], (producer.weights[1] if producer.params.bias_term else None)
    new_weight, new_bias = fold_affine(weight, bias, *affine.weights, out_axis=out_axis, groups=groups)
    params = dataclasses.replace(producer.params, bias_term=True)
    # Folded weights are this layer's own: they no longer equal what a shared ParamSpec name would share.
    return producer.replace(params=params, weights=(new_weight, new_bias), param_names=())


def fold_affine(weight: np.ndarray, bias: np.ndarray | None, scale: np.ndarray, shift: np.ndarray,
                out_axis: int, groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias of the layer `affine(layer(x))` where affine is y * scale[c] + shift[c] on the output
    channel c: W' = W * scale along the output axis of the weight, b' = b * scale + shift (b = 0 when None).

    out_axis 0: weight axis 0 indexes every output channel (`groups` does not matter). out_axis 1: the weight
    is (C_in, C_out / groups, ...) as Caffe's Deconvolution, and input channel block g feeds output channels
    g * C_out/groups + j. Returned as float32. The per-channel arithmetic (bias, and the scale as the caller
    computed it, in float64 from BatchNorm's statistics) is done in float64; the weight, most of a net's bytes,
    is multiplied in float32 by the scale rounded once: at most two roundings, about 1e-7 relative, where a
    float64 copy of every weight would double the time of a whole conversion."""
    w = np.asarray(weight, np.float32)
    scale, shift = np.asarray(scale, np.float64).reshape(-1), np.asarray(shift, np.float64).reshape(-1)
    factor = scale.astype(np.float32)
    channels = scale.size
    if out_axis == 0:
        if w.shape[0] != channels:
            raise ValueError(f"weight axis 0 has {w.shape[0]} outputs, the affine {channels} channels")
        new_w = w * factor.reshape((channels,) + (1,) * (w.ndim - 1))
    elif out_axis == 1:
        if w.shape[1] * groups != channels or w.shape[0] % groups:
            raise ValueError(f"weight {w.shape} with {groups} groups does not give {channels} output channels")
        blocks = w.reshape(groups, w.shape[0] // groups, *w.shape[1:])
        new_w = (blocks * factor.reshape(groups, 1, w.shape[1], *(1,) * (w.ndim - 2))).reshape(w.shape)
    else:
        raise ValueError(f"out_axis must be 0 or 1, not {out_axis}")
    b = np.zeros(channels) if bias is None else np.asarray(bias, np.float64).reshape(-1)
    return new_w, (b * scale + shift).astype(np.float32)
