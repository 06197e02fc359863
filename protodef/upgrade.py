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
"""
from __future__ import annotations

from typing import Any

from google.protobuf import text_format

from caffe_proto import caffe_pb2
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


# ----------------------------------------------------------------------------------------------
# public entry points


def needs_upgrade(net: caffe_pb2.NetParameter) -> bool:
    """True when :func:`upgrade_net` would change ``net`` (old layers, net-level inputs, or
    BatchNorm param specs with a learning rate)."""
    if len(net.layers) or len(net.input) or len(net.input_dim) or len(net.input_shape):
        return True
    return any(_batch_norm_needs_fix(layer) for layer in net.layer)


def upgrade_net(net: caffe_pb2.NetParameter, *, path: str = "<net>"
                ) -> tuple[caffe_pb2.NetParameter, list[str]]:
    """Return ``net`` in today's format (``layer { }`` with string types) and notes on each change.

    ``net`` itself is not modified.  A net that is already modern comes back equal, with no notes.
    ``path`` names the source in error messages.
    """
    if not isinstance(net, caffe_pb2.NetParameter):
        raise TypeError(f"upgrade_net expects a caffe_pb2.NetParameter, not {type(net).__name__}")
    notes: list[str] = []
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)

    if len(out.layer) and len(out.layers):
        raise SchemaError(
            "the net mixes today's 'layer { }' entries with old 'layers { }' entries, which Caffe "
            "refuses to upgrade; write every layer in one format",
            where=path, expected="only 'layer' or only 'layers'",
            found=f"{len(out.layer)} 'layer' and {len(out.layers)} 'layers'")

    if any(entry.HasField("layer") for entry in out.layers):
        out = _upgrade_v0_net(out, notes, path)
    _upgrade_data_transformation(out, notes)
    if len(out.layers):
        out = _upgrade_v1_net(out, notes, path)
    if len(out.input) or len(out.input_dim) or len(out.input_shape):
        _upgrade_net_input(out, notes, path)
    _upgrade_batch_norm(out, notes)
    return out, notes


def upgrade_text(net: caffe_pb2.NetParameter, *, path: str = "<net>") -> str:
    """The upgraded net as prototxt text, ready to be written to a ``.prototxt`` file."""
    upgraded, _ = upgrade_net(net, path=path)
    return text_format.MessageToString(upgraded)


# ----------------------------------------------------------------------------------------------
# V0 -> V1


def _upgrade_v0_net(net: caffe_pb2.NetParameter, notes: list[str], path: str
                    ) -> caffe_pb2.NetParameter:
    entries = _merge_padding_layers(net, notes, path)
    out = caffe_pb2.NetParameter()
    dropped = [fd.name for fd, _ in net.ListFields() if fd.name not in _V0_NET_FIELDS_KEPT]
    if net.HasField("name"):
        out.name = net.name
    out.input.extend(net.input)
    out.input_dim.extend(net.input_dim)
    if net.HasField("force_backward"):
        out.force_backward = net.force_backward
    if dropped:
        notes.append(f"dropped net-level field(s) {', '.join(dropped)}: Caffe's V0 "
                     "upgrade keeps only name, input, input_dim and force_backward")
    for entry in entries:
        _upgrade_v0_layer(entry, out.layers.add(), notes, path)
    notes.append(f"converted {len(entries)} V0 layer(s) ('layers {{ layer {{ }} }}' with "
                 "flat fields) to V1 layers with per-type parameter messages")
    return out


def _merge_padding_layers(net: caffe_pb2.NetParameter, notes: list[str], path: str
                          ) -> list[Any]:
    """Drop V0 "padding" layers, moving each one's pad into the conv or pool layer it feeds."""
    producer: dict[str, int] = {name: -1 for name in net.input}  # blob -> index of last writer
    kept: list[Any] = []
    for index, entry in enumerate(net.layers):
        v0 = entry.layer
        if not entry.HasField("layer"):
            raise SchemaError(
                "a V0 net (layers with a nested 'layer { }') also has a layer without one; "
                "Caffe's V0 upgrade would keep only its bottoms and tops, leaving it without a "
                "type", where=path, layer=(entry.name or f"#{index}", _v1_type_name(entry)))
        copy = None
        if v0.type != "padding":
            copy = type(entry)()
            copy.CopyFrom(entry)
            kept.append(copy)
        for slot, blob in enumerate(entry.bottom):
            if blob not in producer:
                raise SchemaError(
                    f"bottom '{blob}' is not a net input and no earlier layer writes it; Caffe's "
                    "V0 upgrade needs every bottom defined before use",
                    where=path, layer=(v0.name, v0.type))
            source_index = producer[blob]
            if source_index < 0 or net.layers[source_index].layer.type != "padding":
                continue
            source = net.layers[source_index]
            if v0.type not in ("conv", "pool"):
                raise SchemaError(
                    f"V0 padding layer '{source.layer.name}' feeds this layer, but Caffe can only "
                    "merge padding into a convolution or pooling layer",
                    where=path, layer=(v0.name, v0.type), expected="'conv' or 'pool'",
                    found=repr(v0.type))
            if len(entry.bottom) != 1:
                raise SchemaError(
                    f"a layer fed by V0 padding layer '{source.layer.name}' must have exactly "
                    "one bottom", where=path, layer=(v0.name, v0.type), expected=1,
                    found=len(entry.bottom))
            if len(source.bottom) != 1 or len(source.top) != 1:
                raise SchemaError(
                    "a V0 padding layer must have exactly one bottom and one top",
                    where=path, layer=(source.layer.name, "padding"), expected="1 bottom, 1 top",
                    found=f"{len(source.bottom)} bottom(s), {len(source.top)} top(s)")
            copy.layer.pad = source.layer.pad
            copy.bottom[slot] = source.bottom[0]
            notes.append(f"merged V0 padding layer '{source.layer.name}' "
                         f"(pad {source.layer.pad}) into {v0.type} layer '{v0.name}', which now "
                         f"reads '{source.bottom[0]}'")
        for blob in entry.top:
            producer[blob] = index
    return kept


