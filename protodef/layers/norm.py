"""Normalisation family: BatchNorm, Scale, Bias, LRN."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SchemaError, ShapeError, UnsupportedError
from ..symbolic import definitely
from .common import ConstantFiller, canonical_axis, enum_name, reject_unhonoured
from .registry import OpenCVDifference, Shape, layer

_CONSTANT_ZERO = None   # Caffe fills BatchNorm's statistics with zeros; None means "constant 0" to the fillers


@dataclass(frozen=True)
class BatchNorm:
    """Caffe batch_norm_layer.cpp, test phase: blobs mean, variance and a scale factor s;
    y = (x - mean/s) / sqrt(var/s + eps), where s == 0 means the statistics are taken as 0."""

    channels: int
    eps: float
    use_global_stats: bool
    moving_average_fraction: float = 0.999
    use_global_stats_set: bool = False   # set in the prototxt; otherwise it follows the phase (train/eval mode)

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "BatchNorm":
        p = lp.batch_norm_param
        x = inputs[0]
        if len(x) < 2:
            raise ShapeError("BatchNorm needs a channel axis", found=x)
        # Caffe: use_global_stats defaults to true in the TEST phase, false in TRAIN.
        use_global = p.use_global_stats if p.HasField("use_global_stats") else lp.phase == 1
        return cls(x[1], p.eps, use_global, p.moving_average_fraction, p.HasField("use_global_stats"))

    def infer(self, x: Shape) -> Shape:
        return x

    def weight_shapes(self, x: Shape) -> list[Shape]:
        return [(self.channels,), (self.channels,), (1,)]

    def weight_fillers(self) -> list[Any]:
        return [_CONSTANT_ZERO, _CONSTANT_ZERO, _CONSTANT_ZERO]

    @staticmethod
    def statistics(weights: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The mean and variance Caffe normalises by (float64): the stored sums divided by the scale factor
        s = blobs[2][0], where s == 0 makes the factor 0 rather than a division by 0."""
        mean, variance, factor = (np.asarray(w, np.float64) for w in weights)
        s = float(factor.reshape(-1)[0])
        s = 0.0 if s == 0 else 1.0 / s
        return mean * s, variance * s


@dataclass(frozen=True)
class Scale:
    """Caffe scale_layer.cpp: y = x * scale (+ bias), scale broadcast over axes [axis, axis + num_axes).

    With two inputs the scale is the second input (no learned scale blob); the bias, if any, is learned."""

    axis: int
    param_shape: Shape
    bias_term: bool
    two_inputs: bool
    filler: Any = None
    bias_filler: Any = None

    _param_field = "scale_param"

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Scale":
        p = getattr(lp, cls._param_field)
        honoured = ("axis", "num_axes", "filler", "bias_term", "bias_filler")
        reject_unhonoured(p, honoured if cls._param_field == "scale_param" else ("axis", "num_axes", "filler"),
                          what=cls._param_field)
        x = inputs[0]
        bias_term = getattr(p, "bias_term", False)
        if len(inputs) == 2:
            y = inputs[1]
            # Caffe: a scalar second input may use any axis; otherwise the axis is canonicalised.
            axis = canonical_axis(p.axis, len(x)) if len(y) else 0
            if x[axis:axis + len(y)] != y:
                raise ShapeError("the second input's shape must match the first's from `axis` on",
                                 expected=x[axis:axis + len(y)], found=y)
            return cls(axis, y, bias_term, True, p.filler, getattr(p, "bias_filler", None))
        if p.num_axes < -1:
            raise SchemaError(f"{cls._param_field}.num_axes must be -1 or more", found=p.num_axes)
        axis = canonical_axis(p.axis, len(x)) if p.num_axes != 0 else 0
        end = len(x) if p.num_axes == -1 else axis + p.num_axes
        if end > len(x):
            raise ShapeError(f"{cls._param_field}: axis + num_axes is past the input's last axis",
                             expected=f"<= {len(x)}", found=end)
        # scale_layer.cpp: without a filler the scale starts at 1; bias_layer.cpp's default is constant 0.
        unit = cls._param_field == "scale_param" and not p.HasField("filler")
        filler = ConstantFiller(1.0) if unit else p.filler
        return cls(axis, x[axis:end], bias_term, False, filler, getattr(p, "bias_filler", None))

    def infer(self, x: Shape, scale: Shape | None = None) -> Shape:
        return x

    def weight_shapes(self, *inputs: Shape) -> list[Shape]:
        shapes = [] if self.two_inputs else [self.param_shape]
        return shapes + [self.param_shape] if self.bias_term else shapes

    def weight_fillers(self) -> list[Any]:
        fillers = [] if self.two_inputs else [self.filler]
        return fillers + [self.bias_filler] if self.bias_term else fillers

    def trailing_axes(self, rank: int) -> int:
        """How many input axes follow the parameters' [axis, axis + n): the parameters broadcast over them."""
        return rank - self.axis - len(self.param_shape)

    def broadcast_shape(self, rank: int) -> Shape:
        """The parameters' shape with a 1 for each trailing axis, to broadcast from the right."""
        return (*self.param_shape, *(1,) * self.trailing_axes(rank))


