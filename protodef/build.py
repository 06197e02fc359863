"""NetParameter -> Net: phase rules, input binding, in-place resolution and shape inference in one sweep."""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Mapping, Sequence

from .errors import (
    GraphError,
    Location,
    ProtodefError,
    SchemaError,
    ShapeError,
    UnsupportedError,
)
from .ir import Layer, Net, NetInput, ParamSpec, Value
from .layers.common import MAX_BLOB_COUNT, reject_unhonoured
from .layers.registry import LayerSpec, Shape, spec_of
from .lenient import (
    Opaque,
    data_source_shapes,
    depends_on_names,
    is_partial,
    named_sizes,
)
from .preprocessing import record_preprocessing
from .source import SourceMap
from .symbolic import as_dim, definitely

PHASES = {"TRAIN": 0, "TEST": 1}
_PHASE_NAMES = {number: name for name, number in PHASES.items()}


def build_net(param: Any, source: SourceMap | None = None, *, phase: str = "TEST", stages: Sequence[str] = (),
              level: int = 0, input_shapes: Mapping[str, Shape] | None = None, lenient: bool = False) -> Net:
    """Build the IR of `param` as Caffe would instantiate it in `phase`, with every value's shape. Sizes may
    be named (`H`); `lenient` (info, draw) builds what a conversion would refuse, see protodef/lenient.py."""
    path = source.path if source else "<net>"
    locations = _layer_locations(param, source)
    param, notes = _modernise(param, path)
    phase_number = _phase_number(phase)
    state = _net_state(param, phase_number, stages, level)
    input_shapes = {name: tuple(as_dim(d) for d in shape) for name, shape in (input_shapes or {}).items()}

    net = Net(param.name, source.path if source else None)
    net.notes.extend(notes)
    _warn_all(net, getattr(source, "warnings", ()))
    latest: dict[str, Value] = {}
    unknown_shape: dict[Value, str] = {}
    _add_declared_inputs(net, param, input_shapes, latest, unknown_shape, path)

    kept, dropped = [], []
    unknown_fields: dict[int, list] = {}
    for lp in param.layer:
        where, unknown = locations.take(lp.name)
        where = where or Location(path)
        if unknown:
            unknown_fields[id(lp)] = unknown
        (kept if _meets_rules(lp, state) else dropped).append((lp, where))
    if dropped:
        names = ", ".join(f"{lp.name} ({lp.type})" for lp, _ in dropped)
        net.notes.append(f"phase {phase.upper()}: left out {len(dropped)} layer(s) by include/exclude rules: {names}")
    if not lenient:
        _check_types_known(kept)
    if not kept and not net.inputs:
        raise GraphError("the net is empty: it declares no inputs and, in this phase, no layers", where=path,
                         expected="at least one input or layer")

    left_out = {top: (lp.name, lp.type) for lp, _ in dropped for top in lp.top}
    used_names = _Names()
    for lp, where in kept:
        if not lp.HasField("phase"):
            lp.phase = phase_number   # Caffe gives each layer the net's phase (BatchNorm's default depends on it)
        spec = spec_of(lp.type)
        name = used_names.unique(lp.name or f"{lp.type.lower()}{len(used_names)}")
        try:
            if spec is None:   # lenient builds only
                _add_not_understood(net, lp, name, where, latest, left_out)
                continue
            extra = _fork_fields(spec, unknown_fields.get(id(lp), []), net.notes if lenient else None, lp)
            _add_layer(net, lp, spec, name, where, latest, input_shapes, unknown_shape, left_out, extra, lenient)
        except ProtodefError as error:
            raise error.at(where, (lp.name, lp.type)) from None
    _drop_unread_data_tops(net)
    _note_unknown_after(net)
    unused = sorted(set(input_shapes) - {i.value.blob for i in net.inputs})
    if unused:
        raise GraphError("--input-shape names a blob that is not an input of this net", found=", ".join(unused),
                         expected=", ".join(i.value.blob for i in net.inputs) or "no inputs", where=path)
    training = [layer for _, layer in net.graph.nodes(data="layer") if layer.spec.training_only]
    if training:
        net.notes.append("training-only layers in this view (dropped before lowering): "
                         + ", ".join(f"{layer.name} ({layer.type})" for layer in training))
    return net


