"""More pooling: SPP (BVLC) and ROIPooling (py-faster-rcnn)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError, ShapeError
from .common import enum_name, reject_unhonoured
from .pool import Pooling
from .registry import Shape, OpenCVDifference, layer


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
        reject_unhonoured(p, ("pyramid_height", "pool"), what="spp_param")
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
        reject_unhonoured(p, ("pooled_h", "pooled_w", "spatial_scale"), what="roi_pooling_param")
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


layer("SPP", family="pool", label=("method",), in_place_ok=False, honoured=("pyramid_height", "pool"))(SPP)
layer("ROIPooling", family="pool", source="py-faster-rcnn fork", label=("pooled", "spatial_scale"),
      inputs=(2, 2), in_place_ok=False, honoured=("pooled_h", "pooled_w", "spatial_scale"),
      opencv_differs=OpenCVDifference("differs on boxes outside the image"))(ROIPooling)
