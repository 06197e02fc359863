"""Reshape family: layers that move, cut or copy data without arithmetic."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError, ShapeError
from ..symbolic import Condition, UndecidedSize, definitely
from .common import blob_shape, canonical_axis, count
from .registry import OpenCVDifference, Shape, layer


@dataclass(frozen=True)
class Split:
    """Copies its input to every output (Caffe inserts these itself for blobs read twice)."""

    outputs: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Split":
        return cls(len(lp.top))

    def infer(self, x: Shape) -> list[Shape]:
        return [x] * self.outputs


@dataclass(frozen=True)
class Slice:
    """Caffe slice_layer.cpp: cut along `axis` (legacy slice_dim) at slice_point, or into equal parts."""

    axis: int
    points: tuple[int, ...]     # boundaries, starting at 0 and ending at the axis length

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Slice":
        p = lp.slice_param
        if p.HasField("slice_dim") and p.HasField("axis"):
            raise SchemaError("give slice_param.axis or the legacy slice_dim, not both")
        x = inputs[0]
        axis = canonical_axis(p.slice_dim if p.HasField("slice_dim") else p.axis, len(x))
        length, parts = x[axis], len(lp.top)
        if p.slice_point:
            if len(p.slice_point) != parts - 1:
                raise SchemaError("Slice needs one slice_point fewer than it has outputs", expected=parts - 1,
                                  found=len(p.slice_point))
            points = (0, *p.slice_point, length)
            if any(definitely(b <= a) for a, b in zip(points, points[1:])):
                raise ShapeError("slice points must increase strictly within the axis", expected=f"0 < ... < {length}",
                                 found=tuple(p.slice_point))
        else:
            if length % parts:
                raise ShapeError(f"axis {axis} does not divide into {parts} equal slices", found=length)
            points = tuple(range(0, length + 1, length // parts))
        return cls(axis, points)

    def infer(self, x: Shape) -> list[Shape]:
        return [(*x[:self.axis], b - a, *x[self.axis + 1:]) for a, b in zip(self.points, self.points[1:])]


@dataclass(frozen=True)
class Flatten:
    """Caffe flatten_layer.cpp: merge axes axis..end_axis into one."""

    axis: int
    end_axis: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Flatten":
        p = lp.flatten_param
        rank = len(inputs[0])
        start, end = canonical_axis(p.axis, rank), canonical_axis(p.end_axis, rank, what="end_axis")
        if end < start:
            raise SchemaError("flatten_param.end_axis comes before axis", found=(p.axis, p.end_axis))
        return cls(start, end)

    def infer(self, x: Shape) -> Shape:
        return (*x[:self.axis], count(x, self.axis, self.end_axis + 1), *x[self.end_axis + 1:])


@dataclass(frozen=True)
class Reshape:
    """Caffe reshape_layer.cpp: replaces axes [axis, axis + num_axes) by `shape`; 0 copies, -1 infers."""

    axis: int
    num_axes: int
    dims: tuple[int, ...]

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Reshape":
        p = lp.reshape_param
        rank = len(inputs[0])
        # Caffe: axis may be rank (append); negative axes count from rank + 1.
        axis = p.axis + rank + 1 if p.axis < 0 else p.axis
        if not 0 <= axis <= rank:
            raise ShapeError("reshape_param.axis is out of range", expected=f"0..{rank}", found=p.axis)
        num_axes = rank - axis if p.num_axes == -1 else p.num_axes
        if num_axes < 0 or axis + num_axes > rank:
            raise ShapeError("reshape_param.num_axes is out of range", expected=f"-1..{rank - axis}",
                             found=p.num_axes)
        dims = blob_shape(p.shape)
        if sum(d == -1 for d in dims) > 1:
            raise SchemaError("reshape_param.shape may infer (-1) at most one dimension", found=dims)
        if any(d < -1 for d in dims):
            raise SchemaError("reshape_param.shape dims must be -1 or more", found=dims)
        return cls(axis, num_axes, dims)

    def infer(self, x: Shape) -> Shape:
        middle = []
        for i, d in enumerate(self.dims):
            if d == 0:
                if self.axis + i >= len(x):
                    raise ShapeError("reshape 0 copies an input axis that does not exist", found=self.axis + i)
                middle.append(x[self.axis + i])
            else:
                middle.append(d)
        head, tail = x[:self.axis], x[self.axis + self.num_axes:]
        if -1 in self.dims:
            inferred = self.dims.index(-1)
            known = count(head) * count(tail) * count(tuple(d for i, d in enumerate(middle) if i != inferred))
            divides = known != 0 and _holds(count(x) % known == 0, "the -1 dimension's size")
            if not divides:
                raise ShapeError("reshape cannot infer the -1 dimension", expected=f"a divisor of {count(x)}",
                                 found=known)
            middle[inferred] = count(x) // known
        out = (*head, *middle, *tail)
        if not _holds(count(out) == count(x), "a reshape to fixed dims"):
            raise ShapeError("reshape changes the number of elements", expected=count(x), found=out)
        return out


def _holds(answer: "bool | Condition", what: str) -> bool:
    """A comparison's answer; where it depends on symbolic sizes, an error asking for them fixed (a reshape
    that holds for some sizes only is wrong at the others)."""
    if isinstance(answer, Condition):
        raise UndecidedSize(f"{what} is right only for some sizes ({answer})", answer.names())
    return bool(answer)


@dataclass(frozen=True)
class Crop:
    """Caffe crop_layer.cpp: crop input 0 to input 1's size on axes >= axis, at the given offsets."""

    axis: int
    offsets: tuple[int, ...]

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Crop":
        p = lp.crop_param
        x, reference = inputs
        if len(x) != len(reference):
            raise ShapeError("Crop inputs must have the same number of axes", expected=len(x), found=len(reference))
        axis = canonical_axis(p.axis, len(x))
        n = len(x) - axis
        offsets = list(p.offset)
        if len(offsets) not in (0, 1, n):
            raise SchemaError(f"crop_param.offset must have 0, 1 or {n} values", found=len(offsets))
        offsets = offsets * n if len(offsets) == 1 else (offsets or [0] * n)
        for i, offset in enumerate(offsets):
            if definitely(offset + reference[axis + i] > x[axis + i]):
                raise ShapeError(f"crop on axis {axis + i} runs past the input", expected=f"<= {x[axis + i]}",
                                 found=offset + reference[axis + i])
        return cls(axis, tuple(offsets))

    def infer(self, x: Shape, reference: Shape) -> Shape:
        return (*x[:self.axis], *reference[self.axis:])


