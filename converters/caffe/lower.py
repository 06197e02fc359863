"""The ONNX -> Caffe driver: one converter per node in dependency order, then three small clean-ups on the
Caffe layers (unread layers removed, element-wise layers made in-place, graph outputs named as in ONNX),
then a check that Caffe's shapes (protodef's own shape rules) are ONNX's for every blob."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from caffe_proto import caffe_pb2
from protodef.errors import ProtodefError, UnsupportedError

from .graph import OnnxGraph
from .registry import CAFFE_CONVERTERS, CaffeLayer, ExportContext, node_label
from .targets import Target

# Layers Caffe runs in place (top == bottom) when nothing else reads the input.
IN_PLACE_TYPES = frozenset({"ReLU", "PReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Dropout",
                            "BatchNorm", "Scale", "ReLU6", "Clip"})


@dataclass
class CaffeNet:
    """An exported net: the NetParameter (no weights in it) and each weighted layer's blobs."""

    param: caffe_pb2.NetParameter
    weights: list[tuple[str, str, list[np.ndarray]]]
    outputs: list[str] = field(default_factory=list)        # the blobs holding the ONNX graph's outputs
    blob_of: dict[str, str] = field(default_factory=dict)   # ONNX value -> Caffe blob


def lower_caffe(graph: OnnxGraph, target: Target, *, fold_batchnorm: bool = True) -> CaffeNet:
    check_convertible(graph)
    ctx = ExportContext(graph, target, fold_batchnorm=fold_batchnorm)
    layers = [input_layer(name, graph.shapes[name]) for name in graph.inputs]
    for node in graph.nodes:
        if not ctx.absorbed(node):
            layers += convert_node(node, ctx)
    renames: dict[str, str] = {}
    layers += name_outputs(layers, graph, ctx, renames)   # from here on, each graph output is its own blob
    layers = remove_unread(layers, set(graph.outputs))
    layers = merge_affine_powers(layers, set(graph.outputs))
    make_in_place(layers, set(graph.inputs) | set(graph.outputs), renames)
    param = caffe_pb2.NetParameter(name=graph.name)
    param.layer.extend(layer.proto for layer in layers)
    weights = [(layer.name, layer.type, layer.blobs) for layer in layers if layer.blobs]
    values = [*graph.inputs, *(name for node in graph.nodes for name in node.output
                               if name and not ctx.deferred(name) and name not in graph.constants)]
    blob_of = {value: final_name(ctx.blob(value), renames) for value in values}
    blob_of.update({output: output for output in graph.outputs})
    net = CaffeNet(param, weights, list(graph.outputs), blob_of)
    check_shapes(net, graph)
    return net


def convert_node(node, ctx: ExportContext) -> list[CaffeLayer]:
    """The node's layers; a malformed node (a required attribute or input missing) is an error naming it."""
    try:
        return CAFFE_CONVERTERS[node.op_type](node, ctx)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ctx.refuse(node, f"cannot be read ({type(exc).__name__}: {exc})") from exc


