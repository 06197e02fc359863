"""Bring an old Caffe net definition up to today's format, following the steps Caffe itself takes.

Caffe has seen three ways of writing a net:

* V0 (until early 2014): ``layers { layer { name type ...flat fields... } bottom top }`` with
  lower-case type strings ("conv", "pool", "innerproduct") and all settings of all layer kinds
  written as flat fields of one message; padding was a layer of its own.
* V1 (2014-2015): ``layers { name type: CONVOLUTION convolution_param { } blobs_lr weight_decay }``
  with an enum type and one ``*_param`` message per layer kind.
* V2 (today): ``layer { name type: "Convolution" param { lr_mult decay_mult }
  convolution_param { } }``.

Besides the layer format, nets used to name their inputs at net level (``input`` with
``input_dim`` or ``input_shape``); today that is an ``Input`` layer.  Old BatchNorm layers also
listed three ``param`` specs to switch off learning of their statistics by hand; Caffe's
upgrade sets their learning rate and decay to zero.

:func:`upgrade_net` applies Caffe's steps in Caffe's order (V0 to V1 with the padding layers
merged first, data transformation fields into ``transform_param``, V1 to V2, net inputs into an
``Input`` layer, BatchNorm params) and returns the new message together with one note per
change.  Where Caffe stops with a fatal error, or builds a net it could not run, we raise
:class:`~protodef.errors.SchemaError` instead; where Caffe only logs that it dropped a setting,
we drop it too and say so in a note.

Deliberate differences from Caffe, each one to keep the result a usable net definition:

* net-level inputs named without any shape become a shape-less ``Input`` layer (Caffe drops
  them, as it expects that only in weights files);
* the ``Input`` layer is called "input" as in Caffe, or "input_1", ... if a layer already has
  that name;
* BatchNorm layers whose three param specs all have an explicit ``lr_mult: 0`` are left alone
  (Caffe would also write ``decay_mult: 0``, which changes nothing without a learning rate);
* Caffe's empty ``transform_param {}`` / ``data_param {}`` left behind by its data upgrade are
  not created.

The net may come from any schema that follows Caffe's (``caffe_pb2`` or a fork's caffe.proto
compiled by :mod:`protodef.forkproto`): every message and enum value is taken from the given
net's own descriptors, never from ``caffe_pb2``, so the result belongs to the same schema.  When
that schema lacks a field or enum value the upgrade has to write, we raise
:class:`~protodef.errors.SchemaError` naming it.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import message_factory, text_format
from google.protobuf.message import Message

from protodef.errors import SchemaError

__all__ = ["upgrade_net", "upgrade_text", "needs_upgrade", "V0_LAYER_TYPES", "V1_LAYER_TYPES"]

# V0 type string -> name of the V1LayerParameter.LayerType value.  These are exactly the types
# Caffe's V0 upgrade knows; anything else (bar "padding", which is merged away) stops Caffe.
V0_LAYER_TYPES: dict[str, str] = {
    "accuracy": "ACCURACY",
    "bnll": "BNLL",
    "concat": "CONCAT",
    "conv": "CONVOLUTION",
    "data": "DATA",
    "dropout": "DROPOUT",
    "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN",
    "hdf5_data": "HDF5_DATA",
    "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL",
    "images": "IMAGE_DATA",
    "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT",
    "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS",
    "pool": "POOLING",
    "relu": "RELU",
    "sigmoid": "SIGMOID",
    "softmax": "SOFTMAX",
    "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT",
    "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}

# Name of each V1LayerParameter.LayerType value -> the V2 type string Caffe registers it under.
V1_LAYER_TYPES: dict[str, str] = {
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# Where each flat V0 field goes.  The key of the inner dict is the V0 type the field is meant
# for ("*" = any type); the value names the V1 sub-message and the field inside it
# (sub-message None = a field of the V1 layer itself).  A field set on a type it does not
# belong to is dropped with a note, as Caffe drops it with a logged error.
_ANY = "*"
_V0_FIELD_TARGETS: dict[str, dict[str, tuple[str | None, str]]] = {
    "blobs": {_ANY: (None, "blobs")},
    "blobs_lr": {_ANY: (None, "blobs_lr")},
    "weight_decay": {_ANY: (None, "weight_decay")},
    "num_output": {"conv": ("convolution_param", "num_output"),
                   "innerproduct": ("inner_product_param", "num_output")},
    "biasterm": {"conv": ("convolution_param", "bias_term"),
                 "innerproduct": ("inner_product_param", "bias_term")},
    "weight_filler": {"conv": ("convolution_param", "weight_filler"),
                      "innerproduct": ("inner_product_param", "weight_filler")},
    "bias_filler": {"conv": ("convolution_param", "bias_filler"),
                    "innerproduct": ("inner_product_param", "bias_filler")},
    "pad": {"conv": ("convolution_param", "pad"), "pool": ("pooling_param", "pad")},
    "kernelsize": {"conv": ("convolution_param", "kernel_size"),
                   "pool": ("pooling_param", "kernel_size")},
    "group": {"conv": ("convolution_param", "group")},
    "stride": {"conv": ("convolution_param", "stride"), "pool": ("pooling_param", "stride")},
    "pool": {"pool": ("pooling_param", "pool")},
    "dropout_ratio": {"dropout": ("dropout_param", "dropout_ratio")},
    "local_size": {"lrn": ("lrn_param", "local_size")},
    "alpha": {"lrn": ("lrn_param", "alpha")},
    "beta": {"lrn": ("lrn_param", "beta")},
    "k": {"lrn": ("lrn_param", "k")},
    "source": {"data": ("data_param", "source"),
               "hdf5_data": ("hdf5_data_param", "source"),
               "images": ("image_data_param", "source"),
               "window_data": ("window_data_param", "source"),
               "infogain_loss": ("infogain_loss_param", "source")},
    "scale": {_ANY: ("transform_param", "scale")},
    "meanfile": {_ANY: ("transform_param", "mean_file")},
    "batchsize": {"data": ("data_param", "batch_size"),
                  "hdf5_data": ("hdf5_data_param", "batch_size"),
                  "images": ("image_data_param", "batch_size"),
                  "window_data": ("window_data_param", "batch_size")},
    "cropsize": {_ANY: ("transform_param", "crop_size")},
    "mirror": {_ANY: ("transform_param", "mirror")},
    "rand_skip": {"data": ("data_param", "rand_skip"),
                  "images": ("image_data_param", "rand_skip")},
    "shuffle_images": {"images": ("image_data_param", "shuffle")},
    "new_height": {"images": ("image_data_param", "new_height")},
    "new_width": {"images": ("image_data_param", "new_width")},
    "concat_dim": {"concat": ("concat_param", "concat_dim")},
    "det_fg_threshold": {"window_data": ("window_data_param", "fg_threshold")},
    "det_bg_threshold": {"window_data": ("window_data_param", "bg_threshold")},
    "det_fg_fraction": {"window_data": ("window_data_param", "fg_fraction")},
    "det_context_pad": {"window_data": ("window_data_param", "context_pad")},
    "det_crop_mode": {"window_data": ("window_data_param", "crop_mode")},
    "hdf5_output_param": {"hdf5_output": ("hdf5_output_param", None)},
}

# Net-level fields a V0 net keeps through Caffe's V0 upgrade; everything else is dropped.
_V0_NET_FIELDS_KEPT = ("name", "layers", "input", "input_dim", "force_backward")

# V1 layer types whose own parameter message used to carry the data transformation fields.
_V1_DATA_LAYERS = {"DATA": "data_param", "IMAGE_DATA": "image_data_param",
                   "WINDOW_DATA": "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")

# V1 layer fields handled one by one; every other *_param message is copied to the V2 field of
# the same name.
_V1_FIELDS_BY_HAND = {"bottom", "top", "name", "include", "exclude", "type", "blobs", "param",
                      "blob_share_mode", "blobs_lr", "weight_decay", "loss_weight", "layer"}

_INPUT_LAYER_NAME = "input"  # the name Caffe gives the layer made from net-level inputs


_NET_INPUT_FIELDS = ("input", "input_dim", "input_shape")


# ----------------------------------------------------------------------------------------------
# public entry points


def needs_upgrade(net: Message) -> bool:
    """True when :func:`upgrade_net` would change ``net`` (old layers, net-level inputs, or
    BatchNorm param specs with a learning rate)."""
    _check_net(net, "needs_upgrade")
    if _count(net, "layers") or any(_count(net, name) for name in _NET_INPUT_FIELDS):
        return True
    return any(_batch_norm_needs_fix(layer) for layer in _items(net, "layer"))


def upgrade_net(net: Message, *, path: str = "<net>") -> tuple[Message, list[str]]:
    """Return ``net`` in today's format (``layer { }`` with string types) and notes on each change.

    ``net`` is a NetParameter of ``caffe_pb2`` or of a fork's schema; the result is a message of
    the same class.  ``net`` itself is not modified.  A net that is already modern comes back
    equal, with no notes.  ``path`` names the source in error messages.
    """
    _check_net(net, "upgrade_net")
    notes: list[str] = []
    out = type(net)()
    out.CopyFrom(net)

    if _count(out, "layer") and _count(out, "layers"):
        raise SchemaError(
            "the net mixes today's 'layer { }' entries with old 'layers { }' entries, which Caffe "
            "refuses to upgrade; write every layer in one format",
            where=path, expected="only 'layer' or only 'layers'",
            found=f"{len(out.layer)} 'layer' and {len(out.layers)} 'layers'")

    if any(_is_set(entry, "layer") for entry in _items(out, "layers")):
        out = _upgrade_v0_net(out, notes, path)
    _upgrade_data_transformation(out, notes, path)
    if _count(out, "layers"):
        out = _upgrade_v1_net(out, notes, path)
    if any(_count(out, name) for name in _NET_INPUT_FIELDS):
        _upgrade_net_input(out, notes, path)
    _upgrade_batch_norm(out, notes)
    return out, notes


def upgrade_text(net: Message, *, path: str = "<net>") -> str:
    """The upgraded net as prototxt text, ready to be written to a ``.prototxt`` file."""
    upgraded, _ = upgrade_net(net, path=path)
    return text_format.MessageToString(upgraded)


def _check_net(net: Any, caller: str) -> None:
    # Forks name their messages as Caffe does (protodef.forkproto insists on NetParameter), so
    # the name tells a net from any other message; the schema's contents are checked as used.
    if not isinstance(net, Message) or net.DESCRIPTOR.name != "NetParameter":
        raise TypeError(f"{caller} expects a NetParameter message (of caffe_pb2 or a fork's "
                        f"schema), not {type(net).__name__}")


# ----------------------------------------------------------------------------------------------
# reading and writing fields of whatever schema the net comes from
#
# A fork's schema may lack fields Caffe has.  Reading a missing field gives nothing (an old net
# cannot have used it); writing one raises SchemaError, naming the message, the field and what
# the upgrade needed it for.


def _field(message: Any, name: str) -> Any:
    return message.DESCRIPTOR.fields_by_name.get(name)


def _items(message: Any, name: str) -> Any:
    """A repeated field's values, or nothing when the schema has no such field."""
    return getattr(message, name) if _field(message, name) is not None else ()


