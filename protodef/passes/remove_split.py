"""Split layers copy their input to every output; readers can read the input itself."""
from __future__ import annotations

import dataclasses

from ..ir import Net
from .edit import bypass_keeps_outputs, describe


def remove_split(net: Net) -> Net:
    """Every reader of a Split's output reads the Split's input instead, and the Split goes."""
    out = net.copy()
    for name in [layer.name for layer in out.layers(type="Split")]:
        layer = out.layer(name)         # fresh: removing an earlier Split may have rewired this one
        (source,) = layer.inputs
        unread = tuple(v for v in layer.outputs if not out.consumers(v))
        for value in layer.outputs:
            out.rewire(value, source)
        current = out.layer(layer.name)
        if len(current.outputs) == 1 and bypass_keeps_outputs(out, current):
            out.bypass(current)   # a lone copy: its input becomes that output
        elif unread:
            # An unread top is a net output in Caffe: keep a Split that writes just those.
            params = dataclasses.replace(current.params, outputs=len(unread))
            out.replace(current, current.replace(params=params, outputs=unread))
            for value in current.outputs:
                if value not in unread:
                    out.shapes.pop(value, None)
            out.notes.append(f"Split {describe(layer)} kept for its unread output(s) "
                             + ", ".join(map(str, unread)) + ", which are net outputs")
        else:
            out.remove(current)
    return out
