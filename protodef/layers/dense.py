"""Fully connected family: InnerProduct, and BVLC's recurrent LSTM and RNN."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ShapeError
from .common import (
    canonical_axis,
    count,
    positive,
    reject_unhonoured,
)
from .registry import OpenCVDifference, Shape, layer

_IP_FIELDS = ("num_output", "bias_term", "weight_filler", "bias_filler", "axis", "transpose")


@dataclass(frozen=True)
class InnerProduct:
    """Caffe inner_product_layer.cpp: flattens axes from `axis` on; weight (num_output, K), or (K, num_output)
    when `transpose`."""

    num_output: int
    in_features: int
    axis: int
    bias_term: bool
    transpose: bool
    weight_filler: Any = None
    bias_filler: Any = None

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "InnerProduct":
        p = lp.inner_product_param
        x = inputs[0]
        axis = canonical_axis(p.axis, len(x))
        positive(p.num_output, what="inner_product_param.num_output")
        return cls(p.num_output, count(x, axis), axis, p.bias_term, p.transpose, p.weight_filler, p.bias_filler)

    def infer(self, x: Shape) -> Shape:
        return (*x[:self.axis], self.num_output)

    def weight_shapes(self, x: Shape) -> list[Shape]:
        weight = (self.in_features, self.num_output) if self.transpose else (self.num_output, self.in_features)
        return [weight, (self.num_output,)] if self.bias_term else [weight]

    def weight_fillers(self) -> list[Any]:
        return [self.weight_filler, self.bias_filler]

    def macs(self, inputs: list[Shape], outputs: list[Shape]) -> int:
        return count(outputs[0]) * self.in_features


layer("InnerProduct", family="dense", label=("num_output",), in_place_ok=False, honoured=_IP_FIELDS, parameter="inner_product_param",
      fresh_output=True, opencv_differs=OpenCVDifference("ignores transpose", applies=lambda p: p.transpose))(InnerProduct)


_RECURRENT_FIELDS = ("num_output", "weight_filler", "bias_filler", "expose_hidden",
                     "debug_info")   # logging only


@dataclass(frozen=True)
class Recurrent:
    """Caffe recurrent_layer.cpp: inputs x (T, N, ...), cont (T, N), then an optional static input (N, ...) and,
    with expose_hidden, the initial states (1, N, H) in `STATES` order; outputs (T, N, H) and, with
    expose_hidden, the final states. Each step's previous hidden state is multiplied by cont_t first, so a 0
    starts a new sequence. Without expose_hidden the initial states are 0, as on Caffe's first forward pass
    (later passes start from the previous pass's last state, which a converted model does not keep)."""

    GATES = 1
    STATES = ("h",)

    hidden: int
    in_features: int
    static_features: int          # 0: no static input
    expose_hidden: bool
    weight_filler: Any = None
    bias_filler: Any = None

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Recurrent":
        p = lp.recurrent_param
        reject_unhonoured(p, _RECURRENT_FIELDS, what="recurrent_param")
        positive(p.num_output, what="recurrent_param.num_output")
        x, cont, *rest = inputs
        if len(x) < 3 or cont != tuple(x[:2]):
            raise ShapeError(f"{lp.type} takes x (T, N, ...) and cont (T, N)", expected=tuple(x[:2]), found=cont)
        states = len(cls.STATES) if p.expose_hidden else 0
        if len(rest) not in (states, states + 1):
            raise ShapeError(f"{lp.type} takes x, cont, an optional static input"
                             + (f" and the initial {', '.join(cls.STATES)}" if states else ""),
                             expected=f"{2 + states} or {3 + states} inputs", found=len(inputs))
        static = rest[:len(rest) - states]
        if static and (len(static[0]) < 2 or static[0][0] != x[1]):
            raise ShapeError(f"{lp.type}'s static input must be (N, ...)", expected=f"({x[1]}, ...)", found=static[0])
        for state in rest[len(static):]:
            if state != (1, x[1], p.num_output):
                raise ShapeError(f"{lp.type}'s initial states must be (1, N, num_output)",
                                 expected=(1, x[1], p.num_output), found=state)
        if len(lp.top) != 1 + states:
            raise ShapeError(f"{lp.type} has {1 + states} outputs here", expected=1 + states, found=len(lp.top))
        return cls(p.num_output, count(x, 2), count(static[0], 1) if static else 0, p.expose_hidden,
                   p.weight_filler, p.bias_filler)

    def infer(self, x: Shape, *rest: Shape) -> Shape | list[Shape]:
        sequence = (x[0], x[1], self.hidden)
        if not self.expose_hidden:
            return sequence
        return [sequence] + [(1, x[1], self.hidden)] * len(self.STATES)

    def weight_shapes(self, *inputs: Shape) -> list[Shape]:
        width = self.GATES * self.hidden
        static = [(width, self.static_features)] if self.static_features else []
        return [(width, self.in_features), (width,), *static, (width, self.hidden), *self.output_weight_shapes()]

    def output_weight_shapes(self) -> list[Shape]:
        return []

    def macs(self, inputs: list[Shape], outputs: list[Shape]) -> int:
        """Input and recurrent products at every step, the static input's once, the RNN's output layer."""
        x = inputs[0]
        width = self.GATES * self.hidden
        steps = x[0] * x[1] * width * (self.in_features + self.hidden)
        outputs = sum(count(shape) for shape in self.output_weight_shapes()[:1]) * x[0] * x[1]
        return steps + x[1] * width * self.static_features + outputs

    def weight_fillers(self) -> list[Any]:
        static = [self.weight_filler] if self.static_features else []
        return [self.weight_filler, self.bias_filler, *static, self.weight_filler] + [
            self.weight_filler, self.bias_filler][:len(self.output_weight_shapes())]


@dataclass(frozen=True)
class LSTM(Recurrent):
    """Caffe lstm_layer.cpp, unrolled: gates = W_xc x_t + b_c (+ W_xc_static x_static) + W_hc (cont_t h_{t-1}),
    then LSTMUnit (gates i, f, o, g). Blobs W_xc (4H, I), b_c (4H), [W_xc_static (4H, S)], W_hc (4H, H)."""

    GATES = 4
    STATES = ("h", "c")


@dataclass(frozen=True)
class RNN(Recurrent):
    """Caffe rnn_layer.cpp, unrolled: h_t = tanh(W_xh x_t + b_h (+ W_xh_static x_static) + W_hh (cont_t
    h_{t-1})), output o_t = tanh(W_ho h_t + b_o). Blobs W_xh (H, I), b_h (H), [W_xh_static (H, S)], W_hh (H, H),
    W_ho (H, H), b_o (H)."""

    def output_weight_shapes(self) -> list[Shape]:
        return [(self.hidden, self.hidden), (self.hidden,)]


layer("LSTM", family="dense", label=("hidden",), inputs=(2, 5), outputs=(1, 3), in_place_ok=False,
      honoured=_RECURRENT_FIELDS)(LSTM)
layer("RNN", family="dense", label=("hidden",), inputs=(2, 4), outputs=(1, 2), in_place_ok=False,
      honoured=_RECURRENT_FIELDS)(RNN)


_EMBED_FIELDS = ("num_output", "input_dim", "bias_term", "weight_filler", "bias_filler")


@dataclass(frozen=True)
class Embed:
    """Caffe embed_layer.cpp: each input value is an index (truncated to int) into the rows of the weight
    (input_dim, num_output); output shape = input shape + (num_output,), plus the bias when bias_term."""

    num_output: int
    input_dim: int
    bias_term: bool
    weight_filler: Any = None
    bias_filler: Any = None

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Embed":
        p = lp.embed_param
        positive(p.num_output, what="embed_param.num_output")
        positive(p.input_dim, what="embed_param.input_dim")
        return cls(p.num_output, p.input_dim, p.bias_term, p.weight_filler, p.bias_filler)

    def infer(self, x: Shape) -> Shape:
        return (*x, self.num_output)

    def weight_shapes(self, x: Shape) -> list[Shape]:
        weight = (self.input_dim, self.num_output)
        return [weight, (self.num_output,)] if self.bias_term else [weight]

    def weight_fillers(self) -> list[Any]:
        return [self.weight_filler, self.bias_filler]


layer("Embed", family="dense", label=("num_output", "input_dim"), in_place_ok=False,
      honoured=_EMBED_FIELDS, parameter="embed_param")(Embed)