def _count(message: Any, name: str) -> int:
    return len(_items(message, name))


def _is_set(message: Any, name: str) -> bool:
    fd = _field(message, name)
    if fd is None:
        return False
    if fd.is_repeated:
        return len(getattr(message, name)) > 0
    return message.HasField(name)


def _scalar(message: Any, name: str, default: Any = None) -> Any:
    return getattr(message, name) if _field(message, name) is not None else default


def _lacks(message: Any, name: str, purpose: str, path: str, layer: Any = None) -> SchemaError:
    descriptor = message.DESCRIPTOR
    return SchemaError(
        f"the schema's message {descriptor.full_name} has no field '{name}', which the upgrade "
        f"needs to {purpose}", where=path, layer=layer,
        expected=f"a field {descriptor.name}.{name} (as in Caffe's caffe.proto)",
        found="no such field")


def _mismatch(message: Any, name: str, value: Any, purpose: str, path: str, layer: Any,
              error: Exception) -> SchemaError:
    fd = _field(message, name)
    return SchemaError(
        f"the schema's field {fd.full_name} cannot take the value the upgrade writes to "
        f"{purpose} ({error})", where=path, layer=layer, expected="a field typed as in Caffe",
        found=repr(value) if not isinstance(value, Message) else type(value).__name__)


