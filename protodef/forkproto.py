"""A fork's caffe.proto compiled at run time into message classes that stand in for caffe_pb2.

Users of Caffe forks point us at their fork's schema (`--proto their/caffe.proto`) so its fields parse as typed
messages. protoc is not a run-time dependency, so we read the .proto language ourselves: the proto2 subset
that Caffe and its forks write. The result is a FileDescriptorProto, equal to what protoc makes of the same
file, loaded into a private descriptor pool.

Schemas come from strangers: every problem is a located ParseError (syntax) or SchemaError (meaning),
nesting is capped (MAX_NESTING) so recursion stays bounded, and loops over tokens are iterative.
"""
from __future__ import annotations

import math
import os
import re
import struct
import types
from collections import OrderedDict
from dataclasses import dataclass, field

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, reflection
from google.protobuf.message import Message
from google.protobuf.internal import enum_type_wrapper

from .errors import InputError, Location, ParseError, SchemaError
from .source import decode_text

MAX_NESTING = 64                     # messages/enums/oneofs/extend blocks inside each other
MAX_FIELD_NUMBER = 536870911         # 2**29 - 1, protobuf's limit
_IMPLEMENTATION_NUMBERS = range(19000, 20000)   # reserved by protobuf itself
_INT32 = (-2**31, 2**31 - 1)

_F = descriptor_pb2.FieldDescriptorProto
SCALAR_TYPES = {
    "double": _F.TYPE_DOUBLE, "float": _F.TYPE_FLOAT, "int64": _F.TYPE_INT64, "uint64": _F.TYPE_UINT64,
    "int32": _F.TYPE_INT32, "fixed64": _F.TYPE_FIXED64, "fixed32": _F.TYPE_FIXED32, "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES, "uint32": _F.TYPE_UINT32, "sfixed32": _F.TYPE_SFIXED32,
    "sfixed64": _F.TYPE_SFIXED64, "sint32": _F.TYPE_SINT32, "sint64": _F.TYPE_SINT64,
}
_LABELS = {"optional": _F.LABEL_OPTIONAL, "required": _F.LABEL_REQUIRED, "repeated": _F.LABEL_REPEATED}
_INTEGER_RANGES = {
    _F.TYPE_INT32: _INT32, _F.TYPE_SINT32: _INT32, _F.TYPE_SFIXED32: _INT32,
    _F.TYPE_INT64: (-2**63, 2**63 - 1), _F.TYPE_SINT64: (-2**63, 2**63 - 1), _F.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1), _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1), _F.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOATS = (_F.TYPE_FLOAT, _F.TYPE_DOUBLE)
_NOT_PACKABLE = (_F.TYPE_STRING, _F.TYPE_BYTES, _F.TYPE_MESSAGE, _F.TYPE_GROUP)
_TYPE_NAMES = {number: name for name, number in SCALAR_TYPES.items()}


# ----------------------------------------------------------------------------------------------------------
# Public API

def compile_proto(path: str | os.PathLike) -> types.ModuleType:
    """Compile a Caffe schema (.proto) into a module that works like a generated caffe_pb2: message classes
    by name (`NetParameter`, `LayerParameter`, ...), top-level enums and their values, `DESCRIPTOR`, plus
    `notes` (what was accepted but ignored). Cached by (path, mtime, size)."""
    path = os.fspath(path)
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise InputError(f"cannot read the schema: {exc.strerror}", where=path) from exc
    key = os.path.realpath(path)
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _CACHE.get(key)
    if cached is not None and cached[0] == stamp:
        _CACHE.move_to_end(key)
        return cached[1]
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise InputError(f"cannot read the schema: {exc.strerror}", where=path) from exc
    file_proto, notes = parse_proto(raw, path=path)
    module = build_module(file_proto, path=path, notes=notes)
    _CACHE[key] = (stamp, module)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return module


def parse_proto(text: str | bytes, *, path: str = "<proto>") -> tuple[descriptor_pb2.FileDescriptorProto,
                                                                       list[str]]:
    """Parse .proto text into the FileDescriptorProto protoc would make (names resolved, types set,
    defaults normalized); returns it with notes on what was ignored."""
    text = decode_text(text)
    parser = _Parser(_tokenize(text, path), path)
    parser.parse_file()
    parser.resolve()
    parser.file.name = os.path.basename(path)
    return parser.file, parser.notes


def build_module(file_proto: descriptor_pb2.FileDescriptorProto, *, path: str = "<proto>",
                 notes: list[str] | None = None) -> types.ModuleType:
    """Load a parsed schema into a fresh descriptor pool and expose it like a generated caffe_pb2."""
    _check_net_parameter(file_proto, path)
    pool = descriptor_pool.DescriptorPool()
    try:
        file_descriptor = pool.Add(file_proto)
    except Exception as exc:   # the pool validates what we do not (its message says what)
        message = str(exc).replace("Couldn't build proto file into descriptor pool: ", "")
        raise SchemaError(f"the schema is not valid: {message}", where=Location(path)) from None
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0]) or "schema"
    module = types.ModuleType(f"protodef_fork_{stem}_pb2", f"Message classes compiled from {path}")
    module.__file__ = path
    module.DESCRIPTOR = file_descriptor
    module.notes = list(notes or ())
    module._message_classes = _make_message_classes(file_descriptor, module.__name__)
    for name, message in file_descriptor.message_types_by_name.items():
        setattr(module, name, message_factory.GetMessageClass(message))
    for name, enum in file_descriptor.enum_types_by_name.items():
        setattr(module, name, enum_type_wrapper.EnumTypeWrapper(enum))
        for value in enum.values:
            setattr(module, value.name, value.number)
    for name, extension in file_descriptor.extensions_by_name.items():
        setattr(module, name, extension)
    return module


