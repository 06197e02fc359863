"""Merge family: Eltwise and Concat."""
from __future__ import annotations

from protodef.errors import UnsupportedError
from protodef.ir import Layer
from protodef.layers.merge import Concat, Eltwise

from .proto import NodeProto
from .registry import OnnxContext, onnx_converter


@onnx_converter("Eltwise")
def eltwise(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe eltwise_layer.cpp: SUM (sum of coeff_i * x_i), PROD or MAX over any number of equal inputs."""
    p: Eltwise = layer.params
    inputs = [ctx.value(v) for v in layer.inputs]
    output = ctx.value(layer.outputs[0])
    if p.operation == "PROD":
        return product(layer, ctx, inputs, output)
    if p.operation == "MAX":
        return [ctx.node("Max", inputs, [output], layer)]
    if p.operation == "SUM":
        return weighted_sum(layer, ctx, inputs, output, p.coeffs)
    raise UnsupportedError(f"Eltwise operation {p.operation} has no ONNX lowering", layer=layer, where=layer.where)


def product(layer: Layer, ctx: OnnxContext, inputs: list[str], output: str) -> list[NodeProto]:
    """x0 * x1 * ... in Caffe's order (Mul is binary in ONNX)."""
    nodes, running = [], inputs[0]
    for index, operand in enumerate(inputs[1:], start=1):
        last = index == len(inputs) - 1
        target = output if last else ctx.tensor(layer, f"product{index}")
        nodes.append(ctx.node("Mul", [running, operand], [target], layer, None if last else f"product{index}"))
        running = target
    return nodes


def weighted_sum(layer: Layer, ctx: OnnxContext, inputs: list[str], output: str, coeffs: tuple[float, ...]
                 ) -> list[NodeProto]:
    nodes, terms = [], []
    for index, (source, coeff) in enumerate(zip(inputs, coeffs)):
        if coeff == 1:
            terms.append(source)
            continue
        term = ctx.tensor(layer, f"term{index}")
        nodes.append(ctx.node("Mul", [source, ctx.scalar(layer, f"coeff{index}", coeff)], [term], layer,
                              f"term{index}"))
        terms.append(term)
    return nodes + [ctx.node("Sum", terms, [output], layer)]


@onnx_converter("Concat")
def concat(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: Concat = layer.params
    ctx.require_batch_axis_kept(layer, p.axis, "Concat")
    return [ctx.node("Concat", [ctx.value(v) for v in layer.inputs], [ctx.value(layer.outputs[0])], layer,
                     axis=p.axis)]


@onnx_converter("SpatialProduct")
def spatial_product(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """(N, C, H, W) times (N, 1, H, W): broadcasting over channels."""
    return [ctx.node("Mul", [ctx.value(v) for v in layer.inputs], [ctx.value(layer.outputs[0])], layer)]


@onnx_converter("Axpy")
def axpy(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """a * x + y, a holding one factor per (n, c)."""
    a_shape, x = ctx.input_shape(layer, 0), ctx.input_shape(layer, 1)
    factor = ctx.value(layer.inputs[0])
    nodes = []
    broadcast = (*x[:2], *(1,) * (len(x) - 2))
    if a_shape != broadcast:
        nodes, factor = ctx.reshape(layer, "factor", factor, broadcast)
    scaled = ctx.tensor(layer, "scaled")
    return nodes + [ctx.node("Mul", [factor, ctx.value(layer.inputs[1])], [scaled], layer, "scale"),
                    ctx.node("Add", [scaled, ctx.value(layer.inputs[2])], [ctx.value(layer.outputs[0])], layer)]