def _warn_all(net: Net, messages: Sequence[str]) -> None:
    """Notes for `info`, one-line warnings for the other commands."""
    import warnings

    from .attach import ProtodefWarning
    for message in messages:
        net.notes.append(message)
        warnings.warn(message, ProtodefWarning, stacklevel=3)


def _modernise(param: Any, path: str) -> tuple[Any, list[str]]:
    if not (len(param.layers) or len(param.input)):
        return param, []
    from .upgrade import upgrade_net  # legacy nets only
    return upgrade_net(param, path=path)


def _layer_locations(param: Any, source: SourceMap | None) -> "_Locations":
    """Where each layer was written (and its unknown fork fields), looked up by name in order of appearance:
    the upgrade may put an Input layer first (for net-level inputs) or merge V0 padding layers, so indexes
    do not line up."""
    by_name: dict[str, list[tuple[Location, list]]] = defaultdict(list)
    if source is not None:
        for i, lp in enumerate(getattr(param, "layer", ())):    # a V1-era fork schema (--proto) has none
            by_name[lp.name].append((source.layer(i), source.unknown_in_layer(i)))
        for i, old in enumerate(getattr(param, "layers", ())):   # a fork's schema (--proto) may have no V1 field
            name = old.name or (old.layer.name if old.HasField("layer") else "")
            by_name[name].append((source.layer(i, legacy=True), []))
    return _Locations(by_name)


class _Locations:
    def __init__(self, by_name: dict[str, list[tuple[Location, list]]]):
        self._by_name = {name: list(entries) for name, entries in by_name.items()}

    def take(self, name: str) -> tuple[Location | None, list]:
        entries = self._by_name.get(name)
        return entries.pop(0) if entries else (None, [])


def _phase_number(phase: str) -> int:
    try:
        return PHASES[phase.upper()]
    except KeyError:
        raise SchemaError("unknown phase", expected="TEST or TRAIN", found=phase) from None


def _net_state(param: Any, phase: int, stages: Sequence[str], level: int) -> tuple[int, int, frozenset[str]]:
    """Caffe's NetState: the phase asked for; level and stages from the net, plus those asked for."""
    return (phase, level or param.state.level, frozenset(stages) | frozenset(param.state.stage))


def _meets_rules(lp: Any, state: tuple[int, int, frozenset[str]]) -> bool:
    """Caffe's Net::StateMeetsRule: kept when some include rule holds (or none given) and no exclude rule does."""
    if lp.include:
        return any(_rule_holds(rule, state) for rule in lp.include)
    return not any(_rule_holds(rule, state) for rule in lp.exclude)


def _rule_holds(rule: Any, state: tuple[int, int, frozenset[str]]) -> bool:
    phase, level, stages = state
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(stage not in stages for stage in rule.stage):
        return False
    return not any(stage in stages for stage in rule.not_stage)


