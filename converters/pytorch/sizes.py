"""Sizes computed at run time in the fx graph: a net built with named sizes (`data=1,3,H,W`) reads H as
`data.size(2)` and computes each size that depends on it with integer arithmetic (torch.sym_* where a
branch would be a guard), so the module runs at any size and torch.export sees one symbolic size per name.

A converter puts an expression (protodef.symbolic.Dim) among a Step's arguments; the driver swaps in the
node computing it.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx

from protodef.errors import ShapeError
from protodef.ir import Net, Value
from protodef.sizes import SizeProgram, size_sources, smallest_sizes
from protodef.symbolic import Dim, evaluate

_OPERATIONS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv,
               "min": torch.sym_min, "max": torch.sym_max, "where": torch.sym_ite, ">": operator.gt,
               ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}


class TorchSizes(SizeProgram):
    """Makes the fx nodes computing sizes, each expression once."""

    def __init__(self, net: Net, graph: fx.Graph, values: dict[Value, fx.Node]):
        super().__init__()
        self.graph, self.values = graph, values
        self.sources = size_sources(net)

    def resolve(self, argument: Any) -> Any:
        """`argument` with every Dim in it (inside lists, tuples and dicts too) replaced by its node."""
        if isinstance(argument, Dim):
            return self.of(argument)
        if isinstance(argument, (list, tuple)):
            return type(argument)(self.resolve(a) for a in argument)
        if isinstance(argument, dict):
            return {k: self.resolve(v) for k, v in argument.items()}
        return argument

    def constant(self, number: int) -> int:
        return number

    def symbol(self, name: str) -> fx.Node:
        if name not in self.sources:
            raise ShapeError(f"the size {name} is no axis of a net input, so it cannot be read at run time")
        value, axis = self.sources[name]
        return self.graph.create_node("call_method", "size", (self.values[value], axis), name=name)

    def operation(self, name: str, *operands: Any) -> fx.Node:
        if name == "floordiv":
            operands = operands[:2]     # Python's // floors whatever the sign
        return self.graph.call_function(_OPERATIONS[name], operands)


def export_inputs(net: Net, input_names: list[str]) -> tuple[tuple[torch.Tensor, ...], tuple[dict | None, ...]]:
    """Example inputs (of the module's `input_names`) for torch.export and one torch.export.Dim per named size.
    Each example size is the smallest the net accepts plus a margin, so no example size is 0 or 1 (torch.export
    would specialise it)."""
    smallest = smallest_sizes(net)
    dims = {name: torch.export.Dim(name, min=max(2, low)) for name, low in smallest.items()}
    example_values = {name: max(2, low) + 7 for name, low in smallest.items()}
    examples, dynamic = [], []
    by_blob = {i.value.blob: i for i in net.inputs}
    for net_input in (by_blob[name] for name in input_names):
        shape = net.shape(net_input.value)
        examples.append(torch.zeros(tuple(evaluate(d, example_values) for d in shape)))
        axes = {axis: dims[str(d)] for axis, d in enumerate(shape) if isinstance(d, Dim) and str(d) in dims}
        dynamic.append(axes or None)
    return tuple(examples), tuple(dynamic)