def _require(message: Any, name: str, purpose: str, path: str, layer: Any = None) -> Any:
    """``message.<name>`` (a sub-message or repeated container) to write into."""
    if _field(message, name) is None:
        raise _lacks(message, name, purpose, path, layer)
    return getattr(message, name)


def _set(message: Any, name: str, value: Any, purpose: str, path: str, layer: Any = None) -> None:
    if _field(message, name) is None:
        raise _lacks(message, name, purpose, path, layer)
    try:
        setattr(message, name, value)
    except (TypeError, ValueError, AttributeError) as error:
        raise _mismatch(message, name, value, purpose, path, layer, error) from None


def _extend(message: Any, name: str, values: Any, purpose: str, path: str,
            layer: Any = None) -> None:
    if not len(values):
        return
    container = _require(message, name, purpose, path, layer)
    try:
        container.extend(values)
    except (TypeError, ValueError, AttributeError) as error:
        raise _mismatch(message, name, list(values)[0], purpose, path, layer, error) from None


def _enum_number(message: Any, name: str, value_name: str, purpose: str, path: str,
                 layer: Any = None) -> int:
    """The number of enum value ``value_name`` of field ``name`` of ``message``'s schema."""
    fd = _field(message, name)
    if fd is None:
        raise _lacks(message, name, purpose, path, layer)
    if fd.enum_type is None:
        raise SchemaError(
            f"the schema's field {fd.full_name} is not an enum, so the upgrade cannot {purpose}",
            where=path, layer=layer, expected=f"an enum with a value {value_name}",
            found="a field of another type")
    value = fd.enum_type.values_by_name.get(value_name)
    if value is None:
        raise SchemaError(
            f"the schema's enum {fd.enum_type.full_name} has no value {value_name}, which the "
            f"upgrade needs to {purpose}", where=path, layer=layer, expected=value_name,
            found=", ".join(v.name for v in fd.enum_type.values) or "no values")
    return value.number