def _check_types_known(kept: list[tuple[Any, Location]]) -> None:
    unknown = [(lp, where) for lp, where in kept if spec_of(lp.type) is None]
    if not unknown:
        return
    python = [(lp, w) for lp, w in unknown if lp.type == "Python"]
    shown = 20    # a hostile file may hold 100 000 of them; the message stays readable
    listed = "; ".join(f"{where}: layer '{lp.name}' ({lp.type})" for lp, where in unknown[:shown])
    if len(unknown) > shown:
        types = sorted({lp.type for lp, _ in unknown})
        listed += f"; and {len(unknown) - shown} more (types: {', '.join(types[:shown])}{', ...' if len(types) > shown else ''})"
    known_refusals = _census_refusals({lp.type for lp, _ in unknown})
    if python:
        message = (f"{len(unknown)} layer(s) of types protodef does not know: {listed}. A Python layer runs user "
                   "code that protodef never imports or executes; register a layer type for it with "
                   "protodef.register_layer('Python', ...) to convert it")
    elif known_refusals and len(known_refusals) == len({lp.type for lp, _ in unknown}):
        # Types the census of the forks knows and refuses on purpose: say why, not that they are unknown.
        why = "; ".join(entry.why_refused() for _, entry in sorted(known_refusals.items()))
        message = (f"{len(unknown)} layer(s) protodef does not convert: {listed}. {why} (docs/layers.md, "
                   "\"Census\"; protodef.register_layer(...) can teach it a lowering of your own)")
    else:
        message = (f"{len(unknown)} layer(s) of types protodef does not know: {listed}. Register them with "
                   "protodef.register_layer(...) or give the fork's schema with --proto")
    error = UnsupportedError(message)
    error.unknown = [(lp.name, lp.type, where) for lp, where in unknown]
    raise error


def schema_gap(error: Exception, message: Any, *, reader: str = "", where: str | None = None
               ) -> SchemaError | None:
    """The one-line error for a field protodef reads and a fork's schema (--proto) lacks (older forks predate
    round_mode, say), when `error` is such a read of `message`; None for anything else, which the caller
    raises as it was. A field is asked for by attribute (AttributeError), descriptor lookup (KeyError) or
    HasField (ValueError, 'has no "x" field')."""
    from caffe_proto import caffe_pb2
    if message.DESCRIPTOR.file is caffe_pb2.DESCRIPTOR:
        return None
    if isinstance(error, ValueError):
        found = re.search(r'has no "(\w+)" field', str(error))
        field = found.group(1) if found else None
    else:
        field = str(error).strip("'").split(".")[0].split(" ")[0] or None
    if field is None:
        return None
    return SchemaError(f"the schema given with --proto has no field '{field}', which protodef reads{reader}",
                       where=where, expected="the field as BVLC Caffe's caffe.proto declares it; without --proto "
                       "protodef reads this file with its own schema")


def _census_refusals(types: set[str]) -> dict[str, Any]:
    """The census entries (protodef/census.py) of the types it refuses on purpose."""
    from .census import CENSUS
    return {entry.type: entry for entry in CENSUS if entry.type in types and entry.refusal}


def _add_declared_inputs(net: Net, param: Any, overrides: dict[str, Shape], latest: dict[str, Value],
                         unknown: dict[Value, str], path: str) -> None:
    """Net-level `input:` fields (a modernised net has none left, but a hand-made NetParameter may)."""
    for index, name in enumerate(param.input):
        if index < len(param.input_shape):
            shape = tuple(int(d) for d in param.input_shape[index].dim)
        elif len(param.input_dim) >= 4 * (index + 1):
            shape = tuple(int(d) for d in param.input_dim[4 * index: 4 * index + 4])
        else:
            shape = None
        value = Value(name)
        shape = overrides.get(name, shape)
        if shape is None:
            unknown[value] = "the net declares it with no input_shape or input_dim"
        if shape is not None:
            check_blob_size(shape)
        net.add_input(NetInput(value, "input", "input", Location(path)), shape)
        latest[name] = value


