"""The module's tensors as Caffe's parameter blobs: per layer (for caffemodels) and as the net's learnable
blobs (for the solver and its .solverstate).

A training module (protodef.load(..., phase="train")) lists its blobs in `caffe_param_specs`, in Caffe's
order (layers in net order, each layer's blobs in blob order). Caffe's Net::AppendParam makes the first layer
holding a shared blob its owner; only owners are learnable, so the solver's history has one entry per owner,
in that order. BatchNorm's statistics are learnable blobs too, with lr_mult 0 (batch_norm_layer.cpp forces
it): they get history entries that never move them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import GraphError, WeightsError

f32 = np.float32


@dataclass(frozen=True)
class CaffeBlob:
    layer: str
    index: int                 # position among the layer's blobs
    name: str                  # the tensor's dotted name in the module
    tensor: torch.Tensor
    lr_mult: np.float32
    decay_mult: np.float32
    buffer: bool               # updated by forward (BatchNorm statistics), never by gradients
    transpose: bool = False    # the tensor is Caffe's blob transposed (InnerProduct with transpose: true)

    def caffe_array(self, tensor: torch.Tensor | None = None) -> np.ndarray:
        """This blob's tensor (or a history tensor of it) as Caffe lays the blob out."""
        array = (self.tensor if tensor is None else tensor).detach().to("cpu", torch.float32).numpy()
        return array.T if self.transpose else array

    def load(self, array: np.ndarray, target: torch.Tensor | None = None, *, where: str, what: str) -> None:
        """Copy a blob Caffe stored into this blob's tensor (or a history tensor of it)."""
        target = self.tensor if target is None else target
        values = self.as_tensor_layout(array, target, where=where, what=what)
        with torch.no_grad():
            target.copy_(values)

    def as_tensor_layout(self, array: np.ndarray, target: torch.Tensor | None = None, *, where: str,
                         what: str) -> torch.Tensor:
        """A stored blob in the tensor's layout, if it has the blob's shape or the same padded with leading 1s
        (Caffe's legacy 4-D blobs)."""
        target = self.tensor if target is None else target
        shape = tuple(target.shape)[::-1] if self.transpose else tuple(target.shape)
        if tuple(array.shape) != shape and (array.size != target.numel() or _squeezed(array.shape) != _squeezed(shape)):
            raise WeightsError(f"{what} has the wrong shape", where=where, layer=self.layer, expected=shape,
                               found=tuple(array.shape))
        values = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).reshape(shape)
        return values.T if self.transpose else values


@dataclass(frozen=True)
class BlobGroup:
    """Learnable blobs with the same multipliers: one set of foreach calls updates them all."""

    indices: tuple[int, ...]
    lr_mult: np.float32
    decay_mult: np.float32


def caffe_blobs(module: Any) -> list[CaffeBlob]:
    """Every entry of the module's caffe_param_specs, shared blobs once per layer that holds them."""
    specs = getattr(module, "caffe_param_specs", None)
    if specs is None:
        raise GraphError("the module has no caffe_param_specs: make it with protodef.load(..., phase='train')",
                         expected="a module from protodef.load", found=type(module).__name__)
    tensors = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(module.named_buffers(remove_duplicate=False))
    blobs = []
    for spec in specs:
        name = spec["parameter"]
        if name not in tensors:
            raise GraphError("caffe_param_specs names a tensor the module does not have", layer=spec["layer"],
                             expected="a parameter or buffer of the module", found=name)
        buffer = bool(spec.get("buffer", False))
        lr_mult = f32(0) if buffer else f32(spec.get("lr_mult", 1.0))
        blobs.append(CaffeBlob(spec["layer"], int(spec["blob"]), name, tensors[name], lr_mult,
                               f32(spec.get("decay_mult", 1.0)), buffer, bool(spec.get("transpose", False))))
    return blobs


def learnable_blobs(blobs: list[CaffeBlob]) -> list[CaffeBlob]:
    """The owners, in Caffe's learnable_params order: a tensor already seen is a shared blob."""
    seen: set[int] = set()
    owners = []
    for blob in blobs:
        if id(blob.tensor) not in seen:
            seen.add(id(blob.tensor))
            owners.append(blob)
    return owners


def blob_groups(learnable: list[CaffeBlob]) -> list[BlobGroup]:
    by_multipliers: dict[tuple[float, float], list[int]] = {}
    for i, blob in enumerate(learnable):
        by_multipliers.setdefault((float(blob.lr_mult), float(blob.decay_mult)), []).append(i)
    return [BlobGroup(tuple(indices), f32(lr), f32(decay)) for (lr, decay), indices in by_multipliers.items()]


def blobs_by_layer(blobs: list[CaffeBlob]) -> dict[str, list[CaffeBlob]]:
    """Each layer's blobs in blob order, layers in net order."""
    layers: dict[str, list[CaffeBlob]] = {}
    for blob in blobs:
        layers.setdefault(blob.layer, []).append(blob)
    return {name: sorted(held, key=lambda b: b.index) for name, held in layers.items()}


def _squeezed(shape) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape
