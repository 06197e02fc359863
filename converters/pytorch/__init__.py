"""The PyTorch backend: a Net as a torch.fx.GraphModule, as generated Python source, or as a torch.export program.

    module = to_torch(net)                      # eval mode; submodules named after the Caffe layers
    y = module(x)                               # the net's inputs in Caffe's order
    save_pytorch(net, "resnet50.py")            # + resnet50.pt (state dict); needs only torch to run
    save_pytorch(net, "resnet50.pt2", form="export")

The GraphModule works with torch.export.export, torch.compile, torch.jit.script and torch.jit.trace (both
tested; TorchScript is deprecated upstream, prefer export), `.to(device)` and `.half()`. With `fold=True` (the default) BatchNorm and Scale are folded into the
convolutions before them, which is fastest for inference. With `fold=False` each BatchNorm stays an
nn.BatchNorm*d holding Caffe's statistics, with the Scale after it as its affine weight and bias, for
fine-tuning in train mode; in eval mode it computes what Caffe does.
"""
from __future__ import annotations

import os
from typing import Mapping

import torch.fx as fx

from protodef.ir import Net
from protodef.layers.registry import Shape

from .lower import lower_torch
from .registry import Step, TorchContext, torch_converter, with_weights

__all__ = ["to_torch", "save_pytorch", "load", "lower_torch", "torch_converter", "Step", "TorchContext",
           "with_weights"]


def to_torch(net: Net, *, fold: bool = True) -> fx.GraphModule:
    """The GraphModule computing `net` as Caffe does at test time, in eval mode.

    forward takes the net's inputs in Caffe's order (argument names are the input blob names, made into
    identifiers) and returns the output tensor, or a tuple in the order of the module's `output_names`.
    `caffe_names` maps each submodule name back to its Caffe layer name; `conversion_metadata` says where the
    weights came from (`weights`: caffemodel, fillers or random, with the `seed`) and any preprocessing.
    """
    module = lower_torch(prepare(net, fold=fold)).module
    module.conversion_metadata = dict(net.metadata)
    return module


def save_pytorch(net: Net, path: str | os.PathLike, *, fold: bool = True, form: str = "source",
                 dynamic_batch: bool = True, float16: bool = False) -> list[str]:
    """Write the net for PyTorch; returns the paths written (each written atomically).

    form="source": `path` (a .py file defining an nn.Module class named after the net, needing only torch)
    and its weights beside it (`<stem>.pt`, a state dict). form="export": a torch.export program (`.pt2`)
    for torch.export.load, with a symbolic batch size where the net allows one (`dynamic_batch`).
    `float16`: weights (and so the computation) in float16; the module then takes float16 inputs.
    """
    from .save import save_export, save_source

    lowering = lower_torch(prepare(net, fold=fold))
    if float16:
        lowering.module.half()
    if form == "source":
        return save_source(lowering, net, path)
    if form == "export":
        return save_export(lowering, net, path, dynamic_batch=dynamic_batch)
    raise ValueError(f"form must be 'source' or 'export', not {form!r}")


def load(prototxt: str | os.PathLike, weights: str | os.PathLike | None = None, *, phase: str = "test",
         fold: bool = True, input_shape: Mapping[str, Shape] | None = None) -> fx.GraphModule:
    """Read a prototxt (and caffemodel; without one, weights come from Caffe's fillers) into a GraphModule."""
    from protodef.api import read_net

    net = read_net(prototxt, weights, phase=phase.upper(), input_shape=input_shape)
    return to_torch(net, fold=fold)


def prepare(net: Net, *, fold: bool) -> Net:
    """The lowering passes: training-only layers, Split and Dropout removed; BatchNorm and Scale folded."""
    from protodef.passes import run_pipeline

    prepared, _report = run_pipeline(net, fold=fold)
    return prepared