def _add_layer(net: Net, lp: Any, spec: LayerSpec, name: str, where: Location, latest: dict[str, Value],
               overrides: dict[str, Shape], unknown: dict[Value, str], left_out: dict[str, tuple[str, str]],
               extra: dict[str, Any], lenient: bool = False) -> None:
    _add_automatic_tops(lp, spec, latest)
    try:
        _check_arity(spec, len(lp.bottom), len(lp.top))
    except GraphError as error:
        if not lenient:
            raise
        return _add_opaque(net, lp, name, where, latest, left_out, error.format())
    inputs = _bottoms(lp, latest, left_out)
    in_shapes = []
    for value in inputs:
        shape = net.shapes.get(value)
        if shape is None and not spec.training_only and lenient:
            return _add_opaque(net, lp, name, where, latest, left_out, _AFTER_UNKNOWN)
        if shape is None and not spec.training_only:
            producer = net.input_by_value(value)
            declared = f"layer '{producer.declared_by}' ({producer.declared_type})" if producer else "its producer"
            raise ShapeError(f"input '{value.blob}' declared by {declared} has no known shape: "
                             f"{unknown.get(value, 'unknown')}; give --input-shape {value.blob}=N,C,H,W")
        in_shapes.append(shape)
    try:
        params = _params(lp, spec, tuple(in_shapes), extra)
    except ProtodefError as error:
        if not (lenient and depends_on_names(tuple(in_shapes))):
            raise
        return _add_opaque(net, lp, name, where, latest, left_out, error.format())
    outputs = _bind_outputs(lp, spec, latest)
    if spec.produces_input:
        # Caffe's data transformer (mean, scale, crop, mirror) runs before the net: the converted model
        # takes what it produces, so callers must apply it themselves.
        record_preprocessing(net, lp, _PHASE_NAMES[lp.phase])
        shapes = params.infer()
        for index, value in enumerate(outputs):
            shape = overrides.get(value.blob, shapes[index] if index < len(shapes) else None)
            if is_partial(shape):
                shape = named_sizes(shape) if lenient else None
            if shape is None:
                unknown[value] = params.unknown_because or "its layer declares no shape"
            else:
                check_blob_size(tuple(shape), what=f"input '{value.blob}'")
            net.add_input(NetInput(value, lp.name, lp.type, where), shape)
        return
    try:
        out_shapes = infer_outputs(params, tuple(in_shapes), len(outputs))
    except ProtodefError as error:
        if not (lenient and depends_on_names(tuple(in_shapes))):
            raise
        return _add_opaque(net, lp, name, where, latest, left_out, error.format(), outputs)
    layer = Layer(name=name, type=lp.type, params=params, inputs=tuple(inputs), outputs=tuple(outputs), where=where,
                  caffe_name=lp.name, param_names=tuple(p.name for p in lp.param),
                  param_specs=tuple(_param_spec(p) for p in lp.param), loss_weights=tuple(lp.loss_weight), extra=extra)
    net.add(layer)
    for value, shape in zip(outputs, out_shapes):
        net.shapes[value] = shape


def _param_spec(p: Any) -> ParamSpec:
    return ParamSpec(p.name, p.lr_mult if p.HasField("lr_mult") else None,
                     p.decay_mult if p.HasField("decay_mult") else None, p.share_mode == 1)   # 1: PERMISSIVE


def _fork_fields(spec: LayerSpec, unknown: list, notes: list[str] | None = None, lp: Any = None
                 ) -> dict[str, Any]:
    """Unknown parameter blocks go to a plugin as plain mappings; any other layer cannot honour them (a lenient
    build, given `notes`, leaves them out with a note)."""
    if unknown and not spec.plugin:
        first = unknown[0]
        names = ", ".join(f"'{f.name}' ({f.where.line}:{f.where.column})" for f in unknown)
        if notes is not None:
            notes.append(f"layer '{lp.name}' ({lp.type}): left out parameter field(s) our schema lacks: {names}; "
                         "its shape may differ in the fork (give the fork's caffe.proto with --proto)")
            return {}
        raise SchemaError(f"unknown parameter field(s) {names}: our schema has no such field for this layer "
                          "type; register the type with protodef.register_layer(...) to receive them, or give "
                          "the fork's caffe.proto with --proto", where=first.where)
    return {f.name: f.value for f in unknown}


