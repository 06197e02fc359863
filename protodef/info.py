"""`protodef info`: a table of layers with shapes, parameter counts and multiply-accumulates."""
from __future__ import annotations

import math
from typing import Any

from .ir import Net


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
        macs = getattr(layer.params, "macs", None)
        rows.append({
            "name": layer.name, "type": layer.type,
            "inputs": [net.value_name(v) for v in layer.inputs],
            "outputs": [net.value_name(v) for v in layer.outputs],
            "shapes": [list(s) if s is not None else None for s in out_shapes],
            "params": int(sum(w.size for w in layer.weights)) if layer.weights else _expected_params(net, layer),
            "macs": int(macs(in_shapes, out_shapes)) if macs and None not in (*in_shapes, *out_shapes) else 0,
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
    return sum(math.prod(s) for s in expected_weight_shapes(net, layer))


def summary(net: Net) -> dict[str, Any]:
    rows = layer_rows(net)
    return {"name": net.name, "source": net.source, "layers": rows,
            "inputs": {net.value_name(i.value): list(net.shapes[i.value]) if net.shapes.get(i.value) else None
                       for i in net.inputs},
            "outputs": {net.value_name(v): list(net.shapes[v]) for v in net.outputs()},
            "total_params": sum(r["params"] for r in rows), "total_macs": sum(r["macs"] for r in rows),
            "notes": list(net.notes)}


def format_table(net: Net) -> str:
    info = summary(net)
    header = ("layer", "type", "inputs -> outputs", "output shape", "params", "MACs")
    body = []
    for row in info["layers"]:
        flow = f"{', '.join(row['inputs'])} -> {', '.join(row['outputs'])}" if row["inputs"] else \
            f"-> {', '.join(row['outputs'])}"
        shapes = ", ".join("x".join(map(str, s)) if s is not None else "?" for s in row["shapes"])
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
            f"{info['total_params']:,} parameters, {info['total_macs']:,} multiply-accumulates"
    notes = [f"note: {n}" for n in info["notes"]]
    return "\n".join([title, *lines, *notes])


def _human(n: int) -> str:
    if n == 0:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
