"""Detection layers of the SSD fork (weiliu89/caffe: Permute, Normalize, PriorBox, DetectionOutput) and of the
YOLO ports (eric612/MobileNet-YOLO: Reorg, YoloDetectionOutput, Yolov3DetectionOutput).

The detection outputs have a data-dependent number of rows. Caffe's Reshape gives them the placeholder shape
(1, 1, 1, 7) until Forward knows the count; the IR keeps that placeholder and the spec's `dynamic_axes` say which
axis is dynamic (`dynamic_axes`: output index -> {axis: name}), so backends can declare it symbolically.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SchemaError, ShapeError
from .common import count, enum_name, reject_unhonoured
from .registry import OpenCVDifference, Shape, layer

SSD = "SSD fork (weiliu89)"
YOLO = "MobileNet-YOLO fork (eric612)"
FLT_MAX = float(np.finfo(np.float32).max)
DETECTIONS = {0: {2: "detections"}}   # how many rows: known only when the net runs
PLACEHOLDER = (1, 1, 1, 7)     # Caffe's Reshape: one fake row until Forward knows how many there are


def legacy_axis(shape: Shape, index: int) -> int:
    """Caffe's Blob::LegacyShape: num/channels/height/width of a blob with up to 4 axes, 1 past its last."""
    if len(shape) > 4:
        raise ShapeError("this layer reads its input as num, channels, height, width", expected="at most 4 axes",
                         found=shape)
    return shape[index] if index < len(shape) else 1


# ---- Permute ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Permute:
    """SSD permute_layer.cpp: a transpose; `order` lists the new axes first, the rest follow in their order."""

    order: tuple[int, ...]

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Permute":
        p = lp.permute_param
        rank = len(inputs[0])
        order: list[int] = []
        for axis in p.order:
            if axis >= rank:
                raise ShapeError("permute_param.order names an axis the input does not have",
                                 expected=f"< {rank}", found=axis)
            if axis in order:
                raise SchemaError("permute_param.order repeats an axis", found=tuple(p.order))
            order.append(int(axis))
        order += [axis for axis in range(rank) if axis not in order]
        return cls(tuple(order))

    def infer(self, x: Shape) -> Shape:
        return tuple(x[axis] for axis in self.order)


# ---- Normalize ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalize:
    """SSD normalize_layer.cpp: y = x / sqrt(sum(x^2) + eps) * scale. The sum runs over channels at each
    position, or over all of a sample (across_spatial); scale is one blob of C values, or one value
    (channel_shared, a 0-axis blob)."""

    across_spatial: bool
    channel_shared: bool
    eps: float
    channels: int
    scale_filler: Any = None

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Normalize":
        p = lp.norm_param
        x = inputs[0]
        if len(x) < 2:
            raise ShapeError("Normalize needs a channel axis", expected="at least 2 axes", found=x)
        legacy_axis(x, 1)
        # Caffe: without scale_filler the scale starts at 1.
        filler = p.scale_filler if p.HasField("scale_filler") else type(p.scale_filler)(type="constant", value=1.0)
        return cls(p.across_spatial, p.channel_shared, p.eps, x[1], filler)

    def infer(self, x: Shape) -> Shape:
        return x

    def weight_shapes(self, x: Shape) -> list[Shape]:
        return [()] if self.channel_shared else [(self.channels,)]

    def weight_fillers(self) -> list[Any]:
        return [self.scale_filler]


# ---- PriorBox -----------------------------------------------------------------------------------------

_PRIOR_BOX_FIELDS = ("min_size", "max_size", "aspect_ratio", "flip", "clip", "variance", "img_size", "img_h",
                     "img_w", "step", "step_h", "step_w", "offset")


