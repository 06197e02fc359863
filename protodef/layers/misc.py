"""Assorted types: Parameter, Embed, Tile, Reduction (BVLC); ShuffleChannel (ShuffleNet), Axpy (SENet) and
Correlation (FlowNet) from the forks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError, ShapeError
from .common import (
    blob_shape,
    canonical_axis,
    count,
    enum_name,
    reject_unhonoured,
)
from .registry import OpenCVDifference, Shape, layer


@dataclass(frozen=True)
class Parameter:
    """Caffe parameter_layer.hpp: no inputs; its one output is its learned blob, of `shape`."""

    shape: Shape

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Parameter":
        shape = blob_shape(lp.parameter_param.shape)
        if any(d <= 0 for d in shape):
            raise ShapeError("parameter_param.shape dims must be positive", found=shape)
        return cls(shape)

    def infer(self) -> Shape:
        return self.shape

    def weight_shapes(self) -> list[Shape]:
        return [self.shape]

    def weight_fillers(self) -> list[Any]:
        return [None]   # Caffe allocates the blob and leaves it at zero








@dataclass(frozen=True)
class Reduction:
    """Caffe reduction_layer.cpp: reduces every axis from `axis` on (output shape x[:axis]; a scalar when
    axis is 0) by SUM, ASUM (sum of |x|), SUMSQ (sum of x^2) or MEAN, then multiplies by coeff."""

    operation: str
    axis: int
    coeff: float

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Reduction":
        p = lp.reduction_param
        return cls(enum_name(p, "operation"), canonical_axis(p.axis, len(inputs[0])), p.coeff)

    def infer(self, x: Shape) -> Shape:
        return tuple(x[:self.axis])

    def scale(self, x: Shape) -> float:
        """The factor applied after the sum: coeff, divided by the reduced count for MEAN."""
        return self.coeff / count(x, self.axis) if self.operation == "MEAN" else self.coeff






_CORRELATION_FIELDS = ("pad", "kernel_size", "max_displacement", "stride_1", "stride_2", "correlation_type",
                       # FlowNet 2 reads these two but its Correlation kernels never use them.
                       "do_abs", "single_direction")


@dataclass(frozen=True)
class Correlation:
    """FlowNet 2 correlation_layer.cu. Both inputs are zero-padded by `pad`; output channel
    c = (py + r) * (2r + 1) + (px + r), r = max_displacement // stride_2, compares the k x k patch of input 0
    whose top-left corner is at (y * stride_1 + max_displacement, x * ...) with input 1's patch moved by
    (py * stride_2, px * stride_2): the mean over the patch and channels of a * b (MULTIPLY) or |a - b|
    (SUBTRACT)."""

    kernel_size: int
    max_displacement: int
    pad: int
    stride_1: int
    stride_2: int
    subtract: bool

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Correlation":
        p = checked_correlation_param(lp, inputs)
        return cls(p.kernel_size, p.max_displacement, p.pad, p.stride_1, p.stride_2,
                   enum_name(p, "correlation_type") == "SUBTRACT")

    @property
    def grid_radius(self) -> int:
        return self.max_displacement // self.stride_2

    def infer(self, a: Shape, b: Shape) -> Shape:
        border = self.max_displacement + (self.kernel_size - 1) // 2
        size = [-(-(d + 2 * self.pad - 2 * border) // self.stride_1) for d in a[2:]]
        if min(size) < 1:
            raise ShapeError("Correlation's neighbourhood and kernel do not fit in the padded input",
                             expected=f"H, W + 2 * pad > {2 * border}", found=a)
        return (a[0], (2 * self.grid_radius + 1) ** 2, *size)

    def displacements(self) -> list[tuple[int, int]]:
        """(dy, dx) of each output channel, in channel order."""
        r, s = self.grid_radius, self.stride_2
        return [(py * s, px * s) for py in range(-r, r + 1) for px in range(-r, r + 1)]


def checked_correlation_param(lp: Any, inputs: tuple[Shape, ...]) -> Any:
    """correlation_param, with the checks FlowNet 2's Correlation and Correlation1D share."""
    p = lp.correlation_param
    reject_unhonoured(p, _CORRELATION_FIELDS, what="correlation_param")
    if not (p.HasField("kernel_size") and p.HasField("max_displacement")):
        raise SchemaError(f"{lp.type} needs correlation_param.kernel_size and max_displacement")
    if p.kernel_size % 2 == 0:
        raise SchemaError(f"{lp.type} kernel_size must be odd", found=p.kernel_size)
    if p.stride_1 <= 0 or p.stride_2 <= 0:
        raise SchemaError(f"{lp.type} strides must be positive", found=(p.stride_1, p.stride_2))
    a, b = inputs
    if len(a) != 4 or a != b:
        raise ShapeError(f"{lp.type} takes two 4-D inputs of the same shape", expected=a, found=b)
    return p


layer("Parameter", family="misc", label=("shape",), inputs=(0, 0), in_place_ok=False,
      honoured=("shape",), parameter="parameter_param")(Parameter)
layer("Reduction", family="misc", label=("operation", "axis", "coeff"), in_place_ok=False,
      honoured=("operation", "axis", "coeff"), parameter="reduction_param")(Reduction)
layer("Correlation", family="misc", source="FlowNet 2 fork", label=("max_displacement", "kernel_size"),
      inputs=(2, 2), in_place_ok=False, honoured=_CORRELATION_FIELDS,
      opencv_differs=OpenCVDifference("only multiplies (no SUBTRACT)", applies=lambda p: p.subtract))(Correlation)