def _params(lp: Any, spec: LayerSpec, in_shapes: tuple, extra: dict[str, Any]) -> Any:
    if spec.plugin:
        return spec.params.from_proto(lp, in_shapes, extra=extra)
    try:
        if spec.parameter:
            reject_unhonoured(getattr(lp, spec.parameter), spec.honoured, what=spec.parameter)
        return spec.params.from_proto(lp, in_shapes)
    except (AttributeError, KeyError, ValueError) as error:
        gap = schema_gap(error, lp, reader=f" for {spec.type} layers")
        if gap is None:
            raise
        raise gap from None


def _bottoms(lp: Any, latest: dict[str, Value], left_out: dict[str, tuple[str, str]]) -> list[Value]:
    inputs = []
    for bottom in lp.bottom:
        if bottom not in latest:
            hint = ""
            if bottom in left_out:
                hint = (f" (layer '{left_out[bottom][0]}' ({left_out[bottom][1]}) writes it, but the include/exclude "
                        f"rules leave it out in phase {_PHASE_NAMES[lp.phase]}; see --phase and --stage)")
            raise GraphError(f"bottom '{bottom}' is not produced by any earlier layer or net input{hint}")
        inputs.append(latest[bottom])
    return inputs


def _add_automatic_tops(lp: Any, spec: LayerSpec, latest: dict[str, Value]) -> None:
    """Caffe's AutoTopBlobs (LossLayer, net.cpp): a loss layer written without a top gets its one top anyway,
    named here after the layer (so a training module returns it under that name) unless a blob has it."""
    if spec.loss_layer and not lp.top:
        name = lp.name or lp.type.lower()
        lp.top.append(name if name not in latest else f"{name}/(automatic)")


def _add_not_understood(net: Net, lp: Any, name: str, where: Location, latest: dict[str, Value],
                        left_out: dict[str, tuple[str, str]]) -> None:
    """A type protodef does not know (a `Python` layer: never imported): an opaque node; without bottoms, a
    data source whose tops are net inputs."""
    why = "its module is never imported" if lp.type == "Python" else "protodef does not know this type"
    if lp.bottom:
        _add_opaque(net, lp, name, where, latest, left_out, why)
        return
    outputs = _bind_outputs(lp, Opaque(lp.type, why).spec, latest)
    for value, shape in zip(outputs, data_source_shapes(len(outputs))):
        net.add_input(NetInput(value, lp.name, lp.type, where), shape)
    net.notes.append(f"layer '{lp.name}' ({lp.type}) is taken as a data source ({why}): its tops are net inputs, "
                     f"the first taken as an image batch N x C x H x W")


def _add_opaque(net: Net, lp: Any, name: str, where: Location, latest: dict[str, Value],
                left_out: dict[str, tuple[str, str]], reason: str, outputs: list[Value] | None = None) -> None:
    """A node whose outputs have no known shape, in a lenient build (`info`, `draw`), with a note."""
    params = Opaque(lp.type, reason)
    inputs = _bottoms(lp, latest, left_out)
    if outputs is None:
        outputs = _bind_outputs(lp, params.spec, latest)
    net.add(Layer(name=name, type=lp.type, params=params, inputs=tuple(inputs), outputs=tuple(outputs), where=where,
                  caffe_name=lp.name, param_names=tuple(p.name for p in lp.param)))
    if reason != _AFTER_UNKNOWN:
        net.notes.append(f"layer '{lp.name}' ({lp.type}) is an opaque node, its outputs' shapes unknown: {reason}")


_AFTER_UNKNOWN = "an input's shape is unknown"


def _note_unknown_after(net: Net) -> None:
    after = [layer.name for layer in net.layers()
             if isinstance(layer.params, Opaque) and layer.params.reason == _AFTER_UNKNOWN]
    if after:
        shown = ", ".join(after[:8]) + (f" and {len(after) - 8} more" if len(after) > 8 else "")
        net.notes.append(f"{len(after)} layer(s) read what those make, so their shapes are unknown too: {shown}")