@dataclass(frozen=True)
class Bias(Scale):
    """Caffe bias_layer.cpp: y = x + b, b broadcast as Scale's scale is (one learned blob, or a second input)."""

    _param_field = "bias_param"

    def weight_shapes(self, *inputs: Shape) -> list[Shape]:
        return [] if self.two_inputs else [self.param_shape]

    def weight_fillers(self) -> list[Any]:
        return [] if self.two_inputs else [self.filler]


@dataclass(frozen=True)
class LRN:
    """Caffe lrn_layer.cpp: x / (k + alpha/n * sum(x^2 over the window))^beta, n = local_size (or its square
    for WITHIN_CHANNEL)."""

    local_size: int
    alpha: float
    beta: float
    k: float
    region: str     # ACROSS_CHANNELS or WITHIN_CHANNEL

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "LRN":
        p = lp.lrn_param
        if p.local_size % 2 == 0:
            raise SchemaError("LRN local_size must be odd", found=p.local_size)
        if len(inputs[0]) != 4:
            raise ShapeError("LRN takes a 4-D input", found=inputs[0])
        return cls(p.local_size, p.alpha, p.beta, p.k, enum_name(p, "norm_region"))

    def infer(self, x: Shape) -> Shape:
        return x


layer("BatchNorm", family="norm", label=("eps",), fresh_output=True, stacks_in_drawing=True,
      statistics={1: "variance", 2: "scale_factor"}, honoured=("use_global_stats", "moving_average_fraction", "eps", "scale_filler",
                              "bias_filler"), parameter="batch_norm_param")(BatchNorm)
layer("Scale", family="norm", label=("bias_term",), inputs=(1, 2), fresh_output=True, stacks_in_drawing=True,
      opencv_differs=OpenCVDifference("computes a scale by a second input at axis 0 otherwise",
                                      applies=lambda p: p.two_inputs and p.axis == 0))(Scale)
layer("Bias", family="norm", inputs=(1, 2), fresh_output=True, stacks_in_drawing=True)(Bias)
layer("LRN", family="norm", label=("local_size", "alpha", "beta", "region"), in_place_ok=False,
      honoured=("local_size", "alpha", "beta", "norm_region", "k"), parameter="lrn_param",
      opencv_differs=OpenCVDifference("reads no k across channels (it uses 1)",
                                      applies=lambda p: p.k != 1 and p.region == "ACROSS_CHANNELS"))(LRN)


@dataclass(frozen=True)
class ChannelNorm:
    """FlowNet 2 channel_norm_layer.cpp: the L2 norm over channels at each pixel, sqrt(sum_c x^2), as one
    channel: (N, C, H, W) -> (N, 1, H, W)."""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "ChannelNorm":
        if len(inputs[0]) != 4:   # Caffe reads num/channels/height/width
            raise ShapeError("ChannelNorm takes a 4-D input (N, C, H, W)", found=inputs[0])
        return cls()

    def infer(self, x: Shape) -> Shape:
        return (x[0], 1, x[2], x[3])


NORM_L2_EPS = 1e-7   # arcface-caffe normL2_layer.cpp adds it to the sum of squares


@dataclass(frozen=True)
class NormL2:
    """arcface-caffe normL2_layer.cpp: each item of the batch divided by the L2 norm of all its values,
    x / sqrt(sum x^2 + 1e-7)."""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "NormL2":
        if len(inputs[0]) < 2:
            raise ShapeError("NormL2 needs a batch axis and at least one more", found=inputs[0])
        return cls()

    def infer(self, x: Shape) -> Shape:
        return x


