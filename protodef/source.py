"""Reading prototxt text into a NetParameter, remembering where each layer was written."""
from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass, field

from google.protobuf import text_format

from .errors import Location, ParseError, SchemaError

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

    def unknown_in_layer(self, index: int) -> list:
        return [f for f in self.unknown_fields if f.layer_index == index]

    def layer(self, index: int, legacy: bool = False) -> Location:
        found = self.layers_locations if legacy else self.layer_locations
        return found[index] if index < len(found) else Location(self.path)


def read_prototxt(path: str | os.PathLike, *, proto_module=None):
    """Parse a prototxt file; returns (NetParameter, SourceMap). Errors carry path:line:column."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ParseError(f"cannot read the file: {exc.strerror}", where=path) from exc
    return parse_prototxt(raw, path=path, proto_module=proto_module)


def parse_prototxt(text: str | bytes, *, path: str = "<text>", proto_module=None):
    """Parse prototxt text (str or bytes); returns (NetParameter, SourceMap)."""
    if proto_module is None:
        from caffe_proto import caffe_pb2 as proto_module
    if isinstance(text, bytes):
        if b"\0" in text[:4096]:
            raise ParseError("this is a binary file, not prototxt text (a .caffemodel goes to --weights)",
                             where=path)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text = text.decode("latin-1")
    if text.startswith("\ufeff"):
        text = text[1:]
    net = proto_module.NetParameter()
    unknown = []
    try:
        text_format.Merge(text, net)
    except text_format.ParseError as exc:
        if 'LayerParameter" has no field named' not in str(exc) or "layer" not in net.DESCRIPTOR.fields_by_name:
            raise _located_error(exc, path) from None
        # A fork's parameter block: set it aside for a plugin (see forkfields.py) and parse the rest.
        from .forkfields import blank_unknown_layer_fields
        known = set(net.DESCRIPTOR.fields_by_name["layer"].message_type.fields_by_name)
        text, unknown = blank_unknown_layer_fields(text, known, path)
        net = proto_module.NetParameter()
        _merge(text, net, path)
    except RecursionError:
        raise ParseError("messages are nested too deeply to parse", where=path) from None
    source = map_source(text, path)
    source.unknown_fields = unknown
    return net, source


def _merge(text: str, net, path: str) -> None:
    try:
        text_format.Merge(text, net)
    except text_format.ParseError as exc:
        raise _located_error(exc, path) from None
    except RecursionError:
        raise ParseError("messages are nested too deeply to parse", where=path) from None


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


def _located_error(exc: text_format.ParseError, path: str):
    message = str(exc)
    line, column = exc.GetLine(), exc.GetColumn()
    match = _POSITION.match(message)
    if match:
        message = message[match.end():]
        line, column = int(match.group(1)), int(match.group(2))
    message = message.rstrip(".")
    where = Location(path, line, column) if line else Location(path)
    schema_problem = "has no field named" in message or "has no value named" in message \
        or "has no value with number" in message
    kind = SchemaError if schema_problem else ParseError
    return kind(message.replace('"caffe.', '"'), where=where)