@dataclass(frozen=True)
class FlowWarp:
    """FlowNet 2 flow_warp_layer.cpp/.cu: output (n, c, y, x) samples the image bilinearly at (x + u, y + v),
    (u, v) = flow (n, 0:2, y, x), from the four pixels around it (the right/bottom ones clamped to the last
    column/row); where x + u or y + v falls outside [0, W) x [0, H) the output is 0, or NaN with
    flow_warp_param { fill_value: NOT_A_NUMBER } (FlowNet 2's schema, read with --proto)."""

    fill_nan: bool

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "FlowWarp":
        image, flow = inputs
        if len(image) != 4 or len(flow) != 4 or flow[0] != image[0] or flow[1] != 2 or flow[2:] != image[2:]:
            raise ShapeError("FlowWarp takes an image (N, C, H, W) and its flow (N, 2, H, W)",
                             expected=(image[0], 2, *image[2:]) if len(image) == 4 else "4-D inputs", found=flow)
        p = lp.flow_warp_param
        return cls(enum_name(p, "fill_value") == "NOT_A_NUMBER")

    def infer(self, image: Shape, flow: Shape) -> Shape:
        return image


@dataclass(frozen=True)
class Correlation1D:
    """FlowNet 2 correlation_layer1d.cu (DispNet): Correlation along x only. Both inputs are zero-padded by
    `pad` left and right (not up and down); output channel c compares the k x k patch of input 0 whose
    top-left corner is at (y * stride_1, x * stride_1 + max_displacement) with input 1's patch moved right by
    shifts[c]: the mean over the patch and channels of a * b (MULTIPLY) or |a - b| (SUBTRACT)."""

    kernel_size: int
    max_displacement: int
    pad: int
    stride_1: int
    subtract: bool
    shifts: tuple[int, ...]

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Correlation1D":
        p = checked_correlation_param(lp, inputs)
        if p.single_direction not in (0, 1):
            # -1 shifts by up to (max_displacement // stride_2 + 1) * stride_2 to the left, past the padding:
            # FlowNet 2's kernel then reads outside the row.
            raise SchemaError("Correlation1D single_direction must be 0 or 1 (-1 reads outside the padded input "
                              "in FlowNet 2's kernel)", found=p.single_direction)
        a, b = inputs
        radius = p.max_displacement // p.stride_2
        first = 0 if p.single_direction == 1 else -radius
        shifts = tuple(o * p.stride_2 for o in range(first, radius + 1))
        made = cls(p.kernel_size, p.max_displacement, p.pad, p.stride_1, enum_name(p, "correlation_type") ==
                   "SUBTRACT", shifts)
        size = made.infer(a, b)
        if min(size[2:]) < 1:
            raise ShapeError("Correlation1D's neighbourhood and kernel do not fit in the padded input",
                             expected=f"H > {p.kernel_size - 1}, W + 2 * pad > {2 * made.border}", found=a)
        return made

    @property
    def border(self) -> int:
        return self.max_displacement + (self.kernel_size - 1) // 2

    def infer(self, a: Shape, b: Shape) -> Shape:
        height = -(-(a[2] - (self.kernel_size - 1)) // self.stride_1)
        width = -(-(a[3] + 2 * self.pad - 2 * self.border) // self.stride_1)
        return (a[0], len(self.shifts), height, width)


@dataclass(frozen=True)
class LSTMUnit:
    """Caffe lstm_unit_layer.cpp, one LSTM step: inputs c_prev (1, N, D), gates x (1, N, 4D) ordered
    i, f, o, g, and cont (1, N); c = cont * sigmoid(f) * c_prev + sigmoid(i) * tanh(g) (the forget term is 0
    where cont is 0), h = sigmoid(o) * tanh(c). Outputs c and h, both (1, N, D)."""

    hidden: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "LSTMUnit":
        c_prev, gates, cont = inputs
        if len(c_prev) != 3 or c_prev[0] != 1:
            raise ShapeError("LSTMUnit's first input (c_prev) must be (1, N, D)", found=c_prev)
        if gates != (1, c_prev[1], 4 * c_prev[2]):
            raise ShapeError("LSTMUnit's second input (the gates) must be (1, N, 4 * D)",
                             expected=(1, c_prev[1], 4 * c_prev[2]), found=gates)
        if cont != (1, c_prev[1]):
            raise ShapeError("LSTMUnit's third input (cont) must be (1, N)", expected=(1, c_prev[1]), found=cont)
        return cls(c_prev[2])

    def infer(self, c_prev: Shape, gates: Shape, cont: Shape) -> list[Shape]:
        return [c_prev, c_prev]


layer("FlowWarp", family="misc", source="FlowNet 2 fork", inputs=(2, 2), in_place_ok=False,
      honoured=("fill_value",), parameter="flow_warp_param")(FlowWarp)
layer("Correlation1D", family="misc", source="FlowNet 2 fork (DispNet)", label=("max_displacement", "kernel_size"),
      inputs=(2, 2), in_place_ok=False, honoured=_CORRELATION_FIELDS)(Correlation1D)
layer("LSTMUnit", family="misc", inputs=(3, 3), outputs=(2, 2), in_place_ok=False)(LSTMUnit)


@dataclass(frozen=True)
class Silence:
    """Reads its inputs and produces nothing; used to keep unused tops from being net outputs."""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Silence":
        return cls()

    def infer(self, *inputs: Shape) -> list[Shape]:
        return []


layer("Silence", family="misc", inputs=(1, None), outputs=(0, 0))(Silence)