def _enum_name(message: Any, name: str, number: int) -> str:
    fd = _field(message, name)
    return str(number) if fd is None or fd.enum_type is None else _enum_name_of(fd, number)


def _new_message(message: Any, name: str, purpose: str, path: str) -> Any:
    """A fresh message of the type of ``message``'s field ``name``, from the same schema."""
    fd = _field(message, name)
    if fd is None:
        raise _lacks(message, name, purpose, path)
    if fd.message_type is None:
        raise SchemaError(f"the schema's field {fd.full_name} is not a message, so the upgrade "
                          f"cannot {purpose}", where=path, expected="a message field",
                          found="a field of another type")
    return message_factory.GetMessageClass(fd.message_type)()


# ----------------------------------------------------------------------------------------------
# V0 -> V1


def _upgrade_v0_net(net: Message, notes: list[str], path: str) -> Message:
    entries = _merge_padding_layers(net, notes, path)
    out = type(net)()
    dropped = [fd.name for fd, _ in net.ListFields() if fd.name not in _V0_NET_FIELDS_KEPT]
    for name in ("name", "force_backward"):
        if _is_set(net, name):
            setattr(out, name, getattr(net, name))
    for name in ("input", "input_dim"):
        if _count(net, name):
            getattr(out, name).extend(getattr(net, name))
    if dropped:
        notes.append(f"dropped net-level field(s) {', '.join(dropped)}: Caffe's V0 "
                     "upgrade keeps only name, input, input_dim and force_backward")
    for entry in entries:
        _upgrade_v0_layer(entry, out.layers.add(), notes, path)
    notes.append(f"converted {len(entries)} V0 layer(s) ('layers {{ layer {{ }} }}' with "
                 "flat fields) to V1 layers with per-type parameter messages")
    return out


