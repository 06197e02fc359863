"""A fork's field inside a parameter message we know (ENet's `label_divide_factor` in
DenseImageDataParameter). Where the message only feeds data, losses or evaluation, the field cannot change
the deploy graph: it is left out with a warning naming the layer and the remedy (--proto with the fork's
caffe.proto). Anywhere else it stays protobuf's error, with its place."""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from .errors import Location

_NO_FIELD = re.compile(r'^(\d+):(\d+) : .*Message type "(?:caffe\.)?(\w+)" has no field named "(\w+)"')
_SIDE_MESSAGES = {"TransformationParameter", "AccuracyParameter", "DetectionEvaluateParameter", "ResizeParameter",
                  "NoiseParameter", "DistortionParameter", "ExpansionParameter", "SaltPepperParameter",
                  "BatchSampler", "Sampler", "SampleConstraint", "EmitConstraint", "PythonParameter"}
MAX_LEFT_OUT = 32            # each one costs a parse of the whole text


@dataclass(frozen=True)
class NestedField:
    message: str
    field: str
    line: int
    column: int


def unknown_nested_field(error_text: str) -> NestedField | None:
    """The field a protobuf text-format error names as missing from a message other than LayerParameter."""
    match = _NO_FIELD.match(error_text)
    if not match or match.group(3) in ("LayerParameter", "NetParameter", "V1LayerParameter"):
        return None
    return NestedField(match.group(3), match.group(4), int(match.group(1)), int(match.group(2)))


def leaves_deploy_graph_alone(message: str) -> bool:
    """Data, loss and evaluation parameters (and the data transformer's) never shape the deploy graph."""
    return message.endswith(("DataParameter", "LossParameter")) or message in _SIDE_MESSAGES


def offset_of(text: str, line: int, column: int) -> int:
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    return starts[line - 1] + column - 1


def layer_at(locations: list[Location], layers, line: int, column: int) -> tuple[str, str]:
    """The name and type of the top-level layer block holding (line, column)."""
    index = bisect.bisect_right([(l.line, l.column) for l in locations], (line, column)) - 1
    if 0 <= index < len(layers):
        layer = layers[index]
        return layer.name, str(layer.type)
    return "?", "?"


def warning(path: str, field: NestedField, layer: tuple[str, str]) -> str:
    return (f"{path}:{field.line}:{field.column}: layer '{layer[0]}' ({layer[1]}): left out {field.message}."
            f"{field.field}, a fork's field our schema lacks; it does not change the deploy graph (give the "
            "fork's caffe.proto with --proto to read it)")