def _drop_unread_data_tops(net: Net) -> None:
    """A data layer's top that no layer reads (SegNet's `label` in its inference net) is no input of the net."""
    read = {v for _, layer in net.graph.nodes(data="layer") for v in layer.inputs}
    for net_input in list(net.inputs):
        if net_input.declared_type in ("input", "Input") or net_input.value in read:
            continue
        net.inputs.remove(net_input)
        net.shapes.pop(net_input.value, None)
        net.notes.append(f"dropped '{net_input.value.blob}', a top of data layer '{net_input.declared_by}' "
                         f"({net_input.declared_type}) that no layer reads")


def _bind_outputs(lp: Any, spec: LayerSpec, latest: dict[str, Value]) -> list[Value]:
    """Caffe's AppendTop: top i equal to bottom i is in place (a new version); any other reuse is an error."""
    outputs = []
    for index, top in enumerate(lp.top):
        if index < len(lp.bottom) and lp.bottom[index] == top:
            if not spec.in_place_ok:
                raise GraphError(f"{lp.type} cannot compute in place (top '{top}' is also its bottom)")
            value = Value(top, latest[top].version + 1)
        elif top in latest:
            raise GraphError(f"top '{top}' is already produced by an earlier layer; only an in-place layer "
                             "(top i == bottom i) may write a blob again")
        else:
            value = Value(top)
        if value in outputs:
            raise GraphError(f"top '{top}' is listed twice")
        outputs.append(value)
    for value in outputs:
        latest[value.blob] = value
    return outputs


def _check_arity(spec: LayerSpec, bottoms: int, tops: int) -> None:
    for what, count, (low, high) in (("bottoms", bottoms, spec.inputs), ("tops", tops, spec.outputs)):
        if count < low or (high is not None and count > high):
            expected = f"{low}" if low == high else (f"at least {low}" if high is None else f"{low} to {high}")
            raise GraphError(f"wrong number of {what}", expected=expected, found=count)
    if spec.one_top_per_bottom and tops != bottoms:
        # Caffe layer.hpp CheckBlobCounts: "produces one top blob as output for each bottom blob input"
        raise GraphError("wrong number of tops: one per bottom", expected=bottoms, found=tops)


def infer_outputs(params: Any, in_shapes: tuple[Shape, ...], n_outputs: int) -> list[Shape]:
    """Run a spec's shape rule and check what it gives: one shape per output, no dimension below 1."""
    result = params.infer(*in_shapes)
    shapes = list(result) if isinstance(result, list) else [result]
    if len(shapes) != n_outputs:
        raise GraphError("wrong number of tops for this layer's parameters", expected=len(shapes), found=n_outputs)
    for shape in shapes:
        if any(definitely(d <= 0) for d in shape):
            raise ShapeError("an output dimension is zero or negative", expected="all > 0", found=shape)
        check_blob_size(shape)
    return [tuple(as_dim(d) for d in shape) for shape in shapes]


def check_blob_size(shape: Shape, *, what: str = "an output") -> None:
    """Caffe refuses a blob of more than INT_MAX elements; so do we, before any backend allocates it."""
    count = 1
    for d in shape:
        count *= as_dim(d)
    if definitely(count > MAX_BLOB_COUNT):
        raise ShapeError(f"{what} is larger than Caffe allows a blob to be", expected=f"<= {MAX_BLOB_COUNT} elements",
                         found=f"{count} elements {tuple(shape)}")


class _Names:
    """Unique layer names: a repeated name gets the first free `_k` suffix, counting on from the last one
    given for that name, so a net of many same-named layers takes linear time."""

    def __init__(self):
        self.used: set[str] = set()
        self.next_suffix: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.used)

    def unique(self, name: str) -> str:
        candidate, k = name, self.next_suffix.get(name, 1)
        if candidate in self.used:
            candidate = f"{name}_{k}"
            while candidate in self.used:
                k += 1
                candidate = f"{name}_{k}"
            self.next_suffix[name] = k + 1
        self.used.add(candidate)
        return candidate
