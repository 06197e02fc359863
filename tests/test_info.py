"""`protodef info`: what the table and the pass report say."""
from __future__ import annotations

import json

from protodef.cli import main

# conv1 has no weight filler (Caffe's default: constant 0), and BatchNorm's fillers make its statistics 0:
# the folded convolution's numbers come out the same as before, yet the pass did rewrite it.
FOLDABLE = """input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
"""


def test_passes_report_a_convolution_that_absorbed_batchnorm_and_scale_as_changed(tmp_path, capsys):
    path = tmp_path / "net.prototxt"
    path.write_text(FOLDABLE)
    assert main(["info", "--json", "--passes", str(path)]) == 0
    passes = {p["pass"]: p for p in json.loads(capsys.readouterr().out)["passes"]}
    folding = passes["fold_affine_into_producer"]
    assert [c["name"] for c in folding["changed"]] == ["conv1"]
    assert folding["rewired"] == [] and [r["name"] for r in folding["removed"]] == ["bn1"]
    assert [c["name"] for c in passes["batchnorm_scale_to_affine"]["changed"]] == ["bn1"]


def test_a_net_level_input_is_named_as_its_note_says(tmp_path, capsys):
    path = tmp_path / "net.prototxt"
    path.write_text(FOLDABLE)
    assert main(["info", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    first = info["layers"][0]
    assert (first["name"], first["type"], first["outputs"]) == ("input", "Input", ["data"])
    assert any("Input layer 'input'" in note for note in info["notes"])
