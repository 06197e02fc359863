"""A node builder for converters that emit long chains: each call appends one node named after the layer and
returns its output's name, so a formula reads as nested calls."""
from __future__ import annotations

from protodef.ir import Layer

from .proto import NodeProto, TensorProto
from .registry import OnnxContext


class Emitter:
    """Appends nodes named after one layer (`layer/what`); each call returns its output tensor's name."""

    def __init__(self, layer: Layer, ctx: OnnxContext):
        self.layer, self.ctx = layer, ctx
        self.nodes: list[NodeProto] = []

    def __call__(self, op: str, inputs: list[str], what: str, output: str | None = None, **attributes) -> str:
        output = output or self.ctx.tensor(self.layer, what)
        self.nodes.append(self.ctx.node(op, inputs, [output], self.layer, what, **attributes))
        return output

    def floats(self, what: str, value: float) -> str:
        """A float32 scalar constant."""
        return self.ctx.scalar(self.layer, what, value)

    def ints(self, what: str, values: list[int]) -> str:
        """A 1-D int64 constant."""
        return self.ctx.ints(self.layer, what, values)

    def round_half_away(self, value: str, what: str) -> str:
        """C's round(): half away from zero (ONNX Round goes to even). |v| - floor(|v|) is exact in float."""
        magnitude = self("Abs", [value], f"{what}_abs")
        whole = self("Floor", [magnitude], f"{what}_whole")
        up = self("Cast", [self("GreaterOrEqual", [self("Sub", [magnitude, whole], f"{what}_fraction"),
                                                   self.floats(f"{what}_half", 0.5)], f"{what}_up")],
                  f"{what}_step", to=TensorProto.FLOAT)
        return self("Mul", [self("Sign", [value], f"{what}_sign"), self("Add", [whole, up], f"{what}_rounded_abs")],
                    f"{what}_rounded")
