"""A data layer's transform_param as a callable, for your own data loader (Caffe's data_transformer.cpp).

    transform = protodef.data_transform("train_val.prototxt", "TRAIN")
    x = transform(image)          # C x H x W (or N x C x H x W), uint8 or float -> float32

Caffe's order: crop (random offsets at TRAIN, centred at TEST), mirror (a coin flip per image when `mirror`
is set, in either phase, as Caffe does), subtract the mean (mean_file's image, cropped at the same offsets, or
mean_value per channel), multiply by scale. Images come in the layout the net was trained on (Caffe's are
BGR, channel-first). protodef does not read the data layer's source: LMDB and LevelDB databases, HDF5
files and image lists are for your loader to read.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import GraphError, ParseError, SchemaError, ShapeError
from .files import blob_values, path_beside


@dataclass
class DataTransform:
    """The transformation of one data layer; call it on one image (C, H, W) or a batch (N, C, H, W)."""

    layer: str
    train: bool
    scale: float
    mirror: bool
    crop_size: int
    mean_image: np.ndarray | None = None       # (C, H, W), from mean_file
    mean_values: np.ndarray | None = None      # (1,) or (C,), from mean_value
    rng: np.random.Generator | None = None

    def __call__(self, images: Any) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            return self._one(images)
        if images.ndim == 4:
            return np.stack([self._one(image) for image in images])
        raise ShapeError("data_transform takes an image (C, H, W) or a batch (N, C, H, W)", layer=self.layer,
                         expected="3 or 4 axes", found=images.shape)

    def _one(self, image: np.ndarray) -> np.ndarray:
        channels, height, width = image.shape
        flip = self.mirror and self._random(2)      # drawn before the crop, as Caffe does
        top, left, size = self._crop(height, width)
        rows, cols = slice(top, top + size[0]), slice(left, left + size[1])
        values = image[:, rows, cols].astype(np.float32)
        mean = self._mean(channels, height, width)
        if mean is not None:
            values -= mean[:, rows, cols] if self.mean_image is not None else mean
        values *= np.float32(self.scale)
        if flip:
            values = values[:, :, ::-1]
        return np.ascontiguousarray(values)

    def _crop(self, height: int, width: int) -> tuple[int, int, tuple[int, int]]:
        if not self.crop_size:
            return 0, 0, (height, width)
        if height < self.crop_size or width < self.crop_size:
            raise ShapeError("the image is smaller than crop_size", layer=self.layer,
                             expected=f"at least {self.crop_size} x {self.crop_size}", found=(height, width))
        if self.train:
            top, left = self._random(height - self.crop_size + 1), self._random(width - self.crop_size + 1)
        else:
            top, left = (height - self.crop_size) // 2, (width - self.crop_size) // 2
        return top, left, (self.crop_size, self.crop_size)

    def _mean(self, channels: int, height: int, width: int) -> np.ndarray | None:
        if self.mean_image is not None:
            if self.mean_image.shape != (channels, height, width):
                raise ShapeError("the mean_file image and the data differ in size", layer=self.layer,
                                 expected=self.mean_image.shape, found=(channels, height, width))
            return self.mean_image
        if self.mean_values is not None:
            if self.mean_values.size not in (1, channels):
                raise ShapeError("give one mean_value, or one per channel", layer=self.layer,
                                 expected=f"1 or {channels}", found=self.mean_values.size)
            return self.mean_values.reshape(-1, 1, 1)
        return None

    def _random(self, n: int) -> int:
        if self.rng is None:
            self.rng = np.random.default_rng()
        return int(self.rng.integers(n))


def data_transform(prototxt: str | os.PathLike, phase: str = "TRAIN", *, layer: str | None = None,
                   stages: Sequence[str] = (), level: int = 0, seed: int | None = None) -> DataTransform:
    """The transform_param of the data layer `phase` uses (or of `layer`), as a callable. mean_file is read
    beside the prototxt when it is there, else from the working directory (where Caffe reads it)."""
    from ..build import _meets_rules, _net_state, _phase_number
    from ..source import read_prototxt
    from ..upgrade import needs_upgrade, upgrade_net

    path = os.fspath(prototxt)
    param, _source = read_prototxt(path)
    if needs_upgrade(param):
        param = upgrade_net(param, path=path)[0]
    state = _net_state(param, _phase_number(phase), stages, level)
    candidates = [lp for lp in param.layer if lp.HasField("transform_param") and _meets_rules(lp, state)
                  and (layer is None or lp.name == layer)]
    if len(candidates) != 1:
        found = ", ".join(lp.name for lp in candidates) or "none"
        raise GraphError(f"data_transform needs exactly one data layer with a transform_param in phase "
                         f"{phase.upper()}" + (f" named '{layer}'" if layer else " (pass layer=...)"),
                         where=path, expected="one layer", found=found)
    lp = candidates[0]
    p = lp.transform_param
    if p.mean_file and len(p.mean_value):
        raise SchemaError("cannot specify mean_file and mean_value at the same time", where=path, layer=lp)
    return DataTransform(
        layer=lp.name, train=phase.upper() == "TRAIN", scale=float(np.float32(p.scale)), mirror=p.mirror,
        crop_size=p.crop_size,
        mean_image=_read_mean_file(path_beside(p.mean_file, path)) if p.mean_file else None,
        mean_values=np.array(p.mean_value, dtype=np.float32) if len(p.mean_value) else None,
        rng=np.random.default_rng(seed))


def _read_mean_file(path: str) -> np.ndarray:
    """A binaryproto BlobProto (Caffe's compute_image_mean output): 1 x C x H x W."""
    from google.protobuf.message import DecodeError

    from caffe_proto import caffe_pb2

    try:
        blob = caffe_pb2.BlobProto.FromString(Path(path).read_bytes())
    except OSError as exc:
        raise ParseError(f"cannot read the mean_file: {exc.strerror}", where=path) from None
    except DecodeError as exc:
        raise ParseError(f"the mean_file is not a binaryproto BlobProto: {exc}", where=path) from None
    shape, values = blob_values(blob)
    if len(shape) < 3 or values.size != int(np.prod(shape)) or (len(shape) == 4 and shape[0] != 1):
        raise ShapeError("the mean_file should hold one C x H x W image", where=path,
                         expected="1 x C x H x W", found=shape)
    return values.reshape(shape[-3:])
