"""Pooling family."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError, ShapeError
from ..symbolic import ceildiv, minimum
from .common import enum_name, field_or_default, positive, spatial
from .registry import OpenCVDifference, Shape, layer

_POOL_FIELDS = ("pool", "pad", "pad_h", "pad_w", "kernel_size", "kernel_h", "kernel_w", "stride", "stride_h",
                "stride_w", "global_pooling", "round_mode", "ceil_mode")


@dataclass(frozen=True)
class Pooling:
    """Caffe pooling_layer.cpp. `method` is MAX, AVE or STOCHASTIC (test phase: a weighted average)."""

    method: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    is_global: bool
    ceil_mode: bool
    with_mask: bool = False   # MAX pooling's optional second top: argmax indices (SegNet's Upsample reads it)

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Pooling":
        p = lp.pooling_param
        x = inputs[0]
        if len(x) != 4:
            raise ShapeError("Pooling takes a 4-D input (N, C, H, W)", found=x)
        method = enum_name(p, "pool")
        # BVLC's round_mode (CEIL by default), or the older forks' boolean ceil_mode.
        ceil_mode = enum_name(p, "round_mode", "CEIL") == "CEIL" and field_or_default(p, "ceil_mode", True)
        if len(lp.top) == 2 and method != "MAX":   # global pooling too
            raise SchemaError("only MAX pooling has a second (mask) output", found=method)
        if p.global_pooling:
            # Caffe refuses a kernel with global pooling; the zoo has files that give one anyway, and
            # global pooling makes it meaningless, so it is ignored rather than refused.
            return cls(method, (x[2], x[3]), (1, 1), (0, 0), True, ceil_mode, len(lp.top) == 2)
        kernel = spatial(None, p.kernel_size if p.HasField("kernel_size") else None, p.kernel_h, p.kernel_w,
                         default=0, n=2, what="kernel_size", has_hw=p.HasField("kernel_h") or p.HasField("kernel_w"))
        stride = spatial(None, p.stride if p.HasField("stride") else None, p.stride_h, p.stride_w, default=1, n=2,
                         what="stride", has_hw=p.HasField("stride_h") or p.HasField("stride_w"))
        pad = spatial(None, p.pad if p.HasField("pad") else None, p.pad_h, p.pad_w, default=0, n=2, what="pad",
                      has_hw=p.HasField("pad_h") or p.HasField("pad_w"))
        if any(k <= 0 for k in kernel):
            raise SchemaError("pooling needs a positive kernel size (or global_pooling)", found=kernel)
        if any(s <= 0 for s in stride):
            raise SchemaError("pooling stride must be positive", found=stride)
        if any(pp >= k for pp, k in zip(pad, kernel)):
            raise SchemaError("pooling pad must be smaller than the kernel", expected=f"< {kernel}", found=pad)
        return cls(method, kernel, stride, pad, False, ceil_mode, len(lp.top) == 2)

    def infer(self, x: Shape) -> Shape | list[Shape]:
        n, c, h, w = x
        if self.is_global:
            out = (n, c, 1, 1)
        else:
            clip = any(self.pad)   # Caffe tests pad_h || pad_w, then clips both axes
            out = (n, c, *(_pooled(size, k, s, p, clip, self.ceil_mode)
                           for size, k, s, p in zip((h, w), self.kernel, self.stride, self.pad)))
        return [out, out] if self.with_mask else out

    def output_padding(self, x: Shape) -> tuple[int, int]:
        """Extra rows/columns Caffe's rounding reads past the padded input (for backends that floor)."""
        out = self.output_shape(x)[2:]
        return tuple(max(0, (o - 1) * s + k - (size + 2 * p))
                     for o, size, k, s, p in zip(out, x[2:], self.kernel, self.stride, self.pad))

    def output_shape(self, x: Shape) -> Shape:
        shapes = self.infer(x)
        return shapes[0] if self.with_mask else shapes


