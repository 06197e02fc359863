"""Caffe export: ONNX models (and PyTorch modules, through ONNX) -> prototxt + caffemodel that Caffe runs
exactly, or a clear error naming the node that has no exact Caffe form in the chosen target.

The ONNX path never imports torch; only `export_caffe` given a torch module does.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from google.protobuf import text_format

from .graph import read_graph
from .lower import CaffeNet, lower_caffe
from .registry import CAFFE_CONVERTERS, caffe_converter
from .targets import DEFAULT_TARGET, TARGETS, Target, target_named


@dataclass
class CaffeExport:
    """The exported net: `prototxt()` is its text, `weights` each weighted layer's (name, type, blobs)."""

    net: CaffeNet

    @property
    def param(self):
        return self.net.param

    @property
    def weights(self):
        return self.net.weights

    @property
    def outputs(self) -> list[str]:
        """The blobs holding the model's outputs, named as in ONNX."""
        return self.net.outputs

    def prototxt(self) -> str:
        return text_format.MessageToString(self.net.param)

    def save(self, prototxt: str | os.PathLike) -> tuple[str, str]:
        """Write `prototxt` and the caffemodel beside it (same stem), each atomically; returns both paths."""
        from protodef.weights import write_caffemodel
        from protodef.write import atomic_write
        prototxt = Path(prototxt)
        caffemodel = prototxt.with_suffix(".caffemodel")
        # A net without weights still gets a caffemodel naming its first layer: readers refuse an empty one.
        weights = self.net.weights or [(self.net.param.layer[0].name, self.net.param.layer[0].type, [])]
        write_caffemodel(caffemodel, weights, name=self.net.param.name)
        atomic_write(prototxt, self.prototxt())
        return str(prototxt), str(caffemodel)


def to_caffe(model, *, target: str | Target = DEFAULT_TARGET, input_shape: Mapping[str, Sequence[int]] | None = None,
             fold_batchnorm: bool = True) -> CaffeExport:
    """An ONNX model (ModelProto, bytes or path) as a Caffe net for `target`. Never imports torch."""
    graph = read_graph(model, input_shape)
    return CaffeExport(lower_caffe(graph, target_named(target), fold_batchnorm=fold_batchnorm))


def export_caffe(model, example_inputs=None, output: str | os.PathLike | None = None, *,
                 target: str | Target = DEFAULT_TARGET, input_shape: Mapping[str, Sequence[int]] | None = None,
                 fold_batchnorm: bool = True, input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None) -> CaffeExport:
    """Export a PyTorch module (run on `example_inputs`), an onnx.ModelProto or an .onnx path to Caffe; with
    `output` (a .prototxt path) also write it and the .caffemodel beside it."""
    if _is_torch_module(model):
        from .from_torch import torch_to_onnx
        model = torch_to_onnx(model, example_inputs, input_names=input_names, output_names=output_names)
    export = to_caffe(model, target=target, input_shape=input_shape, fold_batchnorm=fold_batchnorm)
    if output is not None:
        export.save(output)
    return export


def _is_torch_module(model) -> bool:
    torch = sys.modules.get("torch")   # a torch module cannot exist unless torch is imported already
    return torch is not None and isinstance(model, torch.nn.Module)


__all__ = ["export_caffe", "to_caffe", "CaffeExport", "TARGETS", "Target", "DEFAULT_TARGET", "caffe_converter",
           "CAFFE_CONVERTERS"]
