"""The ONNX driver: passes, one converter per layer in order, graph inputs/outputs/value_info, checker."""
from __future__ import annotations

import functools

import onnx
from onnx import helper

from protodef.errors import ProtodefError, UnsupportedError
from protodef.ir import Layer, Net, Value

from .registry import OnnxContext, converter_for

MIN_OPSET = 13    # Softmax over one axis, Split/ReduceSum/Squeeze taking their axes as inputs
PROTOBUF_LIMIT = 2 ** 31 - 1   # a ModelProto serializes to at most 2 GiB

FLOAT = onnx.TensorProto.FLOAT


@functools.lru_cache(maxsize=None)
def default_opset() -> int:
    """The newest opset both the onnx package and the installed onnxruntime implement. onnxruntime refuses a
    model stamped with an opset newer than its own, so it is asked directly, newest first."""
    newest = onnx.defs.onnx_opset_version()
    try:
        import onnxruntime
    except ImportError:
        return newest
    for opset in range(newest, MIN_OPSET - 1, -1):
        if runtime_accepts(onnxruntime, opset):
            return opset
    return MIN_OPSET


def runtime_accepts(onnxruntime, opset: int) -> bool:
    """Whether onnxruntime loads a one-node model of this opset (it checks the opset at load time)."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", FLOAT, [1])],
                              [helper.make_tensor_value_info("y", FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))
    try:
        onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:   # onnxruntime raises its own Fail/InvalidGraph types, not one base class
        return False
    return True


def chosen_opset(opset: int | None) -> int:
    if opset is None:
        return default_opset()
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


def prepare(net: Net, *, fold: bool) -> Net:
    """The net as lowered: training layers, Splits and Dropouts gone, BatchNorm/Scale folded when `fold`."""
    from protodef.passes import run_pipeline
    lowered, _ = run_pipeline(net, fold=fold)
    return lowered


def lower_onnx(net: Net, *, opset: int | None = None, dynamic_batch: bool = False, fold: bool = True
               ) -> onnx.ModelProto:
    """Lower `net` to a ModelProto that onnx's full checker accepts (nothing is written)."""
    model = build_model(net, opset=opset, dynamic_batch=dynamic_batch, fold=fold)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:   # e.g. a blob named "" (Caffe allows it; ONNX does not)
        reason = str(error).strip().splitlines()[0]
        raise UnsupportedError(f"the ONNX checker refuses the converted model: {reason}", where=net.source) from None
    return model


def lower_onnx_bytes(net: Net, *, opset: int | None = None, dynamic_batch: bool = False, fold: bool = True
                     ) -> bytes:
    """The serialized model, checked as bytes: one serialization serves the checker and the file."""
    data = build_model(net, opset=opset, dynamic_batch=dynamic_batch, fold=fold).SerializeToString()
    onnx.checker.check_model(data, full_check=True)
    return data


def build_model(net: Net, *, opset: int | None, dynamic_batch: bool, fold: bool) -> onnx.ModelProto:
    """Passes, then each layer's converter in order; the ModelProto is filled in place (make_graph and
    make_model would each copy every weight once more)."""
    opset = chosen_opset(opset)
    lowered = prepare(net, fold=fold)
    lowered.require_input_shapes()
    check_convertible(lowered)
    ctx = OnnxContext(lowered, opset=opset, dynamic_batch=dynamic_batch)
    nodes = []
    for layer in lowered.layers():
        try:
            made = converter_for(layer)(layer, ctx)
            nodes += ctx.take_size_nodes() + made
        except ProtodefError as error:
            raise error.at(layer.where, layer) from None
    renamed = {original: carrier for original, carrier in bypassed_outputs(net, lowered).items()
               if ctx.value(carrier) != net.value_name(original)}
    for original, carrier in renamed.items():
        nodes.append(helper.make_node("Identity", [ctx.value(carrier)], [net.value_name(original)],
                                      name=ctx.fresh(f"{net.producer(original).name}/output")))
    if ctx.initializer_bytes >= PROTOBUF_LIMIT:
        raise UnsupportedError("the weights exceed the 2 GiB a single ONNX protobuf file can hold (external "
                               "data files are not written yet)", where=net.source,
                               found=f"{ctx.initializer_bytes} bytes")
    model = onnx.ModelProto()
    model.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    model.opset_import.add(domain="", version=opset)
    model.producer_name, model.producer_version = "protodef", _version()
    if net.name:
        model.doc_string = f"Caffe net '{net.name}' converted by protodef"
    helper.set_model_props(model, {"source": str(net.source or "")})
    graph = model.graph
    graph.name = lowered.name or "net"
    outputs = [v for v in lowered.outputs() if v not in set(renamed.values())]
    final = set(outputs)
    graph.node.extend(nodes)
    graph.input.extend(value_info(ctx, i.value) for i in lowered.inputs)
    graph.output.extend(value_info(ctx, v) for v in outputs)
    graph.output.extend(value_info(ctx, carrier, net.value_name(original)) for original, carrier in renamed.items())
    graph.value_info.extend(value_info(ctx, v) for layer in lowered.layers() for v in layer.outputs if v not in final)
    graph.initializer.extend(ctx.initializers)
    ctx.initializers.clear()
    return model


def bypassed_outputs(net: Net, lowered: Net) -> dict[Value, Value]:
    """Net outputs whose writer a pass bypassed (a lone Split or Dropout at the end), mapped to the value that
    carries them now: the graph still names its outputs as Caffe does, through an Identity."""
    present = set(lowered.outputs())
    found = {}
    for output in net.outputs():
        value = output
        while value not in present:
            producer = net.producer(value)
            if producer is None or producer.name in lowered or len(producer.inputs) != 1:
                break
            value = producer.inputs[0]
        if value != output and value in present:
            found[output] = value
    return found


def value_info(ctx: OnnxContext, value: Value, name: str | None = None) -> onnx.ValueInfoProto:
    """Name, type and the IR's shape; with a symbolic batch, dim 0 is "batch" (every converter keeps axis 0
    the batch under --dynamic-batch, or refuses the layer)."""
    dims: list[int | str] = [d if isinstance(d, int) else str(d) for d in ctx.shape(value)]   # "H", "H // 2"
    if ctx.dynamic_batch and dims:
        dims[0] = "batch"
    producer = ctx.net.producer(value)
    if producer is not None:   # axes whose size depends on the data (DetectionOutput's rows) are symbolic
        for axis, symbol in producer.spec.extras.get("dynamic_axes", {}).get(producer.outputs.index(value), {}).items():
            dims[axis] = symbol
    return helper.make_tensor_value_info(name or ctx.value(value), FLOAT, dims)


def _version() -> str:
    from protodef import __version__
    return __version__
