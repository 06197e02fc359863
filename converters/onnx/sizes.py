"""Sizes computed at run time: a net built with named sizes (`data=1,3,H,W`) takes H from its input's shape
(Shape, Gather) and computes every size that depends on it with int64 arithmetic, each expression once.

A converter asks `ctx.ints(layer, what, values)` for a shape, pads or ends as usual; where some value is an
expression (protodef.symbolic.Dim), the tensor is computed here instead of stored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from protodef.errors import ShapeError
from protodef.sizes import size_sources
from protodef.symbolic import Condition, Dim, Extreme, FloorDiv, Select, Symbol, bounds

_COMPARISONS = {">": "Greater", ">=": "GreaterOrEqual", "<": "Less", "<=": "LessOrEqual", "==": "Equal"}


@dataclass(frozen=True)
class _Owner:
    """The name nodes shared by every layer are made under."""

    name: str = "sizes"


class RuntimeSizes:
    """Emits the nodes that compute sizes; `take()` hands over those made since the last call (the driver puts
    them before the layer that asked)."""

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.sources = size_sources(ctx.net)
        self.made: dict[str, str] = {}        # expression key (or "const:c") -> tensor name
        self.pending: list[onnx.NodeProto] = []

    def take(self) -> list[onnx.NodeProto]:
        nodes, self.pending = self.pending, []
        return nodes

    def vector(self, layer: Any, what: str, values: Sequence[Any]) -> str:
        """A 1-D int64 tensor holding `values` (numbers and expressions)."""
        parts = [self.scalar(v) for v in values]
        output = self.ctx.tensor(layer, what)
        self.pending.append(self.ctx.node("Concat", parts, [output], layer, what, axis=0))
        return output

    def scalar(self, value: Any) -> str:
        """A 1-element int64 tensor holding `value`."""
        if not isinstance(value, Dim):
            return self._constant(int(value))
        if value.key not in self.made:
            self.made[value.key] = self._sum(value)
        return self.made[value.key]

    # ---- expressions ----------------------------------------------------------------------------------------
    def _sum(self, value: Dim) -> str:
        """Terms added, the negative ones subtracted."""
        added = [self._term(m, c) for m, c in value.terms if c > 0]
        added += [self._constant(value.const)] if value.const > 0 else []
        taken = [self._term(m, -c) for m, c in value.terms if c < 0]
        taken += [self._constant(-value.const)] if value.const < 0 else []
        total = added[0] if added else self._constant(0)
        for part in added[1:]:
            total = self._op("Add", total, part)
        for part in taken:
            total = self._op("Sub", total, part)
        return total

    def _term(self, monomial: tuple, coefficient: int) -> str:
        term = None
        for atom in monomial:
            factor = self._atom(atom)
            term = factor if term is None else self._op("Mul", term, factor)
        if coefficient == 1:
            return term
        key = f"term:{coefficient}*" + "*".join(atom.key for atom in monomial)
        if key not in self.made:
            self.made[key] = self._op("Mul", self._constant(coefficient), term)
        return self.made[key]

    def _atom(self, atom: Any) -> str:
        key = f"atom:{atom.key}"
        if key not in self.made:
            self.made[key] = self._compute(atom)
        return self.made[key]

    def _compute(self, atom: Any) -> str:
        if isinstance(atom, Symbol):
            return self._symbol(atom.name)
        if isinstance(atom, FloorDiv):
            numerator, denominator = self.scalar(atom.numerator), self.scalar(atom.denominator)
            if bounds(atom.numerator)[0] < 0 or not isinstance(atom.denominator, int):
                # ONNX's integer Div truncates; floor needs the remainder taken with Python's sign rule.
                remainder = self._op("Mod", numerator, denominator, fmod=0)
                numerator = self._op("Sub", numerator, remainder)
            return self._op("Div", numerator, denominator)
        if isinstance(atom, Extreme):
            return self._op("Min" if atom.kind == "min" else "Max", *(self.scalar(a) for a in atom.args))
        if isinstance(atom, Select):
            return self._op("Where", self._condition(atom.condition), self.scalar(atom.then),
                            self.scalar(atom.otherwise))
        raise TypeError(f"no run-time form for {atom!r}")

    def _condition(self, condition: Condition) -> str:
        left, right = self.scalar(condition.left), self.scalar(condition.right)
        if condition.op == "!=":
            return self._op("Not", self._op("Equal", left, right))
        return self._op(_COMPARISONS[condition.op], left, right)

    def _symbol(self, name: str) -> str:
        if name not in self.sources:
            raise ShapeError(f"the size {name} is no axis of a net input, so it cannot be read at run time",
                             expected="a name given for an input's axis (--input-shape data=1,3,H,W)")
        value, axis = self.sources[name]
        shape_key = f"shape:{value}"
        if shape_key not in self.made:
            self.made[shape_key] = self._op("Shape", self.ctx.value(value))
        return self._op("Gather", self.made[shape_key], self._constant(axis), axis=0)

    # ---- nodes ----------------------------------------------------------------------------------------------
    def _constant(self, number: int) -> str:
        key = f"const:{number}"
        if key not in self.made:
            name = self.ctx.fresh(f"sizes/{number}")
            self.ctx.initializers.append(numpy_helper.from_array(np.asarray([number], dtype=np.int64), name))
            self.made[key] = name
        return self.made[key]

    def _op(self, op: str, *inputs: str, **attributes: Any) -> str:
        output = self.ctx.fresh(f"sizes/{op.lower()}")
        self.pending.append(helper.make_node(op, list(inputs), [output], name=self.ctx.node_name(_Owner(), op.lower()),
                                             **attributes))
        return output
