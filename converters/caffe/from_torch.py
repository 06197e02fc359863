"""PyTorch -> ONNX in memory, for the Caffe exporter; node and value names become module paths.

torch.onnx's TorchScript-based exporter (`dynamo=False`) is used: it works offline with torch alone (the
torch.export-based one needs onnxscript) and folds each eval-mode BatchNorm into the Conv before it.
"""
from __future__ import annotations

import io
import warnings
from typing import Sequence

import onnx

from protodef.errors import UnsupportedError

from .registry import unique_name

TORCH_OPSET = 17


def torch_to_onnx(module, example_inputs, *, input_names: Sequence[str] | None = None,
                  output_names: Sequence[str] | None = None) -> onnx.ModelProto:
    import torch
    if example_inputs is None:
        raise UnsupportedError("exporting a PyTorch module needs example inputs (their shapes become the net's)")
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    # Caffe's customary blob names; torch gives the first output "output" and numbers any others.
    names = list(input_names or (["data"] if len(inputs) == 1 else [f"data{i}" for i in range(len(inputs))]))
    buffer = io.BytesIO()
    training = module.training
    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, inputs, buffer, dynamo=False, opset_version=TORCH_OPSET, input_names=names,
                              output_names=list(output_names or ["output"]), do_constant_folding=True)
    except Exception as exc:   # torch raises many kinds; one line says which
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedError(f"PyTorch could not export the module to ONNX: {reason}") from None
    finally:
        module.train(training)
    model = onnx.load_from_string(buffer.getvalue())
    name_by_module_path(model)
    return model


def module_path(scope: list[str]) -> str:
    """torch.onnx scopes ('/layer2/layer2.0/downsample/downsample.0') -> 'layer2.0.downsample.0': a component
    repeats its parent's own name before the child's."""
    names, previous = [], None
    for part in scope:
        names.append(part[len(previous) + 1:] if previous and part.startswith(previous + ".") else part)
        previous = part
    return ".".join(names)


def name_by_module_path(model: onnx.ModelProto) -> None:
    """Each node is named after the module that made it ('layer1.0.conv1'; 'layer1.0/Add' for an op a module's
    forward applies itself), and each value it writes after the node; graph inputs and outputs keep theirs."""
    graph = model.graph
    nodes = list(graph.node)   # protobuf makes a new wrapper per access: index, do not key by id()
    scopes = [[p for p in node.name.split("/") if p] for node in nodes]
    paths = [module_path(scope[:-1]) for scope in scopes]
    counts: dict[str, int] = {}
    for path in paths:
        counts[path] = counts.get(path, 0) + 1
    parents = {path.rsplit(".", 1)[0] for path in paths if "." in path}
    kept = {i.name for i in graph.input} | {o.name for o in graph.output} | {t.name for t in graph.initializer}
    node_names: set[str] = set()
    value_names = set(kept)
    renamed: dict[str, str] = {}
    for node, scope, path in zip(nodes, scopes, paths):
        tail = (scope or [node.op_type])[-1]
        leaf = path and counts[path] == 1 and path not in parents
        node.name = unique_name(path if leaf else f"{path}/{tail}" if path else tail, node_names)
        for index, value in enumerate(node.output):
            if value and value not in kept:
                renamed[value] = unique_name(node.name if index == 0 else f"{node.name}/{index}", value_names)
    for node in graph.node:
        node.input[:] = [renamed.get(v, v) for v in node.input]
        node.output[:] = [renamed.get(v, v) for v in node.output]
    for info in graph.value_info:
        info.name = renamed.get(info.name, info.name)