layer("Split", family="reshape", outputs=(1, None), in_place_ok=False)(Split)
layer("Slice", family="reshape", label=("axis",), outputs=(1, None), in_place_ok=False, honoured=("axis", "slice_dim", "slice_point"), parameter="slice_param")(Slice)
layer("Flatten", family="reshape", label=("axis",), in_place_ok=False, honoured=("axis", "end_axis"), parameter="flatten_param")(Flatten)
layer("Reshape", family="reshape", label=("dims",), in_place_ok=False, honoured=("shape", "axis", "num_axes"), parameter="reshape_param")(Reshape)
layer("Crop", family="reshape", label=("axis", "offsets"), inputs=(2, 2), in_place_ok=False, honoured=("axis", "offset"), parameter="crop_param")(Crop)


@dataclass(frozen=True)
class Flip:
    """AM-Softmax's caffe-windows flip_layer.cpp: the image mirrored left-right (flip_width, default) and/or
    upside down (flip_height). flip_param is caffe-windows' (read with --proto); without it, left-right."""

    width: bool
    height: bool

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Flip":
        if len(inputs[0]) != 4:   # Caffe reads num/channels/height/width
            raise ShapeError("Flip takes a 4-D input (N, C, H, W)", found=inputs[0])
        p = lp.flip_param
        return cls(p.flip_width, p.flip_height)

    def infer(self, x: Shape) -> Shape:
        return x

    @property
    def axes(self) -> tuple[int, ...]:
        return tuple(axis for axis, flipped in ((2, self.height), (3, self.width)) if flipped)


@dataclass(frozen=True)
class BatchReindex:
    """Caffe batch_reindex_layer.cpp: output item i is input item int(index[i]), index a 1-D input of any
    length (each value must lie in [0, N))."""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "BatchReindex":
        if len(inputs[1]) != 1:
            raise ShapeError("BatchReindex's second input (the indices) must be 1-D", found=inputs[1])
        return cls()

    def infer(self, x: Shape, index: Shape) -> Shape:
        return (index[0], *x[1:])


layer("Flip", family="reshape", source="AM-Softmax fork (happynear/caffe-windows)", label=("axes",),
      in_place_ok=False, honoured=("flip_width", "flip_height"), parameter="flip_param")(Flip)
layer("BatchReindex", family="reshape", inputs=(2, 2), in_place_ok=False)(BatchReindex)


@dataclass(frozen=True)
class Tile:
    """Caffe tile_layer.cpp: the block of axes from `axis` on is repeated `tiles` times (numpy.tile with
    reps `tiles` at `axis`)."""

    axis: int
    tiles: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Tile":
        p = lp.tile_param
        if p.tiles <= 0:
            raise SchemaError("tile_param.tiles must be positive", found=p.tiles)
        return cls(canonical_axis(p.axis, len(inputs[0])), p.tiles)

    def infer(self, x: Shape) -> Shape:
        return (*x[:self.axis], x[self.axis] * self.tiles, *x[self.axis + 1:])


@dataclass(frozen=True)
class ShuffleChannel:
    """ShuffleNet shuffle_channel_layer.cpp: channels viewed as (group, C / group) and transposed, so output
    channel j * group + i is input channel i * (C / group) + j."""

    group: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "ShuffleChannel":
        p = lp.shuffle_channel_param
        x = inputs[0]
        if p.group <= 0:
            raise SchemaError("shuffle_channel_param.group must be positive", found=p.group)
        if len(x) < 2 or x[1] % p.group:
            raise ShapeError("ShuffleChannel needs a channel axis divisible by group",
                             expected=f"a multiple of {p.group}", found=x)
        return cls(p.group)

    def infer(self, x: Shape) -> Shape:
        return x


layer("Tile", family="reshape", label=("axis", "tiles"), in_place_ok=False, honoured=("axis", "tiles"), parameter="tile_param",
      opencv_differs=OpenCVDifference("its Caffe importer reads no tile_param"))(Tile)
layer("ShuffleChannel", family="reshape", source="ShuffleNet fork", label=("group",), in_place_ok=False,
      honoured=("group",), parameter="shuffle_channel_param")(ShuffleChannel)