@dataclass(frozen=True)
class PriorBox:
    """SSD prior_box_layer.cpp: the default boxes of a feature map, as a (1, 2, H*W*num_priors*4) blob:
    channel 0 the boxes (xmin, ymin, xmax, ymax, relative to the image), channel 1 their variances.

    Inputs: the feature map (its height and width) and the image (its size, unless img_size/img_h/img_w
    give it). The values depend only on shapes, so backends emit them as a constant (`priors()`)."""

    layer_h: int
    layer_w: int
    img_h: int
    img_w: int
    step_h: float
    step_w: float
    offset: float
    min_sizes: tuple[float, ...]
    max_sizes: tuple[float, ...]
    aspect_ratios: tuple[float, ...]    # Caffe's expanded list: 1 first, then each new ratio (and 1/ratio if flip)
    clip: bool
    variance: tuple[float, ...]         # 1 or 4 values

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "PriorBox":
        p = lp.prior_box_param
        feature, image = inputs
        min_sizes = tuple(float(s) for s in p.min_size)
        if not min_sizes or any(s <= 0 for s in min_sizes):
            raise SchemaError("PriorBox needs min_size, all positive", found=min_sizes or "none")
        max_sizes = tuple(float(s) for s in p.max_size)
        if max_sizes and len(max_sizes) != len(min_sizes):
            raise SchemaError("prior_box_param needs as many max_size as min_size", expected=len(min_sizes),
                              found=len(max_sizes))
        if any(big <= small for small, big in zip(min_sizes, max_sizes)):
            raise SchemaError("each max_size must be greater than its min_size", found=(min_sizes, max_sizes))
        img_h, img_w = _image_size(p, image)
        step_h, step_w = _steps(p, img_h, img_w, legacy_axis(feature, 2), legacy_axis(feature, 3))
        return cls(layer_h=legacy_axis(feature, 2), layer_w=legacy_axis(feature, 3), img_h=img_h, img_w=img_w,
                   step_h=step_h, step_w=step_w, offset=p.offset, min_sizes=min_sizes, max_sizes=max_sizes,
                   aspect_ratios=_aspect_ratios(p.aspect_ratio, p.flip), clip=p.clip, variance=_variance(p))

    @property
    def num_priors(self) -> int:
        return len(self.aspect_ratios) * len(self.min_sizes) + len(self.max_sizes)

    def infer(self, feature: Shape, image: Shape) -> Shape:
        return (1, 2, self.layer_h * self.layer_w * self.num_priors * 4)

    def box_sizes(self) -> np.ndarray:
        """(num_priors, 2) widths and heights in pixels, in Caffe's order for each min_size: the min box,
        the sqrt(min * max) box, then one box per aspect ratio other than 1."""
        sizes = []
        for index, min_size in enumerate(self.min_sizes):
            side = int(min_size)    # Caffe: `int min_size_ = min_sizes_[s]` truncates the size
            sizes.append((side, side))
            if self.max_sizes:
                root = math.sqrt(side * int(self.max_sizes[index]))
                sizes.append((root, root))
            for ratio in self.aspect_ratios:
                if abs(ratio - 1.0) < 1e-6:
                    continue
                sizes.append((side * math.sqrt(ratio), side / math.sqrt(ratio)))
        return np.asarray(sizes, np.float64).astype(np.float32)

    def priors(self) -> np.ndarray:
        """The layer's output, as Caffe's Forward_cpu computes it (float centres, double corners)."""
        offset, step_w, step_h = np.float32(self.offset), np.float32(self.step_w), np.float32(self.step_h)
        center_x = (np.arange(self.layer_w, dtype=np.float32) + offset) * step_w
        center_y = (np.arange(self.layer_h, dtype=np.float32) + offset) * step_h
        sizes = self.box_sizes().astype(np.float64)
        cx = center_x.astype(np.float64)[None, :, None]
        cy = center_y.astype(np.float64)[:, None, None]
        half_w, half_h = sizes[None, None, :, 0] / 2.0, sizes[None, None, :, 1] / 2.0
        shape = (self.layer_h, self.layer_w, len(sizes))
        boxes = np.stack([np.broadcast_to((cx - half_w) / self.img_w, shape),
                          np.broadcast_to((cy - half_h) / self.img_h, shape),
                          np.broadcast_to((cx + half_w) / self.img_w, shape),
                          np.broadcast_to((cy + half_h) / self.img_h, shape)], axis=-1).astype(np.float32)
        boxes = boxes.reshape(-1)
        if self.clip:
            boxes = np.clip(boxes, np.float32(0), np.float32(1))
        variance = np.resize(np.asarray(self.variance, np.float32), boxes.shape)
        return np.stack([boxes, variance])[None]


