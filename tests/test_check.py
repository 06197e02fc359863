"""`protodef check`: backends compared blob by blob, and the first disagreement found."""
from __future__ import annotations

import numpy as np
import pytest
from support import SAMPLES, write_net

from protodef.check import check_net, format_report
from protodef.cli import main

NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 9 dim: 9 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "odd" type: "Doubler" bottom: "pool" top: "odd" }
layer { name: "squash" type: "TanH" bottom: "odd" top: "out" }
"""


def test_check_passes_on_the_tiny_sample(capsys):
    code = main(["check", str(SAMPLES / "tiny" / "tiny.prototxt"), "--weights", str(SAMPLES / "tiny" / "tiny.caffemodel"),
                 "--all"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "reference: opencv" in out and "compared blobs agree" in out
    assert "conv1@1" in out      # the unfolded BatchNorm output is compared, not only the net's output


@pytest.fixture
def doubler():
    """A plugin whose PyTorch lowering is deliberately wrong (x3 instead of x2)."""
    import torch
    from onnx import helper, numpy_helper

    import protodef
    from protodef.plugins import unregister_layer

    class Triple(torch.nn.Module):
        def forward(self, x):
            return x * 3

    def onnx_lowering(layer, ctx):
        two = f"{layer.name}.two"
        ctx.initializers.append(numpy_helper.from_array(np.array(2, np.float32), two))
        return [helper.make_node("Mul", [ctx.value(layer.inputs[0]), two], [ctx.value(layer.outputs[0])],
                                 name=layer.name)]

    protodef.register_layer("Doubler", shape=lambda inputs, fields: inputs[0], onnx=onnx_lowering,
                            torch=lambda layer, ctx: Triple())
    yield
    unregister_layer("Doubler")


def test_check_names_the_first_layer_where_backends_disagree(tmp_path, doubler):
    prototxt, caffemodel, net = write_net(tmp_path, NET)
    report = check_net(net, prototxt=str(prototxt))
    assert report.reference == "onnxruntime"              # OpenCV does not know the plugin's type
    assert "opencv" in report.skipped
    assert not report.ok
    assert report.first_disagreement.layer == "odd"
    assert "pytorch" in report.first_disagreement.bad
    assert "FIRST DISAGREEMENT: blob 'odd' of layer 'odd'" in format_report(report)


@pytest.mark.parametrize("layer", [
    'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 5 transpose: true } }',
    'layer { name: "lrn" type: "LRN" bottom: "data" top: "lrn" lrn_param { local_size: 3 k: 2 } }',
    'layer { name: "log" type: "Log" bottom: "data" top: "log" log_param { base: 2 shift: 20 } }',
])
def test_check_takes_onnxruntime_as_the_reference_where_opencv_silently_differs(tmp_path, layer):
    """OpenCV loads these and computes something else than Caffe: check must not blame protodef for it."""
    text = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 dim: 3 dim: 3 } } }\n'
    prototxt, _, net = write_net(tmp_path, text + layer + "\n")
    report = check_net(net, prototxt=str(prototxt))
    text = format_report(report)
    assert report.reference == "opencv" and report.ok, text
    assert not any("opencv" in row.diffs for row in report.rows if row.layer != "data"), text
    assert "the reference is onnxruntime" in text


def test_check_compares_each_top_of_a_two_bottom_convolution_with_opencv(tmp_path):
    """OpenCV 4.14 makes a Convolution of several bottoms one layer per top, named after that top."""
    inputs = "".join(f'layer {{ name: "{n}" type: "Input" top: "{n}" input_param {{ shape {{ dim: 2 dim: 3 dim: 6 '
                     'dim: 5 } } }\n' for n in ("img0", "img1"))
    conv = ('layer { name: "conv" type: "Convolution" bottom: "img0" bottom: "img1" top: "c0" top: "c1" '
            'convolution_param { num_output: 4 kernel_size: 3 } }\n')
    prototxt, _, net = write_net(tmp_path, inputs + conv)
    report = check_net(net, prototxt=str(prototxt))
    text = format_report(report)
    assert report.reference == "opencv" and report.ok, text
    rows = {row.name: row for row in report.rows}
    assert all(rows[top].reference == "opencv" and "onnxruntime" in rows[top].diffs for top in ("c0", "c1")), text
