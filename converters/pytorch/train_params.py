"""Caffe's parameter blobs on a TRAIN-phase module: which tensor holds each blob, its ParamSpec, sharing.

`caffe_param_specs` lists every layer's blobs in Caffe's order (layers in net order, blobs in blob order), one
dict per blob:

    layer       the Caffe layer name            blob        the blob's index in the layer
    parameter   the tensor's dotted name in the module (a parameter, or a buffer when `buffer`)
    lr_mult     decay_mult   the multipliers Caffe uses for it (those of the blob's owner, merged as
                             net.cpp AppendParam merges them; 1 when unset)
    share       the ParamSpec name that shares it, or None
    owner       the dotted name of the tensor that owns it (itself unless it is shared from an earlier layer)
    buffer      True for BatchNorm's statistics: blobs Caffe keeps with lr_mult 0, updated by forward
    transpose   True where the torch tensor is the transpose of Caffe's blob (InnerProduct with transpose)

A blob shared by name is one tensor: the sharing layer's attribute is the owner's nn.Parameter, so
named_parameters() (which skips repeats) lists it once, under the owner's name. lr_mult 0 freezes a parameter
(requires_grad False).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from protodef.errors import SchemaError, ShapeError, UnsupportedError
from protodef.ir import Layer, Net, ParamSpec

# batch_norm_layer.cpp keeps its statistics as blobs and forces lr_mult 0 on them.
_BUFFER_BLOBS = {"BatchNorm": ("mean", "variance", "scale_factor")}


@dataclass
class _Owner:
    """A learnable blob as Caffe's AppendParam tracks it: where it lives and its merged multipliers."""

    parameter: str
    tensor: torch.Tensor
    layer: Layer
    blob: int
    lr_mult: float | None
    decay_mult: float | None
    entries: list[dict[str, Any]] = field(default_factory=list)


def bind_caffe_params(net: Net, module: nn.Module, identifiers: dict[str, str]) -> list[dict[str, Any]]:
    """Tie shared blobs, freeze lr_mult 0 and return `caffe_param_specs` (see the module docstring).
    `identifiers` maps each layer name to its submodule's name."""
    entries: list[dict[str, Any]] = []
    owners: list[_Owner] = []
    by_name: dict[str, _Owner] = {}
    for layer in net.layers():
        if not layer.weights:
            continue
        submodule_name = identifiers[layer.name]
        slots = _blob_slots(layer, module.get_submodule(submodule_name))
        for index, (attribute, tensor, is_buffer) in enumerate(slots):
            spec = layer.param_specs[index] if index < len(layer.param_specs) else ParamSpec()
            if is_buffer:
                _check_statistics_spec(layer, index, spec)
            parameter = f"{submodule_name}.{attribute}"
            owner = by_name.get(spec.name) if spec.name else None
            if owner is None:
                owner = _Owner(parameter, tensor, layer, index, 0.0 if is_buffer else spec.lr_mult, spec.decay_mult)
                owners.append(owner)
                if spec.name:
                    by_name[spec.name] = owner
            else:
                _check_shareable(layer, index, spec, owner)
                _merge_multipliers(layer, spec, owner)
                parent, _, leaf = parameter.rpartition(".")
                setattr(module.get_submodule(parent), leaf, owner.tensor)
            entry = {"layer": layer.caffe_name or layer.name, "blob": index, "parameter": parameter,
                     "share": spec.name or None, "owner": owner.parameter, "buffer": is_buffer,
                     "transpose": _transposed(layer, index)}
            owner.entries.append(entry)
            entries.append(entry)
    for owner in owners:
        lr_mult = 1.0 if owner.lr_mult is None else float32_value(owner.lr_mult)
        decay_mult = 1.0 if owner.decay_mult is None else float32_value(owner.decay_mult)
        for entry in owner.entries:
            entry.update(lr_mult=lr_mult, decay_mult=decay_mult)
        if isinstance(owner.tensor, nn.Parameter):
            owner.tensor.requires_grad_(lr_mult != 0)
    return entries