def _merge_padding_layers(net: Message, notes: list[str], path: str) -> list[Any]:
    """Drop V0 "padding" layers, moving each one's pad into the conv or pool layer it feeds."""
    producer: dict[str, int] = {name: -1 for name in _items(net, "input")}  # blob -> last writer
    kept: list[Any] = []
    for index, entry in enumerate(net.layers):
        v0 = entry.layer
        v0_name, v0_type = _scalar(v0, "name", ""), _scalar(v0, "type", "")
        if not entry.HasField("layer"):
            raise SchemaError(
                "a V0 net (layers with a nested 'layer { }') also has a layer without one; "
                "Caffe's V0 upgrade would keep only its bottoms and tops, leaving it without a "
                "type", where=path,
                layer=(_scalar(entry, "name", "") or f"#{index}", _v1_type_name(entry)))
        copy = None
        if v0_type != "padding":
            copy = type(entry)()
            copy.CopyFrom(entry)
            kept.append(copy)
        for slot, blob in enumerate(_items(entry, "bottom")):
            if blob not in producer:
                raise SchemaError(
                    f"bottom '{blob}' is not a net input and no earlier layer writes it; Caffe's "
                    "V0 upgrade needs every bottom defined before use",
                    where=path, layer=(v0_name, v0_type))
            source_index = producer[blob]
            if source_index < 0 or _scalar(net.layers[source_index].layer, "type") != "padding":
                continue
            source = net.layers[source_index]
            source_name = _scalar(source.layer, "name", "")
            if v0_type not in ("conv", "pool"):
                raise SchemaError(
                    f"V0 padding layer '{source_name}' feeds this layer, but Caffe can only "
                    "merge padding into a convolution or pooling layer",
                    where=path, layer=(v0_name, v0_type), expected="'conv' or 'pool'",
                    found=repr(v0_type))
            if len(entry.bottom) != 1:
                raise SchemaError(
                    f"a layer fed by V0 padding layer '{source_name}' must have exactly "
                    "one bottom", where=path, layer=(v0_name, v0_type), expected=1,
                    found=len(entry.bottom))
            if len(source.bottom) != 1 or _count(source, "top") != 1:
                raise SchemaError(
                    "a V0 padding layer must have exactly one bottom and one top",
                    where=path, layer=(source_name, "padding"), expected="1 bottom, 1 top",
                    found=f"{len(source.bottom)} bottom(s), {_count(source, 'top')} top(s)")
            pad = _scalar(source.layer, "pad", 0)
            _set(copy.layer, "pad", pad, f"merge V0 padding layer '{source_name}' into it",
                 path, (v0_name, v0_type))
            copy.bottom[slot] = source.bottom[0]
            notes.append(f"merged V0 padding layer '{source_name}' "
                         f"(pad {pad}) into {v0_type} layer '{v0_name}', which now "
                         f"reads '{source.bottom[0]}'")
        for blob in _items(entry, "top"):
            producer[blob] = index
    return kept


def _upgrade_v0_layer(entry: Any, out: Any, notes: list[str], path: str) -> None:
    """Fill V1 layer ``out`` from one V0 connection (outer bottoms/tops, inner flat fields)."""
    v0 = entry.layer
    v0_name, v0_type = _scalar(v0, "name", ""), _scalar(v0, "type", "")
    layer = (v0_name, v0_type or None)
    purpose = "write this V0 layer as a V1 layer"
    for name in ("bottom", "top"):
        _extend(out, name, _items(entry, name), purpose, path, layer)
    outer_extra = [fd.name for fd, _ in entry.ListFields()
                   if fd.name not in ("layer", "bottom", "top")]
    if outer_extra:
        notes.append(f"layer '{v0_name}' ({v0_type}): dropped field(s) "
                     f"{', '.join(outer_extra)} written beside the nested V0 layer; Caffe's V0 "
                     "upgrade reads only the nested layer and the bottoms and tops")
    if _is_set(v0, "name"):
        _set(out, "name", v0_name, purpose, path, layer)
    if not _is_set(v0, "type"):
        raise SchemaError("V0 layer has no type", where=path, layer=(v0_name, None))
    if v0_type not in V0_LAYER_TYPES:
        raise SchemaError(
            "unknown V0 layer type; Caffe's V0 upgrade knows only "
            + ", ".join(sorted(V0_LAYER_TYPES)) + " (and 'padding', merged into conv/pool)",
            where=path, layer=(v0_name, v0_type))
    out.type = _enum_number(out, "type", V0_LAYER_TYPES[v0_type],
                            "give this V0 layer its V1 type", path, layer)

    dropped: list[str] = []
    for fd, value in v0.ListFields():
        if fd.name in ("name", "type"):
            continue
        targets = _V0_FIELD_TARGETS.get(fd.name)
        if targets is None:
            dropped.append(f"{fd.name} (Caffe's V0 upgrade has no place for it)")
            continue
        target = targets.get(v0_type) or targets.get(_ANY)
        if target is None:
            kinds = "/".join(sorted(targets))
            dropped.append(f"{fd.name} (used only by {kinds} layers)")
            continue
        sub_name, field_name = target
        where_to = sub_name if field_name is None else (
            field_name if sub_name is None else f"{sub_name}.{field_name}")
        move = f"move V0 field {fd.name} to {where_to}"
        holder = out if sub_name is None else _require(out, sub_name, move, path, layer)
        if field_name is None:  # a whole message copied as is
            try:
                holder.CopyFrom(value)
            except (TypeError, ValueError) as error:
                raise _mismatch(out, sub_name, value, move, path, layer, error) from None
        else:
            _assign(holder, field_name, value, fd, move, path, layer)
    if dropped:
        notes.append(f"layer '{v0_name}' ({v0_type}): dropped V0 field(s) "
                     + "; ".join(dropped))


