"""Parameter blocks our schema lacks (a fork's `my_param { ... }` inside a layer).

protobuf's text parser stops at the first unknown field. When that happens we find every field of every
top-level `layer { }` block that LayerParameter does not have, blank it out (keeping line and column of
everything else), parse again, and keep each blanked block as a plain mapping with its location: a plugin
registered for the layer's type receives it; any other layer fails naming the field and where it is.
One linear scan, whatever the number of unknown fields.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any

from .errors import Location, ParseError

_TOKEN = re.compile(r"""
    (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<open>[{<])
  | (?P<close>[}>])
  | (?P<punct>[:\[\],;])
  | (?P<word>[A-Za-z0-9_.+\-]+)
  | (?P<space>\s+)
  | (?P<other>.)
""", re.VERBOSE)

MAX_DEPTH = 100


@dataclass(frozen=True)
class UnknownField:
    """One unknown field of a layer: its name, its value as plain Python data, and where it starts."""

    layer_index: int
    name: str
    value: Any
    where: Location


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind in ("space", "comment"):
            continue
        out.append((kind, match.group(), match.start()))
    return out


def blank_unknown_layer_fields(text: str, known: set[str], path: str) -> tuple[str, list[UnknownField]]:
    """Return `text` with unknown fields of top-level `layer` blocks blanked, and those fields."""
    tokens = _tokens(text)
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def where(offset: int) -> Location:
        line = bisect.bisect_right(line_starts, offset)
        return Location(path, line, offset - line_starts[line - 1] + 1)

    found: list[UnknownField] = []
    spans: list[tuple[int, int]] = []
    depth, layer_index, in_layer = 0, -1, False
    i = 0
    while i < len(tokens):
        kind, value, start = tokens[i]
        if kind == "open":
            if depth == 0:
                in_layer = i > 0 and tokens[i - 1][1] == "layer" or (
                    i > 1 and tokens[i - 1][1] == ":" and tokens[i - 2][1] == "layer")
                layer_index += in_layer
            depth += 1
            if depth > MAX_DEPTH:
                raise ParseError("messages are nested too deeply", where=where(start), expected=f"<= {MAX_DEPTH}")
        elif kind == "close":
            depth = max(0, depth - 1)
        elif kind == "word" and depth == 1 and in_layer and _starts_field(tokens, i) and value not in known:
            end_index = _field_end(tokens, i)
            end = tokens[end_index][2] + len(tokens[end_index][1])
            found.append(UnknownField(layer_index, value, _plain_value(tokens, i + 1, end_index + 1, where),
                                      where(start)))
            spans.append((start, end))
            i = end_index + 1
            continue
        i += 1
    return _blank(text, spans), found


def _starts_field(tokens: list, i: int) -> bool:
    """A word at depth 1 names a field when the previous token ends a value or opens the block."""
    if i + 1 >= len(tokens) or tokens[i + 1][1] not in (":", "{", "<"):
        return False
    previous = tokens[i - 1] if i else None
    return previous is None or previous[0] in ("open", "close", "string", "word") or previous[1] in ("]", ",", ";")


def _field_end(tokens: list, i: int) -> int:
    """Index of the last token of the field starting at i."""
    j = i + 1
    if tokens[j][1] == ":":
        j += 1
    if j >= len(tokens):
        return len(tokens) - 1
    kind, value, _ = tokens[j]
    if kind == "open":
        depth = 0
        while j < len(tokens):
            if tokens[j][0] == "open":
                depth += 1
            elif tokens[j][0] == "close":
                depth -= 1
                if depth == 0:
                    return j
            j += 1
        return len(tokens) - 1
    if value == "[":
        while j < len(tokens) and tokens[j][1] != "]":
            j += 1
        return min(j, len(tokens) - 1)
    while j + 1 < len(tokens) and tokens[j][0] == "string" and tokens[j + 1][0] == "string":
        j += 1   # adjacent string literals concatenate
    return j


def _plain_value(tokens: list, start: int, end: int, where) -> Any:
    """Text-format tokens -> dict / list / scalar. Repeated names collect into lists."""
    items = tokens[start:end]
    if items and items[0][1] == ":":
        items = items[1:]
    if not items:
        return None
    if items[0][0] != "open":
        if items[0][1] == "[":
            return [_scalar(t, where) for t in items[1:] if t[1] not in ",]"]
        return _scalar(items[0], where) if len(items) == 1 else "".join(_scalar(t, where) for t in items)
    stack: list[dict] = [{}]
    pending: str | None = None
    for kind, value, offset in items[1:-1]:
        if kind == "word" and pending is None:
            pending = value
        elif kind == "open":
            child: dict = {}
            _put(stack[-1], pending or "", child)
            stack.append(child)
            pending = None
        elif kind == "close":
            stack.pop()
        elif value in (":", ",", ";", "[", "]"):
            continue
        elif pending is not None:
            _put(stack[-1], pending, _scalar((kind, value, offset), where))
            pending = None
    return stack[0]


def _put(mapping: dict, key: str, value: Any) -> None:
    if key in mapping:
        current = mapping[key]
        mapping[key] = current + [value] if isinstance(current, list) else [current, value]
    else:
        mapping[key] = value


def _scalar(token: tuple, where=None) -> Any:
    kind, value, offset = token
    if kind == "string":
        body = value[1:-1]
        if "\\" not in body:
            return body
        try:
            return bytes(body, "utf-8").decode("unicode_escape")
        except UnicodeDecodeError:
            raise ParseError("a string has a broken escape sequence", where=where(offset) if where else None,
                             found=value[:40]) from None
    if value in ("true", "True"):
        return True
    if value in ("false", "False"):
        return False
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    parts, last = [], 0
    for start, end in spans:
        parts.append(text[last:start])
        parts.append(re.sub(r"[^\n]", " ", text[start:end]))
        last = end
    parts.append(text[last:])
    return "".join(parts)


def blank_field_at(text: str, offset: int) -> str | None:
    """`text` with the field whose name starts at `offset` blanked (line and column of the rest kept); None
    when no field starts there."""
    tokens = _tokens(text)
    index = next((i for i, (kind, _, start) in enumerate(tokens) if start == offset and kind == "word"), None)
    if index is None or index + 1 >= len(tokens):
        return None
    end_index = _field_end(tokens, index)
    return _blank(text, [(offset, tokens[end_index][2] + len(tokens[end_index][1]))])
