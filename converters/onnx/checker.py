"""What needs the onnx package itself: its full checker, and an onnx.ModelProto for the Python API. The backend's
models are protodef's wire classes (proto.py); they reach onnx as bytes.

The checker sees a skeleton: the model with its large weights declared as typed graph inputs, without their
data. That is all the checker and shape inference look at, and it keeps a model over protobuf's 2 GiB limit
checkable.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from protodef.errors import UnsupportedError

from .proto import Initializer, ModelProto, make_tensor_value_info

if TYPE_CHECKING:
    import onnx

LARGE = 1024   # bytes: smaller tensors (shapes, axes, scalars) stay in the skeleton, where shape inference
               # reads their values


def check_model(model: ModelProto, initializers: Sequence[Initializer] = (), *, where: str | None = None) -> None:
    """onnx's full check (strict shape inference included) of `model` with `initializers`."""
    import onnx
    try:
        onnx.checker.check_model(skeleton_of(model, initializers).SerializeToString(), full_check=True)
    except onnx.checker.ValidationError as error:
        reason = str(error).strip().splitlines()[0]
        raise UnsupportedError(f"the ONNX checker refuses the converted model: {reason}", where=where) from None


def skeleton_of(model: ModelProto, initializers: Sequence[Initializer] = ()) -> ModelProto:
    """A copy of `model` holding the small `initializers`; the large ones are typed graph inputs."""
    skeleton = ModelProto()
    skeleton.CopyFrom(model)
    graph = skeleton.graph
    graph.initializer.extend(i.tensor() for i in initializers if i.nbytes < LARGE)
    graph.input.extend(make_tensor_value_info(i.name, i.header().data_type, i.array.shape)
                       for i in initializers if i.nbytes >= LARGE)
    return skeleton


def as_onnx_model(model: ModelProto, initializers: Sequence[Initializer] = ()) -> onnx.ModelProto:
    """The model in onnx's own classes, its initializers in the graph (each weight copied once, into its
    tensor: the model may exceed what one serialization holds)."""
    import onnx
    from onnx import numpy_helper
    converted = onnx.ModelProto.FromString(model.SerializeToString())
    converted.graph.initializer.extend(numpy_helper.from_array(i.array, i.name) for i in initializers)
    return converted