def _assign(holder: Any, field_name: str, value: Any, source_fd: Any, purpose: str, path: str,
            layer: Any) -> None:
    """Set ``holder.field_name`` from a V0 value: append to repeated fields, copy messages,
    translate enums by value name."""
    target_fd = _field(holder, field_name)
    if target_fd is None:
        raise _lacks(holder, field_name, purpose, path, layer)
    if source_fd.is_repeated:
        _extend(holder, field_name, value, purpose, path, layer)  # blobs, blobs_lr, weight_decay
        return
    if target_fd.enum_type is not None and source_fd.enum_type is not None:
        value = _enum_number(holder, field_name, _enum_name_of(source_fd, value), purpose, path,
                             layer)
    try:
        if target_fd.is_repeated:
            # ConvolutionParameter pad/kernel_size/stride are lists; a V0 layer gives one value.
            getattr(holder, field_name).append(value)
        elif target_fd.message_type is not None:
            getattr(holder, field_name).CopyFrom(value)
        else:
            setattr(holder, field_name, value)
    except (TypeError, ValueError, AttributeError) as error:
        raise _mismatch(holder, field_name, value, purpose, path, layer, error) from None


def _enum_name_of(fd: Any, number: int) -> str:
    value = fd.enum_type.values_by_number.get(number)
    return value.name if value is not None else str(number)


# ----------------------------------------------------------------------------------------------
# V1 data transformation fields


def _upgrade_data_transformation(net: Message, notes: list[str], path: str) -> None:
    """Move scale/mean_file/crop_size/mirror of V1 data layers into transform_param."""
    for entry in _items(net, "layers"):
        type_name = _v1_type_name(entry)
        param_name = _V1_DATA_LAYERS.get(type_name)
        if param_name is None or not _is_set(entry, param_name):
            continue
        param = getattr(entry, param_name)
        layer = (_scalar(entry, "name", ""), type_name)
        moved = []
        for field in _TRANSFORM_FIELDS:
            if _is_set(param, field):
                purpose = f"move {param_name}.{field} into transform_param"
                transform = _require(entry, "transform_param", purpose, path, layer)
                _set(transform, field, getattr(param, field), purpose, path, layer)
                param.ClearField(field)
                moved.append(field)
        if moved:
            notes.append(f"layer '{layer[0]}' ({type_name}): moved {', '.join(moved)} from "
                         f"{param_name} to transform_param")


# ----------------------------------------------------------------------------------------------
# V1 -> V2


def _upgrade_v1_net(net: Message, notes: list[str], path: str) -> Message:
    if _field(net, "layer") is None:
        raise _lacks(net, "layer", "write the old 'layers { }' entries in today's "
                     "'layer { }' format", path)
    v1 = net.layers[0]
    type_fd = _field(v1, "type")
    if type_fd is None or type_fd.enum_type is None:
        raise SchemaError(
            f"the schema's 'layers' entries ({v1.DESCRIPTOR.full_name}) have no enum field "
            "'type', so the upgrade cannot read them as V1 layers", where=path,
            expected="V1LayerParameter.type: enum LayerType (as in Caffe's caffe.proto)",
            found="no such field" if type_fd is None else "a field of another type")
    out = type(net)()
    out.CopyFrom(net)
    out.ClearField("layers")
    out.ClearField("layer")
    by_change: dict[str, list[str]] = {}
    for entry in net.layers:
        _upgrade_v1_layer(entry, out.layer.add(), by_change, notes, path)
    notes.append(f"converted {len(net.layers)} V1 layer(s) ('layers {{ type: ENUM }}') to "
                 "'layer { type: \"...\" }'")
    for change, names in by_change.items():
        notes.append(f"{change} in {len(names)} layer(s): {', '.join(names)}")
    return out