def _pooled(size: int, k: int, s: int, p: int, clip: bool, ceil_mode: bool) -> int:
    span = size + 2 * p - k
    out = (ceildiv(span, s) if ceil_mode else span // s) + 1    # Caffe rounds up by default...
    if clip:
        # ...but drops the last window if it starts in the padding, (out - 1) * s >= size + p. Since pad <
        # kernel, only the last can, so this keeps the windows that start inside: there are ceil((size + p) / s)
        # (a form that stays simple where the size is symbolic).
        out = minimum(out, ceildiv(size + p, s))
    return positive(out, what="pooled size")


layer("Pooling", family="pool", label=("method", "kernel", "stride", "pad"), in_place_ok=False, outputs=(1, 2),
      honoured=_POOL_FIELDS, parameter="pooling_param")(Pooling)


_PSROI_FIELDS = ("spatial_scale", "output_dim", "group_size")


@dataclass(frozen=True)
class PSROIPooling:
    """R-FCN psroi_pooling_layer.cu: inputs score maps (N, output_dim * G * G, H, W) and rois (R, 5) = (batch
    index, x1, y1, x2, y2). Each corner is rounded (half away from zero), then scaled: the box spans
    [round(x1) * s, (round(x2) + 1) * s), at least 0.1 wide and high; bin (i, j) of the G x G grid covers
    rows floor(i * h / G + y1 * s) to ceil((i + 1) * h / G + y1 * s), clipped to the map, likewise columns.
    Output (r, d, i, j) is the mean of channel (d * G + i) * G + j over the bin, 0 when the bin is empty.
    psroi_pooling_param is R-FCN's (read the net with --proto and R-FCN's caffe.proto)."""

    output_dim: int
    group_size: int
    spatial_scale: float

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "PSROIPooling":
        p = lp.psroi_pooling_param
        if not all(p.HasField(f) for f in _PSROI_FIELDS):
            raise SchemaError("PSROIPooling needs psroi_pooling_param { spatial_scale output_dim group_size } (R-FCN "
                              "requires all three)")
        if p.output_dim <= 0 or p.group_size <= 0:
            raise SchemaError("psroi_pooling_param.output_dim and group_size must be positive",
                              found=(p.output_dim, p.group_size))
        x, rois = inputs
        if len(x) != 4 or x[1] != p.output_dim * p.group_size ** 2:
            raise ShapeError("PSROIPooling's first input must be (N, output_dim * group_size^2, H, W)",
                             expected=f"(N, {p.output_dim * p.group_size ** 2}, H, W)", found=x)
        if len(rois) < 2 or rois[1] != 5 or any(d != 1 for d in rois[2:]):
            raise ShapeError("PSROIPooling's second input must be (R, 5): batch index, x1, y1, x2, y2", found=rois)
        return cls(p.output_dim, p.group_size, p.spatial_scale)

    def infer(self, x: Shape, rois: Shape) -> Shape:
        return (rois[0], self.output_dim, self.group_size, self.group_size)


layer("PSROIPooling", family="pool", source="R-FCN fork (daijifeng001/caffe-rfcn)",
      label=("output_dim", "group_size", "spatial_scale"), inputs=(2, 2), in_place_ok=False,
      honoured=_PSROI_FIELDS, parameter="psroi_pooling_param", rois_input=1)(PSROIPooling)


@dataclass(frozen=True)
class SPP:
    """Caffe spp_layer.cpp: for pyramid level l (0 .. pyramid_height - 1), a Pooling with 2^l bins per axis:
    kernel = stride = ceil(size / 2^l), pad = (kernel * 2^l - size + 1) // 2, Caffe's pooling rounding.
    With one level the output is that pooling's (N, C, 1, 1); otherwise each level is flattened to
    (N, C * h_l * w_l) and the levels are concatenated on axis 1."""

    method: str
    levels: tuple[Pooling, ...]

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "SPP":
        p = lp.spp_param
        x = inputs[0]
        if len(x) != 4:
            raise ShapeError("SPP takes a 4-D input (N, C, H, W)", found=x)
        if p.pyramid_height < 1:
            raise SchemaError("spp_param.pyramid_height must be at least 1", found=p.pyramid_height)
        method = enum_name(p, "pool")
        return cls(method, tuple(_level(method, level, x) for level in range(p.pyramid_height)))

    def infer(self, x: Shape) -> Shape:
        shapes = [level.output_shape(x) for level in self.levels]
        if len(shapes) == 1:
            return shapes[0]
        return (x[0], sum(s[1] * s[2] * s[3] for s in shapes))


def _level(method: str, level: int, x: Shape) -> Pooling:
    bins = 2 ** level
    kernel = tuple(math.ceil(size / bins) for size in x[2:])
    pad = tuple((k * bins - size + 1) // 2 for k, size in zip(kernel, x[2:]))
    if any(pp >= k for pp, k in zip(pad, kernel)):
        # Caffe's PoolingLayer CHECKs pad < kernel: such an input is too small for this many levels.
        raise ShapeError(f"SPP level {level} ({bins} bins) needs pad < kernel; the input is too small for "
                         "this pyramid_height", expected=f"H, W large enough for {bins} bins", found=x)
    return Pooling(method, kernel, kernel, pad, False, True)


@dataclass(frozen=True)
class ROIPooling:
    """py-faster-rcnn roi_pooling_layer.cpp: inputs features (N, C, H, W) and rois (R, 5) = (batch index,
    x1, y1, x2, y2) in image pixels. Each roi's corners are scaled by spatial_scale and rounded (half away
    from zero), its size is max(end - start + 1, 1), bin (ph, pw) spans floor(ph * size / pooled) to
    ceil((ph + 1) * size / pooled) from the start, clipped to the map; output the bin's max, 0 when empty."""

    pooled: tuple[int, int]
    spatial_scale: float

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "ROIPooling":
        p = lp.roi_pooling_param
        if p.pooled_h <= 0 or p.pooled_w <= 0:
            raise SchemaError("roi_pooling_param.pooled_h and pooled_w must be positive",
                              found=(p.pooled_h, p.pooled_w))
        x, rois = inputs
        if len(x) != 4:
            raise ShapeError("ROIPooling's first input must be 4-D (N, C, H, W)", found=x)
        if len(rois) < 2 or rois[1] != 5 or any(d != 1 for d in rois[2:]):
            raise ShapeError("ROIPooling's second input must be (R, 5): batch index, x1, y1, x2, y2", found=rois)
        return cls((p.pooled_h, p.pooled_w), p.spatial_scale)

    def infer(self, x: Shape, rois: Shape) -> Shape:
        return (rois[0], x[1], *self.pooled)


layer("SPP", family="pool", label=("method",), in_place_ok=False, honoured=("pyramid_height", "pool"), parameter="spp_param")(SPP)


layer("ROIPooling", family="pool", source="py-faster-rcnn fork", label=("pooled", "spatial_scale"),
      inputs=(2, 2), in_place_ok=False, honoured=("pooled_h", "pooled_w", "spatial_scale"), parameter="roi_pooling_param",
      rois_input=1, opencv_differs=OpenCVDifference("differs on boxes outside the image"))(ROIPooling)