def float32_value(value: float) -> float:
    """A float32 field as the shortest decimal that is the same float32 (0.1, not 0.10000000149011612)."""
    single = np.float32(value)
    short = float(str(single))
    return short if np.float32(short) == single else float(single)


def _blob_slots(layer: Layer, submodule: nn.Module) -> list[tuple[str, torch.Tensor, bool]]:
    """(attribute, tensor, is_buffer) per Caffe blob: BatchNorm's named buffers, otherwise the module's state in
    its state_dict order (parameters, then buffers), one tensor per blob with as many elements."""
    if layer.type in _BUFFER_BLOBS:
        return [(name, getattr(submodule, name), True) for name in _BUFFER_BLOBS[layer.type]]
    tensors = [(name, t, not isinstance(t, nn.Parameter)) for name, t in submodule.state_dict(keep_vars=True).items()
               if not name.endswith("num_batches_tracked")]
    if len(tensors) != len(layer.weights) or any(t.numel() != w.size for (_, t, _), w in zip(tensors, layer.weights)):
        raise UnsupportedError("cannot tell which tensor of the PyTorch module holds each Caffe blob of this layer, "
                               "so it cannot be trained", layer=layer, where=layer.where,
                               expected=[tuple(w.shape) for w in layer.weights],
                               found=[f"{name} {tuple(t.shape)}" for name, t, _ in tensors])
    return tensors


def _transposed(layer: Layer, index: int) -> bool:
    return layer.type == "InnerProduct" and index == 0 and bool(getattr(layer.params, "transpose", False))


def _check_statistics_spec(layer: Layer, index: int, spec: ParamSpec) -> None:
    """batch_norm_layer.cpp: a ParamSpec given for a statistics blob must say lr_mult 0 (unset reads as 1)."""
    if index < len(layer.param_specs) and spec.lr_mult != 0:
        raise SchemaError("cannot configure batch normalization statistics as layer parameters: a param given for "
                          f"blob {index} must have lr_mult 0", where=layer.where, layer=layer, expected="lr_mult: 0",
                          found=f"lr_mult: {1.0 if spec.lr_mult is None else spec.lr_mult:g}")


def _check_shareable(layer: Layer, index: int, spec: ParamSpec, owner: _Owner) -> None:
    """net.cpp AppendParam: STRICT sharing needs the owner's shape, PERMISSIVE only its element count."""
    mine, theirs = layer.weights[index].shape, owner.layer.weights[owner.blob].shape
    where = f"param '{spec.name}' owned by layer '{owner.layer.caffe_name or owner.layer.name}'"
    if spec.permissive:
        if layer.weights[index].size != owner.layer.weights[owner.blob].size:
            raise ShapeError(f"cannot share {where}: count mismatch", where=layer.where, layer=layer,
                             expected=f"{owner.layer.weights[owner.blob].size} elements {tuple(theirs)}",
                             found=f"{layer.weights[index].size} elements {tuple(mine)}")
    elif mine != theirs:
        raise ShapeError(f"cannot share {where}: shape mismatch", where=layer.where, layer=layer,
                         expected=tuple(theirs), found=tuple(mine))
    tensor_shape = tuple(owner.tensor.shape)
    layer_tensor_shape = tuple(mine[::-1]) if _transposed(layer, index) else tuple(mine)
    if layer_tensor_shape != tensor_shape:
        raise UnsupportedError(f"sharing {where} needs one PyTorch tensor for blobs of different shapes (or "
                               "layouts)", where=layer.where, layer=layer, expected=tensor_shape,
                               found=layer_tensor_shape)


def _merge_multipliers(layer: Layer, spec: ParamSpec, owner: _Owner) -> None:
    """net.cpp AppendParam: a sharer's multiplier sets the owner's when the owner left it unset, and must
    equal it otherwise."""
    for what in ("lr_mult", "decay_mult"):
        mine, theirs = getattr(spec, what), getattr(owner, what)
        if mine is None:
            continue
        if theirs is None:
            setattr(owner, what, mine)
        elif mine != theirs:
            raise SchemaError(f"shared param '{spec.name}' has mismatched {what}", where=layer.where, layer=layer,
                              expected=theirs, found=mine)
