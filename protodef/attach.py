"""Putting weights on a Net: from a caffemodel (Caffe's matching rules), from fillers, or random for tests."""
from __future__ import annotations

import math
import os
import warnings
from typing import Any, Iterable

import numpy as np

from .errors import ProtodefError, ProtodefWarning, ShapeError, WeightsError
from .ir import Layer, Net
from .layers.common import MAX_BLOB_COUNT
from .layers.registry import Shape


def expected_weight_shapes(net: Net, layer: Layer) -> list[Shape]:
    shapes = getattr(layer.params, "weight_shapes", None)
    if shapes is None:
        return []
    return [tuple(s) for s in shapes(*(net.shape(v) for v in layer.inputs))]


def attach_weights(net: Net, model: Any, *, path: str = "", allow_missing: bool = False, seed: int = 0) -> Net:
    """Copy blobs from `model` (a CaffeModel) onto the layers, as Caffe's CopyTrainedLayersFrom does:
    by name, checking the blob count and every shape. Caffe (net.cpp) looks each caffemodel layer up from
    the start of the net, so a repeated name's weights go to the first layer of that name, and when the
    caffemodel repeats a name its last entry is the one that stays."""
    out = net.copy()
    targets: dict[str, Layer] = {}
    for layer in out.layers():
        targets.setdefault(layer.caffe_name, layer)     # the first of a repeated name, as Caffe searches
    needed = {layer.name for layer in out.layers() if expected_weight_shapes(out, layer)}
    given: dict[str, list[np.ndarray]] = {}
    unused = []
    copies: dict[str, int] = {}
    for source in model.layers:
        if not source.blobs:
            continue
        target = targets.get(source.name)
        if target is None:
            unused.append(f"{source.name} ({source.type})")
            continue
        given[target.name] = _checked_blobs(out, target, source, path)
        copies[source.name] = copies.get(source.name, 0) + 1
    if unused:
        _warn(out, f"{path}: the caffemodel has weights for {len(unused)} layer(s) the net does not have: "
                   + ", ".join(unused))
    twice = [f"{name} ({count} times)" for name, count in copies.items() if count > 1]
    if twice:
        _warn(out, f"{path}: the caffemodel has weights for the same layer name more than once: "
                   + ", ".join(twice) + "; as in Caffe, the last of each is used")
    # Layers whose name a later layer repeats never receive weights; they keep their fillers, as in Caffe.
    shadowed = {layer.name for layer in out.layers() if layer.name != targets[layer.caffe_name].name
                and layer.name in needed}
    repeated = sorted({out.layer(name).caffe_name for name in shadowed})
    if repeated:
        _warn(out, "layer names used more than once: " + ", ".join(repeated) + "; as in Caffe, the caffemodel's "
              "weights go to the first layer of each name and the others keep their fillers")
    for name, blobs in given.items():
        layer = out.layer(name)
        _warn_non_finite(out, layer, blobs, path)
        out.replace(layer, layer.replace(weights=tuple(blobs)))
    _share_params(out)
    keep_fillers = {name for name in shadowed if not out.layer(name).weights}
    if keep_fillers:
        out = fill_weights(out, seed=seed, only=keep_fillers)
    missing = [out.layer(n) for n in needed if not out.layer(n).weights]
    if missing:
        listed = ", ".join(f"{layer.name} ({layer.type})" for layer in _in_order(out, missing))
        if not allow_missing:
            raise WeightsError(f"the caffemodel has no weights for {len(missing)} layer(s): {listed}",
                               where=path, expected="weights for every layer with parameters",
                               found="none (use --allow-missing-weights to initialise them from their fillers)")
        _warn(out, f"no weights in the caffemodel for {listed}: initialised from their fillers (seed {seed})")
        out = fill_weights(out, seed=seed, only={layer.name for layer in missing})
        out.metadata.update(filled_layers=", ".join(layer.name for layer in _in_order(out, missing)), seed=str(seed))
    return out


def _checked_blobs(net: Net, layer: Layer, source: Any, path: str) -> list[np.ndarray]:
    expected = expected_weight_shapes(net, layer)
    if len(source.blobs) != len(expected):
        raise WeightsError("wrong number of weight blobs in the caffemodel", where=path, layer=layer,
                           expected=len(expected), found=len(source.blobs))
    blobs = []
    legacy = getattr(source, "legacy_shape", [False] * len(source.blobs))
    for index, (blob, shape) in enumerate(zip(source.blobs, expected)):
        if not _shapes_agree(blob.shape, shape, legacy[index] if index < len(legacy) else False):
            raise WeightsError(f"weight blob {index} has the wrong shape", where=path, layer=layer, expected=shape,
                               found=tuple(blob.shape))
        blobs.append(np.ascontiguousarray(blob, dtype=np.float32).reshape(shape))
    return blobs


def _shapes_agree(found: Shape, expected: Shape, legacy: bool) -> bool:
    """Caffe accepts a legacy (num, channels, height, width) blob whose shape is the expected one padded with
    leading 1s; we also accept a scalar stored as (1,) and the reverse, which old writers produce."""
    found, expected = tuple(found), tuple(expected)
    if found == expected:
        return True
    if math.prod(found) != math.prod(expected):
        return False
    if legacy or len(found) == 4:
        return _squeeze_leading(found) == _squeeze_leading(expected)
    return math.prod(found) == 1


