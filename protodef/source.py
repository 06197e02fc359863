"""Reading prototxt text into a NetParameter, remembering where each layer was written."""
from __future__ import annotations

import bisect
import difflib
import os
import re
from dataclasses import dataclass, field

from google.protobuf import text_format

from .errors import InputError, Location, ParseError, SchemaError

# Tokens that matter for finding top-level `layer {` / `layers {` blocks; strings and comments are
# matched whole so braces inside them are not counted.
_TOKENS = re.compile(r"""#[^\n]*|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[{}<>]|\b(?:layers?)\b""")


@dataclass
class SourceMap:
    """Where things are in one prototxt: the `layer`/`layers` blocks in order, by their opening word."""

    path: str
    layer_locations: list[Location] = field(default_factory=list)
    layers_locations: list[Location] = field(default_factory=list)   # V1/V0 `layers {` blocks
    unknown_fields: list = field(default_factory=list)   # forkfields.UnknownField, for `layer` blocks
    warnings: list = field(default_factory=list)         # fork fields left out of known messages
    _unknown_index: tuple = field(default=(None, 0, {}), repr=False, compare=False)

    def unknown_in_layer(self, index: int) -> list:
        # Indexed once: build asks for every layer, and a scan per layer is quadratic in hostile files.
        key, size, by_layer = self._unknown_index
        if key is not self.unknown_fields or size != len(self.unknown_fields):
            by_layer = {}
            for f in self.unknown_fields:
                by_layer.setdefault(f.layer_index, []).append(f)
            self._unknown_index = (self.unknown_fields, len(self.unknown_fields), by_layer)
        return list(by_layer.get(index, ()))

    def layer(self, index: int, legacy: bool = False) -> Location:
        found = self.layers_locations if legacy else self.layer_locations
        return found[index] if index < len(found) else Location(self.path)


# The largest real net definitions are well under 1 MB; protobuf's text parser is pure Python (about 1 s and
# 100 MB of memory per MB of text), so a bigger file is refused before it is parsed.
MAX_PROTOTXT_BYTES = 8 << 20


def read_prototxt(path: str | os.PathLike, *, proto_module=None):
    """Parse a prototxt file; returns (NetParameter, SourceMap). Errors carry path:line:column."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_PROTOTXT_BYTES + 1)   # bounded: the path may be a device or a pipe
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror}", where=path) from exc
    if len(raw) > MAX_PROTOTXT_BYTES:
        raise _too_large(path, size if size > MAX_PROTOTXT_BYTES else None)
    return parse_prototxt(raw, path=path, proto_module=proto_module)


def _too_large(path: str, size: int | None) -> ParseError:
    return ParseError("the file is too large for a net definition", where=path,
                      expected=f"at most {MAX_PROTOTXT_BYTES} bytes",
                      found=f"{size} bytes" if size is not None else "more (it does not end)")


def parse_prototxt(text: str | bytes, *, path: str = "<text>", proto_module=None):
    """Parse prototxt text (str or bytes); returns (NetParameter, SourceMap)."""
    if proto_module is None:
        from caffe_proto import caffe_pb2 as proto_module
    if len(text) > MAX_PROTOTXT_BYTES:
        raise _too_large(path, len(text))
    if isinstance(text, bytes):
        if b"\0" in text[:4096]:
            raise ParseError("this is a binary file, not prototxt text (a .caffemodel goes to --weights)",
                             where=path)
    text = decode_text(text)
    unknown, nested = [], []
    while True:
        net = proto_module.NetParameter()
        try:
            text_format.Merge(text, net)
            break
        except text_format.ParseError as exc:
            _refuse_a_solver(text, exc, proto_module, path)
            text = _without_fork_fields(text, exc, net, path, unknown, nested)
        except RecursionError:
            raise ParseError("messages are nested too deeply to parse", where=path) from None
    source = map_source(text, path)
    source.unknown_fields = unknown
    source.warnings = _nested_warnings(source, net, nested, path)
    return net, source


def _refuse_a_solver(text: str, error: text_format.ParseError, proto_module, path: str) -> None:
    """A solver.prototxt given where a net goes: say so, and name the net it trains, in one line."""
    found = re.search(r'NetParameter" has no field named "(\w+)"', str(error))
    solver_class = getattr(proto_module, "SolverParameter", None)
    if found is None or solver_class is None or found.group(1) not in solver_class.DESCRIPTOR.fields_by_name:
        return
    solver = solver_class()
    try:
        text_format.Merge(text, solver)
    except text_format.ParseError:
        return
    nets = [f"{field} '{getattr(solver, field)}'" for field in ("net", "train_net") if solver.HasField(field)]
    nets += [f"test_net '{name}'" for name in solver.test_net]
    inline = [field for field in ("net_param", "train_net_param") if solver.HasField(field)]
    trains = ("; it trains " + ", ".join(nets + [f"the net in its {field}" for field in inline])
              if nets or inline else "")
    raise InputError(f"this is a Caffe solver (SolverParameter), not a net{trains}: give protodef that net "
                     "(protodef.Solver trains it as Caffe would)", where=path)


def _without_fork_fields(text: str, error: text_format.ParseError, net, path: str, unknown: list,
                         nested: list) -> str:
    """The text with what stopped the parse blanked, if it is a fork's field: every unknown block of every
    layer at once (set aside for plugins, see forkfields.py), or one field inside a known message (see
    nested_fork_fields.py) that only data, losses or evaluation read. Anything else is the parse error."""
    from .forkfields import blank_field_at, blank_unknown_layer_fields
    from .nested_fork_fields import MAX_LEFT_OUT, leaves_deploy_graph_alone, offset_of, unknown_nested_field

    if 'LayerParameter" has no field named' in str(error) and "layer" in net.DESCRIPTOR.fields_by_name \
            and not unknown:
        known = set(net.DESCRIPTOR.fields_by_name["layer"].message_type.fields_by_name)
        blanked, found = blank_unknown_layer_fields(text, known, path)
        if found:
            unknown.extend(found)
            return blanked
    field = unknown_nested_field(str(error))
    if field is not None and leaves_deploy_graph_alone(field.message) and len(nested) < MAX_LEFT_OUT:
        blanked = blank_field_at(text, offset_of(text, field.line, field.column))
        if blanked is not None:
            nested.append(field)
            return blanked
    raise _located_error(error, path, schema=net) from None


def _nested_warnings(source: SourceMap, net, nested: list, path: str) -> list[str]:
    """A warning for each fork field left out, naming its layer."""
    from .nested_fork_fields import layer_at, warning

    legacy = not len(source.layer_locations)
    locations = source.layers_locations if legacy else source.layer_locations
    layers = net.layers if legacy else net.layer
    messages = []
    for field in nested:
        messages.append(warning(path, field, layer_at(locations, layers, field.line, field.column)))
    return messages


def decode_text(text: str | bytes) -> str:
    """UTF-8, else Latin-1 (old files carry comments in legacy encodings); without a byte-order mark."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text = text.decode("latin-1")
    return text[1:] if text.startswith("\ufeff") else text


