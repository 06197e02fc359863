"""Node labels (graphviz HTML-like tables) built from the IR: each spec's `label` fields, formatted the way papers
write them ("64, 7×7/2, pad 3"), and shapes from shape inference."""
from __future__ import annotations

from html import escape
from typing import Any, Callable

import numpy as np

from protodef.ir import Layer, Net, NetInput, Value
from protodef.layers.common import is_proto_default

from .blocks import Block, Run
from .stacks import Stack, StackGraph
from .style import BLOCK_LINE, MUTED, family_style


# ---- shapes ---------------------------------------------------------------------------------------------------
def shape_text(shape: tuple[int, ...] | None, *, batch: bool = False) -> str:
    """`64×56×56` (batch axis left off unless asked for), `64×(H // 2)×(W // 2)` where sizes are symbolic;
    "" for an unknown shape."""
    if shape is None:
        return ""
    dims = shape if batch or len(shape) < 2 else shape[1:]
    return "×".join(_dim_text(d) for d in dims) or "scalar"


def _dim_text(d: object) -> str:
    text = str(d)
    return f"({text})" if " " in text else text


def value_shape(net: Net, value: Value) -> tuple[int, ...] | None:
    # Train nets read data layers whose shapes are not known without the database.
    return net.shape(value) if value in net.shapes else None


# ---- parameters -----------------------------------------------------------------------------------------------
def _dims(values: tuple[int, ...]) -> str:
    return str(values[0]) if len(set(values)) == 1 else "×".join(map(str, values))


def _unless(neutral: int, text: Callable[[Any], str]) -> Callable[[Any], str | None]:
    def formatted(value: Any) -> str | None:
        values = value if isinstance(value, tuple) else (value,)
        return None if all(v == neutral for v in values) else text(value)
    return formatted


# How a field that needs more than "name value" is written; a None result leaves the field out.
_FIELD_TEXT: dict[str, Callable[[Any], str | None]] = {
    "num_output": str,
    "kernel": lambda v: "×".join(map(str, v)) if isinstance(v, tuple) else str(v),
    "stride": _unless(1, lambda v: "/" + (_dims(v) if isinstance(v, tuple) else str(v))),
    "pad": _unless(0, lambda v: "pad " + (_dims(v) if isinstance(v, tuple) else str(v))),
    "dilation": _unless(1, lambda v: "dilation " + (_dims(v) if isinstance(v, tuple) else str(v))),
    "group": _unless(1, lambda v: f"group {v}"),
    "method": str,
    "operation": str,
    "bias_term": lambda v: "+ bias" if v else None,
}
_LEADING = ("method", "kernel", "stride")    # first, as papers write them: "MAX 3×3/2", "7×7/2, 64"
_GLUED = {"stride": "", "kernel": " "}      # joined to the part before them, not after a comma
_SPATIAL = ("kernel", "stride", "pad")


def param_text(layer: Layer) -> str:
    """The parameters the layer's spec marks as worth showing, e.g. "64, 7×7/2, pad 3" or "MAX, 3×3/2"."""
    params = layer.params
    is_global = bool(getattr(params, "is_global", False))
    parts: list[str] = []
    fields = sorted(layer.spec.label, key=lambda f: _LEADING.index(f) if f in _LEADING else len(_LEADING))
    for field in fields:
        if is_global and field in _SPATIAL:
            continue
        text = _field_text(layer.type, field, getattr(params, field, None))
        if text is None:
            continue
        if field in _GLUED and parts:
            parts[-1] += _GLUED[field] + text
        else:
            parts.append(text)
    if is_global:
        parts.append("global")
    return ", ".join(parts)


def _field_text(layer_type: str, field: str, value: Any) -> str | None:
    if value is None:
        return None
    if field in _FIELD_TEXT:
        return _FIELD_TEXT[field](value)
    if is_proto_default(layer_type, field, value):
        return None
    words = field.replace("_", " ")
    if isinstance(value, bool):
        return words if value else None
    if isinstance(value, tuple):
        return f"{words} {','.join(map(number_text, value))}" if value else None
    return f"{words} {number_text(value)}"