layer("ChannelNorm", family="norm", source="FlowNet 2 fork", in_place_ok=False)(ChannelNorm)
layer("NormL2", family="norm", source="arcface-caffe fork (xialuxi)", in_place_ok=False)(NormL2)


@dataclass(frozen=True)
class MVN:
    """Caffe mvn_layer.cpp: subtract the mean over `axes`, then (normalize_variance) divide by
    sqrt(variance) + eps -- eps is added after the square root (OpenCV adds it before)."""

    normalize_variance: bool
    across_channels: bool
    eps: float
    axes: tuple[int, ...]      # the axes averaged over: from 1 (across_channels) or 2 on

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "MVN":
        p = lp.mvn_param
        x = inputs[0]
        if not 1 <= len(x) <= 4:
            raise ShapeError("MVN takes an input of 1 to 4 axes (Caffe's legacy num/channels view)", found=x)
        first = 1 if p.across_channels else 2
        return cls(p.normalize_variance, p.across_channels, p.eps, tuple(range(first, len(x))))

    def infer(self, x: Shape) -> Shape:
        return x


_SEGNET_FIELDS = ("scale_filler", "shift_filler", "bn_mode")


_PSPNET_FIELDS = ("slope_filler", "bias_filler", "momentum", "eps", "frozen")


_SEGNET_EPS = 1e-9    # hard-coded in SegNet's bn_layer.cpp


@dataclass(frozen=True)
class BN:
    """The forks' BN layer; every blob is (1, C, 1, 1). Two forms, told apart by the bn_param fields used
    (or, with no bn_param, by the number of `param {}` entries: 2 or 4).

    SegNet / ENet (blobs scale, shift): bn_mode INFERENCE (after compute_bn_statistics folded the statistics
    into the blobs) gives y = x * scale + shift; bn_mode LEARN normalises with the batch's own statistics
    in every phase: mean and E[x^2] - mean^2 over (N, H, W), eps 1e-9.

    PSPNet (blobs slope, bias, mean, variance): in the TEST phase or when frozen,
    y = slope * (x - mean) / sqrt(variance + eps) + bias; in TRAIN without frozen it uses the batch's
    mean and E[(x - mean)^2] instead."""

    fork: str                  # "segnet" or "pspnet"
    channels: int
    eps: float
    batch_statistics: bool     # normalise with the input batch's statistics, not stored ones
    fillers: tuple[Any, ...]

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "BN":
        p = lp.bn_param
        x = inputs[0]
        if len(x) != 4:
            raise ShapeError("BN takes a 4-D input (N, C, H, W)", found=x)
        fork = _bn_fork(lp)
        if fork == "segnet":
            reject_unhonoured(p, _SEGNET_FIELDS, what="bn_param (SegNet/ENet form)")
            learn = enum_name(p, "bn_mode") == "LEARN"
            return cls("segnet", x[1], _SEGNET_EPS, learn, (p.scale_filler, p.shift_filler))
        reject_unhonoured(p, _PSPNET_FIELDS, what="bn_param (PSPNet form)")
        batch = lp.phase == 0 and not p.frozen    # Caffe's phase_: 0 TRAIN, 1 TEST
        fillers = (p.slope_filler, p.bias_filler, ConstantFiller(0.0), ConstantFiller(1.0 if p.frozen else 0.0))
        return cls("pspnet", x[1], p.eps, batch, fillers)

    def infer(self, x: Shape) -> Shape:
        return x

    def weight_shapes(self, x: Shape) -> list[Shape]:
        return [(1, self.channels, 1, 1)] * (2 if self.fork == "segnet" else 4)

    def weight_fillers(self) -> list[Any]:
        return list(self.fillers)


