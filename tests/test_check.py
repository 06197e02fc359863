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


# ---- ROI nets, backends that raise, OpenCV's multi-line errors ---------------------------------------------------
def roi_net(layer: str, batch: int = 2) -> str:
    """Feature maps (batch, 8, 6, 6) at spatial_scale 1/16 of a 96 x 96 image, and 7 rois as net inputs."""
    return ('layer { name: "data" type: "Input" top: "feat" top: "rois" input_param { '
            f'shape {{ dim: {batch} dim: 8 dim: 6 dim: 6 }} shape {{ dim: 7 dim: 5 }} }} }}\n' + layer + "\n")


ROI = 'layer { name: "roi" type: "ROIPooling" bottom: "feat" bottom: "rois" top: "roi" ' \
      'roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 0.0625 } }'
PSROI = 'layer { name: "roi" type: "PSROIPooling" bottom: "feat" bottom: "rois" top: "roi" ' \
        'psroi_pooling_param { spatial_scale: 0.0625 output_dim: 2 group_size: 2 } }'


@pytest.mark.parametrize("layer", [ROI, PSROI], ids=["ROIPooling", "PSROIPooling"])
def test_random_inputs_give_a_roi_layer_valid_boxes(tmp_path, layer):
    from protodef.verify import random_inputs

    _, _, net = write_net(tmp_path, roi_net(layer, batch=3))
    inputs = random_inputs(net, seed=5)
    rois = inputs["rois"]
    assert rois.shape == (7, 5) and rois.dtype == np.float32
    assert np.array_equal(rois[:, 0], np.round(rois[:, 0])) and set(rois[:, 0]) <= {0, 1, 2}
    assert len(set(rois[:, 0])) > 1                                      # not all in image 0
    x1, y1, x2, y2 = rois[:, 1:].T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 < 96).all() and (y2 < 96).all()   # 6 / 0.0625
    assert (x1 <= x2).all() and (y1 <= y2).all()
    assert x2.max() > 6 and y2.max() > 6        # in image pixels, not in feature-map cells
    assert inputs["feat"].std() > 0.5 and inputs["feat"].min() < 0      # the features stay standard normal
    assert np.array_equal(random_inputs(net, seed=5)["rois"], rois)     # seeded


@pytest.mark.parametrize("layer", [ROI, PSROI], ids=["ROIPooling", "PSROIPooling"])
def test_check_runs_roi_nets_and_the_backends_agree(tmp_path, capsys, layer):
    prototxt, _, net = write_net(tmp_path, roi_net(layer))
    report = check_net(net, prototxt=str(prototxt))
    text = format_report(report)
    assert report.ok and not report.skipped, text
    assert report.reference == "opencv"             # OpenCV runs both
    (row,) = [row for row in report.rows if row.name == "roi"]
    assert not row.bad and not row.near_ties, text
    if "PSROIPooling" in layer:
        assert row.reference == "opencv" and {"onnxruntime", "pytorch", "pytorch-folded"} <= set(row.diffs), text
    else:   # flagged on its spec for boxes outside the image: onnxruntime is the reference...
        assert row.reference == "onnxruntime" and {"pytorch", "pytorch-folded"} <= set(row.diffs), text
        # ...and on the boxes check gives, all inside it, OpenCV pools as the others do
        from protodef.api import lower
        from protodef.check import _run_onnx, _run_opencv, tolerance
        from protodef.verify import random_inputs
        lowered = lower(net, fold=False)
        inputs = random_inputs(lowered)
        expected = _run_onnx(net, lowered, inputs)["roi"]
        found = _run_opencv(net, lowered, inputs, prototxt=str(prototxt), weights=None)["roi"]
        assert np.abs(expected).max() > 0.5 and np.abs(found - expected).max() <= tolerance(expected)
    code = main(["check", str(prototxt)])
    out = capsys.readouterr().out
    assert code == 0 and "compared blobs agree" in out, out


@pytest.fixture
def torch_raises():
    """A plugin whose ONNX lowering is right and whose PyTorch module raises as torch does on bad indices."""
    import torch
    from onnx import helper

    import protodef
    from protodef.plugins import unregister_layer

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("index 7 is out of bounds for dimension 0 with size 1\nException raised from ...")

    def onnx_lowering(layer, ctx):
        return [helper.make_node("Identity", [ctx.value(layer.inputs[0])], [ctx.value(layer.outputs[0])],
                                 name=layer.name)]

    protodef.register_layer("Broken", shape=lambda inputs, fields: inputs[0], onnx=onnx_lowering,
                            torch=lambda layer, ctx: Broken())
    yield
    unregister_layer("Broken")


def test_a_backend_that_raises_on_the_net_is_a_skip_line(tmp_path, capsys, torch_raises):
    text = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
            'layer { name: "odd" type: "Broken" bottom: "data" top: "odd" }\n')
    prototxt, _, _ = write_net(tmp_path, text)
    code = main(["check", str(prototxt)])
    out = capsys.readouterr().out
    assert "skipped pytorch: PyTorch cannot run this net: index 7 is out of bounds for dimension 0 with size 1\n" in out
    assert "skipped pytorch-folded: PyTorch cannot run this net: index 7" in out
    assert "Exception raised from" not in out and "Traceback" not in out
    assert code == 1 and "ONE IMPLEMENTATION: only onnxruntime ran" in out, out