def number_text(value: Any) -> str:
    """A number as a person writes it. Caffe's floats are float32, so a float is the shortest decimal that reads
    back as the same float32 (60, 0.0001, 0.00390625; never 0.3333333432674408), and one that still needs
    more than 6 digits is a computed value (SSD's flipped aspect ratio 1/3) shown to 4: 0.3333."""
    if not isinstance(value, float):
        return str(value)
    single = np.float32(value)
    if single != 0 and not 1e-4 <= abs(single) < 1e6:
        shortest = np.format_float_scientific(single, trim="-", exp_digits=1)
    else:
        shortest = np.format_float_positional(single, trim="-")
    digits = len(shortest.split("e")[0].lstrip("-0.").replace(".", ""))
    return shortest if digits <= 6 else f"{float(single):.4g}"


# ---- HTML labels ----------------------------------------------------------------------------------------------
def _table(rows: list[str], line: str, **attrs: str) -> str:
    attrs = {"BORDER": "1", "CELLBORDER": "0", "CELLSPACING": "1", "CELLPADDING": "3", "COLOR": line, **attrs}
    return "<<TABLE" + "".join(f' {k}="{v}"' for k, v in attrs.items()) + ">" + "".join(rows) + "</TABLE>>"


def _layer_text(layer: Layer) -> str:
    params = param_text(layer)
    text = f"<B>{escape(layer.type)}</B>"
    return text + (f' <FONT COLOR="{MUTED}">{escape(params)}</FONT>' if params else "")


def stack_label(stack: Stack) -> str:
    """The head's name and parameters over a row of chips for the layers stacked on it (BatchNorm, Scale,
    ReLU), each in its family's colour: an in-place chain reads as one node."""
    head, followers = stack.head, stack.layers[1:]
    span = f' COLSPAN="{len(followers)}"' if len(followers) > 1 else ""
    fill = family_style(head.spec.family).fill
    rows = [f'<TR><TD ALIGN="LEFT"{span}><B>{escape(stack.name)}</B></TD></TR>',
            f'<TR><TD BGCOLOR="{fill}" ALIGN="LEFT"{span}>{_layer_text(head)}</TD></TR>']
    if followers:
        rows.append("<TR>" + "".join(f'<TD BGCOLOR="{family_style(layer.spec.family).fill}">'
                                     f'<FONT POINT-SIZE="9">{_layer_text(layer)}</FONT></TD>'
                                     for layer in followers) + "</TR>")
    return _table(rows, family_style(head.spec.family).line)


def stack_tooltip(stack: Stack) -> str:
    return "\n".join(f"{layer.name} ({layer.type})" for layer in stack.layers)


def input_label(net: Net, net_input: NetInput) -> str:
    style = family_style("data")
    kind = "Input" if net_input.declared_type == "input" else net_input.declared_type
    shape = shape_text(value_shape(net, net_input.value), batch=True)
    rows = [f'<TR><TD ALIGN="LEFT"><B>{escape(net_input.value.blob)}</B></TD></TR>',
            f'<TR><TD BGCOLOR="{style.fill}" ALIGN="LEFT"><B>{escape(kind)}</B>'
            + (f' <FONT COLOR="{MUTED}">{escape(shape)}</FONT>' if shape else "") + "</TD></TR>"]
    return _table(rows, style.line)


def output_label(net: Net, value: Value) -> str:
    style = family_style("data")
    return _table([f'<TR><TD BGCOLOR="{style.fill}">output <B>{escape(net.value_name(value))}</B></TD></TR>'],
                  style.line, STYLE="ROUNDED")


def run_label(net: Net, stacks: StackGraph, run: Run) -> str:
    """One collapsed node for a run of identical blocks: name and repeat count over a small picture of one
    block, its branches side by side (as the Inception and ResNet papers draw them), then its output shape."""
    block = run.blocks[0]
    paths = _paths(stacks, block)
    grid = _grid(stacks, paths) if paths else [f"<TD>{_summary(stacks, block)}</TD>"]
    width = len(paths) if paths else 1
    span = f' COLSPAN="{width}"' if width > 1 else ""
    count = f' <FONT COLOR="{MUTED}">×{len(run.blocks)}</FONT>' if len(run.blocks) > 1 else ""
    rows = [f'<TR><TD ALIGN="LEFT"{span}><B>{escape(run.name)}</B>{count}</TD></TR>']
    rows += [f"<TR>{cells}</TR>" for cells in grid]
    rows.append(f"<TR><TD{span}>{_chips(stacks.stacks[block.exit].layers)}</TD></TR>")
    shape = shape_text(value_shape(net, stacks.stacks[run.blocks[-1].exit].outputs[0]))
    if shape:
        rows.append(f'<TR><TD ALIGN="LEFT"{span}><FONT COLOR="{MUTED}">→ {shape}</FONT></TD></TR>')
    return _table(rows, BLOCK_LINE, STYLE="ROUNDED", CELLSPACING="2", CELLPADDING="2")


