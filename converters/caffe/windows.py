"""Sliding windows along one axis: where ONNX puts them, and how Caffe's symmetric padding and rounding can
put the same windows there (plus a few more, which a Slice then drops).

ONNX window i covers [i * stride - begin, i * stride - begin + extent) of the input; Caffe's window j covers
[j * stride - pad, ...). Caffe window j = i + skip is ONNX window i when pad = begin + skip * stride.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Windows:
    """ONNX's windows along one spatial axis. `size` is the input's length before any padding; `explicit`
    is what a Pad node before the op added (its values are data to the op); `begin`/`end` the op's pads."""

    size: int
    extent: int
    stride: int
    begin: int
    end: int
    count: int
    explicit: tuple[int, int] = (0, 0)

    @property
    def start(self) -> int:
        """Where window 0 starts, in the coordinates of the unpadded input."""
        return -(self.begin + self.explicit[0])


@dataclass(frozen=True)
class Plan:
    """Caffe's pad on this axis, its window count, and which of its windows are ONNX's: [skip, skip + count)."""

    pad: int
    total: int
    skip: int
    count: int

    @property
    def exact(self) -> bool:
        return self.skip == 0 and self.total == self.count


def convolution_count(size: int, extent: int, stride: int, pad: int) -> int:
    """Caffe conv_layer.cpp: (size + 2 pad - extent) / stride + 1, rounded down."""
    return (size + 2 * pad - extent) // stride + 1


def convolution_plan(axis: Windows) -> Plan | None:
    """The smallest symmetric pad whose windows include ONNX's (None when a negative pad would be needed)."""
    if axis.start > 0:
        return None
    for skip in itertools.count():
        pad = -axis.start + skip * axis.stride
        total = convolution_count(axis.size, axis.extent, axis.stride, pad)
        if total >= skip + axis.count:
            return Plan(pad, total, skip, axis.count)


def pooling_count(size: int, kernel: int, stride: int, pad: int, ceil: bool, clip: bool) -> int:
    """Caffe pooling_layer.cpp: rounded up (or down with round_mode FLOOR); when any axis is padded, a last
    window starting in the padding is dropped."""
    span = size + 2 * pad - kernel
    count = (-(-span // stride) if ceil else span // stride) + 1
    if clip and (count - 1) * stride >= size + pad:
        count -= 1
    return count


def pooling_plans(axes: list[Windows], ceil_modes: tuple[bool, ...]) -> tuple[bool, list[Plan]] | None:
    """Caffe pads (each below the kernel, as Caffe checks) and a rounding mode that cover ONNX's windows on
    every axis; plans that need no cropping first, then the default rounding. None when there are none."""
    if any(axis.start > 0 for axis in axes):
        return None
    options = []
    for ceil in ceil_modes:
        choices = [[-axis.start + skip * axis.stride for skip in range(axis.extent)
                    if -axis.start + skip * axis.stride < axis.extent] for axis in axes]
        for pads in itertools.product(*choices):
            clip = any(pads)
            plans = []
            for axis, pad in zip(axes, pads):
                skip = (pad + axis.start) // axis.stride
                total = pooling_count(axis.size, axis.extent, axis.stride, pad, ceil, clip)
                plans.append(Plan(pad, total, skip, axis.count))
            if all(plan.total >= plan.skip + plan.count for plan in plans):
                cropping = sum(plan.total - plan.count for plan in plans)
                options.append((cropping, ceil_modes.index(ceil), sum(pads), ceil, plans))
    if not options:
        return None
    _, _, _, ceil, plans = min(options, key=lambda option: option[:3])
    return ceil, plans


def onnx_pool_count(axis: Windows, ceil: bool) -> int:
    """ONNX pooled size as onnxruntime and PyTorch compute it: ceil mode drops a window that would start past
    the input and its begin padding."""
    length = axis.size + sum(axis.explicit)
    span = length + axis.begin + axis.end - axis.extent
    count = (-(-span // axis.stride) if ceil else span // axis.stride) + 1
    if ceil and (count - 1) * axis.stride >= length + axis.begin:
        count -= 1
    return count


def onnx_average_divisors(axis: Windows, count_include_pad: bool) -> np.ndarray:
    """What onnxruntime divides window i's sum by (AveragePool): the window clipped to the padded extent with
    count_include_pad, else to the input; a Pad node's values count as input either way."""
    length = axis.size + sum(axis.explicit)
    start = np.arange(axis.count) * axis.stride - axis.begin
    stop = np.minimum(start + axis.extent, length + axis.end)
    if count_include_pad:
        return (stop - start).astype(np.float64)
    return (np.minimum(stop, length) - np.maximum(start, 0)).astype(np.float64)


def caffe_average_divisors(axis: Windows, plan: Plan) -> np.ndarray:
    """Caffe's AVE pool_size for the windows ONNX keeps: clipped to [-pad, size + pad), padding included."""
    start = (np.arange(plan.count) + plan.skip) * axis.stride - plan.pad
    stop = np.minimum(start + axis.extent, axis.size + plan.pad)
    return (stop - start).astype(np.float64)


def auto_pads(auto_pad: str, sizes: tuple[int, ...], extents: tuple[int, ...], strides: tuple[int, ...],
              counts: tuple[int, ...]) -> tuple[list[int], list[int]] | None:
    """(begins, ends) that ONNX's auto_pad means for these sizes; None for NOTSET (the `pads` attribute)."""
    if auto_pad in ("", "NOTSET"):
        return None
    if auto_pad == "VALID":
        return [0] * len(sizes), [0] * len(sizes)
    totals = [max(0, (count - 1) * stride + extent - size)
              for size, extent, stride, count in zip(sizes, extents, strides, counts)]
    small = [total // 2 for total in totals]
    large = [total - total // 2 for total in totals]
    return (small, large) if auto_pad == "SAME_UPPER" else (large, small)
