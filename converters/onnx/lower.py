"""The ONNX driver: a lowered net, one converter per layer in order, graph inputs/outputs/value_info, checker."""
from __future__ import annotations

from typing import TYPE_CHECKING

from protodef.errors import ProtodefError, UnsupportedError
from protodef.ir import Layer, Net, Value
from protodef.version import __version__

from .proto import (
    Initializer,
    ModelProto,
    NodeProto,
    TensorProto,
    ValueInfoProto,
    make_tensor_value_info,
    ours,
)
from .registry import OnnxContext, converter_for
from .structure import require_well_formed

if TYPE_CHECKING:
    import onnx

MIN_OPSET = 13    # Softmax over one axis, Split/ReduceSum/Squeeze taking their axes as inputs
# The opset a model gets unless --opset says otherwise: fixed, so that one prototxt gives the same model on every
# machine, and one that widely deployed runtimes accept (onnxruntime from 1.14, TensorRT 10, OpenVINO 2023).
# 18 rather than 17: Caffe's Upsample with an overlapping mask needs ScatterElements' reduction="max".
DEFAULT_OPSET = 18
# The oldest IR version that has opset 18 (ONNX's table in onnx.helper.VERSION_TABLE; a test compares): a model
# declares the oldest it can, so that older runtimes load it.
DEFAULT_IR_VERSION = 8

FLOAT = TensorProto.FLOAT


def opset_range() -> tuple[int, int]:
    """The opsets a model may ask for: MIN_OPSET to the newest the installed onnx package knows (asking it
    imports onnx: only for an explicit --opset)."""
    import onnx
    return MIN_OPSET, onnx.defs.onnx_opset_version()


def chosen_opset(opset: int | None) -> int:
    """The default, or an opset within opset_range()."""
    if opset is None:
        return DEFAULT_OPSET
    low, high = opset_range()
    if not low <= opset <= high:
        raise UnsupportedError("ONNX opset out of range", expected=f"{low} to {high}", found=opset)
    return opset


def ir_version_for(opset: int) -> int:
    if opset == DEFAULT_OPSET:
        return DEFAULT_IR_VERSION
    from onnx import helper
    return helper.find_min_ir_version_for([helper.make_opsetid("", opset)])


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
    """Lower a net as the pass pipeline left it to an onnx.ModelProto that onnx's full checker accepts (nothing
    is written)."""
    from .checker import as_onnx_model, check_model
    model, initializers = build_model_apart(net, opset=opset, dynamic_batch=dynamic_batch)
    check_model(model, initializers, where=net.source)   # any size: the checker sees the weights as typed inputs
    return as_onnx_model(model, initializers)


def build_model_apart(net: Net, *, opset: int | None, dynamic_batch: bool
                      ) -> tuple[ModelProto, list[Initializer]]:
    """The model (protodef's wire classes, see proto.py) without its initializers, and the initializers as
    arrays: a writer streams them into the file, where a TensorProto would copy every weight first. The model
    is well formed (require_well_formed); onnx's checker is check_model's, on request."""
    opset = chosen_opset(opset)
    net.require_lowered()
    net.require_input_shapes()
    net.require_outputs()
    check_convertible(net)
    ctx = OnnxContext(net, opset=opset, dynamic_batch=dynamic_batch)
    nodes = []
    for layer in net.layers():
        try:
            made = [ours(node, NodeProto) for node in converter_for(layer)(layer, ctx)]   # a plugin may use onnx's
            nodes += ctx.take_size_nodes() + made
        except ProtodefError as error:
            raise error.at(layer.where, layer) from None
    model = ModelProto()
    model.ir_version = ir_version_for(opset)
    model.opset_import.add(domain="", version=opset)
    model.producer_name, model.producer_version = "protodef", __version__
    if net.name:
        model.doc_string = f"Caffe net '{net.name}' converted by protodef"
    # protodef.weights says whether the weights are trained (caffemodel) or made up (fillers, random: seed)
    properties = {"source": str(net.source or ""), **{f"protodef.{key}": value for key, value in net.metadata.items()}}
    for key, value in properties.items():
        model.metadata_props.add(key=key, value=value)
    graph = model.graph
    graph.name = net.name or "net"
    outputs = net.outputs()
    final = set(outputs)
    graph.node.extend(nodes)
    graph.input.extend(value_info(ctx, i.value) for i in net.inputs)
    graph.output.extend(value_info(ctx, v) for v in outputs)
    graph.value_info.extend(value_info(ctx, v) for layer in net.layers() for v in layer.outputs if v not in final)
    initializers = [i if isinstance(i, Initializer) else Initializer.of(i) for i in ctx.initializers]
    require_well_formed(model, initializers, where=net.source)
    return model, initializers


def value_info(ctx: OnnxContext, value: Value) -> ValueInfoProto:
    """Name, type and the IR's shape; with a symbolic batch, dim 0 is "batch" (every converter keeps axis 0
    the batch under --dynamic-batch, or refuses the layer)."""
    dims: list[int | str] = [d if isinstance(d, int) else str(d) for d in ctx.shape(value)]   # "H", "H // 2"
    if ctx.dynamic_batch and dims:
        dims[0] = "batch"
    producer = ctx.net.producer(value)
    if producer is not None:   # axes whose size depends on the data (DetectionOutput's rows) are symbolic
        for axis, symbol in producer.spec.dynamic_axes.get(producer.outputs.index(value), {}).items():
            dims[axis] = symbol
    return make_tensor_value_info(ctx.value(value), FLOAT, dims)
