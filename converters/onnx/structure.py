"""The rules of an ONNX graph's structure, checked on every model the backend builds, without the onnx package:
every value has a name and one definition (static single assignment), and is defined before a node reads it.

onnx's own checker (checker.py) checks more, the operators' schemas and shape inference, and costs an import of
onnx: it runs where the API hands out an onnx.ModelProto, under `convert --verify`, and on every layer type in
the tests. What is checked here is what a converter cannot see on its own, the names a whole net brings
together (a Caffe blob may be named "", two tops may collide with a name a converter made).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from protodef.errors import UnsupportedError

from .proto import AttributeProto, GraphProto, Initializer, ModelProto


def require_well_formed(model: ModelProto, initializers: Sequence[Initializer] = (), *,
                        where: str | None = None) -> None:
    """Raise UnsupportedError naming the first value that breaks the rules."""
    problem = _graph_problem(model.graph, [i.name for i in initializers], outer=frozenset())
    if problem:
        raise UnsupportedError(f"the converted model is not valid ONNX: {problem}", where=where)


def _graph_problem(graph: GraphProto, initializers: Iterable[str], outer: frozenset[str]) -> str | None:
    defined: set[str] = set()
    declared = [("a graph input", info.name) for info in graph.input] \
        + [("an initializer", name) for name in [*initializers, *(t.name for t in graph.initializer)]]
    for what, name in declared:
        problem = _define(defined, name, what)
        if problem:
            return problem
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name and name not in defined and name not in outer:
                return f"node '{node.name}' ({node.op_type}) reads '{name}' (input {index}) before any node writes it"
        for attribute in node.attribute:
            for subgraph in _subgraphs(attribute):
                problem = _graph_problem(subgraph, (), outer | defined)
                if problem:
                    return f"in the body of node '{node.name}' ({node.op_type}): {problem}"
        for name in node.output:
            problem = name and _define(defined, name, f"an output of node '{node.name}' ({node.op_type})")
            if problem:
                return problem
    for info in graph.output:
        if not info.name:
            return _unnamed("a graph output")
        if info.name not in defined and info.name not in outer:
            return f"graph output '{info.name}' is computed by no node"
    return None


def _define(defined: set[str], name: str, what: str) -> str | None:
    if not name:
        return _unnamed(what)
    if name in defined:
        return f"'{name}' is defined twice (the second time as {what}): ONNX values are assigned once"
    defined.add(name)
    return None


def _unnamed(what: str) -> str:
    return f"{what} has an empty name (a Caffe blob named \"\"?): every ONNX value needs one"


def _subgraphs(attribute: AttributeProto) -> list[GraphProto]:
    if attribute.type == AttributeProto.GRAPH:
        return [attribute.g]
    if attribute.type == AttributeProto.GRAPHS:
        return list(attribute.graphs)
    return []
