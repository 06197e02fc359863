"""Element-wise family: activations and other one-in one-out maps that keep the shape."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError
from .common import ConstantFiller, field_or_default, reject_unhonoured
from .registry import OpenCVDifference, Shape, layer


class Elementwise:
    """Shape-preserving layers: y has x's shape."""

    def infer(self, x: Shape) -> Shape:
        return x


def _plain(type_name: str, doc: str, **options: Any) -> None:
    """Register a parameterless element-wise type."""

    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]):
        return cls()

    cls = dataclass(frozen=True)(type(type_name, (Elementwise,), {
        "__doc__": doc, "from_proto": classmethod(from_proto), "__module__": __name__}))
    globals()[type_name] = cls
    layer(type_name, family="activation", **options)(cls)


_plain("Sigmoid", "y = 1 / (1 + exp(-x))")
_plain("TanH", "y = tanh(x)")
_plain("AbsVal", "y = |x|")
_plain("BNLL", "y = log(1 + exp(x)), Caffe's binomial normal log likelihood")


@dataclass(frozen=True)
class ReLU(Elementwise):
    """y = max(x, 0) + negative_slope * min(x, 0)"""

    negative_slope: float

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "ReLU":
        return cls(lp.relu_param.negative_slope)


@dataclass(frozen=True)
class PReLU(Elementwise):
    """y = max(x, 0) + a * min(x, 0), one slope per channel (axis 1), or one in all when channel_shared."""

    channels: int
    channel_shared: bool
    filler: Any = None

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "PReLU":
        p = lp.prelu_param
        x = inputs[0]
        return cls(x[1] if len(x) > 1 else 1, p.channel_shared, p.filler if p.HasField("filler") else _PRELU_FILLER)

    def weight_shapes(self, x: Shape) -> list[Shape]:
        return [()] if self.channel_shared else [(self.channels,)]

    def weight_fillers(self) -> list[Any]:
        return [self.filler]


_PRELU_FILLER = ConstantFiller(0.25)   # Caffe's PReLU default: constant 0.25


@dataclass(frozen=True)
class ELU(Elementwise):
    """y = x if x > 0 else alpha * (exp(x) - 1)"""

    alpha: float

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "ELU":
        return cls(lp.elu_param.alpha)


@dataclass(frozen=True)
class Power(Elementwise):
    """y = (shift + scale * x) ^ power"""

    power: float
    scale: float
    shift: float

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Power":
        p = lp.power_param
        return cls(p.power, p.scale, p.shift)


@dataclass(frozen=True)
class Exp(Elementwise):
    """y = base ^ (shift + scale * x); base -1 means e."""

    base: float
    scale: float
    shift: float

    _param_field = "exp_param"

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]):
        p = getattr(lp, cls._param_field)
        reject_unhonoured(p, ("base", "scale", "shift"), what=cls._param_field)
        if p.base != -1 and p.base <= 0:
            from ..errors import SchemaError
            raise SchemaError(f"{cls._param_field}.base must be positive (or -1 for e)", found=p.base)
        return cls(p.base, p.scale, p.shift)

    @property
    def log_base(self) -> float:
        """ln(base): Caffe computes base^z as exp(z * ln(base))."""
        return 1.0 if self.base == -1 else math.log(self.base)


@dataclass(frozen=True)
class Log(Exp):
    """y = log_base(shift + scale * x); base -1 means e."""

    _param_field = "log_param"


@dataclass(frozen=True)
class Threshold(Elementwise):
    """y = 1 if x > threshold else 0"""

    threshold: float

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Threshold":
        return cls(lp.threshold_param.threshold)


@dataclass(frozen=True)
class Dropout(Elementwise):
    """Identity at test time when scale_train (Caffe's default); without it Caffe scales by 1 - ratio at test."""

    ratio: float
    scale_train: bool

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Dropout":
        p = lp.dropout_param
        return cls(p.dropout_ratio, field_or_default(p, "scale_train", True))   # py-faster-rcnn's field

    @property
    def test_scale(self) -> float:
        return 1.0 if self.scale_train else 1.0 - self.ratio


layer("ReLU", family="activation", label=("negative_slope",), honoured=("negative_slope",), parameter="relu_param")(ReLU)
layer("PReLU", family="activation", label=("channel_shared",), honoured=("filler", "channel_shared"), parameter="prelu_param")(PReLU)
layer("ELU", family="activation", label=("alpha",), honoured=("alpha",), parameter="elu_param")(ELU)
layer("Power", family="activation", label=("power", "scale", "shift"), honoured=("power", "scale", "shift"), parameter="power_param")(Power)
layer("Exp", family="activation", label=("base", "scale", "shift"))(Exp)
layer("Log", family="activation", label=("base", "scale", "shift"),
      opencv_differs=OpenCVDifference("ignores log_param (base, scale and shift)",
                                      applies=lambda p: (p.base, p.scale, p.shift) != (-1.0, 1.0, 0.0)))(Log)
layer("Threshold", family="activation", label=("threshold",), honoured=("threshold",), parameter="threshold_param")(Threshold)
layer("Dropout", family="activation", label=("ratio",), honoured=("dropout_ratio", "scale_train"), parameter="dropout_param")(Dropout)


@dataclass(frozen=True)
class NegReLU(Elementwise):
    """FlowNet 2 neg_relu_layer.cpp, ReLU mirrored: y = min(x, 0) + negative_slope * max(x, 0) (relu_param)."""

    negative_slope: float

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "NegReLU":
        return cls(lp.relu_param.negative_slope)


layer("NegReLU", family="activation", source="FlowNet 2 fork", label=("negative_slope",),
      honoured=("negative_slope",), parameter="relu_param")(NegReLU)


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
        return cls(lp.swish_param.beta)


@dataclass(frozen=True)
class Mish(Elementwise):
    """y = x * tanh(ln(1 + exp(x))) (the YOLOv4 Caffe forks' mish_layer; it takes no parameters)."""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Mish":
        return cls()


layer("ReLU6", family="activation", source="MobileNet-YOLO fork", label=("negative_slope",),
      honoured=("negative_slope",),
      opencv_differs=OpenCVDifference("ignores negative_slope", applies=lambda p: p.negative_slope != 0))(ReLU6)


layer("Clip", family="activation", label=("min", "max"), honoured=("min", "max"))(Clip)


layer("Swish", family="activation", label=("beta",), honoured=("beta",), parameter="swish_param",
      opencv_differs=OpenCVDifference("ignores beta", applies=lambda p: p.beta != 1))(Swish)


layer("Mish", family="activation", source="YOLOv4 Caffe forks")(Mish)
