"""Resizing family from the forks: Interp (DeepLab/PSPNet), Upsample (SegNet's unpooling, MobileNet-YOLO's
nearest-neighbour form) and Accum (FlowNet)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SchemaError, ShapeError
from ..symbolic import definitely
from .common import differ, enum_name, reject_unhonoured
from .registry import OpenCVDifference, Shape, layer

_INTERP_FIELDS = ("height", "width", "zoom_factor", "shrink_factor", "pad_beg", "pad_end")


@dataclass(frozen=True)
class Interp:
    """DeepLab v2 / PSPNet interp_layer.cpp: crop the input by -pad_beg rows and columns at the start and
    -pad_end at the end (the forks only allow pad <= 0), then resize bilinearly with aligned corners
    (util/interp.cpp: source = out * (in - 1) / (out - 1), 0 when out == 1) to `size`."""

    size: tuple[int, int]          # output (height, width)
    crop: tuple[int, int]          # rows/columns cut at the start and at the end (-pad_beg, -pad_end)

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Interp":
        p = lp.interp_param
        x = inputs[0]
        if len(x) != 4:
            raise ShapeError("Interp takes a 4-D input (N, C, H, W)", found=x)
        if p.pad_beg > 0 or p.pad_end > 0:
            raise SchemaError("Interp only crops: pad_beg and pad_end must be 0 or negative", expected="<= 0",
                              found=(p.pad_beg, p.pad_end))
        height_in, width_in = (d + p.pad_beg + p.pad_end for d in x[2:])
        if definitely(height_in <= 0) or definitely(width_in <= 0):
            raise ShapeError("Interp crops the whole input away", expected="H + pad_beg + pad_end > 0",
                             found=(height_in, width_in))
        size = _interp_size(p, height_in, width_in)
        if any(definitely(d <= 0) for d in size):
            raise ShapeError("Interp output size must be positive", found=size)
        return cls(size, (-p.pad_beg, -p.pad_end))

    def infer(self, x: Shape) -> Shape:
        return (x[0], x[1], *self.size)

    def cropped(self, x: Shape) -> tuple[tuple[int, int], tuple[int, int]]:
        """The (start, stop) rows and columns of the input that are resized."""
        begin, end = self.crop
        return (begin, x[2] - end), (begin, x[3] - end)


def _interp_size(p: Any, height: int, width: int) -> tuple[int, int]:
    """PSPNet's order of precedence (a superset of DeepLab's, which wants exactly one of these)."""
    zoom, shrink = p.HasField("zoom_factor"), p.HasField("shrink_factor")
    for name in ("zoom_factor", "shrink_factor"):
        if p.HasField(name) and getattr(p, name) < 1:
            raise SchemaError(f"interp_param.{name} must be at least 1", found=getattr(p, name))
    if shrink and not zoom:
        return (height - 1) // p.shrink_factor + 1, (width - 1) // p.shrink_factor + 1
    if zoom and not shrink:
        return _zoomed(height, p.zoom_factor), _zoomed(width, p.zoom_factor)
    if p.HasField("height") and p.HasField("width"):
        return p.height, p.width
    if zoom and shrink:
        h, w = (height - 1) // p.shrink_factor + 1, (width - 1) // p.shrink_factor + 1
        return _zoomed(h, p.zoom_factor), _zoomed(w, p.zoom_factor)
    raise SchemaError("Interp needs zoom_factor, shrink_factor, or both height and width in interp_param")


def _zoomed(size: int, zoom: int) -> int:
    return size + (size - 1) * (zoom - 1)


_UPSAMPLE_FIELDS = ("scale", "scale_h", "scale_w", "pad_out_h", "pad_out_w", "upsample_h", "upsample_w")


@dataclass(frozen=True)
class Upsample:
    """Two forms, told apart by the number of inputs.

    `unpool` (SegNet upsample_layer.cpp, inputs x and the MAX pooling mask): zeros of `size`, then each
    x[n, c, i] goes to flat position mask[n, c, i] (h * W + w within its channel plane); when two inputs name
    the same position, the later i wins (Caffe's loop order).

    `nearest` (MobileNet-YOLO, one input): each pixel repeated `scale` times along H and W."""

    unpool: bool
    size: tuple[int, int]          # output (height, width) on the last two axes
    scale: int                     # nearest form only

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Upsample":
        p = lp.upsample_param
        if len(inputs) == 1:
            return cls._nearest(p, inputs[0])
        x, mask = inputs
        if len(x) != 4 or differ(mask, x):
            raise ShapeError("Upsample's mask input must have the 4-D shape of its first input", expected=x,
                             found=mask)
        if p.HasField("upsample_h") != p.HasField("upsample_w"):
            # SegNet would fall back to `scale` and ignore the one given; say so instead.
            raise SchemaError("give both upsample_h and upsample_w, or neither")
        if p.HasField("upsample_h"):
            if p.upsample_h <= 1 or p.upsample_w <= 1:
                raise SchemaError("upsample_h and upsample_w must be above 1", found=(p.upsample_h, p.upsample_w))
            return cls(True, (p.upsample_h, p.upsample_w), 0)
        if p.HasField("scale_h") or p.HasField("scale_w"):
            if p.HasField("scale") or not (p.HasField("scale_h") and p.HasField("scale_w")):
                raise SchemaError("give upsample_h and upsample_w, or scale, or both scale_h and scale_w")
            scales = (p.scale_h, p.scale_w)
        else:
            scales = (p.scale, p.scale)
        if min(scales) <= 1:
            raise SchemaError("Upsample scale must be above 1", found=scales)
        pads = (p.pad_out_h, p.pad_out_w)
        if any(pad and s != 2 for pad, s in zip(pads, scales)):
            raise SchemaError("pad_out_h/pad_out_w need a scale of 2 on that axis", found=scales)
        return cls(True, tuple(d * s - int(pad) for d, s, pad in zip(x[2:], scales, pads)), 0)

    @classmethod
    def _nearest(cls, p: Any, x: Shape) -> "Upsample":
        # MobileNet-YOLO's UpsampleParameter has only `scale`, whose default there is 1 (SegNet's, in our
        # schema, is 2), so an unset scale means 1.
        reject_unhonoured(p, ("scale",), what="upsample_param (one-input form)")
        scale = p.scale if p.HasField("scale") else 1
        if scale < 1:
            raise SchemaError("Upsample scale must be positive", found=scale)
        if len(x) < 2:
            raise ShapeError("Upsample needs at least 2 axes", found=x)
        return cls(False, (x[-2] * scale, x[-1] * scale), scale)

    def infer(self, x: Shape, mask: Shape | None = None) -> Shape:
        return (*x[:-2], *self.size)


_ACCUM_FIELDS = ("top_height", "top_width", "size_divisible_by", "have_reference")


@dataclass(frozen=True)
class Accum:
    """FlowNet accum_layer.cpp: resize every input (the last one excluded with have_reference) to `size`
    bilinearly with aligned corners (source = out * (in - 1) / (out - 1)), and concatenate on channels."""

    size: tuple[int, int]
    have_reference: bool

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Accum":
        p = lp.accum_param
        for shape in inputs:
            if len(shape) != 4 or shape[0] != inputs[0][0]:
                raise ShapeError("Accum inputs must be 4-D with the same batch size", expected=inputs[0],
                                 found=shape)
        if p.have_reference:
            if len(inputs) < 2:
                raise ShapeError("Accum with have_reference needs a reference input after the others",
                                 expected="at least 2 inputs", found=len(inputs))
            size = tuple(inputs[-1][2:])
        else:
            largest = (max(s[2] for s in inputs), max(s[3] for s in inputs))
            if p.HasField("size_divisible_by"):
                if p.size_divisible_by == 0:
                    raise SchemaError("accum_param.size_divisible_by must be positive", found=0)
                wanted = tuple(math.ceil(d / p.size_divisible_by) * p.size_divisible_by for d in largest)
            else:
                wanted = (p.top_height, p.top_width)
            # Caffe: the asked-for size counts only when it is larger on both axes.
            size = wanted if wanted[0] > largest[0] and wanted[1] > largest[1] else largest
        if min(size) < 2:
            # Caffe divides by (size - 1): a 1-pixel output axis is undefined there.
            raise ShapeError("Accum output height and width must be at least 2", found=size)
        return cls(size, p.have_reference)

    def infer(self, *inputs: Shape) -> Shape:
        resized = inputs[:-1] if self.have_reference else inputs
        return (inputs[0][0], sum(s[1] for s in resized), *self.size)


layer("Interp", family="resize", source="DeepLab v2 / PSPNet fork", label=("size",), in_place_ok=False,
      honoured=_INTERP_FIELDS, parameter="interp_param",
      opencv_differs=OpenCVDifference("ignores pad_beg and pad_end", applies=lambda p: p.crop != (0, 0)))(Interp)
layer("Upsample", family="resize", source="SegNet / ENet fork (two inputs); MobileNet-YOLO fork (one input)",
      label=("size",), inputs=(1, 2), in_place_ok=False, honoured=_UPSAMPLE_FIELDS, parameter="upsample_param")(Upsample)
layer("Accum", family="resize", source="FlowNet fork", label=("size",), inputs=(1, None), in_place_ok=False,
      honoured=_ACCUM_FIELDS, parameter="accum_param")(Accum)


_RESAMPLE_FIELDS = ("width", "height", "type", "antialias",
                    "factor")   # declared in FlowNet 2's schema, never read by its kernels


@dataclass(frozen=True)
class Resample:
    """FlowNet 2 resample_layer.cu (GPU only; its CPU forward aborts): resize to resample_param's width and
    height, or to the second input's. With fx = W_in / W_out and fy = H_in / H_out, output (y, x) is centred
    at x_in = x * fx + fy / 2 - 0.5, y_in = y * fy + fx / 2 - 0.5 (fx and fy swapped in the offsets, as the
    kernel has them). NEAREST takes input (round(y_in), round(x_in)). LINEAR and CUBIC take the
    weight-normalised sum over x in round(x_in) +- rx (and likewise y) inside the input of
    a * k(a * (x_in - x)), k the triangle (LINEAR) or Keys a = -0.5 (CUBIC) kernel, a = 1 / fx when
    downsampling with antialias, else 1; rx = 2 if fx < 1, else ceil(kernel width * fx * a).
    Being separable, that is out = Ry @ in @ Rx^T (`axis_weights`). resample_param is FlowNet 2's (read
    the net with --proto and FlowNet 2's caffe.proto)."""

    size: tuple[int, int]          # output (height, width)
    method: str                    # NEAREST, LINEAR or CUBIC
    antialias: bool

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Resample":
        p = lp.resample_param
        x = inputs[0]
        if len(x) != 4 or (len(inputs) == 2 and len(inputs[1]) != 4):
            raise ShapeError("Resample takes 4-D inputs (N, C, H, W)", found=inputs)
        if len(inputs) == 1 and not (p.HasField("width") and p.HasField("height")):
            raise SchemaError("Resample with one input needs resample_param { width height } (FlowNet 2 reads the "
                              "size from a second input otherwise)")
        method = enum_name(p, "type")
        if method not in ("NEAREST", "LINEAR", "CUBIC"):
            raise SchemaError("Resample type must be NEAREST, LINEAR or CUBIC (FlowNet 2 aborts on the others)",
                              found=method)
        size = tuple(inputs[1][2:]) if len(inputs) == 2 else (p.height, p.width)
        if min(size) < 1:
            raise ShapeError("Resample output height and width must be at least 1", found=size)
        made = cls(size, method, p.antialias)
        if method == "NEAREST":
            made.check_nearest_in_range(x)
        return made

    def infer(self, x: Shape, reference: Shape | None = None) -> Shape:
        return (x[0], x[1], *self.size)

    def scales(self, x: Shape) -> tuple[float, float]:
        """(fy, fx), in float32 as the kernel computes them."""
        return (float(np.float32(x[2]) / np.float32(self.size[0])), float(np.float32(x[3]) / np.float32(self.size[1])))

    def check_nearest_in_range(self, x: Shape) -> None:
        fy, fx = self.scales(x)
        for axis, (size, out, step, offset) in enumerate(((x[2], self.size[0], fy, fx), (x[3], self.size[1], fx, fy))):
            picked = _round_half_away(_centres(out, step, offset))
            if picked.min() < 0 or picked.max() >= size:
                # The kernel does not clip: it would read another row or channel.
                raise ShapeError("NEAREST Resample with these sizes reads outside the input in FlowNet 2's kernel "
                                 "(it swaps the x and y scales in its offsets)", found=(x, self.size))

    def axis_weights(self, x: Shape) -> tuple[np.ndarray, np.ndarray]:
        """(Ry (H_out, H_in), Rx (W_out, W_in)), float32, rows summing to 1 (or all zero)."""
        fy, fx = self.scales(x)
        return (self._weights(x[2], self.size[0], fy, fx), self._weights(x[3], self.size[1], fx, fy))

    def _weights(self, size: int, out: int, step: float, other: float) -> np.ndarray:
        centres = _centres(out, step, other)
        nearest = _round_half_away(centres)
        weights = np.zeros((out, size), np.float32)
        if self.method == "NEAREST":
            weights[np.arange(out), nearest] = 1
            return weights
        downsample = max(step, other) > 1      # the kernel asks fx > 1 || fy > 1 for both axes
        a = np.float32(1 / np.float32(step) if self.antialias and downsample else 1)
        width = 4 if self.method == "CUBIC" else 2
        radius = 2 if step < 1 else math.ceil(np.float32(width) / a)
        for row, (centre, middle) in enumerate(zip(centres, nearest)):
            taps = np.arange(max(middle - radius, 0), min(middle + radius, size - 1) + 1)
            weights[row, taps] = a * _filter(self.method, a * (centre - taps.astype(np.float32)))
        totals = weights.sum(axis=1, keepdims=True)
        return np.divide(weights, totals, out=np.zeros_like(weights), where=totals != 0)


def _centres(out: int, step: float, other: float) -> np.ndarray:
    return np.arange(out, dtype=np.float32) * np.float32(step) + np.float32(other) / np.float32(2) - np.float32(0.5)


def _round_half_away(values: np.ndarray) -> np.ndarray:
    return (np.sign(values) * np.floor(np.abs(values) + np.float32(0.5))).astype(np.int64)


def _filter(method: str, d: np.ndarray) -> np.ndarray:
    d = np.abs(d)
    if method == "LINEAR":
        return np.where(d <= 1, 1 - d, 0).astype(np.float32)
    near = d * d * (np.float32(1.5) * d - np.float32(2.5)) + 1
    far = d * (d * (np.float32(-0.5) * d + np.float32(2.5)) - 4) + 2
    return np.where(d <= 1, near, np.where(d < 2, far, 0)).astype(np.float32)


layer("Resample", family="resize", source="FlowNet 2 fork", label=("size", "method"), inputs=(1, 2),
      in_place_ok=False, honoured=_RESAMPLE_FIELDS, parameter="resample_param")(Resample)
