"""Fully connected family: InnerProduct; LSTM and RNN."""
from __future__ import annotations

import numpy as np

from protodef.ir import Layer
from protodef.layers.dense import LSTM, Embed, InnerProduct, Recurrent

from .emitter import Emitter
from .proto import (
    GraphProto,
    NodeProto,
    TensorProto,
    from_array,
    make_graph,
    make_tensor_value_info,
)
from .registry import OnnxContext, onnx_converter


@onnx_converter("InnerProduct")
def inner_product(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe flattens axes [axis, end) into K features and keeps the axes before it: Flatten(axis) gives the
    (M, K) matrix, Gemm multiplies by the (num_output, K) weight (or (K, num_output) when `transpose`), and a
    Reshape restores the leading axes when there is more than one."""
    p: InnerProduct = layer.params
    x, y = ctx.input_shape(layer), ctx.output_shape(layer)
    ctx.require_batch_axis_kept(layer, p.axis, "InnerProduct's flattening")
    nodes = []
    source = ctx.value(layer.inputs[0])
    if len(x) != 2 or p.axis != 1:
        flat = ctx.tensor(layer, "flat")
        nodes.append(ctx.node("Flatten", [source], [flat], layer, "flatten", axis=p.axis))
        source = flat
    output = ctx.value(layer.outputs[0])
    product = output if p.axis == 1 else ctx.tensor(layer, "product")
    inputs = [source, ctx.initializer(layer, "weight")]
    if p.bias_term:
        inputs.append(ctx.initializer(layer, "bias"))
    nodes.append(ctx.node("Gemm", inputs, [product], layer, transB=0 if p.transpose else 1))
    if product != output:
        reshape, _ = ctx.reshape(layer, "unflatten", product, y, output)
        nodes += reshape
    return nodes


@onnx_converter("LSTM")
@onnx_converter("RNN")
def recurrent(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe's unrolled recurrence as one Scan over time: the input projections of every step (and the static
    input's) are computed before it, the step itself (hidden state times cont, then the LSTM unit or the RNN's
    two tanh layers) is the Scan's body, with the states as its loop-carried values."""
    p: Recurrent = layer.params
    op = Emitter(layer, ctx)
    x, cont, *rest = (ctx.value(v) for v in layer.inputs)
    states = len(p.STATES) if p.expose_hidden else 0
    static, initial = rest[:len(rest) - states], rest[len(rest) - states:]
    blob = iter(layer.weights)
    steps = op("Reshape", [x, op.ints("steps_shape", [0, 0, -1])], "steps")
    projected = op("Add", [op("MatMul", [steps, ctx.initializer(layer, "weight_x", next(blob).T)], "x_weighted"),
                           ctx.initializer(layer, "bias_x", next(blob))], "x_projected")
    if static:
        flat = op("Reshape", [static[0], op.ints("static_shape", [0, -1])], "static_flat")
        weighted = op("MatMul", [flat, ctx.initializer(layer, "weight_static", next(blob).T)], "static_weighted")
        projected = op("Add", [projected, weighted], "with_static")
    weights = [ctx.initializer(layer, f"weight_{k}", w.T if w.ndim == 2 else w) for k, w in enumerate(blob)]
    if initial:
        starts = [op("Reshape", [state, op.ints(f"start_{k}_shape", [-1, p.hidden])], f"start_{k}")
                  for k, state in enumerate(initial)]
    else:
        zeros_shape = op("Concat", [op("Slice", [op("Shape", [cont], "cont_shape"), op.ints("n_from", [1]),
                                                 op.ints("n_to", [2])], "streams"), op.ints("width", [p.hidden])],
                         "zeros_shape", axis=0)
        zeros = op("ConstantOfShape", [zeros_shape], "zeros", value=from_array(np.zeros(1, np.float32)))
        starts = [zeros] * len(p.STATES)
    body = _recurrent_step(layer, ctx, p, weights)
    outputs = [ctx.tensor(layer, f"final_{name}") for name in p.STATES] + [ctx.value(layer.outputs[0])]
    op.nodes.append(ctx.node("Scan", [*starts, projected, cont], outputs, layer, body=body,
                             num_scan_inputs=2))
    for k, value in enumerate(layer.outputs[1:]):    # the final states, (1, N, H), in STATES order
        op("Unsqueeze", [outputs[k], op.ints(f"final_{k}_axis", [0])], f"final_{k}", output=ctx.value(value))
    return op.nodes


def _recurrent_step(layer: Layer, ctx: OnnxContext, p: Recurrent, weights: list[str]) -> GraphProto:
    """The Scan body: (states..., projected x_t (N, G*H), cont_t (N,)) -> (new states..., output_t)."""
    op = Emitter(layer, ctx)
    previous = [ctx.tensor(layer, f"step_{name}_in") for name in p.STATES]
    x_t, cont_t = ctx.tensor(layer, "step_x"), ctx.tensor(layer, "step_cont")
    column = op("Unsqueeze", [cont_t, op.ints("cont_column", [1])], "cont_column")
    kept = op("Mul", [previous[0], column], "h_conted")
    summed = op("Add", [x_t, op("MatMul", [kept, weights[0]], "h_weighted")], "step_input")
    if isinstance(p, LSTM):
        quarters = [ctx.tensor(layer, what) for what in ("step_i", "step_f", "step_o", "step_g")]
        op.nodes += ctx.split(layer, summed, quarters, 1, [p.hidden] * 4)
        i, f, o = (op("Sigmoid", [q], what) for q, what in zip(quarters, ("gate_i", "gate_f", "gate_o")))
        forget = op("Mul", [column, f], "forget")
        c = op("Add", [op("Mul", [forget, previous[1]], "c_kept"),
                       op("Mul", [i, op("Tanh", [quarters[3]], "gate_g")], "c_written")], "step_c")
        h = op("Mul", [o, op("Tanh", [c], "tanh_c")], "step_h")
        new_states, output = [h, c], op("Identity", [h], "step_output")
    else:
        h = op("Tanh", [summed], "step_h")
        output = op("Tanh", [op("Add", [op("MatMul", [h, weights[1]], "o_weighted"), weights[2]], "o_input")],
                    "step_output")
        new_states = [h]
    float_type = TensorProto.FLOAT
    width = p.GATES * p.hidden
    graph = make_graph(
        op.nodes, f"{layer.name}/step",
        [*(make_tensor_value_info(v, float_type, [None, p.hidden]) for v in previous),
         make_tensor_value_info(x_t, float_type, [None, width]),
         make_tensor_value_info(cont_t, float_type, [None])],
        [*(make_tensor_value_info(v, float_type, [None, p.hidden]) for v in new_states),
         make_tensor_value_info(output, float_type, [None, p.hidden])])
    return graph


@onnx_converter("Embed")
def embed(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Rows of the (input_dim, num_output) weight picked by the input values cast to integers (Caffe's
    static_cast<int> truncates, as Cast does), plus the bias."""
    p: Embed = layer.params
    indices, picked = ctx.tensor(layer, "indices"), ctx.tensor(layer, "rows")
    output = ctx.value(layer.outputs[0])
    nodes = [ctx.node("Cast", [ctx.value(layer.inputs[0])], [indices], layer, "indices", to=TensorProto.INT64),
             ctx.node("Gather", [ctx.initializer(layer, "weight"), indices], [picked if p.bias_term else output],
                      layer, axis=0)]
    if p.bias_term:
        nodes.append(ctx.node("Add", [picked, ctx.initializer(layer, "bias")], [output], layer, "bias"))
    return nodes
