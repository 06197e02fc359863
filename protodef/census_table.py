"""The census section of docs/layers.md, rendered from protodef.census and the layer registry."""
from __future__ import annotations

from .census import CENSUS, OPENCV_IMPORTER_OPERATORS, CensusEntry
from .layers.registry import LAYER_SPECS


def census_status(entry: CensusEntry) -> tuple[str, str]:
    """(status, reason): what the registry says where it knows the type, else the census's refusal."""
    spec = LAYER_SPECS.get(entry.type)
    if spec is None or spec.plugin:
        return entry.refusal or "missing", entry.reason
    if spec.produces_input:
        return "implemented (net input)", entry.reason
    if spec.training_only:
        return "implemented (dropped: training only)", entry.reason
    return "implemented", entry.reason


def render_census() -> str:
    lines = [
        "## Census of Caffe layer types",
        "",
        "Every type BVLC Caffe registers, every type OpenCV 4.x's dnn module builds from a Caffe model, and the",
        "layers of the best-known forks, read from their sources (`protodef/census.py` says which). *Refused*",
        "types have no deploy-time meaning: they need the training label, score against ground truth, read",
        "training data, or write files. *Not yet* types have one, and the reason says what is missing.",
        f"{len(CENSUS)} types.",
        "",
        "| type | origin | status | why |",
        "| --- | --- | --- | --- |",
    ]
    for entry in sorted(CENSUS, key=lambda e: e.type.lower()):
        status, reason = census_status(entry)
        lines.append(f"| {entry.type} | {entry.origin} | {status} | {reason or '—'} |")
    lines += ["", "OpenCV 4.x also registers, for its ONNX and TensorFlow importers only, "
              + ", ".join(OPENCV_IMPORTER_OPERATORS) + ": no Caffe layer of those names exists in BVLC Caffe or "
              "the forks above, so they are outside the census."]
    return "\n".join(lines) + "\n"
