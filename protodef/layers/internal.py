"""Layer types of protodef's own, made by passes; no prototxt names them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UnsupportedError
from .registry import Shape, layer


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