def _upgrade_v1_layer(entry: Any, out: Any, by_change: dict[str, list[str]],
                      notes: list[str], path: str) -> None:
    type_name = _v1_type_name(entry)
    entry_name = _scalar(entry, "name", "")
    if not _is_set(entry, "type") or type_name == "NONE":
        raise SchemaError("V1 layer has no type", where=path, layer=(entry_name, None))
    if type_name not in V1_LAYER_TYPES:
        raise SchemaError("V1 layer type has no V2 name in Caffe's upgrade", where=path,
                          layer=(entry_name, type_name), expected="a BVLC Caffe V1 type")
    layer = (entry_name, type_name)
    purpose = "write this V1 layer in today's format"
    for name in ("bottom", "top"):
        _extend(out, name, _items(entry, name), purpose, path, layer)
    if _is_set(entry, "name"):
        _set(out, "name", entry_name, purpose, path, layer)
    for name in ("include", "exclude"):
        _extend(out, name, _items(entry, name), purpose, path, layer)
    _set(out, "type", V1_LAYER_TYPES[type_name], purpose, path, layer)
    _extend(out, "blobs", _items(entry, "blobs"), purpose, path, layer)

    label = entry_name or "(unnamed)"

    def spec(i: int, what: str) -> Any:
        params = _require(out, "param", f"write its {what} as param specs", path, layer)
        while len(params) <= i:
            params.add()
        return params[i]

    for i, name in enumerate(_items(entry, "param")):
        _set(spec(i, "param names"), "name", name, "write its param names", path, layer)
    for i, mode in enumerate(_items(entry, "blob_share_mode")):
        target = spec(i, "blob_share_mode")
        share = "write its blob_share_mode as param { share_mode }"
        _set(target, "share_mode",
             _enum_number(target, "share_mode", _enum_name(entry, "blob_share_mode", mode),
                          share, path, layer), share, path, layer)
    for i, lr in enumerate(_items(entry, "blobs_lr")):
        _set(spec(i, "blobs_lr"), "lr_mult", lr, "write its blobs_lr as param { lr_mult }",
             path, layer)
    for i, decay in enumerate(_items(entry, "weight_decay")):
        _set(spec(i, "weight_decay"), "decay_mult", decay,
             "write its weight_decay as param { decay_mult }", path, layer)
    _extend(out, "loss_weight", _items(entry, "loss_weight"), purpose, path, layer)

    if _count(entry, "param"):
        by_change.setdefault("param names -> param { name }", []).append(label)
    if _count(entry, "blob_share_mode"):
        by_change.setdefault("blob_share_mode -> param { share_mode }", []).append(label)
    if _count(entry, "blobs_lr") or _count(entry, "weight_decay"):
        by_change.setdefault("blobs_lr/weight_decay -> param { lr_mult decay_mult }",
                             []).append(label)

    dropped = []
    for fd, value in entry.ListFields():
        if fd.name in _V1_FIELDS_BY_HAND:
            continue
        target = out.DESCRIPTOR.fields_by_name.get(fd.name)
        if (target is not None and fd.message_type is not None
                and target.message_type is not None
                and target.message_type.full_name == fd.message_type.full_name):
            getattr(out, fd.name).CopyFrom(value)
        else:
            dropped.append(fd.name)
    if dropped:
        notes.append(f"layer '{label}' ({type_name}): dropped field(s) "
                     f"{', '.join(dropped)}, which have no V2 counterpart")


def _v1_type_name(entry: Any) -> str:
    """The name of a V1 layer's enum type value ("CONVOLUTION"), read from its own schema."""
    if _field(entry, "type") is None:
        return "NONE"
    return _enum_name(entry, "type", entry.type)


# ----------------------------------------------------------------------------------------------
# net-level inputs -> Input layer


