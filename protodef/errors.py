"""Every failure a user can cause is a ProtodefError; one subclass per kind, each with its exit code."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Names in a model file may hold control characters; the message must stay one line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Location:
    """A place in a source file; line and column are 1-based."""

    path: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.path
        if self.column is None:
            return f"{self.path}:{self.line}"
        return f"{self.path}:{self.line}:{self.column}"


class ProtodefWarning(UserWarning):
    """Something the user should know, that does not stop the conversion."""


class ProtodefError(Exception):
    """Base of every user-facing error; str() is the one line the CLI prints."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, where: Location | str | None = None, layer: Any = None,
                 expected: Any = None, found: Any = None):
        self.message = message
        self.where = where
        self.layer_name, self.layer_type = _layer_identity(layer)
        self.expected = expected
        self.found = found
        super().__init__(self.format())

    def at(self, where: Location | str | None, layer: Any = None) -> "ProtodefError":
        """Fill in the place and layer if the raiser did not know them; returns self for `raise e.at(...)`."""
        if self.where is None:
            self.where = where
        if self.layer_name is None and layer is not None:
            self.layer_name, self.layer_type = _layer_identity(layer)
        self.args = (self.format(),)
        return self

    def __str__(self) -> str:
        return self.format()

    def format(self) -> str:
        parts = []
        if self.where is not None and str(self.where):
            parts.append(str(self.where))
        if self.layer_name is not None:
            kind = f" ({self.layer_type})" if self.layer_type else ""
            parts.append(f"layer '{self.layer_name}'{kind}")
        text = self.message
        if self.expected is not None or self.found is not None:
            details = []
            if self.expected is not None:
                details.append(f"expected {_show(self.expected)}")
            if self.found is not None:
                details.append(f"found {_show(self.found)}")
            text = f"{text}: {', '.join(details)}"
        parts.append(text)
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], ": ".join(parts))


class ParseError(ProtodefError):
    """The text is not valid prototxt, or the binary is not a valid protobuf message."""

    exit_code = 3
    kind = "syntax"


class SchemaError(ProtodefError):
    """Valid syntax, but a field, enum or parameter Caffe does not have or we do not honour."""

    exit_code = 4
    kind = "schema"


class GraphError(ProtodefError):
    """Layers do not connect into a net: missing bottoms, tops written twice, cycles, no inputs."""

    exit_code = 5
    kind = "graph"


class ShapeError(ProtodefError):
    """A shape rule fails: sizes that do not match, or become zero or negative."""

    exit_code = 6
    kind = "shape"


class WeightsError(ProtodefError):
    """A caffemodel is broken or does not fit the net."""

    exit_code = 7
    kind = "weights"


class UnsupportedError(ProtodefError):
    """A valid net uses something a backend cannot express (yet)."""

    exit_code = 8
    kind = "unsupported"


class OutputError(ProtodefError):
    """An output file could not be written."""

    exit_code = 9
    kind = "output"


class InputError(ProtodefError):
    """An input file is missing or cannot be read (no such file, a directory, no permission)."""

    exit_code = 10
    kind = "input"


class DependencyError(ProtodefError):
    """A program or package an output needs is missing: torch (PyTorch output), graphviz's dot (the .dot is written)."""

    exit_code = 11
    kind = "dependency"


class UsageError(ProtodefError):
    """Command-line arguments that do not fit together (argparse's own errors exit 2 as well)."""

    exit_code = 2
    kind = "usage"


# The generated exit-code table lists these; UsageError's code 2 is argparse's and has its own row.
ERROR_KINDS: tuple[type[ProtodefError], ...] = (
    ParseError, SchemaError, GraphError, ShapeError, WeightsError, UnsupportedError, OutputError, InputError,
    DependencyError)


def _layer_identity(layer: Any) -> tuple[str | None, str | None]:
    if layer is None:
        return None, None
    if isinstance(layer, tuple):
        return layer[0], layer[1]
    if isinstance(layer, str):
        return layer, None
    return getattr(layer, "name", None), getattr(layer, "type", None)


def _show(value: Any) -> str:
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return str(value)
