"""Merge family: layers that combine several inputs (Eltwise, Concat)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError, ShapeError
from ..symbolic import definitely
from .common import (
    canonical_axis,
    count,
    differ,
    enum_name,
    same_shapes,
)
from .registry import OpenCVDifference, Shape, layer


@dataclass(frozen=True)
class Eltwise:
    """Caffe eltwise_layer.cpp: PROD, SUM (with one coefficient per input) or MAX of equal-shaped inputs."""

    operation: str
    coeffs: tuple[float, ...]

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Eltwise":
        p = lp.eltwise_param
        operation = enum_name(p, "operation")
        if p.coeff and operation != "SUM":
            raise SchemaError("Eltwise coefficients only apply to SUM", found=operation)
        if p.coeff and len(p.coeff) != len(inputs):
            raise SchemaError("Eltwise needs one coefficient per input", expected=len(inputs), found=len(p.coeff))
        coeffs = tuple(p.coeff) if p.coeff else (1.0,) * len(inputs)
        if len(inputs) == 1 and operation != "SUM":
            # BVLC Caffe takes two bottoms at least; FlowNet 2's fork takes one, which only SUM computes (its PROD
            # and MAX read a second bottom).
            raise SchemaError("an Eltwise of one bottom computes SUM only (FlowNet 2's fork: coeff * x)",
                              expected="operation: SUM, or a second bottom", found=operation)
        return cls(operation, coeffs)

    def infer(self, *inputs: Shape) -> Shape:
        return same_shapes(inputs, what="Eltwise")


@dataclass(frozen=True)
class Concat:
    """Caffe concat_layer.cpp: inputs agree on every axis except `axis` (legacy `concat_dim`)."""

    axis: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Concat":
        p = lp.concat_param
        if p.HasField("concat_dim") and p.HasField("axis"):
            raise SchemaError("give concat_param.axis or the legacy concat_dim, not both")
        axis = p.concat_dim if p.HasField("concat_dim") else p.axis
        return cls(canonical_axis(axis, len(inputs[0])))

    def infer(self, *inputs: Shape) -> Shape:
        first = inputs[0]
        for index, shape in enumerate(inputs[1:], start=1):
            if len(shape) != len(first) or any(definitely(a != b) for i, (a, b) in enumerate(zip(first, shape))
                                               if i != self.axis):
                raise ShapeError(f"Concat input {index} differs from input 0 off the concat axis {self.axis}",
                                 expected=first, found=shape)
        return (*first[:self.axis], sum(s[self.axis] for s in inputs), *first[self.axis + 1:])


layer("Eltwise", family="merge", label=("operation",), inputs=(1, None), in_place_ok=True,
      fresh_output=True, honoured=("operation", "coeff", "stable_prod_grad"), parameter="eltwise_param")(Eltwise)
layer("Concat", family="merge", label=("axis",), inputs=(1, None), in_place_ok=False, honoured=("axis", "concat_dim"), parameter="concat_param")(Concat)


@dataclass(frozen=True)
class SpatialProduct:
    """DeepLab v2 / PSPNet spatial_product_layer.cpp: every channel of x (N, C, H, W) multiplied by the one
    channel of s (N, 1, H, W), pixel by pixel."""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "SpatialProduct":
        x, s = inputs
        if len(x) != 4 or len(s) != 4 or s[0] != x[0] or s[1] != 1 or s[2:] != x[2:]:
            raise ShapeError("SpatialProduct multiplies (N, C, H, W) by (N, 1, H, W)",
                             expected=(x[0], 1, *x[2:]) if len(x) == 4 else "4-D inputs", found=s)
        return cls()

    def infer(self, x: Shape, s: Shape) -> Shape:
        return x


layer("SpatialProduct", family="merge", source="DeepLab v2 / PSPNet fork", inputs=(2, 2),
      in_place_ok=False)(SpatialProduct)


@dataclass(frozen=True)
class Axpy:
    """SENet axpy_layer.cpp: inputs (a, x, y); output a * x + y, a holding one factor per (n, c): shape
    (N, C) or (N, C, 1, 1)."""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Axpy":
        a, x, y = inputs
        if len(x) < 2 or len(a) < 2 or differ(a[:2], x[:2]) or definitely(count(a) != count(x, 0, 2)):
            raise ShapeError("Axpy's first input must be (N, C) or (N, C, 1, 1) of its second input's N and C",
                             expected=x[:2], found=a)
        if differ(x, y):
            raise ShapeError("Axpy's second and third inputs must have the same shape", expected=x, found=y)
        return cls()

    def infer(self, a: Shape, x: Shape, y: Shape) -> Shape:
        return x


layer("Axpy", family="merge", source="SENet fork", inputs=(3, 3), in_place_ok=False,
      opencv_differs=OpenCVDifference("swaps its second and third inputs"))(Axpy)