_DEEPEST = 8   # a block with longer branches is summarised: a collapsed node is a glance, not the block redrawn


def _paths(stacks: StackGraph, block: Block) -> list[tuple[str, ...]] | None:
    """For each input of the block's merge, the layers from the entry to it; None unless they form a tree
    whose shared trunks belong to neighbouring inputs (Inception-v3's 3x3 that forks into 1x3 and 3x1), so
    that a grid can draw each layer once."""
    graph, inside = stacks.graph, set(block.nodes[:-1])
    paths = []
    for _, _, data in graph.in_edges(block.exit, data=True):
        path, node = [], stacks.producer[data["value"]]
        while node != block.entry:
            predecessors = set(graph.predecessors(node))
            if node not in inside or len(predecessors) != 1:
                return None
            path.append(node)
            (node,) = predecessors
        paths.append(tuple(reversed(path)))
    if {node for path in paths for node in path} != inside or max(map(len, paths)) > _DEEPEST:
        return None
    for node in inside:
        holders = [index for index, path in enumerate(paths) if node in path]
        if holders[-1] - holders[0] + 1 != len(holders):
            return None
    return paths


_IDENTITY = "\0identity"    # a merge input that is the block's entry itself: ResNet's shortcut


def _grid(stacks: StackGraph, paths: list[tuple[str, ...]]) -> list[str]:
    """Table rows of cells, one column per path; a layer shared by neighbouring paths spans their columns, an
    identity path is one cell as tall as the block."""
    depth = max(1, *map(len, paths))
    rows = []
    for level in range(depth):
        cells: list[list] = []    # [stack name, _IDENTITY or None for an empty cell; columns spanned]
        for path in paths:
            if not path:
                if level == 0:
                    cells.append([_IDENTITY, 1])
                continue
            node = path[level] if level < len(path) else None
            if node is not None and cells and cells[-1][0] == node:
                cells[-1][1] += 1
            else:
                cells.append([node, 1])
        rows.append("".join(_grid_cell(stacks, node, span, depth) for node, span in cells))
    return rows


def _grid_cell(stacks: StackGraph, node: str | None, span: int, depth: int) -> str:
    if node is None:
        return "<TD></TD>"
    if node == _IDENTITY:
        return f'<TD ROWSPAN="{depth}" VALIGN="TOP"><FONT COLOR="{MUTED}"><I>identity</I></FONT></TD>'
    head = stacks.stacks[node].head
    style = family_style(head.spec.family)
    colspan = f' COLSPAN="{span}"' if span > 1 else ""
    return (f'<TD BGCOLOR="{style.fill}" BORDER="1" COLOR="{style.line}"{colspan}>'
            f"{escape(param_text(head) or head.type)}</TD>")


def _summary(stacks: StackGraph, block: Block) -> str:
    """Chips counting the block's layers by type, for blocks too tangled or deep to draw in a grid."""
    counts: dict[str, list[Layer]] = {}
    for node in block.nodes[:-1]:
        head = stacks.stacks[node].head
        counts.setdefault(head.type, []).append(head)
    cells = []
    for layer_type, layers in counts.items():
        style = family_style(layers[0].spec.family)
        count = f" ×{len(layers)}" if len(layers) > 1 else ""
        cells.append(f'<TD BGCOLOR="{style.fill}" BORDER="1" COLOR="{style.line}">{escape(layer_type)}{count}</TD>')
    return '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2" CELLPADDING="2"><TR>' + "".join(cells) + "</TR></TABLE>"


def _chips(layers: tuple[Layer, ...]) -> str:
    """Layers side by side as coloured chips: a merge and what is stacked on it."""
    cells = []
    for layer in layers:
        style = family_style(layer.spec.family)
        params = param_text(layer)
        text = escape(layer.type + (" " + params if params else ""))
        cells.append(f'<TD BGCOLOR="{style.fill}" BORDER="1" COLOR="{style.line}">{text}</TD>')
    return '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2" CELLPADDING="2"><TR>' + "".join(cells) + "</TR></TABLE>"
