"""Data family: Input and the data layers. Their outputs become the net's inputs.

A size that the prototxt cannot tell (channels stored in a database, the images' size) is None inside the
shape; a whole shape is None where not even the number of axes is told (an HDF5 file's layout). The user
supplies them with --input-shape, and the error says so; `info` and `draw` show them as named sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError, ShapeError
from .common import MAX_BLOB_COUNT, blob_shape, count
from .registry import Shape, layer

MaybeShape = "Shape | None"


@dataclass(frozen=True)
class DataSource:
    """The shapes a data layer declares for its tops (None where only the data itself would tell)."""

    shapes: tuple[Any, ...]
    unknown_because: str = ""

    def infer(self) -> list[Any]:
        return list(self.shapes)


def _per_top(lp: Any, shapes: list[Shape], what: str) -> tuple[Shape, ...]:
    for shape in shapes:
        # Caffe would stop on a negative size; a zero one gives an empty blob no later layer can use.
        if any(d <= 0 for d in shape):
            raise ShapeError(f"{what} declares a size that is zero or negative", expected="all > 0", found=shape)
        if count(shape) > MAX_BLOB_COUNT:
            raise ShapeError(f"{what} declares a blob larger than Caffe allows",
                             expected=f"at most {MAX_BLOB_COUNT} elements", found=shape)
    tops = len(lp.top)
    if len(shapes) == 1:
        return tuple(shapes) * tops
    if len(shapes) != tops:
        raise SchemaError(f"{what} needs one shape, or one per top", expected=f"1 or {tops}", found=len(shapes))
    return tuple(shapes)


def _crop(lp: Any, own: int = 0) -> int:
    return lp.transform_param.crop_size or own


class Input(DataSource):
    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple) -> "Input":
        shapes = [blob_shape(s) for s in lp.input_param.shape]
        if not shapes:
            return cls((None,) * len(lp.top), "its input_param gives no shape")
        return cls(_per_top(lp, shapes, "input_param.shape"))


def _transformed(lp: Any, batch: int, channels: int | None = None) -> tuple:
    """Caffe's DataTransformer::InferBlobShape: crop_size fixes height and width; one mean_value per channel
    fixes the channels (a single one applies to every channel, so it tells nothing)."""
    t = lp.transform_param
    if channels is None and len(t.mean_value) > 1:
        channels = len(t.mean_value)
    side = t.crop_size or None
    return (batch, channels, side, side)


class Data(DataSource):
    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple) -> "Data":
        batch = lp.data_param.batch_size or 1
        label = ((batch,),) if len(lp.top) > 1 else ()
        return cls((_transformed(lp, batch), *label), "the number of channels and the image size come from its "
                   "database")


class AnnotatedData(DataSource):
    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple) -> "AnnotatedData":
        batch = lp.data_param.batch_size or 1
        resize = getattr(lp.transform_param, "resize_param", None)
        # The labels: one row of 8 numbers per ground-truth box in the batch (annotated_data_layer.cpp).
        rest = ((1, 1, None, 8),) + (None,) * (len(lp.top) - 2) if len(lp.top) > 1 else ()
        if resize is not None and resize.height and resize.width:
            return cls(((batch, 3, resize.height, resize.width), *rest), "its labels' size depends on the data")
        return cls((_transformed(lp, batch), *rest), "the image size comes from its database")


class ImageData(DataSource):
    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple) -> "ImageData":
        p = lp.image_data_param
        batch, channels = p.batch_size or 1, 3 if p.is_color else 1
        crop = _crop(lp, p.crop_size)
        label = ((batch,),) if len(lp.top) > 1 else ()
        if crop:
            return cls(((batch, channels, crop, crop), *label))
        if p.new_height and p.new_width:
            return cls(((batch, channels, p.new_height, p.new_width), *label))
        return cls(((batch, channels, None, None), *label),
                   "the image size comes from the images (no new_height/new_width or crop)")


class DenseImageData(DataSource):
    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple) -> "DenseImageData":
        p = lp.dense_image_data_param
        batch, channels = p.batch_size or 1, 3 if p.is_color else 1
        crop_h = getattr(p, "crop_height", 0) or _crop(lp)
        crop_w = getattr(p, "crop_width", 0) or _crop(lp)
        h, w = (crop_h, crop_w) if crop_h and crop_w else (p.new_height, p.new_width)
        h, w = h or None, w or None
        return cls(((batch, channels, h, w), *(((batch, 1, h, w),) if len(lp.top) > 1 else ())),
                   "the image size comes from the images")


class ImageLabelmapData(DataSource):
    """HED's images with their edge maps (image_labelmap_data_layer.cpp): (batch, 3 or 1, H, W) and
    (batch, 1, H, W), from image_data_param."""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple) -> "ImageLabelmapData":
        p = lp.image_data_param
        batch, channels = p.batch_size or 1, 3 if p.is_color else 1
        h, w = (p.new_height, p.new_width) if p.new_height and p.new_width else (None, None)
        label = ((batch, 1, h, w),) if len(lp.top) > 1 else ()
        return cls(((batch, channels, h, w), *label), "the image size comes from the images")


class MemoryData(DataSource):
    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple) -> "MemoryData":
        p = lp.memory_data_param
        data = (p.batch_size, p.channels, p.height, p.width)
        label = ((p.batch_size, 1, 1, 1),) if len(lp.top) > 1 else ()
        if 0 in data:
            return cls((tuple(d or None for d in data), *label), "memory_data_param leaves a dimension at 0")
        return cls((data, *label))


class WindowData(DataSource):
    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple) -> "WindowData":
        p = lp.window_data_param
        crop = _crop(lp, p.crop_size)
        batch = p.batch_size or 1
        label = ((batch,),) if len(lp.top) > 1 else ()
        if crop:
            return cls(((batch, 3, crop, crop), *label))
        return cls(((batch, 3, None, None), *label), "window_data_param gives no crop_size")


class HDF5Data(DataSource):
    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple) -> "HDF5Data":
        return cls((None,) * len(lp.top), "its shapes come from the HDF5 files")


class DummyData(DataSource):
    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple) -> "DummyData":
        p = lp.dummy_data_param
        shapes = [blob_shape(s) for s in p.shape]
        if not shapes and p.num:
            legacy = list(zip(p.num, p.channels, p.height, p.width))
            shapes = [tuple(int(d) for d in s) for s in legacy]
        if not shapes:
            return cls((None,) * len(lp.top), "dummy_data_param gives no shape")
        return cls(_per_top(lp, shapes, "dummy_data_param.shape"))


_DATA = {"Input": Input, "Data": Data, "ImageData": ImageData, "MemoryData": MemoryData, "HDF5Data": HDF5Data,
         "DummyData": DummyData, "WindowData": WindowData}
_FORK_DATA = {"AnnotatedData": (AnnotatedData, "SSD fork (weiliu89)"),
              "DenseImageData": (DenseImageData, "SegNet fork (alexgkendall)"),
              "ImageLabelmapData": (ImageLabelmapData, "HED fork (s9xie)")}

for _type, _cls in _DATA.items():
    layer(_type, family="data", inputs=(0, 0), outputs=(1, None), produces_input=True)(_cls)
for _type, (_cls, _source) in _FORK_DATA.items():
    layer(_type, family="data", inputs=(0, 0), outputs=(1, None), produces_input=True, source=_source)(_cls)