def _upgrade_v0_layer(entry: Any, out: Any, notes: list[str], path: str) -> None:
    """Fill V1 layer ``out`` from one V0 connection (outer bottoms/tops, inner flat fields)."""
    v0 = entry.layer
    v0_type = v0.type
    out.bottom.extend(entry.bottom)
    out.top.extend(entry.top)
    outer_extra = [fd.name for fd, _ in entry.ListFields()
                   if fd.name not in ("layer", "bottom", "top")]
    if outer_extra:
        notes.append(f"layer '{v0.name}' ({v0_type}): dropped field(s) "
                     f"{', '.join(outer_extra)} written beside the nested V0 layer; Caffe's V0 "
                     "upgrade reads only the nested layer and the bottoms and tops")
    if v0.HasField("name"):
        out.name = v0.name
    if not v0.HasField("type"):
        raise SchemaError("V0 layer has no type", where=path, layer=(v0.name, None))
    if v0_type not in V0_LAYER_TYPES:
        raise SchemaError(
            "unknown V0 layer type; Caffe's V0 upgrade knows only "
            + ", ".join(sorted(V0_LAYER_TYPES)) + " (and 'padding', merged into conv/pool)",
            where=path, layer=(v0.name, v0_type))
    out.type = caffe_pb2.V1LayerParameter.LayerType.Value(V0_LAYER_TYPES[v0_type])

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
        holder = out if sub_name is None else getattr(out, sub_name)
        if field_name is None:  # a whole message copied as is
            holder.CopyFrom(value)
        else:
            _assign(holder, field_name, value, fd)
    if dropped:
        notes.append(f"layer '{v0.name}' ({v0_type}): dropped V0 field(s) "
                     + "; ".join(dropped))


def _assign(holder: Any, field_name: str, value: Any, source_fd: Any) -> None:
    """Set ``holder.field_name`` from a V0 value: append to repeated fields, copy messages,
    translate enums by value name."""
    target_fd = holder.DESCRIPTOR.fields_by_name[field_name]
    if source_fd.is_repeated:
        getattr(holder, field_name).extend(value)  # blobs, blobs_lr, weight_decay
        return
    if target_fd.enum_type is not None and source_fd.enum_type is not None:
        value_name = source_fd.enum_type.values_by_number[value].name
        value = target_fd.enum_type.values_by_name[value_name].number
    if target_fd.is_repeated:
        # ConvolutionParameter pad/kernel_size/stride are lists; a V0 layer gives one value.
        getattr(holder, field_name).append(value)
    elif target_fd.message_type is not None:
        getattr(holder, field_name).CopyFrom(value)
    else:
        setattr(holder, field_name, value)


# ----------------------------------------------------------------------------------------------
# V1 data transformation fields


def _upgrade_data_transformation(net: caffe_pb2.NetParameter, notes: list[str]) -> None:
    """Move scale/mean_file/crop_size/mirror of V1 data layers into transform_param."""
    for entry in net.layers:
        type_name = _v1_type_name(entry)
        param_name = _V1_DATA_LAYERS.get(type_name)
        if param_name is None or not entry.HasField(param_name):
            continue
        param = getattr(entry, param_name)
        moved = []
        for field in _TRANSFORM_FIELDS:
            if field in param.DESCRIPTOR.fields_by_name and param.HasField(field):
                setattr(entry.transform_param, field, getattr(param, field))
                param.ClearField(field)
                moved.append(field)
        if moved:
            notes.append(f"layer '{entry.name}' ({type_name}): moved {', '.join(moved)} from "
                         f"{param_name} to transform_param")