def test_onnxruntime_raising_on_the_inputs_is_a_skip_line(tmp_path, monkeypatch):
    """Rois whose batch index is outside the batch (standard normal ones): onnxruntime refuses them."""
    from protodef import check, verify

    prototxt, _, net = write_net(tmp_path, roi_net(PSROI, batch=1))

    def bad_rois(net, seed=0):
        inputs = {net.value_name(i.value): np.zeros(net.shape(i.value), np.float32) for i in net.inputs}
        inputs["rois"][:, 0] = 7
        return inputs

    monkeypatch.setattr(verify, "random_inputs", bad_rois)
    monkeypatch.setattr(check, "_run_opencv", lambda *a, **k: (_ for _ in ()).throw(check._Skip("not here")))
    report = check_net(net, prototxt=str(prototxt))
    assert "onnxruntime cannot run this net: " in report.skipped["onnxruntime"]
    assert "out of data bounds" in report.skipped["onnxruntime"] and "\n" not in report.skipped["onnxruntime"]
    assert "onnxruntime-folded" in report.skipped


def test_a_protodef_error_while_running_still_propagates(tmp_path, monkeypatch):
    from protodef import check
    from protodef.errors import OutputError

    prototxt, _, net = write_net(tmp_path, roi_net(ROI))
    monkeypatch.setattr(check, "_run_opencv", lambda *a, **k: (_ for _ in ()).throw(check._Skip("not here")))

    def session(*args, **kwargs):
        raise OutputError("a protodef bug")
    monkeypatch.setattr("onnxruntime.InferenceSession", session)
    with pytest.raises(OutputError, match="a protodef bug"):
        check_net(net, prototxt=str(prototxt))


CV_CHECK_ERROR = """OpenCV(4.14.0) /io/opencv/modules/dnn/src/net_impl.cpp:1193: error: (-2:Unspecified error) \
in function 'void cv::dnn::dnn4_v20260709::Net::Impl::getLayerShapesRecursively(int, LayersShapesMap&)'
>  (expected: 'total(os[i]) > 0'), where
>     'total(os[i])' is 0
> must be greater than
>     '0' is 0
"""
ASSERTION_ERROR = """OpenCV(4.14.0) /io/opencv/modules/dnn/src/layers/pooling_layer.cpp:1204: error: (-215:Assertion \
failed) inputs.size() == 2 in function 'virtual bool cv::dnn::PoolingLayerImpl::getMemoryShapes(const int&) const'
"""


def test_the_skip_reason_of_a_multi_line_opencv_error_is_its_message_and_function():
    from protodef.check import _opencv_reason

    assert _opencv_reason(CV_CHECK_ERROR) == (
        "Unspecified error: expected 'total(os[i]) > 0', where 'total(os[i])' is 0, must be greater than '0' is 0 "
        "(in cv::dnn::Net::Impl::getLayerShapesRecursively)")
    assert _opencv_reason(ASSERTION_ERROR) == (
        "Assertion failed: inputs.size() == 2 (in cv::dnn::PoolingLayerImpl::getMemoryShapes)")
    assert _opencv_reason("just one line\n") == "just one line"


def test_check_gives_opencvs_reason_on_one_line_and_keeps_its_log_out(tmp_path, capfd):
    """Caffe pools a 1x1 input with kernel 2, stride 2 to 1x1 (OpenPose's nets declare such inputs); OpenCV
    refuses it with a multi-line error, and logs it over several more lines."""
    text = ('layer { name: "data" type: "Input" top: "image" input_param { shape { dim: 1 dim: 3 dim: 1 dim: 1 } } }\n'
            'layer { name: "pool" type: "Pooling" bottom: "image" top: "pool" '
            'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n')
    prototxt, _, _ = write_net(tmp_path, text)
    code = main(["check", str(prototxt)])
    out, err = capfd.readouterr()
    (line,) = [line for line in out.splitlines() if line.startswith("skipped opencv:")]
    assert line == ("skipped opencv: OpenCV cannot run this net: Unspecified error: expected 'total(os[i]) > 0', "
                    "where 'total(os[i])' is 0, must be greater than '0' is 0 (in "
                    "cv::dnn::Net::Impl::getLayerShapesRecursively), at layer 'pool' (Pooling)")
    assert "[ERROR" not in out + err and "getMemoryShapes" not in out + err, err
    assert code == 0 and "compared blobs agree" in out


def test_convert_verify_on_a_roi_pooling_net(tmp_path, capsys):
    prototxt, _, _ = write_net(tmp_path, roi_net(ROI, batch=1))    # batch index 0 only: onnxruntime checks it
    code = main(["convert", str(prototxt), "-o", str(tmp_path / "roi.onnx"), "--verify"])
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("verify:")]
    assert code == 0 and line.endswith(": agree") and "in 'roi'" in line, out


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
