"""Helpers the layer families share: reading Caffe's parameter conventions and checking them."""
from __future__ import annotations

import math
from functools import cache
from typing import Any, Iterable

from caffe_proto import caffe_pb2

from ..errors import SchemaError, ShapeError
from ..ir import Shape
from ..symbolic import definitely

# Caffe's Blob::Reshape refuses a blob of more than INT_MAX elements ("blob size exceeds INT_MAX").
MAX_BLOB_COUNT = 2**31 - 1


def param_message(lp: Any, field_name: str) -> Any:
    """The layer's `*_param` message (its defaults when the prototxt does not set it)."""
    return getattr(lp, field_name)


def reject_unhonoured(message: Any, honoured: Iterable[str], *, what: str) -> None:
    """Raise if a field outside `honoured` is set to a value other than its default.

    Silently ignoring a parameter would give results that differ from Caffe's without a word.
    """
    allowed = set(honoured) | {"engine"}   # the compute engine (CAFFE/CUDNN) does not change results
    for descriptor, value in message.ListFields():
        if descriptor.name in allowed:
            continue
        if _is_default(descriptor, value):
            continue
        raise SchemaError(f"{what}.{descriptor.name} is not supported", expected="its default",
                          found=_show_value(descriptor, value))


def _is_default(descriptor: Any, value: Any) -> bool:
    if _is_repeated(descriptor):
        return len(value) == 0
    if descriptor.message_type is not None:
        return value.ByteSize() == 0
    return value == descriptor.default_value


def _is_repeated(descriptor: Any) -> bool:
    repeated = getattr(descriptor, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return descriptor.label == descriptor.LABEL_REPEATED


def _show_value(descriptor: Any, value: Any) -> str:
    if descriptor.enum_type is not None and not _is_repeated(descriptor):
        return descriptor.enum_type.values_by_number[value].name
    if _is_repeated(descriptor):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value).strip()


def enum_name(message: Any, field_name: str, default: str | None = None) -> str:
    """The name of an enum field's value; `default` where the message's schema (a fork's, --proto) has no such
    field."""
    descriptor = message.DESCRIPTOR.fields_by_name.get(field_name)
    if descriptor is None and default is not None:
        return default
    if descriptor is None:
        raise SchemaError(f"the schema has no field {message.DESCRIPTOR.name}.{field_name}, which protodef reads",
                          expected="BVLC Caffe's field (a fork's caffe.proto given with --proto may lack it)")
    return descriptor.enum_type.values_by_number[getattr(message, field_name)].name


def field_or_default(message: Any, field_name: str, default: Any) -> Any:
    """A field's value, or `default` (Caffe's) where the message's schema (an older fork's, --proto) lacks it."""
    return getattr(message, field_name) if field_name in message.DESCRIPTOR.fields_by_name else default


def canonical_axis(axis: int, rank: int, *, what: str = "axis") -> int:
    """Caffe's CanonicalAxisIndex: negative axes count from the end; out of range is an error."""
    if not -rank <= axis < rank:
        raise ShapeError(f"{what} is out of range for a {rank}-D input", expected=f"{-rank} <= {what} < {rank}",
                         found=axis)
    return axis + rank if axis < 0 else axis


def count(shape: Shape, start: int = 0, end: int | None = None) -> int:
    return math.prod(shape[start:end])


def spatial(values: Any, single: Any, h: Any, w: Any, *, default: int, n: int, what: str,
            has_hw: bool) -> tuple[int, ...]:
    """Caffe's convention for kernel/stride/pad/dilation: `x_h`/`x_w` (2-D only), else a repeated field
    with zero values (the default), one value (all axes) or one per spatial axis."""
    if has_hw:
        if n != 2:
            raise SchemaError(f"{what}_h and {what}_w need 2 spatial axes", found=f"{n} spatial axes")
        return (int(h), int(w))
    values = list(values) if values is not None else []
    if single is not None:
        values = [single]
    if not values:
        return (default,) * n
    if len(values) == 1:
        return (int(values[0]),) * n
    if len(values) != n:
        raise SchemaError(f"{what} must have 1 or {n} values", found=len(values))
    return tuple(int(v) for v in values)


def positive(value: int, *, what: str) -> int:
    """`value`, refused where it is zero or negative (a symbolic size: for every value of its names)."""
    if definitely(value <= 0):
        raise ShapeError(f"{what} must be positive", expected="> 0", found=value)
    return value


def differ(a: Shape, b: Shape) -> bool:
    """Whether two shapes differ for every value of the sizes they name (only then is it an error)."""
    return len(a) != len(b) or any(definitely(x != y) for x, y in zip(a, b))


def same_shapes(inputs: tuple[Shape, ...], *, what: str) -> Shape:
    first = inputs[0]
    for index, shape in enumerate(inputs[1:], start=1):
        if differ(shape, first):
            raise ShapeError(f"{what}: input {index} has a different shape from input 0", expected=first,
                             found=shape)
    return first


def blob_shape(message: Any) -> Shape:
    return tuple(int(d) for d in message.dim)


class ConstantFiller:
    """A constant filler with FillerParameter's attributes, for blobs Caffe fills without a filler field
    (PReLU's 0.25 slopes, a fork's statistics)."""

    type = "constant"
    min = 0.0
    max = 1.0
    mean = 0.0
    std = 1.0
    sparse = -1
    variance_norm = 0

    def __init__(self, value: float):
        self.value = value


def is_proto_default(layer_type: str, field: str, value: Any) -> bool:
    """Whether caffe.proto gives `field` of this type's parameter message `value` as its default."""
    if not isinstance(value, (int, float, bool, str)):
        return False
    proto_field = _proto_field(layer_type, field)
    if proto_field is None or proto_field.is_repeated:
        return False
    default = proto_field.default_value
    if proto_field.enum_type is not None:
        return value == proto_field.enum_type.values_by_number[default].name
    if isinstance(value, str):
        return False
    if isinstance(default, float) or isinstance(value, float):
        return math.isclose(float(value), float(default), rel_tol=1e-6, abs_tol=1e-12)
    return value == default


@cache
def _proto_field(layer_type: str, field: str) -> Any:
    """The caffe.proto field behind a spec field: same name, or the one name ending in it (LRN's `region` is
    `norm_region`, Dropout's `ratio` is `dropout_ratio`)."""
    descriptor = _param_message(layer_type)
    if descriptor is None:
        return None
    if field in descriptor.fields_by_name:
        return descriptor.fields_by_name[field]
    candidates = [f for f in descriptor.fields if f.name.endswith("_" + field)]
    return candidates[0] if len(candidates) == 1 else None


@cache
def _param_message(layer_type: str) -> Any:
    """The XxxParameter message of a type by Caffe's naming (InnerProduct -> inner_product_param), if any."""
    wanted = layer_type.lower() + "param"
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.name.replace("_", "") == wanted:
            return field.message_type
    return None
