"""The PyTorch backend: a Net as a torch.fx.GraphModule, as generated Python source, or as a torch.export program.

    module = to_torch(net)                      # eval mode; submodules named after the Caffe layers
    y = module(x)                               # the net's inputs in Caffe's order
    save_pytorch(net, "resnet50.py")            # + resnet50.pt (state dict); needs only torch to run
    save_pytorch(net, "resnet50.pt2", form="export")

The GraphModule works with torch.export.export, torch.compile, torch.jit.script and torch.jit.trace (both
tested; TorchScript is deprecated upstream, prefer export), `.to(device)` and `.half()`. The net comes from the
pass pipeline (protodef.lower): folded, BatchNorm and Scale are in the convolutions before them, which is fastest
for inference; unfolded, each BatchNorm stays Caffe's (CaffeBatchNorm: its three blobs as buffers, updated in
train mode as Caffe updates them) and each Scale its own module. A net lowered for training (protodef.lower(net,
training=True)) gives train.py's module: labels in, losses and metrics out.
"""
from __future__ import annotations

import os

import torch.fx as fx

from protodef.ir import Net

from .lower import lower_torch
from .registry import Step, TorchContext, torch_converter, with_weights

__all__ = ["to_torch", "save_pytorch", "lower_torch", "torch_converter", "Step", "TorchContext", "with_weights"]


def to_torch(net: Net) -> fx.GraphModule:
    """The GraphModule computing a lowered net (protodef.lower) as Caffe does at test time, in eval mode.

    forward takes the net's inputs in Caffe's order (argument names are the input blob names, made into
    identifiers) and returns the output tensor, or a tuple in the order of the module's `output_names`.
    `caffe_names` maps each submodule name back to its Caffe layer name; `conversion_metadata` says where the
    weights came from (`weights`: caffemodel, fillers or random, with the `seed`) and any preprocessing. A net
    lowered for training gives the TRAIN-phase module, in train mode (train.py).
    """
    if net.pass_report is not None and net.pass_report.training:
        from .train import to_torch_train
        module = to_torch_train(net)
    else:
        module = lower_torch(net).module
    module.conversion_metadata = dict(net.metadata)
    return module


def save_pytorch(net: Net, path: str | os.PathLike, *, form: str = "source", dynamic_batch: bool = True,
                 float16: bool = False) -> list[str]:
    """Write a lowered net for PyTorch; returns the paths written (each written atomically).

    form="source": `path` (a .py file defining an nn.Module class named after the net, needing only torch)
    and its weights beside it (`<stem>.pt`, a state dict). form="export": a torch.export program (`.pt2`)
    for torch.export.load, with a symbolic batch size where the net allows one (`dynamic_batch`).
    `float16`: weights (and so the computation) in float16; the module then takes float16 inputs.
    """
    from .save import save_export, save_source

    if form not in ("source", "export"):
        raise ValueError(f"form must be 'source' or 'export', not {form!r}")
    if net.pass_report is not None and net.pass_report.training:
        from .train import train_lowering
        lowering = train_lowering(net)      # labels in, losses out, in train mode
    else:
        lowering = lower_torch(net)
    if float16:
        lowering.module.half()
    if form == "source":
        return save_source(lowering, net, path)
    return save_export(lowering, net, path, dynamic_batch=dynamic_batch)