# ----------------------------------------------------------------------------------------------
# V1 -> V2


def _upgrade_v1_net(net: caffe_pb2.NetParameter, notes: list[str], path: str
                    ) -> caffe_pb2.NetParameter:
    out = caffe_pb2.NetParameter()
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
    if not entry.HasField("type") or type_name == "NONE":
        raise SchemaError("V1 layer has no type", where=path, layer=(entry.name, None))
    if type_name not in V1_LAYER_TYPES:
        raise SchemaError("V1 layer type has no V2 name in Caffe's upgrade", where=path,
                          layer=(entry.name, type_name), expected="a BVLC Caffe V1 type")
    out.bottom.extend(entry.bottom)
    out.top.extend(entry.top)
    if entry.HasField("name"):
        out.name = entry.name
    out.include.extend(entry.include)
    out.exclude.extend(entry.exclude)
    out.type = V1_LAYER_TYPES[type_name]
    out.blobs.extend(entry.blobs)

    label = entry.name or "(unnamed)"

    def spec(i: int) -> Any:
        while len(out.param) <= i:
            out.param.add()
        return out.param[i]

    for i, name in enumerate(entry.param):
        spec(i).name = name
    share_modes = caffe_pb2.V1LayerParameter.DimCheckMode
    for i, mode in enumerate(entry.blob_share_mode):
        spec(i).share_mode = caffe_pb2.ParamSpec.DimCheckMode.Value(share_modes.Name(mode))
    for i, lr in enumerate(entry.blobs_lr):
        spec(i).lr_mult = lr
    for i, decay in enumerate(entry.weight_decay):
        spec(i).decay_mult = decay
    out.loss_weight.extend(entry.loss_weight)

    if len(entry.param):
        by_change.setdefault("param names -> param { name }", []).append(label)
    if len(entry.blob_share_mode):
        by_change.setdefault("blob_share_mode -> param { share_mode }", []).append(label)
    if len(entry.blobs_lr) or len(entry.weight_decay):
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
    enum = caffe_pb2.V1LayerParameter.LayerType
    try:
        return enum.Name(entry.type)
    except ValueError:
        return str(entry.type)


# ----------------------------------------------------------------------------------------------
# net-level inputs -> Input layer


def _upgrade_net_input(net: caffe_pb2.NetParameter, notes: list[str], path: str) -> None:
    names = list(net.input)
    dims = list(net.input_dim)
    shapes = list(net.input_shape)
    if not names:
        raise SchemaError("the net gives input_dim or input_shape but names no input",
                          where=path, expected="'input: \"...\"' for each input",
                          found=f"{len(dims)} input_dim, {len(shapes)} input_shape")
    layer = caffe_pb2.LayerParameter()
    taken = {existing.name for existing in net.layer}
    layer.name = _unique_name(_INPUT_LAYER_NAME, taken)
    layer.type = "Input"
    layer.top.extend(names)
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
        if shapes:
            if len(shapes) != len(names):
                raise SchemaError("each net-level input needs one input_shape", where=path,
                                  expected=f"{len(names)} input_shape", found=len(shapes))
            layer.input_param.shape.extend(shapes)
            if dims:
                notes.append("ignored input_dim because input_shape is also given "
                             "(Caffe uses input_shape)")
        else:
            if len(dims) != 4 * len(names):
                raise SchemaError("each net-level input needs exactly four input_dim values",
                                  where=path, expected=f"{4 * len(names)} input_dim",
                                  found=len(dims))
            for i in range(len(names)):
                layer.input_param.shape.add().dim.extend(dims[4 * i:4 * i + 4])
        shown = ", ".join(f"{name} {tuple(shape.dim)}"
                          for name, shape in zip(names, layer.input_param.shape))
        notes.append(f"net-level input(s) {shown} became the first layer, "
                     f"Input layer '{layer.name}'{renamed}")
    rest = list(net.layer)
    del net.layer[:]
    net.layer.add().CopyFrom(layer)
    net.layer.extend(rest)
    net.ClearField("input")
    net.ClearField("input_dim")
    net.ClearField("input_shape")


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
    # such layers, which are common in today's nets, as they are.
    if layer.type != "BatchNorm" or len(layer.param) != 3:
        return False
    return not all(spec.HasField("lr_mult") and spec.lr_mult == 0 for spec in layer.param)


def _upgrade_batch_norm(net: caffe_pb2.NetParameter, notes: list[str]) -> None:
    fixed = []
    for layer in net.layer:
        if _batch_norm_needs_fix(layer):
            for spec in layer.param:
                spec.lr_mult = 0
                spec.decay_mult = 0
            fixed.append(layer.name)
    if fixed:
        notes.append(f"set lr_mult and decay_mult to 0 in the three param specs of BatchNorm "
                     f"layer(s) {', '.join(fixed)}: Caffe never learns BatchNorm statistics")
