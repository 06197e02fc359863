"""The ONNX driver: a lowered net, one converter per layer in order, graph inputs/outputs/value_info, checker."""
from __future__ import annotations

import onnx
from onnx import helper

from protodef.errors import ProtodefError, UnsupportedError
from protodef.ir import Layer, Net, Value
from protodef.version import __version__

from .registry import OnnxContext, converter_for

MIN_OPSET = 13    # Softmax over one axis, Split/ReduceSum/Squeeze taking their axes as inputs
# The opset a model gets unless --opset says otherwise: fixed, so that one prototxt gives the same model on every
# machine, and one that widely deployed runtimes accept (onnxruntime from 1.14, TensorRT 10, OpenVINO 2023).
# 18 rather than 17: Caffe's Upsample with an overlapping mask needs ScatterElements' reduction="max".
DEFAULT_OPSET = 18

FLOAT = onnx.TensorProto.FLOAT


def chosen_opset(opset: int | None) -> int:
    if opset is None:
        return DEFAULT_OPSET
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise UnsupportedError("ONNX opset out of range", expected=f"{MIN_OPSET} to {newest}", found=opset)
    return opset


def unsupported_layers(net: Net) -> list[Layer]:
    return [layer for layer in net.layers() if converter_for(layer) is None]


def check_convertible(net: Net) -> None:
    """Every layer must have a converter; all that lack one are named in one error."""
    missing = unsupported_layers(net)
    if missing:
        listed = ", ".join(f"'{layer.name}' ({layer.type}{_at(layer)})" for layer in missing)
        types = ", ".join(sorted({layer.type for layer in missing}))
        error = UnsupportedError(f"{len(missing)} layer(s) have no ONNX lowering: {listed}",
                                 where=net.source, expected="layer types with an ONNX converter", found=types)
        error.unsupported = [(layer.name, layer.type, layer.where) for layer in missing]
        raise error


def _at(layer: Layer) -> str:
    return f" at {layer.where}" if layer.where is not None and layer.where.line is not None else ""


def lower_onnx(net: Net, *, opset: int | None = None, dynamic_batch: bool = False) -> onnx.ModelProto:
    """Lower a net as the pass pipeline left it to a ModelProto that onnx's full checker accepts (nothing is
    written)."""
    from .save import check_model
    model = build_model(net, opset=opset, dynamic_batch=dynamic_batch)
    check_model(model, where=net.source)   # any size: the checker sees the weights as typed inputs
    return model


def build_model(net: Net, *, opset: int | None, dynamic_batch: bool) -> onnx.ModelProto:
    """Each layer's converter in order; the ModelProto is filled in place (make_graph and make_model would
    each copy every weight once more)."""
    model, initializers = build_model_apart(net, opset=opset, dynamic_batch=dynamic_batch)
    model.graph.initializer.extend(initializers)
    return model


def build_model_apart(net: Net, *, opset: int | None, dynamic_batch: bool
                      ) -> tuple[onnx.ModelProto, list[onnx.TensorProto]]:
    """The model without its initializers, and the initializers: a writer can stream them into the file
    (putting them into the graph copies every weight once more)."""
    opset = chosen_opset(opset)
    net.require_lowered()
    net.require_input_shapes()
    net.require_outputs()
    check_convertible(net)
    ctx = OnnxContext(net, opset=opset, dynamic_batch=dynamic_batch)
    nodes = []
    for layer in net.layers():
        try:
            made = converter_for(layer)(layer, ctx)
            nodes += ctx.take_size_nodes() + made
        except ProtodefError as error:
            raise error.at(layer.where, layer) from None
    model = onnx.ModelProto()
    model.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    model.opset_import.add(domain="", version=opset)
    model.producer_name, model.producer_version = "protodef", __version__
    if net.name:
        model.doc_string = f"Caffe net '{net.name}' converted by protodef"
    # protodef.weights says whether the weights are trained (caffemodel) or made up (fillers, random: seed)
    helper.set_model_props(model, {"source": str(net.source or ""),
                                   **{f"protodef.{key}": value for key, value in net.metadata.items()}})
    graph = model.graph
    graph.name = net.name or "net"
    outputs = net.outputs()
    final = set(outputs)
    graph.node.extend(nodes)
    graph.input.extend(value_info(ctx, i.value) for i in net.inputs)
    graph.output.extend(value_info(ctx, v) for v in outputs)
    graph.value_info.extend(value_info(ctx, v) for layer in net.layers() for v in layer.outputs if v not in final)
    return model, ctx.initializers


def value_info(ctx: OnnxContext, value: Value) -> onnx.ValueInfoProto:
    """Name, type and the IR's shape; with a symbolic batch, dim 0 is "batch" (every converter keeps axis 0
    the batch under --dynamic-batch, or refuses the layer)."""
    dims: list[int | str] = [d if isinstance(d, int) else str(d) for d in ctx.shape(value)]   # "H", "H // 2"
    if ctx.dynamic_batch and dims:
        dims[0] = "batch"
    producer = ctx.net.producer(value)
    if producer is not None:   # axes whose size depends on the data (DetectionOutput's rows) are symbolic
        for axis, symbol in producer.spec.dynamic_axes.get(producer.outputs.index(value), {}).items():
            dims[axis] = symbol
    return helper.make_tensor_value_info(ctx.value(value), FLOAT, dims)