def _bn_fork(lp: Any) -> str:
    used = {descriptor.name for descriptor, _ in lp.bn_param.ListFields()} - {"engine"}
    segnet, pspnet = used & set(_SEGNET_FIELDS), used & set(_PSPNET_FIELDS)
    if segnet and pspnet:
        raise SchemaError("bn_param mixes SegNet/ENet fields and PSPNet fields", found=", ".join(sorted(used)),
                          expected=f"only {', '.join(_SEGNET_FIELDS)} or only {', '.join(_PSPNET_FIELDS)}")
    if segnet:
        return "segnet"
    if pspnet:
        return "pspnet"
    # No telling field: the blobs the fork learns are listed as `param {}` entries (2 or 4).
    if len(lp.param) == 2:
        return "segnet"
    if len(lp.param) == 4:
        return "pspnet"
    raise SchemaError("cannot tell which fork's BN layer this is: give bn_param (bn_mode for SegNet/ENet, "
                      "eps or frozen for PSPNet) or one `param {}` per blob (2 for SegNet/ENet, 4 for PSPNet)",
                      found=f"{len(lp.param)} param entries and no bn_param")


layer("MVN", family="norm", label=("normalize_variance", "across_channels", "eps"),
      honoured=("normalize_variance", "across_channels", "eps"), parameter="mvn_param",
      opencv_differs=OpenCVDifference("divides by sqrt(var + eps) where Caffe divides by sqrt(var) + eps",
                                      applies=lambda params: params.normalize_variance))(MVN)


layer("BN", family="norm", source="SegNet / ENet and PSPNet forks", label=("batch_statistics",),
      honoured=_SEGNET_FIELDS + _PSPNET_FIELDS, statistics={3: "variance"})(BN)


@layer("ChannelAffine", family="norm", source="protodef (internal)", label=("channels",), fresh_output=True)
@dataclass(frozen=True)
class ChannelAffine:
    """y = x * scale[c] + shift[c] on axis 1; weights (scale (C,), shift (C,)). What BatchNorm and a per-channel
    Scale become at test time (passes.batchnorm_scale_to_affine)."""

    channels: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "ChannelAffine":
        raise UnsupportedError("ChannelAffine is protodef's internal layer type, not a Caffe one; a prototxt "
                               "cannot use it (write BatchNorm or Scale)")

    def infer(self, x: Shape) -> Shape:
        return x

    def weight_shapes(self, x: Shape) -> list[Shape]:
        return [(self.channels,), (self.channels,)]


@dataclass(frozen=True)
class Mean:
    """FlowNet 2 mean_layer.cpp, for each input: top = output_scale * (input_scale * bottom + mean_scale * m[c]),
    m[c] = value[c % len(value)] (negated for SUBTRACT) on channel axis 1; as many tops as bottoms."""

    offsets: tuple[float, ...]    # mean_scale * (+/-) value, one per value: repeated over the channels
    input_scale: float
    output_scale: float

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Mean":
        p = lp.mean_param
        if p.HasField("file"):
            raise SchemaError("Mean with mean_param.file (a mean image read from disk when the net is set up) is not "
                              "supported: give the per-channel means as mean_param.value", found=p.file)
        if not p.value:
            raise SchemaError("Mean needs mean_param.value (one or more per-channel means)")
        if len(lp.top) != len(lp.bottom):
            raise ShapeError("Mean has one top per bottom", expected=len(lp.bottom), found=len(lp.top))
        for x in inputs:
            if not 2 <= len(x) <= 4 or definitely(x[1] % len(p.value) != 0):
                raise ShapeError("Mean takes 2- to 4-D inputs whose channels are a multiple of the number of values",
                                 expected=f"(N, {len(p.value)}k, ...)", found=x)
        sign = -1.0 if enum_name(p, "operation") == "SUBTRACT" else 1.0
        scale = np.float32(p.mean_scale)
        offsets = tuple(float(scale * np.float32(sign * v)) for v in p.value)   # Caffe: float arithmetic
        return cls(offsets, float(p.input_scale), float(p.output_scale))

    def infer(self, *inputs: Shape) -> Shape | list[Shape]:
        return list(inputs) if len(inputs) > 1 else inputs[0]

    def channel_offsets(self, channels: int) -> np.ndarray:
        """The offset of each of `channels` channels (float32)."""
        return np.resize(np.asarray(self.offsets, np.float32), channels)


layer("Mean", family="norm", source="FlowNet 2 fork", label=("input_scale", "output_scale"), inputs=(1, None),
      outputs=(1, None), in_place_ok=False, parameter="mean_param",
      honoured=("operation", "file", "value", "mean_scale", "input_scale", "output_scale"))(Mean)

