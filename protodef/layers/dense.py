"""Fully connected family: InnerProduct."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .common import canonical_axis, count, positive, reject_unhonoured
from .registry import Shape, layer

_IP_FIELDS = ("num_output", "bias_term", "weight_filler", "bias_filler", "axis", "transpose")


@dataclass(frozen=True)
class InnerProduct:
    """Caffe inner_product_layer.cpp: flattens axes from `axis` on; weight (num_output, K), or (K, num_output)
    when `transpose`."""

    num_output: int
    in_features: int
    axis: int
    bias_term: bool
    transpose: bool
    weight_filler: Any = None
    bias_filler: Any = None

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "InnerProduct":
        p = lp.inner_product_param
        reject_unhonoured(p, _IP_FIELDS, what="inner_product_param")
        x = inputs[0]
        axis = canonical_axis(p.axis, len(x))
        positive(p.num_output, what="inner_product_param.num_output")
        return cls(p.num_output, count(x, axis), axis, p.bias_term, p.transpose, p.weight_filler, p.bias_filler)

    def infer(self, x: Shape) -> Shape:
        return (*x[:self.axis], self.num_output)

    def weight_shapes(self, x: Shape) -> list[Shape]:
        weight = (self.in_features, self.num_output) if self.transpose else (self.num_output, self.in_features)
        return [weight, (self.num_output,)] if self.bias_term else [weight]

    def weight_fillers(self) -> list[Any]:
        return [self.weight_filler, self.bias_filler]

    def macs(self, inputs: list[Shape], outputs: list[Shape]) -> int:
        return count(outputs[0]) * self.in_features


layer("InnerProduct", family="dense", label=("num_output",), in_place_ok=False, honoured=_IP_FIELDS,
      fresh_output=True)(InnerProduct)