def _aspect_ratios(ratios: Any, flip: bool) -> tuple[float, ...]:
    """Caffe: 1 first; a ratio within 1e-6 of one already listed is skipped; flip adds 1/ratio after it."""
    out = [np.float32(1.0)]
    for ratio in ratios:
        ratio = np.float32(ratio)
        if not ratio > 0:   # Caffe would divide by it (flip) or make boxes of no width
            raise SchemaError("prior_box_param.aspect_ratio must be positive", expected="> 0", found=float(ratio))
        if any(abs(float(ratio) - float(known)) < 1e-6 for known in out):
            continue
        out.append(ratio)
        if flip:
            out.append(np.float32(1.0 / float(ratio)))
    return tuple(float(r) for r in out)


def _variance(p: Any) -> tuple[float, ...]:
    if len(p.variance) > 1:
        if len(p.variance) != 4:
            raise SchemaError("prior_box_param needs 1 or 4 variance values", found=len(p.variance))
    values = tuple(float(v) for v in p.variance) or (float(np.float32(0.1)),)   # Caffe's default
    if any(v <= 0 for v in values):
        raise SchemaError("prior_box_param.variance must be positive", found=values)
    return values


def _image_size(p: Any, image: Shape) -> tuple[int, int]:
    if p.HasField("img_h") or p.HasField("img_w"):
        if p.HasField("img_size"):
            raise SchemaError("give prior_box_param.img_size or img_h/img_w, not both")
        if p.img_h <= 0 or p.img_w <= 0:
            raise SchemaError("prior_box_param.img_h and img_w must both be positive", found=(p.img_h, p.img_w))
        return p.img_h, p.img_w
    if p.HasField("img_size"):
        if p.img_size <= 0:
            raise SchemaError("prior_box_param.img_size must be positive", found=p.img_size)
        return p.img_size, p.img_size
    return legacy_axis(image, 2), legacy_axis(image, 3)


def _steps(p: Any, img_h: int, img_w: int, layer_h: int, layer_w: int) -> tuple[float, float]:
    if p.HasField("step_h") or p.HasField("step_w"):
        if p.HasField("step"):
            raise SchemaError("give prior_box_param.step or step_h/step_w, not both")
        if p.step_h <= 0 or p.step_w <= 0:
            raise SchemaError("prior_box_param.step_h and step_w must both be positive", found=(p.step_h, p.step_w))
        return float(p.step_h), float(p.step_w)
    if p.HasField("step"):
        if p.step <= 0:
            raise SchemaError("prior_box_param.step must be positive", found=p.step)
        return float(p.step), float(p.step)
    # Caffe: the image size over the feature map size, in float.
    return (float(np.float32(img_h) / np.float32(layer_h)), float(np.float32(img_w) / np.float32(layer_w)))


# ---- DetectionOutput ----------------------------------------------------------------------------------

# Fields that only write files or draw windows in Caffe; the output blob does not depend on them.
_DETECTION_SIDE_EFFECTS = ("save_output_param", "visualize", "visualize_threshold", "save_file")