def map_source(text: str, path: str) -> SourceMap:
    """Locate each top-level `layer {` and `layers {` block (line and column of the word)."""
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    source = SourceMap(path)
    depth = 0
    pending: tuple[str, int] | None = None
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("{", "<"):
            if depth == 0 and pending is not None:
                word, start = pending
                line = bisect.bisect_right(line_starts, start)
                location = Location(path, line, start - line_starts[line - 1] + 1)
                (source.layer_locations if word == "layer" else source.layers_locations).append(location)
            pending = None
            depth += 1
        elif token in ("}", ">"):
            depth = max(0, depth - 1)
            pending = None
        elif token in ("layer", "layers"):
            pending = (token, match.start()) if depth == 0 else None
        else:
            pending = None if token[0] in "\"'" else pending
    return source


_POSITION = re.compile(r"^(\d+):(\d+)\s*:\s*")


def _located_error(exc: text_format.ParseError, path: str, schema=None):
    """The parse error as one located line; an unknown field gets a hint: the field it may be a typo of, or
    where a fork's field comes from (`schema`: a message of the schema the text was read with)."""
    message = str(exc)
    line, column = exc.GetLine(), exc.GetColumn()
    match = _POSITION.match(message)
    if match:
        message = message[match.end():]
        line, column = int(match.group(1)), int(match.group(2))
    message = _clip_quoted_line(message.rstrip("."), column)
    where = Location(path, line, column) if line else Location(path)
    schema_problem = "has no field named" in message or "has no value named" in message \
        or "has no value with number" in message
    kind = SchemaError if schema_problem else ParseError
    return kind(message.replace('"caffe.', '"') + _field_hint(message, schema), where=where)


_NO_FIELD = re.compile(r'Message type "(?:[\w.]+\.)?(\w+)" has no field named "(\w+)"')


def _field_hint(message: str, schema) -> str:
    found = _NO_FIELD.search(message)
    if found is None or schema is None:
        return ""
    kind, field = found.groups()
    messages = {m.name: m for m in _all_messages(schema.DESCRIPTOR.file)}
    if kind not in messages:
        return ""
    close = difflib.get_close_matches(field, list(messages[kind].fields_by_name), n=1, cutoff=0.8)
    if close:
        return f" (did you mean '{close[0]}'?)"
    from caffe_proto import caffe_pb2
    if schema.DESCRIPTOR.file is caffe_pb2.DESCRIPTOR:
        return (" (a Caffe fork's field? protodef's schema has BVLC Caffe's fields and the forks' in "
                "caffe_proto/FORKS.md; give the fork's caffe.proto with --proto)")
    return " (the schema given with --proto has no such field either)"


def _all_messages(file_descriptor):
    pending = list(file_descriptor.message_types_by_name.values())
    while pending:
        message = pending.pop()
        yield message
        pending.extend(message.nested_types)


_QUOTED_LINE = re.compile(r"^'(.*)': ", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_CONTEXT = 40


def _clip_quoted_line(message: str, column: int | None) -> str:
    """protobuf quotes the whole offending line; keep the error one short line even for a file that is one
    huge line, or whose 'lines' hold carriage returns and other separators."""
    match = _QUOTED_LINE.match(message)
    if match:
        quoted = match.group(1)
        if len(quoted) > 2 * _CONTEXT:
            at = max(0, (column or 1) - 1)
            start = max(0, min(at - _CONTEXT, len(quoted) - 2 * _CONTEXT))
            quoted = ("..." if start else "") + quoted[start:start + 2 * _CONTEXT] + \
                ("..." if start + 2 * _CONTEXT < len(quoted) else "")
        message = f"'{quoted}': {message[match.end():]}"
    if len(message) > 400:
        message = message[:400] + "..."
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)
