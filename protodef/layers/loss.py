"""Training-only layers: the losses and Accuracy, each with Caffe's settings and shape checks.

A deploy view drops them (with a note); a TRAIN-phase lowering computes them (converters/pytorch/loss.py).
A loss's first output is a scalar (shape ()), as Caffe's loss layers give. Their inputs' shapes are checked
against each other (`check_inputs`) only when they are computed: a deploy view of a train_val net may be
given a data shape that no longer fits its labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError, ShapeError
from .common import canonical_axis, count, enum_name, reject_unhonoured
from .registry import Shape, layer

_NORMALIZE_LEGACY = {True: "VALID", False: "BATCH_SIZE"}


@dataclass(frozen=True)
class TrainingOnly:
    """A layer only a training net needs, which protodef reads but does not compute (SSD's MultiBoxLoss)."""

    outputs: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "TrainingOnly":
        return cls(len(lp.top))

    def infer(self, *inputs: Shape) -> Shape | list[Shape]:
        x = _known_first(inputs, "the second output") if self.outputs > 1 else None
        return _loss_shapes(self.outputs, (x[1] if len(x) > 1 else 1,) if x is not None else None)


def _loss_shapes(outputs: int, second: Shape | None = None) -> Shape | list[Shape]:
    """A loss gives a scalar and at most one more output. With no top Caffe adds an anonymous one (LossLayer's
    AutoTopBlobs), which no later layer can read: the IR has no value for it."""
    if outputs == 0:
        return []
    return [(), second] if outputs == 2 else ()


def _known_first(inputs: tuple[Shape | None, ...], what: str) -> Shape:
    if inputs[0] is None:   # build lets training-only layers read shapeless inputs
        raise ShapeError(f"{what}'s size comes from the first input's shape, which is not known; give it with "
                         "--input-shape")
    return inputs[0]


def _loss_settings(lp: Any, *, default: str, legacy: bool) -> tuple[str, int | None, str]:
    """LossParameter: the normalization mode, the ignored label (None: none) and why the layer cannot be
    computed ("" when it can). `legacy`: the deprecated `normalize` bool is read (as SoftmaxWithLoss and
    SigmoidCrossEntropyLoss do) or refused (InfogainLoss). Refusals wait until the layer is computed: a deploy
    view drops the layer, whatever a fork set in it (SegNet's class_weighting)."""
    p = lp.loss_param
    refused = ""
    try:
        reject_unhonoured(p, ("ignore_label", "normalization", "normalize"), what="loss_param")
    except SchemaError as error:
        refused = error.format()
    if p.HasField("normalization"):
        mode = enum_name(p, "normalization")
    elif p.HasField("normalize"):
        if not legacy:
            refused = "loss_param.normalize is deprecated for this layer: use normalization"
        mode = _NORMALIZE_LEGACY[p.normalize]
    else:
        mode = default
    return mode, (p.ignore_label if p.HasField("ignore_label") else None), refused


def _refuse(refused: str) -> None:
    if refused:
        raise SchemaError(refused)


def _check_label_count(x: Shape, label: Shape, axis: int) -> None:
    expected = count(x, 0, axis) * count(x, axis + 1)
    if count(label) != expected:
        raise ShapeError("the number of labels must match the number of predictions (N * H * W for axis 1)",
                         expected=expected, found=f"{count(label)} {tuple(label)}")


def _check_same_count(a: Shape, b: Shape, what: str) -> None:
    if count(a) != count(b):
        raise ShapeError(f"{what} must have as many elements as the first input", expected=f"{count(a)} {a}",
                         found=f"{count(b)} {b}")


def _check_same_num(a: Shape, b: Shape) -> None:
    """LossLayer::Reshape: the data and the label have the same first dimension."""
    if a[:1] != b[:1]:
        raise ShapeError("the data and the label must have the same first dimension", expected=a[:1], found=b[:1])


@dataclass(frozen=True)
class SoftmaxWithLoss:
    """softmax_loss_layer.cpp: -log(max(softmax(x)[label], FLT_MIN)) summed over the labels not ignored,
    divided by the normalizer (at least 1); a second output is the softmax itself."""

    axis: int
    normalization: str           # FULL, VALID, BATCH_SIZE or NONE
    ignore_label: int | None
    outputs: int
    refused: str = ""            # why it cannot be computed (a setting we do not honour), or ""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "SoftmaxWithLoss":
        reject_unhonoured(lp.softmax_param, ("axis",), what="softmax_param")
        x = inputs[0]
        axis = canonical_axis(lp.softmax_param.axis, len(x)) if x is not None else lp.softmax_param.axis
        mode, ignore, refused = _loss_settings(lp, default="VALID", legacy=True)
        return cls(axis, mode, ignore, len(lp.top), refused)

    def check_inputs(self, x: Shape, label: Shape) -> None:
        _refuse(self.refused)
        _check_same_num(x, label)
        _check_label_count(x, label, self.axis)

    def infer(self, x: Shape | None, label: Shape | None) -> Shape | list[Shape]:
        return _loss_shapes(self.outputs, _known_first((x,), "the softmax output") if self.outputs == 2 else None)


@dataclass(frozen=True)
class InfogainLoss:
    """infogain_loss_layer.cpp: softmax over `axis`, then -sum_l H[label, l] * log(max(p_l, 1e-20)), normalised
    like SoftmaxWithLoss. H is the third input, or the binaryproto `source` (read when lowering)."""

    axis: int
    normalization: str
    ignore_label: int | None
    source: str
    outputs: int
    refused: str = ""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "InfogainLoss":
        p = lp.infogain_loss_param
        x = inputs[0]
        axis = canonical_axis(p.axis, len(x)) if x is not None else p.axis
        mode, ignore, refused = _loss_settings(lp, default="VALID", legacy=False)
        if len(inputs) < 3 and not p.source:
            refused = "InfogainLoss needs its matrix H: a third input or infogain_loss_param.source"
        return cls(axis, mode, ignore, p.source if len(inputs) < 3 else "", len(lp.top), refused)

    def check_inputs(self, x: Shape, label: Shape, matrix: Shape | None = None) -> None:
        _refuse(self.refused)
        _check_same_num(x, label)
        _check_label_count(x, label, self.axis)
        if matrix is not None and count(matrix) != x[self.axis] ** 2:
            raise ShapeError("the infogain matrix must be num_labels x num_labels", expected=x[self.axis] ** 2,
                             found=f"{count(matrix)} {tuple(matrix)}")

    def infer(self, x: Shape | None, *rest: Shape | None) -> Shape | list[Shape]:
        return _loss_shapes(self.outputs, _known_first((x,), "the softmax output") if self.outputs == 2 else None)


@dataclass(frozen=True)
class SigmoidCrossEntropyLoss:
    """sigmoid_cross_entropy_loss_layer.cpp: the cross-entropy of sigmoid(x) and the target, summed over the
    elements whose target is not ignored, divided by the normalizer (default BATCH_SIZE)."""

    normalization: str
    ignore_label: int | None
    outputs: int = 1
    refused: str = ""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "SigmoidCrossEntropyLoss":
        mode, ignore, refused = _loss_settings(lp, default="BATCH_SIZE", legacy=True)
        return cls(mode, ignore, len(lp.top), refused)

    def check_inputs(self, x: Shape, target: Shape) -> None:
        _refuse(self.refused)
        _check_same_num(x, target)
        _check_same_count(x, target, "the target")

    def infer(self, x: Shape | None, target: Shape | None) -> Shape | list[Shape]:
        return _loss_shapes(self.outputs)


@dataclass(frozen=True)
class EuclideanLoss:
    """euclidean_loss_layer.cpp: sum((a - b)^2) / N / 2."""

    outputs: int = 1

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "EuclideanLoss":
        return cls(len(lp.top))

    def check_inputs(self, a: Shape, b: Shape) -> None:
        _check_same_num(a, b)
        _check_same_count(a, b, "the second input")

    def infer(self, a: Shape | None, b: Shape | None) -> Shape | list[Shape]:
        return _loss_shapes(self.outputs)


@dataclass(frozen=True)
class HingeLoss:
    """hinge_loss_layer.cpp: t = max(0, 1 + x), with x negated at each sample's label; the sum of t (L1) or of
    t^2 (L2) over N."""

    norm: str                    # L1 or L2
    outputs: int = 1

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "HingeLoss":
        return cls(enum_name(lp.hinge_loss_param, "norm"), len(lp.top))

    def check_inputs(self, x: Shape, label: Shape) -> None:
        _check_same_num(x, label)
        if count(label) != x[0]:
            raise ShapeError("the label must hold one value per sample", expected=x[0], found=label)

    def infer(self, x: Shape | None, label: Shape | None) -> Shape | list[Shape]:
        return _loss_shapes(self.outputs)


@dataclass(frozen=True)
class ContrastiveLoss:
    """contrastive_loss_layer.cpp: per pair d^2 = |a - b|^2; similar pairs (label != 0) add d^2, others
    max(margin - d, 0)^2 (legacy_version: max(margin - d^2, 0)); the sum over 2N."""

    margin: float
    legacy_version: bool
    outputs: int = 1

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "ContrastiveLoss":
        p = lp.contrastive_loss_param
        return cls(p.margin, p.legacy_version, len(lp.top))

    def check_inputs(self, a: Shape, b: Shape, similar: Shape) -> None:
        """contrastive_loss_layer.cpp LayerSetUp: (N, C, 1, 1) features, (N, 1, 1, 1) pair labels."""
        for shape, what in ((a, "the first input"), (b, "the second input"), (similar, "the pair label")):
            if any(d != 1 for d in shape[2:]):
                raise ShapeError(f"{what} must be (N, C) or (N, C, 1, 1)", found=shape)
        if a[:2] != b[:2]:
            raise ShapeError("both inputs must have the same shape", expected=a, found=b)
        if count(similar) != a[0]:
            raise ShapeError("the pair label must hold one value per pair", expected=a[0], found=similar)

    def infer(self, a: Shape | None, b: Shape | None, similar: Shape | None) -> Shape | list[Shape]:
        return _loss_shapes(self.outputs)


@dataclass(frozen=True)
class MultinomialLogisticLoss:
    """multinomial_logistic_loss_layer.cpp: -log(max(p[label], 1e-20)) averaged over N (the input holds
    probabilities)."""

    outputs: int = 1

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "MultinomialLogisticLoss":
        return cls(len(lp.top))

    def check_inputs(self, x: Shape, label: Shape) -> None:
        _check_same_num(x, label)
        if count(label, 1) != 1:
            raise ShapeError("the label must hold one value per sample", expected="(N, 1, 1, 1)", found=label)

    def infer(self, x: Shape | None, label: Shape | None) -> Shape | list[Shape]:
        return _loss_shapes(self.outputs)


@dataclass(frozen=True)
class SmoothL1Loss:
    """py-faster-rcnn smooth_L1_loss_layer.cu: d = w_in * (a - b); f(d) = 0.5 * (sigma * d)^2 where
    |d| < 1 / sigma^2, else |d| - 0.5 / sigma^2; the sum of w_out * f(d) over N."""

    sigma: float
    weighted: bool               # inside and outside weights given (inputs 3 and 4)
    outputs: int = 1

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "SmoothL1Loss":
        if len(inputs) == 3:
            raise ShapeError("SmoothL1Loss takes both inside and outside weights, or neither",
                             expected="2 or 4 inputs", found=3)
        return cls(float(lp.smooth_l1_loss_param.sigma), len(inputs) == 4, len(lp.top))

    def infer(self, *inputs: Shape | None) -> Shape | list[Shape]:
        return _loss_shapes(self.outputs)

    def check_inputs(self, *inputs: Shape) -> None:
        for index, shape in enumerate(inputs[1:], start=1):
            _check_same_count(inputs[0], shape, f"input {index}")


@dataclass(frozen=True)
class Accuracy:
    """accuracy_layer.cpp: the share of (non-ignored) positions whose label's score is beaten or tied by
    fewer than top_k scores, itself included; a second output gives it per class."""

    top_k: int
    axis: int
    ignore_label: int | None
    outputs: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Accuracy":
        p = lp.accuracy_param
        x = inputs[0]
        axis = canonical_axis(p.axis, len(x)) if x is not None else p.axis
        return cls(p.top_k, axis, p.ignore_label if p.HasField("ignore_label") else None, len(lp.top))

    def check_inputs(self, x: Shape, label: Shape) -> None:
        _check_label_count(x, label, self.axis)
        if self.top_k > count(x) // count(label):
            raise ShapeError("top_k must be at most the number of classes", expected=f"<= {count(x) // count(label)}",
                             found=self.top_k)

    def infer(self, x: Shape | None, label: Shape | None) -> Shape | list[Shape]:
        if self.outputs < 2:
            return _loss_shapes(self.outputs)
        return [(), (_known_first((x,), "the second output")[self.axis],)]


def _loss(type_name: str, inputs: tuple[int, int | None], honoured: tuple[str, ...], outputs: int = 1,
          source: str = "BVLC"):
    """A subclass of Caffe's LossLayer: its first top's loss_weight defaults to 1 (LayerSpec.loss_layer)."""
    return layer(type_name, family="loss", inputs=inputs, outputs=(0, outputs), training_only=True,
                 in_place_ok=False, source=source, honoured=honoured, loss_layer=True)


_NORMALISED = ("normalization", "normalize", "ignore_label")
_loss("SoftmaxWithLoss", (2, 2), ("axis",) + _NORMALISED, outputs=2)(SoftmaxWithLoss)
_loss("InfogainLoss", (2, 3), ("axis", "source", "normalization", "ignore_label"), outputs=2)(InfogainLoss)
_loss("SigmoidCrossEntropyLoss", (2, 2), _NORMALISED)(SigmoidCrossEntropyLoss)
_loss("EuclideanLoss", (2, 2), ())(EuclideanLoss)
_loss("HingeLoss", (2, 2), ("norm",))(HingeLoss)
_loss("ContrastiveLoss", (3, 3), ("margin", "legacy_version"))(ContrastiveLoss)
_loss("MultinomialLogisticLoss", (2, 2), ())(MultinomialLogisticLoss)
_loss("SmoothL1Loss", (2, 4), ("sigma",), source="py-faster-rcnn fork")(SmoothL1Loss)
layer("Accuracy", family="loss", inputs=(2, 2), outputs=(0, 2), training_only=True, in_place_ok=False,
      honoured=("top_k", "axis", "ignore_label"))(Accuracy)
layer("MultiBoxLoss", family="loss", inputs=(1, None), outputs=(0, 2), training_only=True, in_place_ok=False,
      source="SSD fork (weiliu89)", loss_layer=True)(TrainingOnly)
# Scores detections against ground truth (SSD's detection_evaluate_layer.cpp): a deploy view drops it.
layer("DetectionEvaluate", family="loss", inputs=(1, None), outputs=(0, 2), training_only=True, in_place_ok=False,
      source="SSD fork (weiliu89)")(TrainingOnly)




