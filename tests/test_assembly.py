"""One pipeline for every backend: what the passes do is seen the same way by ONNX, PyTorch, check, info and
draw (issue 11's five defects, each pinned here)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from support import CORPUS, REPO, write_net

import protodef
from protodef.check import CheckReport, check_net, format_report

# The net ends in an in-place Dropout and a Split named "output": both passes bypass layers whose top was
# a net output, and that output must keep its Caffe name.
ENDS_IN_BYPASSED_LAYERS = """name: "ends"
input: "data" input_shape { dim: 2 dim: 4 }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" }
layer { name: "output" type: "Split" bottom: "fc" top: "output" }
"""


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "protodef", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("fold", [True, False])
def test_every_backend_names_outputs_as_caffe_does(tmp_path, fold):
    _, _, net = write_net(tmp_path, ENDS_IN_BYPASSED_LAYERS)
    model = protodef.to_onnx(net, fold=fold)
    module = protodef.load(net, fold=fold)
    assert [o.name for o in model.graph.output] == ["output"]
    assert module.output_names == ["output"]
    assert protodef.lower(net, fold=fold).value_name(protodef.lower(net, fold=fold).outputs()[0]) == "output"
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    (onnx_out,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["output"], {"data": x})
    fc = net.layer("fc")
    expected = x @ fc.weights[0].T + fc.weights[1]
    np.testing.assert_allclose(onnx_out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(module(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_check_compares_the_folded_backends_on_the_renamed_output(tmp_path):
    prototxt, caffemodel, net = write_net(tmp_path, ENDS_IN_BYPASSED_LAYERS)
    report = check_net(net, prototxt=str(prototxt), weights=str(caffemodel))
    compared = {backend for row in report.rows for backend in row.diffs}
    assert {"onnxruntime-folded", "pytorch-folded"} <= compared
    assert report.ok and report.uncompared == []


def test_check_never_calls_a_backend_that_compared_nothing_in_agreement():
    report = CheckReport("opencv", ["onnxruntime-folded"], [], {})     # it ran, and no blob matched
    text = format_report(report)
    assert not report.ok and report.uncompared == ["onnxruntime-folded"]
    assert "agree" not in text and "onnxruntime-folded" in text


def test_convert_refuses_a_model_that_would_break_onnx_rules_in_one_line(tmp_path):
    path = tmp_path / "blank.prototxt"
    path.write_text('input: "" input_shape { dim: 3 }\ninput: "data" input_shape { dim: 1 dim: 3 }\n'
                    'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')
    result = run_cli("convert", str(path), "-o", str(tmp_path / "blank.onnx"))
    assert result.returncode == 8, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "not valid ONNX: a graph input has an empty name" in result.stderr
    assert not (tmp_path / "blank.onnx").exists()


def test_info_counts_macs_of_a_pooling_with_a_mask_top(tmp_path):
    path = tmp_path / "mask.prototxt"
    path.write_text('input: "data" input_shape { dim: 1 dim: 2 dim: 6 dim: 6 }\n'
                    'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask"\n'
                    '  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
                    'layer { name: "conv" type: "Convolution" bottom: "pool" top: "conv"\n'
                    '  convolution_param { num_output: 4 kernel_size: 3 } }\n')
    result = run_cli("info", "--json", str(path))
    assert result.returncode == 0, result.stderr
    import json
    info = json.loads(result.stdout)
    assert info["total_macs"] == 4 * 1 * 1 * 2 * 3 * 3    # the convolution's only
    assert [row["outputs"] for row in info["layers"] if row["name"] == "pool"] == [["pool", "mask"]]


@pytest.mark.corpus
def test_info_on_enet_whose_poolings_have_mask_tops():
    result = run_cli("info", str(CORPUS / "enet" / "enet_deploy_final.prototxt"))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", [["convert", "-o", "{out}/empty.onnx"], ["draw", "-o", "{out}/empty.svg"],
                                     ["check"], ["info"]])
def test_an_empty_prototxt_is_one_graph_error_everywhere(tmp_path, command):
    path = tmp_path / "empty.prototxt"
    path.write_text("")
    args = [part.replace("{out}", str(tmp_path)) for part in command]
    result = run_cli(args[0], str(path), *args[1:])
    assert result.returncode == 5, result.stderr
    assert result.stderr == f"protodef: {path}: the net is empty: it declares no inputs and, in this phase, no " \
                            "layers: expected at least one input or layer\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.prototxt"]


def test_backends_take_only_a_lowered_net(tmp_path):
    from converters.onnx import to_onnx
    from converters.pytorch import to_torch
    _, _, net = write_net(tmp_path, ENDS_IN_BYPASSED_LAYERS)
    for backend in (to_onnx, to_torch):
        with pytest.raises(ValueError, match="lowered net"):
            backend(net)
    lowered = protodef.lower(net)
    assert lowered.pass_report is not None and [r.name for r in lowered.pass_report.passes][:3] == [
        "remove_training_layers", "remove_split", "remove_dropout"]
    assert [o.name for o in to_onnx(lowered).graph.output] == to_torch(lowered).output_names == ["output"]