@dataclass(frozen=True)
class DetectionOutput:
    """SSD detection_output_layer.cpp (Forward_cpu): decode each prior's offsets (code_type, variances from
    the prior blob unless variance_encoded_in_target), then per image and per class other than the
    background: keep scores > confidence_threshold, the top_k best, greedy NMS (IoU > nms_threshold
    suppresses; eta < 1 lowers the threshold as boxes are kept); then the keep_top_k best over all classes.

    Inputs: loc (N, num_priors * num_loc_classes * 4), conf (N, num_priors * num_classes), priors
    (1, 2, num_priors * 4). Output (1, 1, rows, 7): [image, label, score, xmin, ymin, xmax, ymax] by image,
    then label, then score; with no detection at all, one row [i, -1, -1, -1, -1, -1, -1] per image.

    Where Caffe leaves it open we choose: keep_top_k's std::sort breaks score ties arbitrarily, we keep the
    lower label, then the lower prior. share_location with background_label_id -1 makes Forward_cpu abort
    (DecodeBBoxesAll skips the shared boxes as if they were the background's); we decode them, so that every
    class is scored against them."""

    num_classes: int
    share_location: bool
    background_label_id: int
    code_type: str                      # CORNER, CENTER_SIZE or CORNER_SIZE
    variance_encoded_in_target: bool
    keep_top_k: int                     # -1: all
    confidence_threshold: float         # -FLT_MAX when not given
    nms_threshold: float
    top_k: int                          # -1: all
    eta: float
    num_priors: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "DetectionOutput":
        p = lp.detection_output_param
        reject_unhonoured(p, ("num_classes", "share_location", "background_label_id", "nms_param", "code_type",
                              "variance_encoded_in_target", "keep_top_k", "confidence_threshold",
                              *_DETECTION_SIDE_EFFECTS), what="detection_output_param")
        nms = p.nms_param
        reject_unhonoured(nms, ("nms_threshold", "top_k", "eta"), what="detection_output_param.nms_param")
        if not p.HasField("num_classes"):
            raise SchemaError("detection_output_param.num_classes is required")
        if nms.nms_threshold < 0:
            raise SchemaError("nms_param.nms_threshold must not be negative", found=nms.nms_threshold)
        if not 0 < nms.eta <= 1:
            raise SchemaError("nms_param.eta must be in (0, 1]", found=nms.eta)
        params = cls(num_classes=p.num_classes, share_location=p.share_location,
                     background_label_id=p.background_label_id, code_type=enum_name(p, "code_type"),
                     variance_encoded_in_target=p.variance_encoded_in_target, keep_top_k=p.keep_top_k,
                     confidence_threshold=p.confidence_threshold if p.HasField("confidence_threshold") else -FLT_MAX,
                     nms_threshold=nms.nms_threshold, top_k=nms.top_k if nms.HasField("top_k") else -1,
                     eta=nms.eta, num_priors=_num_priors(inputs[2]))
        params.check_inputs(*inputs)
        return params

    @property
    def num_loc_classes(self) -> int:
        return 1 if self.share_location else self.num_classes

    def check_inputs(self, loc: Shape, conf: Shape, prior: Shape) -> None:
        if len(loc) < 2 or len(conf) < 2 or loc[0] != conf[0]:
            raise ShapeError("loc and conf need the same number of images", found=(loc, conf))
        for what, shape, per_prior in (("loc", loc, self.num_loc_classes * 4), ("conf", conf, self.num_classes)):
            expected = self.num_priors * per_prior
            if shape[1] != expected or count(shape, 1) != expected:
                raise ShapeError(f"the {what} input does not hold {per_prior} values per prior "
                                 f"({self.num_priors} priors)", expected=f"(N, {expected})", found=shape)

    def infer(self, loc: Shape, conf: Shape, prior: Shape) -> Shape:
        return PLACEHOLDER


def _num_priors(prior: Shape) -> int:
    if len(prior) != 3 or prior[1] != 2 or prior[2] % 4:
        raise ShapeError("the priors input must be PriorBox's (1, 2, num_priors * 4) blob", found=prior)
    return prior[2] // 4