def _make_message_classes(file_descriptor, module_name: str) -> dict[str, type]:
    """Make every message class up front, each on its own, and keep them (a descriptor only refers to its
    class weakly). GetMessageClass alone makes a class and then recurses into the classes of its fields, one
    Python frame per message, so a long chain of messages referring to each other (a stranger's file)
    would overflow the stack; once every class exists, GetMessageClass just returns it."""
    classes = {}
    pending = list(file_descriptor.message_types_by_name.values())
    while pending:
        descriptor = pending.pop()
        classes[descriptor.full_name] = reflection.GeneratedProtocolMessageType(
            descriptor.name, (Message,), {"DESCRIPTOR": descriptor, "__module__": module_name})
        pending.extend(descriptor.nested_types)
    return classes


_CACHE: "OrderedDict[str, tuple[tuple[int, int], types.ModuleType]]" = OrderedDict()
_CACHE_SIZE = 16


def _check_net_parameter(file_proto: descriptor_pb2.FileDescriptorProto, path: str) -> None:
    net = next((m for m in file_proto.message_type if m.name == "NetParameter"), None)
    if net is None:
        raise SchemaError("the schema defines no top-level message NetParameter, so it cannot describe a net",
                          where=Location(path))
    fields = {f.name: f for f in net.field}
    present = [fields[name] for name in ("layer", "layers") if name in fields]
    if not present:
        raise SchemaError("message NetParameter has neither a 'layer' nor a 'layers' field",
                          where=Location(path))
    for f in present:
        if f.label != _F.LABEL_REPEATED or f.type != _F.TYPE_MESSAGE:
            raise SchemaError(f"NetParameter.{f.name} must be a repeated message field (as in Caffe)",
                              where=Location(path))


# ----------------------------------------------------------------------------------------------------------
# Tokens

@dataclass(frozen=True)
class _Token:
    kind: str            # ident, int, float, string, symbol, eof
    text: str
    line: int
    column: int


