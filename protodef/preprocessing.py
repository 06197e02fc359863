"""What a data layer did to its images before the net saw them (Caffe's data_transformer.cpp), described so the
user of a converted model can do the same: the converted model takes the transformed input, not the image."""
from __future__ import annotations

import json
from typing import Any

import numpy as np

# Layers whose data are images: Caffe decodes them with OpenCV (ImageData, convert_imageset), so colour
# channels come in B, G, R order with values 0 to 255.
_IMAGE_LAYERS = {"ImageData", "WindowData", "DenseImageData", "AnnotatedData"}


def describe_transform(lp: Any, phase: str) -> dict[str, Any]:
    """The steps of `lp.transform_param`, in the order Caffe applies them, as plain data (empty: none)."""
    p = lp.transform_param
    steps: dict[str, Any] = {}
    size = _resize(lp)
    if size:
        steps["resize"] = list(size)
    crop = (p.crop_size, p.crop_size) if p.crop_size else (getattr(p, "crop_h", 0), getattr(p, "crop_w", 0))
    if all(crop):
        # data_transformer.cpp: a random window while training, the centred one otherwise
        steps["crop"] = {"size": list(crop), "where": "random" if phase == "TRAIN" else "centre"}
    if p.mirror:
        steps["mirror"] = "random horizontal flip (Caffe flips at random in every phase)"
    if p.HasField("mean_file"):
        steps["mean"] = {"file": p.mean_file, "per": "pixel (a mean image, taken at the crop's offset)"}
    elif len(p.mean_value):
        steps["mean"] = {"values": [_shortest(v) for v in p.mean_value],
                         "per": "channel" if len(p.mean_value) > 1 else "all channels"}
    if p.HasField("scale"):
        steps["scale"] = _shortest(p.scale)      # multiplies after the mean is subtracted
    if p.force_gray:
        steps["channels"] = "gray, pixel values 0-255"
    elif p.force_color or lp.type in _IMAGE_LAYERS or len(p.mean_value) == 3:
        steps["channels"] = "BGR, pixel values 0-255"
    return steps


def record_preprocessing(net: Any, lp: Any, phase: str) -> None:
    """Note a data layer's transformation on the net (for `info` and `convert`) and keep it as metadata
    (the ONNX model's `protodef.preprocessing`, the PyTorch module's `conversion_metadata`)."""
    if not (lp.HasField("transform_param") and lp.transform_param.ByteSize()):
        return
    steps = describe_transform(lp, phase)
    net.notes.append(f"layer '{lp.name}' ({lp.type}) transforms its data before the net ({summary(steps)}); "
                     "the converted model expects transformed inputs")
    entries = json.loads(net.metadata.get("preprocessing", "[]"))
    entries.append({"layer": lp.name, "type": lp.type, "top": lp.top[0] if lp.top else "", **steps})
    net.metadata["preprocessing"] = json.dumps(entries)


def summary(steps: dict[str, Any]) -> str:
    """One line: `centre crop 227x227, subtract mean (104, 117, 123) per channel, multiply by 0.017, ...`."""
    parts = []
    if "resize" in steps:
        parts.append("resize {}x{}".format(*steps["resize"]))
    if "crop" in steps:
        parts.append("{} crop {}x{}".format(steps["crop"]["where"], *steps["crop"]["size"]))
    if "mirror" in steps:
        parts.append("random mirror")
    mean = steps.get("mean")
    if mean and "file" in mean:
        parts.append(f"subtract the mean image {mean['file']}")
    elif mean:
        parts.append(f"subtract mean ({', '.join(f'{v:g}' for v in mean['values'])}) per {mean['per']}")
    if "scale" in steps:
        parts.append(f"multiply by {steps['scale']:g}")
    if "channels" in steps:
        parts.append(f"channels {steps['channels']}")
    return ", ".join(parts) or "no steps"


def _resize(lp: Any) -> tuple[int, int] | None:
    """Sizes the layer resizes images to before transforming them, where its parameters say."""
    for block in ("image_data_param", "dense_image_data_param"):
        if block in _fields(lp) and lp.HasField(block):
            params = getattr(lp, block)
            if params.new_height and params.new_width:
                return params.new_height, params.new_width
    resize = getattr(lp.transform_param, "resize_param", None)   # SSD's AnnotatedData
    if resize is not None and resize.height and resize.width:
        return resize.height, resize.width
    return None


def _shortest(value: float) -> float:
    """A float32 field as the shortest decimal that reads back to it (0.017, not 0.017000000923871994)."""
    return float(str(np.float32(value)))


def _fields(message: Any) -> set[str]:
    return {f.name for f in message.DESCRIPTOR.fields}