def check_convertible(graph: OnnxGraph) -> None:
    """Every op must have a converter; all nodes that lack one are named in one error."""
    missing = [node for node in graph.nodes
               if node.op_type not in CAFFE_CONVERTERS or node.domain not in ("", "ai.onnx")]
    if missing:
        listed = ", ".join(f"'{node_label(node)}' ({node.op_type})" for node in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise UnsupportedError(f"{len(missing)} node(s) have no Caffe equivalent: {listed}{more}", where=graph.source,
                               found=", ".join(sorted({node.op_type for node in missing})))


def input_layer(name: str, shape: tuple[int, ...]) -> CaffeLayer:
    proto = caffe_pb2.LayerParameter(name=name, type="Input")
    proto.top.append(name)
    proto.input_param.shape.add().dim.extend(shape)
    return CaffeLayer(proto)


def final_name(blob: str, renames: dict[str, str]) -> str:
    while blob in renames:
        blob = renames[blob]
    return blob


def rename_blob(layers: list[CaffeLayer], old: str, new: str, renames: dict[str, str]) -> None:
    for layer in layers:
        for field_ in (layer.proto.bottom, layer.proto.top):
            for index, name in enumerate(field_):
                if name == old:
                    field_[index] = new
    renames[old] = new


def name_outputs(layers: list[CaffeLayer], graph: OnnxGraph, ctx: ExportContext, renames: dict[str, str]
                 ) -> list[CaffeLayer]:
    """Each graph output's blob takes the output's name; where that blob is an input or another output, a
    one-top Split copies it under the output's name."""
    copies = []
    for output in graph.outputs:
        blob = final_name(ctx.blob(output), renames)
        if blob == output:
            continue
        others = {final_name(ctx.blob(o), renames) for o in graph.outputs if o != output}
        if blob in graph.inputs or blob in others:
            proto = caffe_pb2.LayerParameter(name=f"{output}/copy", type="Split")
            proto.bottom.append(blob)
            proto.top.append(output)
            copies.append(CaffeLayer(proto))
        else:
            rename_blob(layers, blob, output, renames)
    return copies


def remove_unread(layers: list[CaffeLayer], outputs: set[str]) -> list[CaffeLayer]:
    """Drop layers whose tops nothing reads (a Flatten an InnerProduct reads through); a Silence stays while
    the layers writing its bottoms do."""
    live, kept = set(outputs), []
    for layer in reversed(layers):
        if layer.type == "Input" or any(top in live for top in layer.tops):
            kept.append(layer)
            live.update(layer.bottoms)
    kept.reverse()
    written = {top for layer in kept for top in layer.tops}
    kept_ids = {id(layer) for layer in kept}
    silences = {id(layer) for layer in layers if layer.type == "Silence" and all(b in written for b in layer.bottoms)}
    return [layer for layer in layers if id(layer) in kept_ids or id(layer) in silences]


def merge_affine_powers(layers: list[CaffeLayer], outputs: set[str]) -> list[CaffeLayer]:
    """A Power with power 1 (an affine map) whose output only another Power reads joins it:
    (shift2 + scale2 * (shift1 + scale1 * x)) ^ p = (shift2 + scale2 * shift1 + scale2 * scale1 * x) ^ p."""
    removed = set()
    for layer in layers:
        if layer.type != "Power" or layer.proto.power_param.power != 1 or layer.tops[0] in outputs:
            continue
        readers = [other for other in layers if layer.tops[0] in other.bottoms]
        if len(readers) != 1 or readers[0].type != "Power":
            continue
        first, second = layer.proto.power_param, readers[0].proto.power_param
        shift, scale = second.shift + second.scale * first.shift, second.scale * first.scale
        second.shift, second.scale = shift, scale
        readers[0].proto.bottom[0] = layer.bottoms[0]
        removed.add(id(layer))
    return [layer for layer in layers if id(layer) not in removed]


def make_in_place(layers: list[CaffeLayer], protected: set[str], renames: dict[str, str]) -> None:
    """An element-wise layer that alone reads its input writes over it, as Caffe nets do. The blob takes the
    later value's name (`conv1` for Convolution -> ReLU, as in the prototxt it came from) unless that names
    another layer: OpenCV names a Convolution after its top, so the producer's name is kept then."""
    layer_names = {layer.name: layer for layer in layers}
    for layer in layers:
        if layer.type not in IN_PLACE_TYPES or len(layer.bottoms) != 1 or len(layer.tops) != 1:
            continue
        source, top = layer.bottoms[0], layer.tops[0]
        if source == top or source in protected:
            continue
        readers = [other for other in layers if source in other.bottoms and source not in other.tops]
        if readers != [layer]:
            continue
        producer = next(other for other in layers if source in other.tops)
        if layer_names.get(top, producer) is producer:
            rename_blob(layers, source, top, renames)
        elif top not in protected:
            rename_blob(layers, top, source, renames)


def check_shapes(net: CaffeNet, graph: OnnxGraph) -> None:
    """protodef's Caffe shape rules on the exported net must give ONNX's shape for every blob."""
    from protodef.build import build_net
    param = caffe_pb2.NetParameter()
    param.CopyFrom(net.param)
    try:
        built = build_net(param)
    except ProtodefError as error:
        raise UnsupportedError(f"the exported Caffe net does not build: {error}", where=graph.source) from None
    caffe_shapes = {value.blob: shape for value, shape in built.shapes.items()}
    for value, blob in net.blob_of.items():
        expected = graph.shapes.get(value)
        found = caffe_shapes.get(blob)
        if expected is not None and found is not None and tuple(found) != tuple(expected):
            raise UnsupportedError(f"the exported net computes blob '{blob}' in another shape than ONNX's "
                                   f"'{value}'", where=graph.source, expected=tuple(expected), found=tuple(found))

