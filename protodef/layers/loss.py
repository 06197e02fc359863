"""Training-only layers: losses and Accuracy. A deploy view drops them (with a note), never silently."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ShapeError
from .registry import Shape, layer


@dataclass(frozen=True)
class TrainingOnly:
    """A layer that only a training net needs; its outputs are scalars (Accuracy's second: per class)."""

    outputs: int

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "TrainingOnly":
        return cls(len(lp.top))

    def infer(self, *inputs: Shape) -> Shape | list[Shape]:
        if self.outputs <= 1:
            return ()
        if inputs[0] is None:   # build lets training-only layers read shapeless inputs
            raise ShapeError("the second output's size comes from the first input's shape, which is not known; "
                             "give it with --input-shape")
        shapes = [()] + [(inputs[0][1] if len(inputs[0]) > 1 else 1,)] * (self.outputs - 1)
        return shapes if self.outputs > 1 else shapes[0]


_LOSSES = ("SoftmaxWithLoss", "SigmoidCrossEntropyLoss", "EuclideanLoss", "ContrastiveLoss", "HingeLoss",
           "InfogainLoss", "MultinomialLogisticLoss", "SmoothL1Loss", "MultiBoxLoss")
# Layers that only measure a net (Accuracy; SSD's detection_evaluate_layer.cpp): a deploy view drops them.
_EVALUATIONS = (("Accuracy", "BVLC"), ("DetectionEvaluate", "SSD fork (weiliu89)"))

for _type in _LOSSES:
    # Caffe's LossLayer::AutoTopBlobs: a loss written without a top gets one.
    layer(_type, family="loss", inputs=(1, None), outputs=(0, 2), training_only=True, in_place_ok=False,
          extras={"automatic_tops": 1})(TrainingOnly)
for _type, _source in _EVALUATIONS:
    layer(_type, family="loss", inputs=(1, None), outputs=(0, 2), training_only=True, in_place_ok=False,
          source=_source)(TrainingOnly)


@dataclass(frozen=True)
class Silence:
    """Reads its inputs and produces nothing; used to keep unused tops from being net outputs."""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Silence":
        return cls()

    def infer(self, *inputs: Shape) -> list[Shape]:
        return []


layer("Silence", family="misc", inputs=(1, None), outputs=(0, 0))(Silence)
