"""Caffe's weight fillers (include/caffe/filler.hpp), for nets that come without a caffemodel.

`fill(filler, shape, rng)` follows Caffe's semantics: which axes count as fan-in and fan-out, how `sparse`
masks Gaussian weights, how positive_unitball normalises, and the exact bilinear kernel.  Random numbers come
from the given numpy Generator, so values match Caffe in distribution, not draw for draw.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .errors import SchemaError, ShapeError

__all__ = ["FILLER_TYPES", "fill"]

FILLER_TYPES = ("constant", "gaussian", "positive_unitball", "uniform", "xavier", "msra", "bilinear", "diagonal")

# FillerParameter defaults, for filler objects that leave attributes out.
_DEFAULTS = {"type": "constant", "value": 0.0, "min": 0.0, "max": 1.0, "mean": 0.0, "std": 1.0, "sparse": -1,
             "variance_norm": 0, "diag_val": ()}
_VARIANCE_NORMS = {0: "FAN_IN", 1: "FAN_OUT", 2: "AVERAGE"}


def fill(filler: Any, shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Return a float32 array of `shape` filled as Caffe's filler described by `filler` would fill it.

    `filler` is a caffe_pb2.FillerParameter or any object with its attributes (type, value, min, max, mean,
    std, sparse, variance_norm); missing attributes take FillerParameter's defaults.  variance_norm may be the
    enum number (0 FAN_IN, 1 FAN_OUT, 2 AVERAGE) or its name.
    """
    kind = _get(filler, "type")
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ShapeError("cannot fill a blob with a negative dimension", found=shape)
    count = math.prod(shape)
    if kind not in _FILLERS:
        raise SchemaError(f"unknown filler type '{kind}'", expected="one of " + ", ".join(FILLER_TYPES), found=kind)
    sparse = int(_get(filler, "sparse"))
    if kind != "gaussian" and sparse != -1:
        raise SchemaError(f"the '{kind}' filler does not support sparse", expected=-1, found=sparse)
    if count == 0:
        raise ShapeError(f"the '{kind}' filler needs a blob with at least one element", found=shape)
    return _FILLERS[kind](filler, shape, count, rng)


def _get(filler: Any, name: str) -> Any:
    value = getattr(filler, name, None)
    return _DEFAULTS[name] if value is None else value


def _constant(filler, shape, count, rng):
    return np.full(shape, np.float32(_get(filler, "value")), dtype=np.float32)


def _uniform(filler, shape, count, rng):
    low, high = float(_get(filler, "min")), float(_get(filler, "max"))
    if not low <= high:
        raise SchemaError("the 'uniform' filler needs min <= max", found=f"min {low}, max {high}")
    return _uniform_values(shape, low, high, rng)


def _uniform_values(shape, low, high, rng):
    out = rng.random(shape, dtype=np.float32)
    out *= np.float32(high - low)
    out += np.float32(low)
    return out


def _gaussian_values(shape, mean, std, rng, kind):
    if not std > 0:
        raise SchemaError(f"the '{kind}' filler needs a standard deviation above 0", found=std)
    out = rng.standard_normal(shape, dtype=np.float32)
    out *= np.float32(std)
    out += np.float32(mean)
    return out


def _gaussian(filler, shape, count, rng):
    out = _gaussian_values(shape, float(_get(filler, "mean")), float(_get(filler, "std")), rng, "gaussian")
    sparse = int(_get(filler, "sparse"))
    if sparse < -1:
        raise SchemaError("the 'gaussian' filler needs sparse >= -1", found=sparse)
    if sparse >= 0:
        # Caffe: each weight survives with probability sparse / num_outputs, num_outputs = shape(0).
        if not shape:
            raise ShapeError("a sparse 'gaussian' filler needs a blob with at least one axis", found=shape)
        probability = sparse / shape[0]
        if probability > 1:
            raise SchemaError(f"the 'gaussian' filler's sparse ({sparse}) exceeds the number of outputs "
                              f"({shape[0]}), so its keep probability would be above 1")
        out *= rng.random(shape, dtype=np.float32) < np.float32(probability)
    return out


def _positive_unitball(filler, shape, count, rng):
    # Uniform in [0, 1], then each of the shape(0) items scaled so its values sum to 1.
    out = rng.random(shape, dtype=np.float32)
    num = shape[0] if shape else 1
    rows = out.reshape(num, count // num)
    rows /= rows.sum(axis=1, keepdims=True, dtype=np.float32)
    return out


def _fans(shape, count):
    fan_in = count // shape[0] if shape else count
    fan_out = count // shape[1] if len(shape) > 1 else count
    return fan_in, fan_out


def _scale_base(filler, shape, count, kind):
    fan_in, fan_out = _fans(shape, count)
    norm = _get(filler, "variance_norm")
    if isinstance(norm, str):
        names = {v: k for k, v in _VARIANCE_NORMS.items()}
        if norm not in names:
            raise SchemaError(f"unknown variance_norm '{norm}' for the '{kind}' filler",
                              expected="FAN_IN, FAN_OUT or AVERAGE", found=norm)
        norm = names[norm]
    norm = int(norm)
    if norm == 0:
        return float(fan_in)
    if norm == 1:
        return float(fan_out)
    if norm == 2:
        return (fan_in + fan_out) / 2.0
    raise SchemaError(f"unknown variance_norm {norm} for the '{kind}' filler",
                      expected="0 (FAN_IN), 1 (FAN_OUT) or 2 (AVERAGE)", found=norm)


def _xavier(filler, shape, count, rng):
    n = _scale_base(filler, shape, count, "xavier")
    scale = math.sqrt(3.0 / n)
    return _uniform_values(shape, -scale, scale, rng)


def _msra(filler, shape, count, rng):
    n = _scale_base(filler, shape, count, "msra")
    return _gaussian_values(shape, 0.0, math.sqrt(2.0 / n), rng, "msra")


def _bilinear(filler, shape, count, rng):
    if len(shape) != 4:
        raise ShapeError("the 'bilinear' filler needs a 4-D blob", expected="4 axes", found=shape)
    if shape[2] != shape[3]:
        raise ShapeError("the 'bilinear' filler needs a square kernel", found=shape)
    width = shape[3]
    f = math.ceil(width / 2.0)
    # Computed in float32 the way Caffe does for float blobs.
    c = np.float32((width - 1) / (2.0 * f))
    x = np.arange(width, dtype=np.float32)
    line = np.float32(1) - np.abs(x / np.float32(f) - c)
    kernel = line[:, None] * line[None, :]
    return np.ascontiguousarray(np.broadcast_to(kernel, shape), dtype=np.float32)


def _diagonal(filler, shape, count, rng):
    """FlowNet 2's DiagonalFiller: zeros, and for n < min(num, channels) the kernel of output n on input n holds
    diag_val[n] (1 past the list) divided by the kernel's area, so each such output averages its own input."""
    if not 2 <= len(shape) <= 4:
        raise ShapeError("the 'diagonal' filler needs a blob of 2 to 4 axes", found=shape)
    area = math.prod(shape[2:])       # Caffe's height() * width(): 1 for the axes a blob does not have
    values = list(_get(filler, "diag_val"))
    data = np.zeros(shape, np.float32)
    for n in range(min(shape[0], shape[1])):
        data[n, n] = np.float32(np.float32(values[n] if n < len(values) else 1.0) / np.float32(area))
    return data


_FILLERS = {
    "constant": _constant, "gaussian": _gaussian, "positive_unitball": _positive_unitball, "uniform": _uniform,
    "xavier": _xavier, "msra": _msra, "bilinear": _bilinear, "diagonal": _diagonal,
}
