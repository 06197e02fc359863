"""Helpers for the Caffe export tests: small ONNX models, and running an export in OpenCV and in protodef's
own ONNX lowering next to the ONNX (or PyTorch) reference."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from support import assert_close
from test_onnx import opencv_forward, run_onnx

from converters.caffe import to_caffe
from protodef.api import read_net, to_onnx


def onnx_model(nodes, inputs: dict, outputs: list[str], constants: dict | None = None, opset: int = 17
               ) -> onnx.ModelProto:
    """A model of `nodes` reading float `inputs` {name: shape}; output shapes are left to ONNX's inference."""
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info(k, TensorProto.FLOAT, v)
                                             for k, v in inputs.items()],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              initializer=[numpy_helper.from_array(np.asarray(v), k)
                                           for k, v in (constants or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    constants = {t.name for t in model.graph.initializer}
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in model.graph.input if i.name not in constants}


def run_export(prototxt: Path, caffemodel: Path, inputs: dict[str, np.ndarray], *, opencv: bool = True
               ) -> dict[str, dict[str, np.ndarray]]:
    """The exported net's outputs by blob name: {"OpenCV": ..., "protodef": ...} (protodef: its ONNX lowering
    of the exported Caffe files, run by onnxruntime)."""
    net = read_net(prototxt, caffemodel)
    results = {"protodef": run_onnx(to_onnx(net), inputs)}
    if opencv:
        results["OpenCV"] = opencv_forward(net, prototxt, caffemodel, inputs)
    return results


def assert_export_matches(tmp_path: Path, model: onnx.ModelProto, *, target: str = "bvlc", opencv: bool = True,
                          fold_batchnorm: bool = True, seed: int = 0):
    """Export `model`, write it, and check OpenCV and protodef compute what onnxruntime computes on it."""
    export = to_caffe(model, target=target, fold_batchnorm=fold_batchnorm)
    prototxt, caffemodel = export.save(tmp_path / "exported.prototxt")
    inputs = random_feeds(model, seed)
    expected = run_onnx(model, inputs)
    for source, outputs in run_export(Path(prototxt), Path(caffemodel), inputs, opencv=opencv).items():
        for name, value in expected.items():
            assert_close(outputs[name], value, f"{name}: {source} vs onnxruntime ({target})")
    return export


def layer_types(export) -> list[str]:
    return [layer.type for layer in export.param.layer]
