"""Sizes computed at run time: a net built with named sizes (`data=1,3,H,W`) takes H from its input's shape
(Shape, Gather) and computes every size that depends on it with int64 arithmetic, each expression once.

A converter asks `ctx.ints(layer, what, values)` for a shape, pads or ends as usual; where some value is an
expression (protodef.symbolic.Dim), the tensor is computed here instead of stored.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from protodef.errors import ShapeError
from protodef.sizes import SizeProgram, size_sources

from .proto import Initializer, NodeProto, make_node

_OPS = {"add": "Add", "sub": "Sub", "mul": "Mul", "min": "Min", "max": "Max", "where": "Where", ">": "Greater",
        ">=": "GreaterOrEqual", "<": "Less", "<=": "LessOrEqual", "==": "Equal"}


@dataclass(frozen=True)
class _Owner:
    """The name nodes shared by every layer are made under."""

    name: str = "sizes"


class RuntimeSizes(SizeProgram):
    """Emits the nodes that compute sizes (1-element int64 tensors); `take()` hands over those made since the
    last call (the driver puts them before the layer that asked)."""

    def __init__(self, ctx: Any):
        super().__init__()
        self.ctx = ctx
        self.sources = size_sources(ctx.net)
        self.pending: list[NodeProto] = []

    def take(self) -> list[NodeProto]:
        nodes, self.pending = self.pending, []
        return nodes

    def vector(self, layer: Any, what: str, values: Sequence[Any]) -> str:
        """A 1-D int64 tensor holding `values` (numbers and expressions)."""
        output = self.ctx.tensor(layer, what)
        self.pending.append(self.ctx.node("Concat", [self.of(v) for v in values], [output], layer, what, axis=0))
        return output

    def constant(self, number: int) -> str:
        def make() -> str:
            name = self.ctx.fresh(f"sizes/{number}")
            self.ctx.initializers.append(Initializer(name, np.asarray([number], dtype=np.int64)))
            return name
        return self._once(f"const:{number}", make)

    def symbol(self, name: str) -> str:
        if name not in self.sources:
            raise ShapeError(f"the size {name} is no axis of a net input, so it cannot be read at run time",
                             expected="a name given for an input's axis (--input-shape data=1,3,H,W)")
        value, axis = self.sources[name]
        shape = self._once(f"shape:{value}", lambda: self._node("Shape", self.ctx.value(value)))
        return self._node("Gather", shape, self.constant(axis), axis=0)

    def operation(self, name: str, *operands: Any) -> str:
        if name == "floordiv":
            numerator, denominator, never_negative = operands
            if not never_negative:   # ONNX's integer Div truncates: take off Python's remainder first
                numerator = self._node("Sub", numerator, self._node("Mod", numerator, denominator, fmod=0))
            return self._node("Div", numerator, denominator)
        if name == "!=":
            return self._node("Not", self._node("Equal", *operands))
        return self._node(_OPS[name], *operands)

    def _node(self, op: str, *inputs: str, **attributes: Any) -> str:
        output = self.ctx.fresh(f"sizes/{op.lower()}")
        self.pending.append(make_node(op, list(inputs), [output], name=self.ctx.node_name(_Owner(), op.lower()),
                                             **attributes))
        return output
