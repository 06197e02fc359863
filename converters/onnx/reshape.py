"""Reshape family: Split, Slice, Flatten, Reshape and Crop (data moved, cut or copied, never computed)."""
from __future__ import annotations

from protodef.ir import Layer
from protodef.layers.common import count
from protodef.layers.reshape import Crop, Flatten, Reshape, ShuffleChannel, Slice, Tile

from .proto import NodeProto, TensorProto
from .registry import OnnxContext, onnx_converter


@onnx_converter("Split")
def split(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Copies of the input, one per output (passes remove most Splits; an unread copy is a net output)."""
    source = ctx.value(layer.inputs[0])
    return [ctx.node("Identity", [source], [ctx.value(v)], layer, None if index == 0 else f"copy{index}")
            for index, v in enumerate(layer.outputs)]


@onnx_converter("Slice")
def slice_layer(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe slice_layer.cpp: consecutive pieces along `axis` between the slice points."""
    p: Slice = layer.params
    ctx.require_batch_axis_kept(layer, p.axis, "Slice")
    sizes = [b - a for a, b in zip(p.points, p.points[1:])]
    return ctx.split(layer, ctx.value(layer.inputs[0]), [ctx.value(v) for v in layer.outputs], p.axis, sizes)


@onnx_converter("Flatten")
def flatten(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe merges axes axis..end_axis and keeps the others; ONNX Flatten always makes a matrix, which is the
    same only for axis 1 through the last axis. Otherwise a Reshape to the IR's shape."""
    p: Flatten = layer.params
    ctx.require_batch_axis_kept(layer, p.axis, "Flatten")
    source, output = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    if p.axis == 1 and p.end_axis == len(ctx.input_shape(layer)) - 1:
        return [ctx.node("Flatten", [source], [output], layer, axis=1)]
    nodes, _ = ctx.reshape(layer, "reshape", source, ctx.output_shape(layer), output)
    return nodes


@onnx_converter("Reshape")
def reshape(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """A Reshape to the IR's output shape (Caffe's 0 and -1 dims are already resolved in it)."""
    p: Reshape = layer.params
    if p.axis == 0 and p.num_axes > 0 and (not p.dims or p.dims[0] != 0):
        ctx.require_batch_axis_kept(layer, 0, "Reshape")
    nodes, _ = ctx.reshape(layer, "reshape", ctx.value(layer.inputs[0]), ctx.output_shape(layer),
                           ctx.value(layer.outputs[0]))
    return nodes


@onnx_converter("Crop")
def crop(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Caffe crop_layer.cpp: input 0 cut to input 1's size on the axes from `axis` on, at `offsets`."""
    p: Crop = layer.params
    ctx.require_batch_axis_kept(layer, p.axis, "Crop")
    y = ctx.output_shape(layer)
    axes = list(range(p.axis, len(y)))
    starts = list(p.offsets)
    ends = [start + y[axis] for start, axis in zip(starts, axes)]
    inputs = [ctx.value(layer.inputs[0]), ctx.ints(layer, "starts", starts), ctx.ints(layer, "ends", ends),
              ctx.ints(layer, "axes", axes)]
    return [ctx.node("Slice", inputs, [ctx.value(layer.outputs[0])], layer)]


@onnx_converter("Flip")
def flip(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """A Slice walking the flipped axes backwards (step -1 from the last element past the first)."""
    axes = list(layer.params.axes)
    source, output = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    if not axes:
        return [ctx.node("Identity", [source], [output], layer)]
    inputs = [source, ctx.ints(layer, "starts", [-1] * len(axes)), ctx.ints(layer, "ends", [-2**63] * len(axes)),
              ctx.ints(layer, "axes", axes), ctx.ints(layer, "steps", [-1] * len(axes))]
    return [ctx.node("Slice", inputs, [output], layer)]


@onnx_converter("BatchReindex")
def batch_reindex(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Items of input 0 picked by input 1's values, truncated to integers as Caffe's static_cast<int>."""
    indices = ctx.tensor(layer, "indices")
    return [ctx.node("Cast", [ctx.value(layer.inputs[1])], [indices], layer, "indices", to=TensorProto.INT64),
            ctx.node("Gather", [ctx.value(layer.inputs[0]), indices], [ctx.value(layer.outputs[0])], layer, axis=0)]


@onnx_converter("Tile")
def tile(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: Tile = layer.params
    ctx.require_batch_axis_kept(layer, p.axis, "Tile")
    repeats = [1] * len(ctx.input_shape(layer))
    repeats[p.axis] = p.tiles
    return [ctx.node("Tile", [ctx.value(layer.inputs[0]), ctx.ints(layer, "repeats", repeats)],
                     [ctx.value(layer.outputs[0])], layer)]


@onnx_converter("ShuffleChannel")
def shuffle_channel(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """Channels viewed as (group, C / group), transposed, flattened back."""
    p: ShuffleChannel = layer.params
    x = ctx.input_shape(layer)
    grid = (x[0], p.group, x[1] // p.group, count(x, 2))
    nodes, grouped = ctx.reshape(layer, "grouped", ctx.value(layer.inputs[0]), grid)
    swapped = ctx.tensor(layer, "swapped")
    nodes.append(ctx.node("Transpose", [grouped], [swapped], layer, "swap", perm=[0, 2, 1, 3]))
    more, _ = ctx.reshape(layer, "merge", swapped, x, ctx.value(layer.outputs[0]))
    return nodes + more
