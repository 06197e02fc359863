"""Writing a lowered net to disk: generated source + state dict, or a torch.export program. Atomic writes."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch

from protodef.errors import OutputError, UnsupportedError
from protodef.ir import Net
from protodef.symbolic import is_static
from protodef.write import atomic_open, atomic_write

from .codegen import python_source
from .lower import Lowering


def save_source(lowering: Lowering, net: Net, path: str | os.PathLike) -> list[str]:
    """`path` (the module's source) and `<stem>.pt` beside it (its state dict); returns both paths."""
    path = Path(path)
    weights = path.with_suffix(".pt")
    if weights == path:
        raise OutputError("the generated source needs a name of its own: its weights go to <stem>.pt",
                          where=str(path), expected="a .py file name", found=path.name)
    source = python_source(lowering, net, weights_name=weights.name)
    state = {k: v.detach().clone() for k, v in lowering.module.state_dict().items()}
    with atomic_open(weights, "wb") as handle:
        torch.save(state, handle)
    atomic_write(path, source)
    return [str(path), str(weights)]


def save_export(lowering: Lowering, net: Net, path: str | os.PathLike, *, dynamic_batch: bool = True) -> list[str]:
    """A torch.export program (torch.export.load reads it back), batch-size-free where the net allows."""
    program = export_program(lowering, net, dynamic_batch=dynamic_batch)
    buffer = io.BytesIO()
    # conversion_metadata.json: where the weights came from (a made-up net says so, with its seed)
    torch.export.save(program, buffer, extra_files={"conversion_metadata.json": json.dumps(net.metadata)})
    atomic_write(path, buffer.getvalue())
    return [str(path)]


def export_program(lowering: Lowering, net: Net, *, dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    """torch.export.export of the module on inputs of the IR's shapes. With `dynamic_batch`, axis 0 of every
    input whose batch matches the first input's is one symbolic size; a net that fixes its batch (a Reshape
    to a constant shape, a layer working across axis 0) is exported at the IR's batch instead."""
    module = lowering.module
    if not all(is_static(net.shape(i.value)) for i in net.inputs):
        return _export_symbolic(module, net)
    shapes = [tuple(net.shape(i.value)) for i in net.inputs]
    dtype = next((p.dtype for p in module.parameters()), torch.float32)   # float16 after --fp16
    if dynamic_batch and shapes and shapes[0]:
        batch = torch.export.Dim("batch")
        # Example batches of 1 would be specialised to 1 (torch.export's 0/1 rule), so trace at 2.
        example = tuple(torch.zeros((2, *s[1:]) if s and s[0] == shapes[0][0] else s, dtype=dtype) for s in shapes)
        dims = tuple({0: batch} if s and s[0] == shapes[0][0] else None for s in shapes)
        try:
            return torch.export.export(module, example, dynamic_shapes=dims)
        except Exception:  # noqa: BLE001  (torch raises several kinds for a batch the net fixes)
            pass
    try:
        return torch.export.export(module, tuple(torch.zeros(s, dtype=dtype) for s in shapes))
    except Exception as error:  # noqa: BLE001
        raise UnsupportedError(f"torch.export failed: {type(error).__name__}: {str(error).splitlines()[0]}",
                               where=net.source) from error


def _export_symbolic(module: torch.nn.Module, net: Net) -> torch.export.ExportedProgram:
    """A net built with named sizes: one torch.export.Dim per name, from the smallest size the net accepts."""
    from .sizes import export_inputs

    examples, dims = export_inputs(net, list(module.input_names))
    try:
        return torch.export.export(module, examples, dynamic_shapes=dims)
    except Exception as error:  # noqa: BLE001  (torch raises several kinds for sizes the net constrains)
        text = str(error).strip()
        fixes = text.split("Suggested fixes:", 1)[1].strip().splitlines() if "Suggested fixes:" in text else []
        hint = f" (torch suggests: {'; '.join(line.strip() for line in fixes[:4])})" if fixes else ""
        raise UnsupportedError(f"torch.export with symbolic sizes failed: {type(error).__name__}: "
                               f"{text.splitlines()[0]}{hint}; the net may hold only for some sizes (Caffe's "
                               "shapes must agree where layers meet)", where=net.source) from error
