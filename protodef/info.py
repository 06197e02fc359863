"""`protodef info`: a table of layers with shapes, parameter counts and multiply-accumulates.

Sizes may be named (`H`) or expressions of names (`H // 2`); a count that depends on them is a formula, and
one that nothing tells (an opaque node's, or after one) is `?` (None in --json)."""
from __future__ import annotations

import math
from typing import Any

from .ir import Net
from .lenient import Opaque
from .symbolic import Dim, names_in


def layer_rows(net: Net) -> list[dict[str, Any]]:
    """One row per net input and per layer, in execution order."""
    rows = []
    for net_input in net.inputs:
        shape = net.shapes.get(net_input.value)
        # Net-level `input:` fields are one Input layer named "input" in Caffe (and in the upgrade note).
        rows.append({"name": net_input.declared_by,
                     "type": net_input.declared_type if net_input.declared_type != "input" else "Input",
                     "inputs": [], "outputs": [net.value_name(net_input.value)],
                     "shapes": [list(shape) if shape is not None else None], "params": 0, "macs": 0})
    for layer in net.layers():
        in_shapes = [net.shapes.get(v) for v in layer.inputs]
        out_shapes = [net.shapes.get(v) for v in layer.outputs]
        known = not isinstance(layer.params, Opaque) and (None not in in_shapes or layer.spec.training_only)
        macs = getattr(layer.params, "macs", None)
        rows.append({
            "name": layer.name, "type": layer.type,
            "inputs": [net.value_name(v) for v in layer.inputs],
            "outputs": [net.value_name(v) for v in layer.outputs],
            "shapes": [list(s) if s is not None else None for s in out_shapes],
            "params": (int(sum(w.size for w in layer.weights)) if layer.weights
                       else _expected_params(net, layer) if known else None),
            "macs": (None if not known or (macs and None in out_shapes)
                     else _count(macs(in_shapes, out_shapes)) if macs else 0),
        })
    # Merge a net input's row into the layer that declared it, when several tops share one data layer.
    merged: dict[str, dict[str, Any]] = {}
    result = []
    for row in rows:
        if not row["inputs"] and row["name"] in merged:
            merged[row["name"]]["outputs"] += row["outputs"]
            merged[row["name"]]["shapes"] += row["shapes"]
            continue
        if not row["inputs"]:
            merged[row["name"]] = row
        result.append(row)
    return result


def _expected_params(net: Net, layer) -> int:
    from .attach import expected_weight_shapes
    return _count(sum(math.prod(s) for s in expected_weight_shapes(net, layer)))


def _count(value: Any) -> Any:
    """An int, or a formula of named sizes; None where it depends on a size nothing tells."""
    if isinstance(value, Dim):
        return None if "?" in names_in(value) else value
    return int(value)


def _total(values: list[Any]) -> Any:
    return None if None in values else _count(sum(values))


def summary(net: Net) -> dict[str, Any]:
    """What `info --json` prints: sizes and counts are ints, or formulas as text ("H // 2")."""
    return _plain(_summary(net))


def _summary(net: Net) -> dict[str, Any]:
    rows = layer_rows(net)
    return {"name": net.name, "source": net.source, "layers": rows,
            "inputs": {net.value_name(i.value): list(net.shapes[i.value]) if net.shapes.get(i.value) else None
                       for i in net.inputs},
            "outputs": {net.value_name(v): list(net.shapes[v]) if net.shapes.get(v) is not None else None
                        for v in net.outputs()},
            "total_params": _total([r["params"] for r in rows]), "total_macs": _total([r["macs"] for r in rows]),
            "notes": list(net.notes)}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Dim) else value


def format_table(net: Net) -> str:
    info = _summary(net)
    header = ("layer", "type", "inputs -> outputs", "output shape", "params", "MACs")
    body = []
    for row in info["layers"]:
        flow = f"{', '.join(row['inputs'])} -> {', '.join(row['outputs'])}" if row["inputs"] else \
            f"-> {', '.join(row['outputs'])}"
        shapes = ", ".join("x".join(map(_size_text, s)) if s is not None else "?" for s in row["shapes"])
        body.append((row["name"], row["type"], flow, shapes, _human(row["params"]), _human(row["macs"])))
    body.append(("total", "", "", "", _human(info["total_params"]), _human(info["total_macs"])))
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    lines = []
    for index, row in enumerate([header, *body]):
        if index == len(body):   # the totals row
            lines.append("  ".join("-" * w for w in widths))
        cells = [str(c).rjust(w) if i >= 4 else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    title = f"{info['name'] or 'net'}: {len(info['layers'])} rows, " \
            f"{_full(info['total_params'])} parameters, {_full(info['total_macs'])} multiply-accumulates"
    notes = [f"note: {n}" for n in info["notes"]]
    return "\n".join([title, *lines, *notes])


def _size_text(d: Any) -> str:
    text = str(d)
    return f"({text})" if " " in text else text


def _full(n: Any) -> str:
    if n is None:
        return "?"
    return str(n) if isinstance(n, Dim) else f"{n:,}"


_LONGEST_FORMULA = 40   # a longer one is named by what it depends on; --json has it whole


def _human(n: Any) -> str:
    if n is None:
        return "?"
    if isinstance(n, Dim):
        text = str(n)
        return text if len(text) <= _LONGEST_FORMULA else f"f({', '.join(sorted(names_in(n)))})"
    if n == 0:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
