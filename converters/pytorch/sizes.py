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
from protodef.sizes import size_sources, smallest_sizes
from protodef.symbolic import Condition, Dim, Extreme, FloorDiv, Select, Symbol, evaluate, names_in

_COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
                "!=": operator.ne}


class TorchSizes:
    """Makes the fx nodes computing sizes, each expression once."""

    def __init__(self, net: Net, graph: fx.Graph, values: dict[Value, fx.Node]):
        self.graph, self.values = graph, values
        self.sources = size_sources(net)
        self.made: dict[str, Any] = {}

    def resolve(self, argument: Any) -> Any:
        """`argument` with every Dim in it (inside lists, tuples and dicts too) replaced by its node."""
        if isinstance(argument, Dim):
            return self.node(argument)
        if isinstance(argument, (list, tuple)):
            return type(argument)(self.resolve(a) for a in argument)
        if isinstance(argument, dict):
            return {k: self.resolve(v) for k, v in argument.items()}
        return argument

    def node(self, value: Any) -> Any:
        if not isinstance(value, Dim):
            return int(value)
        if value.key not in self.made:
            self.made[value.key] = self._sum(value)
        return self.made[value.key]

    def _sum(self, value: Dim) -> Any:
        """Terms added, the negative ones subtracted, as the expression reads (H - 2 * (H // 2) + 1)."""
        added = [self._term(m, c) for m, c in value.terms if c > 0] + ([value.const] if value.const > 0 else [])
        taken = [self._term(m, -c) for m, c in value.terms if c < 0] + ([-value.const] if value.const < 0 else [])
        total = added[0] if added else 0
        for part in added[1:]:
            total = self._call(operator.add, total, part)
        for part in taken:
            total = self._call(operator.sub, total, part)
        return total

    def _term(self, monomial: tuple, coefficient: int) -> Any:
        term = None
        for atom in monomial:
            factor = self._atom(atom)
            term = factor if term is None else self._call(operator.mul, term, factor)
        if coefficient == 1:
            return term
        key = f"term:{coefficient}*" + "*".join(atom.key for atom in monomial)
        if key not in self.made:
            self.made[key] = self._call(operator.mul, coefficient, term)
        return self.made[key]

    def _atom(self, atom: Any) -> Any:
        key = f"atom:{atom.key}"
        if key not in self.made:
            self.made[key] = self._compute(atom)
        return self.made[key]

    def _compute(self, atom: Any) -> Any:
        if isinstance(atom, Symbol):
            if atom.name not in self.sources:
                raise ShapeError(f"the size {atom.name} is no axis of a net input, so it cannot be read at run time")
            value, axis = self.sources[atom.name]
            return self.graph.create_node("call_method", "size", (self.values[value], axis), name=atom.name)
        if isinstance(atom, FloorDiv):
            return self._call(operator.floordiv, self.node(atom.numerator), self.node(atom.denominator))
        if isinstance(atom, Extreme):
            pick = torch.sym_min if atom.kind == "min" else torch.sym_max
            return self._call(pick, *(self.node(a) for a in atom.args))
        if isinstance(atom, Select):
            return self._call(torch.sym_ite, self._condition(atom.condition), self.node(atom.then),
                              self.node(atom.otherwise))
        raise TypeError(f"no run-time form for {atom!r}")

    def _condition(self, condition: Condition) -> Any:
        return self._call(_COMPARISONS[condition.op], self.node(condition.left), self.node(condition.right))

    def _call(self, function: Any, *args: Any) -> fx.Node:
        return self.graph.call_function(function, args)


def has_symbolic_sizes(*values: Any) -> bool:
    return any(bool(names_in(v)) for v in values)


def export_inputs(net: Net) -> tuple[tuple[torch.Tensor, ...], tuple[dict | None, ...]]:
    """Example inputs for torch.export and one torch.export.Dim per named size. Each example size is the
    smallest the net accepts plus a margin, so no example size is 0 or 1 (torch.export would specialise it)."""
    smallest = smallest_sizes(net)
    dims = {name: torch.export.Dim(name, min=max(2, low)) for name, low in smallest.items()}
    example_values = {name: max(2, low) + 7 for name, low in smallest.items()}
    examples, dynamic = [], []
    for net_input in net.inputs:
        shape = net.shape(net_input.value)
        examples.append(torch.zeros(tuple(evaluate(d, example_values) for d in shape)))
        axes = {axis: dims[str(d)] for axis, d in enumerate(shape) if isinstance(d, Dim) and str(d) in dims}
        dynamic.append(axes or None)
    return tuple(examples), tuple(dynamic)