_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n\f\v]+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<open_comment>/\*)
  | (?P<float>(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)
  | (?P<int>0[xX][0-9A-Fa-f]+|[0-9]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"(?:[^"\\\n]|\\[^\n])*"|'(?:[^'\\\n]|\\[^\n])*')
  | (?P<open_string>["'])
  | (?P<symbol>[{}\[\]()<>;,=.:+\-])
""", re.VERBOSE | re.DOTALL)
_WORD_CHAR = re.compile(r"[A-Za-z0-9_.]")


def _tokenize(text: str, path: str) -> list[_Token]:
    tokens = []
    line, line_start, pos, size = 1, 0, 0, len(text)
    while pos < size:
        match = _TOKEN.match(text, pos)
        column = pos - line_start + 1
        if match is None:
            raise ParseError(f"unexpected character {text[pos]!r}", where=Location(path, line, column))
        kind, chunk = match.lastgroup, match.group()
        if kind == "open_comment":
            raise ParseError("this /* comment is never closed", where=Location(path, line, column))
        if kind == "open_string":
            raise ParseError("this string does not end on its line", where=Location(path, line, column))
        if kind in ("space", "comment"):
            newlines = chunk.count("\n")
            if newlines:
                line += newlines
                line_start = pos + chunk.rindex("\n") + 1
        else:
            if kind in ("int", "float") and match.end() < size and _WORD_CHAR.match(text, match.end()):
                raise ParseError("a number must be followed by a space or a symbol",
                                 where=Location(path, line, column + len(chunk)))
            tokens.append(_Token(kind, chunk, line, column))
        pos = match.end()
    tokens.append(_Token("eof", "", line, pos - line_start + 1))
    return tokens


def _integer(token: _Token, path: str) -> int:
    text = token.text
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    if len(text) > 1 and text[0] == "0":
        if not set(text) <= set("01234567"):
            raise ParseError(f"{text} is not a valid octal number (a leading 0 means octal)",
                             where=_where(token, path))
        return int(text, 8)
    return int(text)


_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "?": 63, "'": 39,
                   '"': 34}


def _unescape(token: _Token, path: str) -> bytes:
    body, out, pos = token.text[1:-1], bytearray(), 0
    for match in _ESCAPE.finditer(body):
        out += body[pos:match.start()].encode("utf-8")
        octal, hex2, u4, u8, other = match.groups()
        if octal is not None:
            out.append(int(octal, 8) & 0xFF)
        elif hex2 is not None:
            out.append(int(hex2, 16))
        elif u4 is not None or u8 is not None:
            try:
                out += chr(int(u4 or u8, 16)).encode("utf-8")
            except (ValueError, UnicodeEncodeError):
                raise ParseError(f"invalid unicode escape {match.group()!r} in a string",
                                 where=_where(token, path)) from None
        elif other in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[other])
        else:
            raise ParseError(f"invalid escape sequence {match.group()!r} in a string", where=_where(token, path))
        pos = match.end()
    out += body[pos:].encode("utf-8")
    return bytes(out)


def _where(token: _Token, path: str) -> Location:
    return Location(path, token.line, token.column)


# ----------------------------------------------------------------------------------------------------------
# Parser

@dataclass
class _Constant:
    """A value after `=` in an option or default."""

    kind: str            # ident, int, float, string, aggregate
    value: object        # str for ident, int, float, bytes for string, None for aggregate
    negative: bool
    where: Location

    def describe(self) -> str:
        sign = "-" if self.negative else ""
        if self.kind == "string":
            return repr(self.value.decode("utf-8", "replace"))
        if self.kind == "aggregate":
            return "{...}"
        return f"{sign}{self.value}"


@dataclass
class _Pending:
    """A field whose type, default and packed option need the whole file's names."""

    proto: descriptor_pb2.FieldDescriptorProto
    type_text: str | None          # None for a scalar type
    scope: tuple[str, ...]         # names of the enclosing messages, outermost first (package excluded)
    type_where: Location
    default: _Constant | None
    packed_where: Location | None  # where `packed = true` was written


@dataclass
class _Extend:
    extendee: str
    scope: tuple[str, ...]
    where: Location
    fields: list[descriptor_pb2.FieldDescriptorProto]
    container: object              # the repeated `extension` of the file or of a message


@dataclass
class _Symbol:
    kind: str                      # package, message, enum, enum_value, field, oneof
    where: Location | None
    proto: object = None


@dataclass
class _MessageState:
    """What a message body checks once it is closed."""

    numbers: dict = field(default_factory=dict)     # field number -> (name, where)
    fields: list = field(default_factory=list)      # (proto, where)


class _Parser:
    def __init__(self, tokens: list[_Token], path: str):
        self.tokens = tokens
        self.i = 0
        self.path = path
        self.file = descriptor_pb2.FileDescriptorProto()
        self.notes: list[str] = []
        self.pending: list[_Pending] = []
        self.extends: list[_Extend] = []
        self.symbols: dict[str, _Symbol] = {}      # names relative to the package
        self.package = ""

    # -- token helpers --------------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def next(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "eof":
            self.i += 1
        return token

    def at(self, text: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.text == text and token.kind in ("symbol", "ident")

    def where(self, token: _Token | None = None) -> Location:
        return _where(token or self.peek(), self.path)

    def fail(self, expected: str, token: _Token | None = None, message: str = "syntax error") -> ParseError:
        token = token or self.peek()
        found = "the end of the file" if token.kind == "eof" else f'"{token.text}"'
        return ParseError(message, where=self.where(token), expected=expected, found=found)

    def expect(self, text: str, what: str | None = None) -> _Token:
        if not self.at(text):
            if text == ";" and self.i > 0:
                # A missing `;` is best reported where it belongs: right after the previous token.
                previous = self.tokens[self.i - 1]
                found = self.peek()
                shown = "the end of the file" if found.kind == "eof" else f'"{found.text}"'
                raise ParseError(f'missing ";"{what or ""}', where=Location(
                    self.path, previous.line, previous.column + len(previous.text)),
                    found=f"{shown} at {found.line}:{found.column}")
            raise self.fail(f'"{text}"' + (what or ""))
        return self.next()

    def ident(self, what: str) -> _Token:
        if self.peek().kind != "ident":
            raise self.fail(what)
        return self.next()

    def full_ident(self, what: str, leading_dot: bool = False) -> tuple[str, _Token]:
        first = self.peek()
        parts = []
        if leading_dot and self.at("."):
            self.next()
            parts.append("")
        parts.append(self.ident(what).text)
        while self.at(".") and self.peek(1).kind == "ident":
            self.next()
            parts.append(self.next().text)
        return ".".join(parts), first

    def number(self, what: str, *, allow_negative: bool = False) -> tuple[int, _Token]:
        first = self.peek()
        negative = False
        if allow_negative and self.at("-"):
            self.next()
            negative = True
        token = self.peek()
        if token.kind != "int":
            raise self.fail(what)
        self.next()
        value = _integer(token, self.path)
        return (-value if negative else value), first

    # -- file -----------------------------------------------------------------------------------------

    def parse_file(self) -> None:
        if self.at("syntax"):
            self.parse_syntax()
        while self.peek().kind != "eof":
            token = self.peek()
            word = token.text if token.kind == "ident" else None
            if word == "syntax":
                raise SchemaError('"syntax" must be the first statement of the file', where=self.where())
            if word == "edition":
                raise SchemaError("protobuf editions are not supported: Caffe schemas are proto2",
                                  where=self.where())
            if word == "package":
                self.parse_package()
            elif word == "import":
                self.parse_import()
            elif word == "option":
                self.parse_option_statement(self.file.options)
            elif word == "message":
                self.parse_message(self.file.message_type, (), 1)
            elif word == "enum":
                self.parse_enum(self.file.enum_type, (), 1)
            elif word == "extend":
                self.parse_extend(self.file.extension, (), 1)
            elif word == "service":
                self.skip_service()
            elif self.at(";"):
                self.next()
            else:
                raise self.fail("a top-level statement (message, enum, package, import, option, extend)")
        if self.file.options.ByteSize() == 0:
            self.file.ClearField("options")

    def parse_syntax(self) -> None:
        self.next()
        self.expect("=")
        token = self.peek()
        if token.kind != "string":
            raise self.fail('"proto2"')
        self.next()
        syntax = _unescape(token, self.path).decode("utf-8", "replace")
        if syntax == "proto3":
            raise SchemaError('proto3 schemas are not supported: Caffe schemas are proto2 (syntax = "proto2")',
                              where=self.where(token))
        if syntax != "proto2":
            raise SchemaError(f'unknown syntax "{syntax}"', where=self.where(token), expected='"proto2"')
        self.expect(";")

    def parse_package(self) -> None:
        keyword = self.next()
        if self.package:
            raise SchemaError("the file declares a package twice", where=self.where(keyword))
        name, _ = self.full_ident("a package name")
        self.expect(";")
        self.package = self.file.package = name

    def parse_import(self) -> None:
        self.next()
        if self.peek().kind == "ident" and self.peek().text in ("public", "weak"):
            self.next()
        token = self.peek()
        if token.kind != "string":
            raise self.fail("a file name in quotes")
        self.next()
        name = _unescape(token, self.path).decode("utf-8", "replace")
        self.expect(";")
        if name.startswith("google/protobuf/"):
            self.notes.append(f"{self.where(token)}: import \"{name}\" ignored (types from it cannot be used)")
            return
        raise SchemaError(f'import "{name}": imports are not supported; merge the imported file into this one',
                          where=self.where(token))

    def skip_service(self) -> None:
        keyword = self.next()
        name = self.ident("a service name")
        self.expect("{")
        self.skip_block(keyword)
        self.notes.append(f"{self.where(keyword)}: service {name.text} ignored")

    def skip_block(self, opener: _Token) -> None:
        """Skip to the `}` matching an already consumed `{` (counting, not recursing)."""
        depth = 1
        while depth:
            token = self.next()
            if token.kind == "eof":
                raise ParseError('this block is never closed with "}"', where=self.where(opener))
            if token.kind == "symbol" and token.text == "{":
                depth += 1
            elif token.kind == "symbol" and token.text == "}":
                depth -= 1

    # -- names ----------------------------------------------------------------------------------------

    def define(self, scope: tuple[str, ...], name: str, kind: str, where: Location, proto=None) -> None:
        key = ".".join(scope + (name,))
        existing = self.symbols.get(key)
        if existing is not None:
            inside = ".".join(((self.package,) if self.package else ()) + scope) or "the file"
            note = ""
            if kind == "enum_value" or existing.kind == "enum_value":
                note = " (enum values are siblings of their enum, not children of it, as in C++)"
            line = f" (line {existing.where.line})" if existing.where and existing.where.line else ""
            raise SchemaError(f'"{name}" is already defined in "{inside}"{line}{note}', where=where)
        self.symbols[key] = _Symbol(kind, where, proto)

    # -- messages -------------------------------------------------------------------------------------

    def check_depth(self, depth: int, token: _Token) -> None:
        if depth > MAX_NESTING:
            raise SchemaError(f"definitions are nested more than {MAX_NESTING} deep", where=self.where(token))

    def parse_message(self, container, scope: tuple[str, ...], depth: int) -> None:
        keyword = self.next()
        self.check_depth(depth, keyword)
        name_token = self.ident("a message name")
        message = container.add(name=name_token.text)
        self.define(scope, name_token.text, "message", self.where(name_token), message)
        inner = scope + (name_token.text,)
        opener = self.expect("{")
        state = _MessageState()
        while not self.at("}"):
            token = self.peek()
            if token.kind == "eof":
                raise ParseError(f'message {name_token.text} is never closed with "}}"', where=self.where(opener))
            word = token.text if token.kind == "ident" else None
            if word == "message":
                self.parse_message(message.nested_type, inner, depth + 1)
            elif word == "enum":
                self.parse_enum(message.enum_type, inner, depth + 1)
            elif word == "extend":
                self.parse_extend(message.extension, inner, depth + 1)
            elif word == "extensions":
                self.parse_extensions(message)
            elif word == "reserved":
                self.parse_reserved(message.reserved_range, message.reserved_name, enum=False)
            elif word == "option":
                self.parse_option_statement(message.options)
            elif word == "oneof":
                self.parse_oneof(message, inner, state, depth + 1)
            elif word == "map" and self.at("<", 1):
                raise SchemaError("map fields are not supported", where=self.where())
            elif word in _LABELS:
                self.parse_field(message.field, inner, state)
            elif self.at(";"):
                self.next()
            elif token.kind == "ident":
                raise ParseError('a field needs a label: "optional", "required" or "repeated"',
                                 where=self.where())
            else:
                raise self.fail('a field, "message", "enum", "oneof", "reserved", "extensions", "option" or "}"')
        self.next()
        if message.options.ByteSize() == 0:
            message.ClearField("options")
        self.check_message(message, state)

    def check_message(self, message, state: _MessageState) -> None:
        reserved_names = set(message.reserved_name)
        for proto, where in state.fields:
            if proto.name in reserved_names:
                raise SchemaError(f'field "{proto.name}" uses a reserved name', where=where)
            for r in message.reserved_range:
                if r.start <= proto.number < r.end:
                    raise SchemaError(f'field "{proto.name}" uses reserved number {proto.number}', where=where)
            for r in message.extension_range:
                if r.start <= proto.number < r.end:
                    raise SchemaError(f'field "{proto.name}" uses number {proto.number}, which is in an '
                                      f'extension range ({r.start} to {r.end - 1})', where=where)

    def parse_field(self, container, scope: tuple[str, ...], state: _MessageState | None, *,
                    oneof_index: int | None = None, extension: bool = False) -> None:
        start = self.peek()
        label = _F.LABEL_OPTIONAL
        if oneof_index is None:
            label = _LABELS[self.next().text]
            if extension and label == _F.LABEL_REQUIRED:
                raise SchemaError("an extension cannot be required", where=self.where(start))
        elif start.kind == "ident" and start.text in _LABELS and self.peek(1).kind == "ident" \
                and not self.at("=", 2):
            raise SchemaError(f'fields in a oneof have no label ("{start.text}")', where=self.where(start))
        type_token = self.peek()
        if type_token.kind == "ident" and type_token.text == "group":
            raise SchemaError("groups are not supported (use a nested message)", where=self.where(type_token))
        if type_token.kind == "ident" and type_token.text == "map" and self.at("<", 1):
            raise SchemaError("map fields are not supported", where=self.where(type_token))
        if not (type_token.kind == "ident" or self.at(".")):
            raise self.fail("a field type")
        type_text, _ = self.full_ident("a field type", leading_dot=True)
        name_token = self.ident("a field name")
        self.expect("=")
        number, number_token = self.number("a field number")
        proto = container.add(name=name_token.text, number=number, label=label)
        if type_text in SCALAR_TYPES:
            proto.type = SCALAR_TYPES[type_text]
            type_text = None
        if oneof_index is not None:
            proto.oneof_index = oneof_index
        field_where = self.where(name_token)
        if not 1 <= number <= MAX_FIELD_NUMBER:
            raise SchemaError(f"field number {number} is out of range", where=self.where(number_token),
                              expected=f"1 to {MAX_FIELD_NUMBER}")
        if number in _IMPLEMENTATION_NUMBERS:
            raise SchemaError(f"field numbers 19000 to 19999 are reserved by protobuf (found {number})",
                              where=self.where(number_token))
        if not extension:
            self.define(scope, name_token.text, "field", field_where, proto)
        if state is not None:
            if number in state.numbers:
                other, other_where = state.numbers[number]
                raise SchemaError(f'field number {number} is already used by "{other}" '
                                  f"(line {other_where.line})", where=self.where(number_token))
            state.numbers[number] = (name_token.text, field_where)
            state.fields.append((proto, field_where))
        default = None
        packed_where = None
        if self.at("["):
            default, packed_where = self.parse_field_options(proto)
        self.expect(";", " after the field")
        self.pending.append(_Pending(proto, type_text, scope, self.where(type_token), default, packed_where))

    def parse_field_options(self, proto) -> tuple[_Constant | None, Location | None]:
        self.next()
        default = None
        packed_where = None
        seen = set()
        while True:
            name_token = self.peek()
            name = self.option_name()
            self.expect("=")
            value = self.constant()
            if name in seen and name is not None:
                raise SchemaError(f'option "{name}" is given twice', where=self.where(name_token))
            seen.add(name)
            if name == "default":
                default = value
            elif name == "json_name":
                if value.kind != "string":
                    raise SchemaError("json_name must be a string", where=value.where)
                proto.json_name = value.value.decode("utf-8", "replace")
            elif name is not None:
                self.set_option(proto.options, name, value, self.where(name_token))
                if name == "packed" and proto.options.packed:
                    packed_where = self.where(name_token)
            if self.at(","):
                self.next()
                continue
            self.expect("]", ' or ","')
            break
        if proto.options.ByteSize() == 0:
            proto.ClearField("options")
        return default, packed_where

    def parse_oneof(self, message, scope: tuple[str, ...], state: _MessageState, depth: int) -> None:
        keyword = self.next()
        self.check_depth(depth, keyword)
        name_token = self.ident("a oneof name")
        self.define(scope, name_token.text, "oneof", self.where(name_token))
        index = len(message.oneof_decl)
        decl = message.oneof_decl.add(name=name_token.text)
        opener = self.expect("{")
        count = 0
        while not self.at("}"):
            token = self.peek()
            if token.kind == "eof":
                raise ParseError(f'oneof {name_token.text} is never closed with "}}"', where=self.where(opener))
            if self.at("option"):
                self.parse_option_statement(decl.options)
            elif self.at(";"):
                self.next()
            else:
                self.parse_field(message.field, scope, state, oneof_index=index)
                count += 1
        self.next()
        if decl.options.ByteSize() == 0:
            decl.ClearField("options")
        if count == 0:
            raise SchemaError(f"oneof {name_token.text} has no fields", where=self.where(name_token))

    def parse_extend(self, container, scope: tuple[str, ...], depth: int) -> None:
        keyword = self.next()
        self.check_depth(depth, keyword)
        extendee, extendee_token = self.full_ident("the name of the message to extend", leading_dot=True)
        opener = self.expect("{")
        fields: list = []
        holder = descriptor_pb2.DescriptorProto()    # scratch container; fields move once the extendee is known
        while not self.at("}"):
            token = self.peek()
            if token.kind == "eof":
                raise ParseError('extend block is never closed with "}"', where=self.where(opener))
            if self.at(";"):
                self.next()
            elif token.kind == "ident" and token.text in _LABELS:
                self.parse_field(holder.field, scope, None, extension=True)
                self.define(scope, holder.field[-1].name, "field", self.where(token), holder.field[-1])
            else:
                raise self.fail('an extension field ("optional ..." or "repeated ...") or "}"')
        self.next()
        fields.extend(holder.field)
        self.extends.append(_Extend(extendee, scope, self.where(extendee_token), fields, container))

    def parse_extensions(self, message) -> None:
        self.next()
        while True:
            start, start_token = self.number("an extension number")
            end = start
            if self.at("to"):
                self.next()
                if self.at("max"):
                    self.next()
                    end = MAX_FIELD_NUMBER
                else:
                    end, _ = self.number('an extension number or "max"')
            if not 1 <= start <= end <= MAX_FIELD_NUMBER:
                raise SchemaError(f"extension range {start} to {end} is not valid", where=self.where(start_token),
                                  expected=f"1 <= start <= end <= {MAX_FIELD_NUMBER}")
            message.extension_range.add(start=start, end=end + 1)
            if self.at("["):
                self.next()
                self.skip_brackets()
            if self.at(","):
                self.next()
                continue
            self.expect(";", " after the extension range")
            return

    def skip_brackets(self) -> None:
        depth = 1
        opener = self.tokens[self.i - 1]
        while depth:
            token = self.next()
            if token.kind == "eof":
                raise ParseError('"[" is never closed with "]"', where=self.where(opener))
            if token.kind == "symbol" and token.text in "[{":
                depth += 1
            elif token.kind == "symbol" and token.text in "]}":
                depth -= 1

    def parse_reserved(self, ranges, names, *, enum: bool) -> None:
        self.next()
        if self.peek().kind == "string":
            while True:
                token = self.peek()
                if token.kind != "string":
                    raise self.fail("a reserved name in quotes")
                self.next()
                names.append(_unescape(token, self.path).decode("utf-8", "replace"))
                if not self.at(","):
                    break
                self.next()
        else:
            low, high = (_INT32 if enum else (1, MAX_FIELD_NUMBER))
            while True:
                start, start_token = self.number("a reserved number", allow_negative=enum)
                end = start
                if self.at("to"):
                    self.next()
                    if self.at("max"):
                        self.next()
                        end = high
                    else:
                        end, _ = self.number('a reserved number or "max"', allow_negative=enum)
                if not low <= start <= end <= high:
                    raise SchemaError(f"reserved range {start} to {end} is not valid",
                                      where=self.where(start_token))
                # Message ranges are stored end-exclusive, enum ranges end-inclusive (descriptor.proto).
                ranges.add(start=start, end=end if enum else end + 1)
                if not self.at(","):
                    break
                self.next()
        self.expect(";", " after the reserved list")

    # -- enums ----------------------------------------------------------------------------------------

    def parse_enum(self, container, scope: tuple[str, ...], depth: int) -> None:
        keyword = self.next()
        self.check_depth(depth, keyword)
        name_token = self.ident("an enum name")
        enum = container.add(name=name_token.text)
        self.define(scope, name_token.text, "enum", self.where(name_token), enum)
        opener = self.expect("{")
        numbers: dict[int, str] = {}
        aliases = []
        while not self.at("}"):
            token = self.peek()
            if token.kind == "eof":
                raise ParseError(f'enum {name_token.text} is never closed with "}}"', where=self.where(opener))
            if self.at("option"):
                self.parse_option_statement(enum.options)
            elif self.at("reserved"):
                self.parse_reserved(enum.reserved_range, enum.reserved_name, enum=True)
            elif self.at(";"):
                self.next()
            elif token.kind == "ident":
                self.next()
                self.expect("=")
                number, number_token = self.number("an enum value number", allow_negative=True)
                if not _INT32[0] <= number <= _INT32[1]:
                    raise SchemaError(f"enum value {number} does not fit in 32 bits",
                                      where=self.where(number_token))
                value = enum.value.add(name=token.text, number=number)
                # Enum values are siblings of their enum (C++ scoping), so they live in the enum's scope.
                self.define(scope, token.text, "enum_value", self.where(token), value)
                if self.at("["):
                    self.next()
                    while True:
                        option_token = self.peek()
                        option = self.option_name()
                        self.expect("=")
                        constant = self.constant()
                        if option is not None:
                            self.set_option(value.options, option, constant, self.where(option_token))
                        if not self.at(","):
                            break
                        self.next()
                    self.expect("]", ' or ","')
                    if value.options.ByteSize() == 0:
                        value.ClearField("options")
                self.expect(";", " after the enum value")
                if number in numbers:
                    aliases.append((token, numbers[number], number))
                else:
                    numbers[number] = token.text
            else:
                raise self.fail('an enum value, "option", "reserved" or "}"')
        self.next()
        if not enum.value:
            raise SchemaError(f"enum {name_token.text} has no values", where=self.where(name_token))
        if aliases and not enum.options.allow_alias:
            token, first, number = aliases[0]
            raise SchemaError(f'"{token.text}" uses the same number ({number}) as "{first}"; add '
                              f'"option allow_alias = true;" to enum {name_token.text} to allow this',
                              where=self.where(token))
        if enum.options.ByteSize() == 0:
            enum.ClearField("options")

    # -- options and constants ------------------------------------------------------------------------

    def option_name(self) -> str | None:
        """An option's name; None for a custom option `(name)...`, which needs an import we ignore."""
        if self.at("("):
            opener = self.next()
            name, _ = self.full_ident("a custom option name", leading_dot=True)
            self.expect(")")
            while self.at("."):
                self.next()
                self.ident("an option field name")
            self.notes.append(f"{self.where(opener)}: custom option ({name}) ignored")
            return None
        name, token = self.full_ident("an option name")
        if "." in name:
            raise SchemaError(f'option "{name}" is not supported', where=self.where(token))
        return name

    def parse_option_statement(self, options) -> None:
        self.next()
        name_token = self.peek()
        name = self.option_name()
        self.expect("=")
        value = self.constant()
        self.expect(";", " after the option")
        if name is not None:
            self.set_option(options, name, value, self.where(name_token))

    def constant(self) -> _Constant:
        token = self.peek()
        where = self.where(token)
        negative = False
        if self.at("-"):
            self.next()
            negative = True
            token = self.peek()
            if token.kind not in ("int", "float", "ident"):
                raise self.fail("a number after '-'")
        if token.kind == "int":
            self.next()
            return _Constant("int", _integer(token, self.path), negative, where)
        if token.kind == "float":
            self.next()
            return _Constant("float", float(token.text), negative, where)
        if token.kind == "ident":
            self.next()
            return _Constant("ident", token.text, negative, where)
        if token.kind == "string":
            data = b""
            while self.peek().kind == "string":   # adjacent literals concatenate, as in C
                data += _unescape(self.next(), self.path)
            return _Constant("string", data, False, where)
        if self.at("{"):
            self.next()
            self.skip_block(token)
            return _Constant("aggregate", None, False, where)
        raise self.fail("a value")

    def set_option(self, options, name: str, value: _Constant, where: Location) -> None:
        field_descriptor = options.DESCRIPTOR.fields_by_name.get(name)
        if field_descriptor is None or field_descriptor.is_repeated \
                or field_descriptor.type in (_F.TYPE_MESSAGE, _F.TYPE_GROUP):
            kind = type(options).__name__.replace("Options", "").lower() or "file"
            raise SchemaError(f'unknown {kind} option "{name}"', where=where)
        enum_values = None
        if field_descriptor.type == _F.TYPE_ENUM:
            enum_values = {v.name: v.number for v in field_descriptor.enum_type.values}
        python_value, _ = _convert(field_descriptor.type, value, enum_values, f'option "{name}"')
        setattr(options, name, python_value)

    # -- resolution -----------------------------------------------------------------------------------

    def resolve(self) -> None:
        prefix = tuple(self.package.split(".")) if self.package else ()
        table: dict[str, _Symbol] = {}
        for i in range(len(prefix)):
            table[".".join(prefix[:i + 1])] = _Symbol("package", None)
        for name, symbol in self.symbols.items():
            table[".".join(prefix + (name,))] = symbol
        for item in self.pending:
            self.resolve_field(item, table, prefix)
        for extend in self.extends:
            found = _lookup(table, extend.extendee, prefix + extend.scope)
            if isinstance(found, str) or found[1].kind != "message":
                bare = extend.extendee.lstrip(".")
                if bare.startswith("google.protobuf."):
                    self.notes.append(f"{extend.where}: extend {bare} ignored (custom options are not used)")
                    continue
                raise SchemaError(_not_a_type(extend.extendee, found, "message"), where=extend.where)
            for proto in extend.fields:
                added = extend.container.add()
                added.CopyFrom(proto)
                added.extendee = "." + found[0]

    def resolve_field(self, item: _Pending, table: dict[str, _Symbol], prefix: tuple[str, ...]) -> None:
        proto = item.proto
        enum_values = None
        if item.type_text is not None:
            found = _lookup(table, item.type_text, prefix + item.scope)
            if isinstance(found, str) or found[1].kind not in ("message", "enum"):
                raise SchemaError(_not_a_type(item.type_text, found, "type"), where=item.type_where)
            full_name, symbol = found
            proto.type_name = "." + full_name
            if symbol.kind == "message":
                proto.type = _F.TYPE_MESSAGE
            else:
                proto.type = _F.TYPE_ENUM
                enum_values = {v.name: v.number for v in symbol.proto.value}
        if item.default is not None:
            if proto.label == _F.LABEL_REPEATED:
                raise SchemaError("repeated fields cannot have default values", where=item.default.where)
            if proto.type == _F.TYPE_MESSAGE:
                raise SchemaError("message fields cannot have default values", where=item.default.where)
            _, proto.default_value = _convert(proto.type, item.default, enum_values,
                                              f'the default of field "{proto.name}"')
        if item.packed_where is not None and (proto.label != _F.LABEL_REPEATED or proto.type in _NOT_PACKABLE):
            raise SchemaError("[packed = true] is only allowed on repeated number, bool or enum fields",
                              where=item.packed_where)


def _lookup(table: dict[str, _Symbol], name: str, scope: tuple[str, ...]):
    """Resolve a type reference as protoc does: the first component is searched from the innermost scope
    outwards (skipping symbols that cannot contain the rest); the rest must then be found inside it.
    Returns (full name, symbol) or, when nothing is found, a string saying what was tried."""
    if name.startswith("."):
        symbol = table.get(name[1:])
        return (name[1:], symbol) if symbol is not None else f'"{name}" is not defined'
    first, _, rest = name.partition(".")
    parts = list(scope)
    while True:
        candidate = ".".join(parts + [first])
        symbol = table.get(candidate)
        if symbol is not None:
            if rest:
                if symbol.kind in ("message", "package"):
                    full = f"{candidate}.{rest}"
                    found = table.get(full)
                    if found is None:
                        return (f'"{name}" is resolved to "{full}", which is not defined (the innermost scope '
                                f'is searched first; write ".{name}" to start from the outermost scope)')
                    return full, found
            elif symbol.kind in ("message", "enum"):
                return candidate, symbol
        if not parts:
            return f'unknown type name "{name}"'
        parts.pop()


def _not_a_type(name: str, found, wanted: str) -> str:
    if isinstance(found, str):
        return found
    full, symbol = found
    what = symbol.kind.replace("_", " ")
    return f'"{name}" is {"an" if what[0] in "aeiou" else "a"} {what} ("{full}"), not a {wanted}'


# ----------------------------------------------------------------------------------------------------------
# Values

def _convert(field_type: int, value: _Constant, enum_values: dict[str, int] | None, what: str):
    """A constant as a value of the field type: (Python value, protoc's default_value text)."""
    def bad(expected: str) -> SchemaError:
        return SchemaError(f"{what} has the wrong type", where=value.where, expected=expected,
                           found=value.describe())

    if value.kind == "aggregate":
        raise bad("a single value ({...} is only for custom options)")
    if field_type in _INTEGER_RANGES:
        if value.kind != "int":
            raise bad(f"an integer ({_TYPE_NAMES[field_type]})")
        number = -value.value if value.negative else value.value
        low, high = _INTEGER_RANGES[field_type]
        if not low <= number <= high:
            raise SchemaError(f"{what} is out of range for {_TYPE_NAMES[field_type]}", where=value.where,
                              expected=f"{low} to {high}", found=number)
        return number, str(number)
    if field_type in _FLOATS:
        if value.kind in ("int", "float"):
            if value.kind == "int" and value.value > 2**64 - 1:
                raise SchemaError(f"{what}: integer out of range", where=value.where)
            magnitude = float(value.value)
        elif value.kind == "ident" and value.value in ("inf", "nan"):
            magnitude = math.inf if value.value == "inf" else math.nan
        else:
            raise bad("a number, inf or nan")
        number = -magnitude if value.negative else magnitude
        if field_type == _F.TYPE_FLOAT:
            number = _to_float32(number)
            return number, _float_text(number)
        return number, _double_text(number)
    if field_type == _F.TYPE_BOOL:
        if value.kind != "ident" or value.negative or value.value not in ("true", "false"):
            raise bad("true or false")
        return value.value == "true", value.value
    if field_type == _F.TYPE_STRING:
        if value.kind != "string":
            raise bad("a string in quotes")
        try:
            text = value.value.decode("utf-8")
        except UnicodeDecodeError:
            raise SchemaError(f"{what} is not valid UTF-8 (use a bytes field)", where=value.where) from None
        return text, text
    if field_type == _F.TYPE_BYTES:
        if value.kind != "string":
            raise bad("a string in quotes")
        return value.value, _c_escape(value.value)
    if field_type == _F.TYPE_ENUM:
        if value.kind != "ident" or value.negative:
            raise bad("the name of an enum value")
        if enum_values is None or value.value not in enum_values:
            choices = ", ".join(enum_values or ())
            raise SchemaError(f'{what}: the enum has no value named "{value.value}"', where=value.where,
                              expected=f"one of {choices}")
        return enum_values[value.value], value.value
    raise bad("a value of a supported type")


def _double_text(value: float) -> str:
    """protoc's text for a double default (SimpleDtoa): 15 significant digits if they read back exactly,
    else 17."""
    if math.isnan(value) or math.isinf(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    text = f"{value:.15g}"
    return text if float(text) == value else f"{value:.17g}"


def _float_text(value: float) -> str:
    """protoc's text for a float default (SimpleFtoa): 6 significant digits if they read back as the same
    float32, else 9."""
    if math.isnan(value) or math.isinf(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    text = f"{value:.6g}"
    return text if _to_float32(float(text)) == value else f"{value:.9g}"


def _to_float32(value: float) -> float:
    try:
        return struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:      # beyond float32's range: C's conversion gives infinity
        return math.copysign(math.inf, value)


def _c_escape(data: bytes) -> str:
    """protoc's CEscape, used for the default_value of bytes fields."""
    special = {10: "\\n", 13: "\\r", 9: "\\t", 34: '\\"', 39: "\\'", 92: "\\\\"}
    return "".join(special[b] if b in special else chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}" for b in data)
