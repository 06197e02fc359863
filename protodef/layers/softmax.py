"""Softmax family: Softmax and ArgMax."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError
from .common import canonical_axis, count
from .registry import Shape, layer


@dataclass(frozen=True)
class Softmax:
    """Softmax over one axis (default 1, the channels)."""

    axis: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Softmax":
        return cls(canonical_axis(lp.softmax_param.axis, len(inputs[0])))

    def infer(self, x: Shape) -> Shape:
        return x


@dataclass(frozen=True)
class ArgMax:
    """Caffe argmax_layer.cpp: top_k indices (or values, with out_max_val) along `axis`; without an axis,
    over everything but the batch, giving (N, 1 or 2, top_k[, 1...])."""

    top_k: int
    out_max_val: bool
    axis: int | None

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "ArgMax":
        p = lp.argmax_param
        x = inputs[0]
        axis = canonical_axis(p.axis, len(x)) if p.HasField("axis") else None
        available = x[axis] if axis is not None else count(x[1:])
        if not 1 <= p.top_k <= available:
            raise SchemaError("argmax_param.top_k must be between 1 and the size searched", expected=f"1..{available}",
                              found=p.top_k)
        return cls(p.top_k, p.out_max_val, axis)

    def infer(self, x: Shape) -> Shape:
        if self.axis is not None:
            return (*x[:self.axis], self.top_k, *x[self.axis + 1:])
        shape = [1] * max(3, len(x))
        shape[0], shape[2] = x[0], self.top_k
        if self.out_max_val:
            shape[1] = 2
        return tuple(shape)


layer("Softmax", family="softmax", label=("axis",), honoured=("axis",), parameter="softmax_param")(Softmax)
layer("ArgMax", family="softmax", label=("top_k", "axis"), in_place_ok=False, honoured=("out_max_val", "top_k", "axis"), parameter="argmax_param")(ArgMax)