def _upgrade_net_input(net: Message, notes: list[str], path: str) -> None:
    names = list(_items(net, "input"))
    dims = list(_items(net, "input_dim"))
    shapes = list(_items(net, "input_shape"))
    if not names:
        raise SchemaError("the net gives input_dim or input_shape but names no input",
                          where=path, expected="'input: \"...\"' for each input",
                          found=f"{len(dims)} input_dim, {len(shapes)} input_shape")
    purpose = "turn the net-level inputs into an Input layer"
    layer = _new_message(net, "layer", purpose, path)
    taken = {existing.name for existing in net.layer}
    _set(layer, "name", _unique_name(_INPUT_LAYER_NAME, taken), purpose, path)
    _set(layer, "type", "Input", purpose, path)
    _extend(layer, "top", names, purpose, path)
    renamed = "" if layer.name == _INPUT_LAYER_NAME else (
        f" (named '{layer.name}' because a layer is already called '{_INPUT_LAYER_NAME}')")
    if not shapes and not dims:
        # Caffe reads this as a weights file, which lists its inputs by name only, and simply
        # forgets them.  A net definition would then have nothing producing these blobs, so we
        # make an Input layer without shapes instead (Caffe's Input layer accepts none; the
        # shapes are then given at run time).
        notes.append(f"net-level input(s) {', '.join(names)}, given without input_dim or "
                     f"input_shape, became the first layer, Input layer '{layer.name}'{renamed} "
                     "with no shape (Caffe itself would drop them)")
    else:
        input_param = _require(layer, "input_param", "give the Input layer its shapes", path)
        shape_list = _require(input_param, "shape", "give the Input layer its shapes", path)
        if shapes:
            if len(shapes) != len(names):
                raise SchemaError("each net-level input needs one input_shape", where=path,
                                  expected=f"{len(names)} input_shape", found=len(shapes))
            _extend(input_param, "shape", shapes, "give the Input layer its shapes", path)
            if dims:
                notes.append("ignored input_dim because input_shape is also given "
                             "(Caffe uses input_shape)")
        else:
            if len(dims) != 4 * len(names):
                raise SchemaError("each net-level input needs exactly four input_dim values",
                                  where=path, expected=f"{4 * len(names)} input_dim",
                                  found=len(dims))
            for i in range(len(names)):
                _extend(shape_list.add(), "dim", dims[4 * i:4 * i + 4],
                        "give the Input layer its shapes", path)
        shown = ", ".join(f"{name} {tuple(shape.dim)}"
                          for name, shape in zip(names, shape_list))
        notes.append(f"net-level input(s) {shown} became the first layer, "
                     f"Input layer '{layer.name}'{renamed}")
    rest = list(net.layer)
    del net.layer[:]
    net.layer.add().CopyFrom(layer)
    net.layer.extend(rest)
    for name in _NET_INPUT_FIELDS:
        if _field(net, name) is not None:
            net.ClearField(name)


def _unique_name(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    n = 1
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"


# ----------------------------------------------------------------------------------------------
# BatchNorm params


def _batch_norm_needs_fix(layer: Any) -> bool:
    # Old BatchNorm definitions listed three param specs (mean, variance, scale factor) so that
    # their learning rate could be set to zero by hand.  Caffe's upgrade sets lr_mult and
    # decay_mult of all three to 0.  When every lr_mult already is an explicit 0 the specs
    # already do what Caffe wants (decay does nothing without a learning rate), so we leave
    # such layers, which are common in today's nets, as they are.  A schema whose param specs
    # have no lr_mult/decay_mult has nothing to fix.
    if _scalar(layer, "type") != "BatchNorm" or _count(layer, "param") != 3:
        return False
    specs = layer.param
    if any(_field(specs[0], name) is None for name in ("lr_mult", "decay_mult")):
        return False
    return not all(spec.HasField("lr_mult") and spec.lr_mult == 0 for spec in specs)


def _upgrade_batch_norm(net: Message, notes: list[str]) -> None:
    fixed = []
    for layer in _items(net, "layer"):
        if _batch_norm_needs_fix(layer):
            for spec in layer.param:
                spec.lr_mult = 0
                spec.decay_mult = 0
            fixed.append(layer.name)
    if fixed:
        notes.append(f"set lr_mult and decay_mult to 0 in the three param specs of BatchNorm "
                     f"layer(s) {', '.join(fixed)}: Caffe never learns BatchNorm statistics")
