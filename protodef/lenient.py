"""Opening any well-formed prototxt, for `info` and `draw`: what a strict build refuses becomes something to
look at. Sizes nothing tells become named sizes (N, C, H, W); a `Python` layer, or a type protodef does not
know, becomes an opaque node (never imported); a layer whose shape rule cannot run on what is known keeps its
place with unknown outputs. Each such step leaves a note. Conversion never builds leniently.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .errors import GraphError
from .layers.registry import LayerSpec, Shape
from .symbolic import names_in, symbol

# Names for sizes nothing tells, by the number of axes (Caffe's blobs are N x C x H x W by convention).
_AXIS_NAMES = {1: ("N",), 2: ("N", "D"), 3: ("N", "C", "L"), 4: ("N", "C", "H", "W"), 5: ("N", "C", "D", "H", "W")}


@dataclass(frozen=True)
class Opaque:
    """Params of a layer seen but not understood: an unknown type, a `Python` layer, or a known type whose
    shape rule cannot run on what is known. It has no shape rule and no weights."""

    type: str
    reason: str

    @property
    def spec(self) -> LayerSpec:
        """The spec of a type no family registers (a known type's layer keeps its own spec)."""
        return LayerSpec(type=self.type, params=Opaque, family="misc", source="not known to protodef",
                         inputs=(0, None), outputs=(0, None))


def named_sizes(shape: tuple | None) -> tuple | None:
    """A data layer's shape with each size it does not tell (None) named after its axis."""
    if shape is None:
        return None
    names = _AXIS_NAMES.get(len(shape), tuple(f"D{axis}" for axis in range(len(shape))))
    return tuple(symbol(name) if d is None else d for d, name in zip(shape, names))


def data_source_shapes(tops: int) -> list[Shape | None]:
    """A bottomless layer protodef does not understand is a data source: its first top is taken to be an image
    batch, as in FCN's and py-faster-rcnn's Python data layers; nothing is assumed of the others."""
    return [named_sizes((None, None, None, None))] + [None] * (tops - 1)


def is_partial(shape: tuple | None) -> bool:
    return shape is not None and any(d is None for d in shape)


def depends_on_names(shapes: tuple) -> bool:
    """Whether a layer's inputs hold a named or unknown size (a failure there may be one of the names' making)."""
    return any(shape is None or names_in(tuple(shape)) for shape in shapes)


def build_in_some_phase(build: Any, param: Any, source: Any, *, phase: str, **options: Any):
    """The net in `phase`; a TEST view that cannot be built because its data come only in TRAIN (a training
    net, or a solver's test net chosen by stage) is shown in TRAIN instead, with a note."""
    first = copy.deepcopy(param) if phase.upper() == "TEST" else param
    try:
        return build(first, source, phase=phase, lenient=True, **options)
    except GraphError as error:
        if phase.upper() != "TEST" or "include/exclude rules" not in str(error):
            raise
        reason = f"layer '{error.layer_name}' ({error.layer_type}): {error.message}"
    net = build(param, source, phase="TRAIN", lenient=True, **options)
    net.notes.insert(0, f"shown in phase TRAIN, as the TEST view cannot be built: {reason}")
    return net
