"""The command line: one-line errors with exit codes, the README's promises."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from protodef.cli import exit_code_table, main
from support import REPO, SAMPLES


def test_readme_exit_code_table_is_generated_from_the_errors():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- exit-codes:.*?-->\n(.*?)<!-- /exit-codes -->", readme, re.S)
    assert block and block.group(1).strip() == exit_code_table().strip()


def test_info_table_and_json(capsys):
    assert main(["info", str(SAMPLES / "ResNet-50.prototxt")]) == 0
    out = capsys.readouterr().out
    assert "res5c" in out and "1x2048x7x7" in out
    assert main(["info", str(SAMPLES / "ResNet-50.prototxt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in info["layers"]}
    assert rows["pool5"]["shapes"] == [[1, 2048, 1, 1]] and rows["prob"]["shapes"] == [[1, 1000]]
    # torchvision's ResNet-50 has 25,557,032 parameters (BatchNorm: weight and bias). Caffe's blobs add, per
    # BatchNorm, its mean and variance (2 x channels) and a scale factor (1), and conv1 here has a bias (64).
    bn_channels = [layer["shapes"][0][1] for layer in info["layers"] if layer["type"] == "BatchNorm"]
    assert len(bn_channels) == 53
    assert info["total_params"] == 25557032 + sum(2 * c + 1 for c in bn_channels) + 64
    assert rows["conv1"]["macs"] == 64 * 112 * 112 * 3 * 7 * 7


def test_errors_are_one_line_with_exit_code(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('input: "x" input_shape { dim: 1 dim: 3 }\nlayer { name: "r" type: "ReLU" bottom: "y" top: "z" }\n')
    result = subprocess.run([sys.executable, "-m", "protodef", "info", str(bad)], capture_output=True, text=True)
    assert result.returncode == 5
    assert result.stdout == ""
    assert result.stderr == (f"protodef: {bad}:2:1: layer 'r' (ReLU): bottom 'y' is not produced by any earlier "
                             "layer or net input\n")


def test_input_shape_option_is_checked(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["info", str(SAMPLES / "ResNet-50.prototxt"), "--input-shape", "data=1,a"])
    assert exit_info.value.code == 2
    assert main(["info", str(SAMPLES / "ResNet-50.prototxt"), "--input-shape", "data=2,3,256,256"]) == 0
    out = capsys.readouterr().out
    assert "2x2048x8x8" in out and "2x2048x2x2" in out   # res5c, then pool5 (kernel 7, stride 1)


def test_upgrade_writes_modern_text(tmp_path):
    old = tmp_path / "old.prototxt"
    old.write_text('name: "v1"\ninput: "data"\ninput_dim: 1\ninput_dim: 1\ninput_dim: 8\ninput_dim: 8\n'
                   'layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" blobs_lr: 1 blobs_lr: 2\n'
                   '  convolution_param { num_output: 4 kernel_size: 3 } }\n')
    out = tmp_path / "new.prototxt"
    assert main(["upgrade", str(old), "-o", str(out)]) == 0
    text = out.read_text()
    assert 'type: "Convolution"' in text and "lr_mult: 2" in text and 'type: "Input"' in text
    assert "layers {" not in text


def test_info_passes_shows_what_each_pass_changed(capsys):
    assert main(["info", str(SAMPLES / "tiny" / "tiny.prototxt"), "--passes"]) == 0
    out = capsys.readouterr().out
    assert "changed: bn1 (BatchNorm -> ChannelAffine)" in out and "removed: scale1 (Scale)" in out
    assert "removed: bn1 (ChannelAffine)" in out and "changed: conv1 (Convolution)" in out
    assert main(["info", str(SAMPLES / "tiny" / "tiny.prototxt"), "--passes", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["passes"]
    assert [p["pass"] for p in report][-2:] == ["batchnorm_scale_to_affine", "fold_affine_into_producer"]


def test_convert_to_onnx_and_pytorch(tmp_path, capsys):
    tiny = SAMPLES / "tiny"
    onnx_out, py_out = tmp_path / "tiny.onnx", tmp_path / "tiny.py"
    assert main(["convert", str(tiny / "tiny.prototxt"), "-w", str(tiny / "tiny.caffemodel"), "-o", str(onnx_out),
                 "--dynamic-batch"]) == 0
    assert main(["convert", str(tiny / "tiny.prototxt"), "-w", str(tiny / "tiny.caffemodel"), "--to", "pytorch",
                 "-o", str(py_out)]) == 0
    assert onnx_out.stat().st_size > 15000 and py_out.exists() and (tmp_path / "tiny.pt").exists()
    import onnx
    model = onnx.load(onnx_out)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [o.name for o in model.graph.output] == ["prob"]
