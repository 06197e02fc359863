"""More normalisation: MVN (BVLC) and the forks' BN layer (SegNet / ENet, PSPNet)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError, ShapeError
from .common import ConstantFiller, enum_name, reject_unhonoured
from .registry import Shape, OpenCVDifference, layer


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
        reject_unhonoured(p, ("normalize_variance", "across_channels", "eps"), what="mvn_param")
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
      honoured=("normalize_variance", "across_channels", "eps"),
      opencv_differs=OpenCVDifference("divides by sqrt(var + eps) where Caffe divides by sqrt(var) + eps",
                                      applies=lambda params: params.normalize_variance))(MVN)
layer("BN", family="norm", source="SegNet / ENet and PSPNet forks", label=("batch_statistics",),
      honoured=_SEGNET_FIELDS + _PSPNET_FIELDS, statistics={3: "variance"})(BN)
