"""More element-wise activations: ReLU6 (MobileNet-YOLO fork), Clip and Swish (BVLC), Mish (YOLOv4 forks)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError
from .activation import Elementwise
from .common import reject_unhonoured
from .registry import Shape, layer


@dataclass(frozen=True)
class ReLU6(Elementwise):
    """MobileNet-YOLO relu6_layer.cpp: y = min(max(x, 0) + negative_slope * min(x, 0), 6); the slope comes
    from relu6_param (the layer never reads relu_param)."""

    negative_slope: float

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "ReLU6":
        reject_unhonoured(lp.relu6_param, ("negative_slope",), what="relu6_param")
        # A relu_param here would be ignored by the fork; refuse rather than drop it without a word.
        reject_unhonoured(lp.relu_param, (), what="relu_param (ReLU6 reads relu6_param)")
        return cls(lp.relu6_param.negative_slope)


@dataclass(frozen=True)
class Clip(Elementwise):
    """Caffe clip_layer.cpp: y = max(min, min(x, max)) (so min wins when min > max)."""

    min: float
    max: float

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Clip":
        p = lp.clip_param
        if not (p.HasField("min") and p.HasField("max")):
            raise SchemaError("Clip needs clip_param with both min and max (they are required fields)")
        return cls(p.min, p.max)


@dataclass(frozen=True)
class Swish(Elementwise):
    """Caffe swish_layer.cpp: y = x * sigmoid(beta * x)."""

    beta: float

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Swish":
        reject_unhonoured(lp.swish_param, ("beta",), what="swish_param")
        return cls(lp.swish_param.beta)


@dataclass(frozen=True)
class Mish(Elementwise):
    """y = x * tanh(ln(1 + exp(x))) (the YOLOv4 Caffe forks' mish_layer; it takes no parameters)."""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Mish":
        return cls()


layer("ReLU6", family="activation", source="MobileNet-YOLO fork", label=("negative_slope",),
      honoured=("negative_slope",))(ReLU6)
layer("Clip", family="activation", label=("min", "max"), honoured=("min", "max"))(Clip)
layer("Swish", family="activation", label=("beta",), honoured=("beta",))(Swish)
layer("Mish", family="activation", source="YOLOv4 Caffe forks")(Mish)