def _squeeze_leading(shape: Shape) -> Shape:
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def _share_params(net: Net) -> None:
    """Layers naming the same ParamSpec share that blob (Caffe's weight sharing): the first layer that has
    it lends it to the others that lack it."""
    owners: dict[str, np.ndarray] = {}
    for layer in net.layers():
        for index, name in enumerate(layer.param_names):
            if name and index < len(layer.weights):
                owners.setdefault(name, layer.weights[index])
    for layer in net.layers():
        if layer.weights or not any(layer.param_names):
            continue
        expected = expected_weight_shapes(net, layer)
        shared = [owners.get(name) for name in layer.param_names[:len(expected)]]
        if len(shared) == len(expected) and all(s is not None for s in shared):
            net.replace(layer, layer.replace(weights=tuple(s.reshape(e) for s, e in zip(shared, expected))))


def fill_weights(net: Net, *, seed: int = 0, only: Iterable[str] | None = None) -> Net:
    """Initialise weights from the layers' fillers, as Caffe does for a net without a caffemodel."""
    from .fillers import fill

    out = net.copy()
    rng = np.random.default_rng(seed)
    wanted = set(only) if only is not None else None
    for layer, expected in _planned(out, wanted):
        fillers = list(getattr(layer.params, "weight_fillers", lambda: [])()) + [None] * len(expected)
        with _located(layer):
            blobs = tuple(_zeros(shape) if filler is None else fill(filler, shape, rng).astype(np.float32)
                          for filler, shape in zip(fillers, expected))
        out.replace(layer, layer.replace(weights=blobs))
    _share_params(out)
    return out


def random_weights(net: Net, *, seed: int = 0, scale: float = 0.5) -> Net:
    """Seeded random weights for every layer (tests and `protodef check`): Gaussian, with BatchNorm's
    variances positive and its scale factor 1, so every path through the net carries signal."""
    out = net.copy()
    rng = np.random.default_rng(seed)
    for layer, expected in _planned(out, None):
        with _located(layer):
            blobs = [_random_blob(layer, index, shape, rng, scale) for index, shape in enumerate(expected)]
        out.replace(layer, layer.replace(weights=tuple(blobs)))
    return out


def _planned(net: Net, wanted: set[str] | None) -> list[tuple[Layer, list[Shape]]]:
    """The layers to initialise and their blob shapes, checked before anything is allocated: a hostile or
    mistyped prototxt (num_output: 2000000000) must fail with a message, not exhaust the memory."""
    plan, total = [], 0
    for layer in net.layers():
        if wanted is not None and layer.name not in wanted:
            continue
        with _located(layer):
            expected = expected_weight_shapes(net, layer)
        for index, shape in enumerate(expected):
            size = math.prod(shape)
            if any(d < 0 for d in shape) or size > MAX_BLOB_COUNT:
                raise ShapeError(f"weight blob {index} would have {size} elements", where=layer.where, layer=layer,
                                 expected=f"0 to {MAX_BLOB_COUNT} (Caffe's limit for one blob)", found=shape)
            total += size
        if expected:
            plan.append((layer, expected))
    available = _memory_bytes()
    if total * 4 > available:
        raise WeightsError(f"initialising the weights would take {_gib(total * 4)} of memory, more than the "
                           f"{_gib(available)} this machine has", where=net.source or None)
    return plan


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):   # not POSIX: let the allocation decide
        return 1 << 62


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


class _located:
    """Give an error raised while handling `layer` the layer's name and place; a failed allocation too."""

    def __init__(self, layer: Layer):
        self.layer = layer

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if isinstance(error, ProtodefError):
            error.at(self.layer.where, self.layer)
        elif isinstance(error, MemoryError):
            raise WeightsError("not enough memory to initialise the weights", where=self.layer.where,
                               layer=self.layer) from None
        return False


def _random_blob(layer: Layer, index: int, shape: Shape, rng: np.random.Generator, scale: float) -> np.ndarray:
    statistic = layer.spec.statistics.get(index)
    if statistic == "variance":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if statistic == "scale_factor":
        return np.ones(shape, np.float32)
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    std = scale / math.sqrt(max(1, fan_in)) if len(shape) > 1 else scale
    return rng.normal(0.0, std, shape).astype(np.float32)


def _zeros(shape: Shape) -> np.ndarray:
    return np.zeros(shape, np.float32)


def _warn_non_finite(net: Net, layer: Layer, blobs: list[np.ndarray], path: str) -> None:
    bad = [i for i, blob in enumerate(blobs) if not np.isfinite(blob).all()]
    if bad:
        _warn(net, f"{path}: layer '{layer.name}' ({layer.type}): weight blob(s) {bad} hold NaN or Inf")


def _warn(net: Net, message: str) -> None:
    net.notes.append(message)
    warnings.warn(message, ProtodefWarning, stacklevel=3)


def _in_order(net: Net, layers: list[Layer]) -> list[Layer]:
    names = {layer.name for layer in layers}
    return [layer for layer in net.layers() if layer.name in names]
