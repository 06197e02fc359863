"""Constant folding: a node whose inputs are all known is computed now (onnx's reference implementation), so
the exporter sees weights and shapes as data, never as subgraphs (Shape -> Gather -> Concat -> Reshape)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator

from protodef.errors import UnsupportedError

# Ops whose result is not a function of their inputs.
_RANDOM = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                     "Bernoulli"})


def fold_constants(nodes: list[onnx.NodeProto], constants: dict[str, np.ndarray],
                   shapes: dict[str, tuple[int, ...] | None], opset: int, source: str
                   ) -> tuple[list[onnx.NodeProto], bool]:
    """Compute every node that depends on constants only (and Shape/Size of a static shape), adding its
    outputs to `constants`; returns the nodes left and whether any folded."""
    kept, folded = [], False
    for node in nodes:
        values = folded_values(node, constants, shapes, opset, source)
        if values is None:
            kept.append(node)
            continue
        constants.update(values)
        folded = True
    return kept, folded


def folded_values(node: onnx.NodeProto, constants: dict[str, np.ndarray],
                  shapes: dict[str, tuple[int, ...] | None], opset: int, source: str) -> dict[str, np.ndarray] | None:
    if node.domain not in ("", "ai.onnx") or node.op_type in _RANDOM:
        return None
    if node.op_type in ("Shape", "Size") and node.input[0] not in constants:
        shape = shapes.get(node.input[0])
        return None if shape is None else {node.output[0]: shape_value(node, shape)}
    if not all(name in constants for name in node.input if name):
        return None
    feeds = {name: constants[name] for name in node.input if name}
    try:
        results = ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)
    except Exception as exc:   # the reference implementation raises whatever numpy raises
        raise UnsupportedError(f"node '{node.name}' ({node.op_type}) computes on constants only, but computing it "
                               f"fails: {str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__}",
                               where=source) from None
    return {name: np.asarray(value) for name, value in zip(node.output, results) if name}


def shape_value(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    """Shape (with opset 15's start/end) or Size of a value whose shape is static."""
    if node.op_type == "Size":
        return np.asarray(int(np.prod(shape)), dtype=np.int64)
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    start, end = attributes.get("start", 0), attributes.get("end", len(shape))
    return np.asarray(shape[slice(start, end)], dtype=np.int64)