# ---- Reorg --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reorg:
    """MobileNet-YOLO reorg_layer.cpp (darknet's reorg, as that fork calls it): reverse=false reads the input
    buffer as (N, C/s^2, H*s, W*s), moves each s x s block into channels (space to depth) and gives the
    buffer the shape (N, C*s^2, H/s, W/s); reverse=true is depth to space (channels split as (s, s, C/s^2))."""

    stride: int
    reverse: bool

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Reorg":
        p = lp.reorg_param
        if not p.HasField("stride") or p.stride <= 0:
            raise SchemaError("reorg_param.stride is required and must be positive",
                              found=p.stride if p.HasField("stride") else "none")
        params = cls(p.stride, p.reverse)
        params.infer(inputs[0])
        return params

    def infer(self, x: Shape) -> Shape:
        if len(x) != 4:
            raise ShapeError("Reorg takes a 4-D input", found=x)
        n, c, h, w = x
        s = self.stride
        if c % (s * s):
            raise ShapeError("Reorg needs channels divisible by stride^2", expected=f"a multiple of {s * s}",
                             found=c)
        if self.reverse:
            return (n, c // (s * s), h * s, w * s)
        if h % s or w % s:
            raise ShapeError("Reorg needs height and width divisible by the stride", expected=f"multiples of {s}",
                             found=(h, w))
        return (n, c * s * s, h // s, w // s)


# ---- YOLO detection outputs ---------------------------------------------------------------------------


def _square_maps(inputs: tuple[Shape, ...], per_box: int, boxes: int) -> None:
    """The YOLO output layers walk `side * side` cells with side = width, and read each box's channels at a
    fixed step; other layouts read memory the blob does not hold."""
    for index, shape in enumerate(inputs):
        if len(shape) != 4 or shape[2] != shape[3]:
            raise ShapeError(f"input {index} must be a square (N, C, side, side) map", found=shape)
        if shape[1] < boxes * per_box:
            raise ShapeError(f"input {index} has too few channels for {boxes} boxes of {per_box} values",
                             expected=f">= {boxes * per_box}", found=shape[1])
        if shape[0] != inputs[0][0]:
            raise ShapeError("the inputs must have the same batch size", found=[s[0] for s in inputs])


@dataclass(frozen=True)
class YoloDetectionOutput:
    """MobileNet-YOLO yolo_detection_output_layer.cpp (YOLOv2 region output): for each cell and box,
    x = (col + sigmoid(tx)) / side, y = (row + sigmoid(ty)) / side, w = exp(tw) * bias_w / side (h alike),
    objectness sigmoid(t4), class = argmax softmax(t5..); kept if objectness * class prob >= threshold;
    class-agnostic greedy NMS (IoU >= nms_threshold suppresses) over all inputs and images, by score.
    Rows [0, class + 1, score, xmin, ymin, xmax, ymax]; with none, [i, -1, ...] per image.
    `coords`, `side` and `label_map_file` do not change the output."""

    num_classes: int
    num_box: int
    confidence_threshold: float
    nms_threshold: float
    biases: tuple[float, ...]

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "YoloDetectionOutput":
        p = lp.yolo_detection_output_param
        if not p.HasField("num_classes"):
            raise SchemaError("yolo_detection_output_param.num_classes is required")
        if p.num_box <= 0 or len(p.biases) < 2 * p.num_box:
            raise SchemaError("yolo_detection_output_param needs a (w, h) bias pair per box",
                              expected=f">= {2 * p.num_box} biases", found=len(p.biases))
        _square_maps(inputs, 5 + p.num_classes, p.num_box)
        for index, shape in enumerate(inputs):
            if shape[1] % p.num_box:
                raise ShapeError(f"input {index}'s channels must divide into num_box groups",
                                 expected=f"a multiple of {p.num_box}", found=shape[1])
        return cls(p.num_classes, p.num_box, p.confidence_threshold, p.nms_threshold, tuple(p.biases))

    def infer(self, *inputs: Shape) -> Shape:
        return PLACEHOLDER


@dataclass(frozen=True)
class Yolov3DetectionOutput:
    """MobileNet-YOLO yolov3_detection_output_layer.cpp: input t (side_t x side_t cells) uses anchors
    mask[t * len(mask) / mask_group_num + n]; x = (col + sigmoid(tx)) / side, w = exp(tw) * bias_w /
    (side * anchors_scale[t]) (y, h alike); each class c with sigmoid(class c) * sigmoid(objectness) >
    threshold is a candidate; class-agnostic greedy NMS (IoU >= nms_threshold suppresses) over all of them,
    by score. Rows [0, c + 1, score, xmin, ymin, xmax, ymax]; with none, [i, -1, ...] per image."""

    num_classes: int
    num_box: int
    confidence_threshold: float
    nms_threshold: float
    biases: tuple[float, ...]
    anchors_scale: tuple[int, ...]
    mask: tuple[int, ...]
    mask_group_num: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Yolov3DetectionOutput":
        p = lp.yolov3_detection_output_param
        if not p.HasField("num_classes"):
            raise SchemaError("yolov3_detection_output_param.num_classes is required")
        if len(inputs) != p.mask_group_num:
            raise ShapeError("Yolov3DetectionOutput takes one input per mask group", expected=p.mask_group_num,
                             found=len(inputs))
        params = cls(p.num_classes, p.num_box, p.confidence_threshold, p.nms_threshold, tuple(p.biases),
                     tuple(p.anchors_scale), tuple(p.mask), p.mask_group_num)
        if len(params.anchors_scale) < len(inputs):
            raise SchemaError("yolov3_detection_output_param needs an anchors_scale per input",
                              expected=len(inputs), found=len(params.anchors_scale))
        anchors = [params.anchor(t, n) for t in range(len(inputs)) for n in range(p.num_box)]
        if any(2 * a + 1 >= len(params.biases) for a in anchors):
            raise SchemaError("a mask entry names an anchor past the biases", found=max(anchors))
        _square_maps(inputs, 5 + p.num_classes, p.num_box)
        return params

    def anchor(self, head: int, box: int) -> int:
        """The anchor (bias pair) of box `box` of input `head`, as Caffe indexes the mask."""
        index = box + head * (len(self.mask) // self.mask_group_num)
        if index >= len(self.mask):
            raise SchemaError("yolov3_detection_output_param.mask is too short for num_box boxes per input",
                              expected=f"> {index} entries", found=len(self.mask))
        return self.mask[index]

    def infer(self, *inputs: Shape) -> Shape:
        return PLACEHOLDER


layer("Permute", family="detection", source=SSD, label=("order",), in_place_ok=False, honoured=("order",), parameter="permute_param")(Permute)
layer("Normalize", family="detection", source=SSD, label=("across_spatial", "channel_shared"),
      honoured=("across_spatial", "scale_filler", "channel_shared", "eps"), parameter="norm_param")(Normalize)
layer("PriorBox", family="detection", source=SSD, label=("min_sizes", "max_sizes", "aspect_ratios"), inputs=(2, 2),
      in_place_ok=False, honoured=_PRIOR_BOX_FIELDS, parameter="prior_box_param",
      opencv_differs=OpenCVDifference("keeps fractional min_size/max_size where Caffe truncates them to int",
                                      applies=lambda p: any(s != int(s) for s in (*p.min_sizes, *p.max_sizes))))(PriorBox)
layer("DetectionOutput", family="detection", source=SSD, label=("num_classes", "code_type", "keep_top_k"),
      inputs=(3, 3), in_place_ok=False, dynamic_axes=DETECTIONS,
      opencv_differs=OpenCVDifference("pads its rows to keep_top_k"),
      honoured=("num_classes", "share_location", "background_label_id", "nms_param", "code_type",
                "variance_encoded_in_target", "keep_top_k", "confidence_threshold"))(DetectionOutput)
layer("Reorg", family="detection", source=YOLO, label=("stride",), in_place_ok=False,
      honoured=("stride", "reverse"), parameter="reorg_param",
      opencv_differs=OpenCVDifference("takes stride 2 only and no reverse",
                                      applies=lambda p: p.reverse or p.stride != 2))(Reorg)
layer("YoloDetectionOutput", family="detection", source=YOLO, label=("num_classes", "num_box"), inputs=(1, 2),
      in_place_ok=False, dynamic_axes=DETECTIONS, honoured=("side", "num_classes", "num_box", "coords", "confidence_threshold", "nms_threshold",
                              "biases", "label_map_file"), parameter="yolo_detection_output_param")(YoloDetectionOutput)
layer("Yolov3DetectionOutput", family="detection", source=YOLO, label=("num_classes", "num_box"),
      inputs=(1, None), in_place_ok=False, dynamic_axes=DETECTIONS, honoured=("num_classes", "num_box", "confidence_threshold", "nms_threshold", "biases",
                              "anchors_scale", "mask_group_num", "mask"), parameter="yolov3_detection_output_param")(Yolov3DetectionOutput)
