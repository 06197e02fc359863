"""`info`, `draw` and `upgrade` open any well-formed prototxt with no options: every file of the corpus, and
each of the things that used to stop them (data layers that do not tell their shape, losses without a top,
unread data tops, fork fields in data parameters, Python and unknown layers, evaluation layers, nets whose
TEST view has no data). `convert` still refuses, in one line, what it cannot lower."""
from __future__ import annotations

import json
import textwrap
import warnings

import pytest
from support import CORPUS, corpus_files

import protodef
from protodef import to_onnx
from protodef.api import read_net
from protodef.attach import ProtodefWarning
from protodef.cli import main
from protodef.errors import GraphError, UnsupportedError
from protodef.lenient import Opaque


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.skipif(not corpus_files(), reason="the corpus (../shared/corpus) is not there")
@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(CORPUS))) for p in corpus_files()] or [None])
def test_info_draw_and_upgrade_open_every_corpus_file(tmp_path, capsys, path):
    code, out, err = run_cli(capsys, "info", path, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert len(summary["layers"]) >= 2
    code, out, err = run_cli(capsys, "draw", path, "--format", "dot", "-o", tmp_path / "net.dot")
    assert code == 0, err
    dot = (tmp_path / "net.dot").read_text()
    drawn_as = [row["name"] if row["inputs"] else row["outputs"][0] for row in summary["layers"]]  # inputs: by blob
    plain = [name for name in drawn_as if not set(name) & set('"<>&\\')]
    assert dot.startswith("digraph") and [name for name in plain if name not in dot] == []
    code, out, err = run_cli(capsys, "upgrade", path, "-o", tmp_path / "upgraded.prototxt")
    assert code == 0, err


def write(tmp_path, text: str):
    path = tmp_path / "net.prototxt"
    path.write_text(textwrap.dedent(text))
    return path


TRAIN_NET = """\
    layer { name: "d" type: "Data" top: "data" top: "label"
            transform_param { crop_size: 28 mean_value: 1 mean_value: 2 mean_value: 3 } data_param { batch_size: 8 } }
    layer { name: "images" type: "ImageData" top: "more" top: "more_label" image_data_param { batch_size: 2 } }
    layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 10 } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" }
    layer { name: "silence" type: "Silence" bottom: "more_label" }
    layer { name: "c" type: "Convolution" bottom: "more" top: "c" convolution_param { num_output: 4 kernel_size: 3 } }
    """


def test_data_layers_tell_what_they_can_and_name_the_rest(tmp_path):
    net = read_net(write(tmp_path, TRAIN_NET), init="none", lenient=True)
    shapes = {i.value.blob: tuple(map(str, net.shape(i.value))) for i in net.inputs}
    assert shapes["data"] == ("8", "3", "28", "28")              # batch_size, mean values, crop_size
    assert shapes["label"] == ("8",)
    assert shapes["more"] == ("2", "3", "H", "W")                 # is_color: 3 channels; the images' size: not told
    assert tuple(map(str, net.shape(net.layer("c").outputs[0]))) == ("2", "4", "H - 2", "W - 2")


def test_a_loss_without_a_top_gets_caffes_automatic_one(tmp_path):
    net = read_net(write(tmp_path, TRAIN_NET), init="none", lenient=True)
    (top,) = net.layer("loss").outputs
    assert top in net.outputs() and net.shape(top) == ()


def test_what_a_strict_read_knows_it_knows_without_symbols(tmp_path):
    """A data layer that tells every size builds for conversion; one that does not asks for --input-shape."""
    path = write(tmp_path, TRAIN_NET)
    with pytest.raises(Exception, match="input 'more' declared by layer 'images' \\(ImageData\\) has no known shape"):
        read_net(path, init="none")
    lines = TRAIN_NET.splitlines()
    kept = "\n".join(line for line in lines if "images" not in line and "more" not in line)
    net = read_net(write(tmp_path, kept), init="none")
    assert net.shape(net.inputs[0].value) == (8, 3, 28, 28)


SEGNET_INFERENCE = """\
    layer { name: "data" type: "DenseImageData" top: "data" top: "label"
            dense_image_data_param { source: "test.txt" batch_size: 1 label_divide_factor: 8 } }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 1 } }
    layer { name: "prob" type: "Softmax" bottom: "conv" top: "prob" }
    """


def test_an_unread_data_top_is_dropped_and_a_fork_field_in_data_parameters_is_a_warning(tmp_path, capsys):
    path = write(tmp_path, SEGNET_INFERENCE)
    code, out, err = run_cli(capsys, "info", path)
    assert code == 0 and err == ""
    assert "dropped 'label', a top of data layer 'data' (DenseImageData) that no layer reads" in out
    assert "1x2xHxW" in out
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code = main(["draw", str(path), "--format", "dot", "-o", str(tmp_path / "net.dot")])
    err = capsys.readouterr().err
    assert code == 0
    assert err.count("\n") == 1 and "layer 'data' (DenseImageData)" in err and "label_divide_factor" in err \
        and "--proto" in err
    # Converting it needs only the image's size; the label is no input of the model.
    with pytest.warns(ProtodefWarning, match="label_divide_factor"):
        model = to_onnx(read_net(path, input_shape={"data": (1, 3, 12, 16)}))
    assert [i.name for i in model.graph.input] == ["data"]


def test_a_fork_field_that_could_change_the_graph_stays_an_error(tmp_path, capsys):
    path = write(tmp_path, 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 } } }\n'
                           'layer { name: "r" type: "ReLU" bottom: "data" top: "r" relu_param { fork_slope: 2 } }\n')
    code, out, err = run_cli(capsys, "info", path)
    assert code == 4 and 'has no field named "fork_slope"' in err


PYTHON_AND_UNKNOWN = """\
    layer { name: "input" type: "Python" top: "data" top: "im_info"
            python_param { module: "roi_data_layer.layer" layer: "RoIDataLayer" } }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
    layer { name: "proposal" type: "Python" bottom: "conv" bottom: "im_info" top: "rois"
            python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" } }
    layer { name: "odd" type: "FancyForkLayer" bottom: "rois" top: "odd" }
    layer { name: "after" type: "ReLU" bottom: "odd" top: "after" }
    layer { name: "detection_eval" type: "DetectionEvaluate" bottom: "conv" bottom: "conv" top: "map" }
    """


def test_python_and_unknown_layers_are_opaque_nodes(tmp_path, capsys):
    path = write(tmp_path, PYTHON_AND_UNKNOWN)
    net = read_net(path, init="none", lenient=True)
    assert [i.value.blob for i in net.inputs] == ["data", "im_info"]          # a bottomless Python layer feeds
    assert tuple(map(str, net.shape(net.inputs[0].value))) == ("N", "C", "H", "W")
    assert isinstance(net.layer("proposal").params, Opaque) and isinstance(net.layer("odd").params, Opaque)
    assert net.layer("odd").spec.family == "misc" and net.layer("after").outputs[0] not in net.shapes
    code, out, err = run_cli(capsys, "info", path)
    assert code == 0, err
    assert "layer 'proposal' (Python) is an opaque node" in out and "its module is never imported" in out
    assert "'odd' (FancyForkLayer) is an opaque node" in out and "after" in out
    code, out, err = run_cli(capsys, "draw", path, "--format", "dot", "-o", tmp_path / "net.dot")
    assert code == 0 and "FancyForkLayer" in (tmp_path / "net.dot").read_text()
    assert "FancyForkLayer" in protodef.draw(path).source                 # the Python API reads it as draw does
    code, out, err = run_cli(capsys, "convert", path, "-o", tmp_path / "net.onnx")
    assert code == UnsupportedError.exit_code and err.count("\n") == 1 and "protodef does not know" in err
    assert not (tmp_path / "net.onnx").exists()


def test_evaluation_layers_are_dropped_from_deploy_lowering(tmp_path):
    path = write(tmp_path, """\
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }
        layer { name: "out" type: "ReLU" bottom: "data" top: "out" }
        layer { name: "eval" type: "DetectionEvaluate" bottom: "out" bottom: "data" top: "map"
                detection_evaluate_param { num_classes: 2 } }
        """)
    model = to_onnx(read_net(path))
    assert [o.name for o in model.graph.output] == ["out"]


def test_a_test_view_without_data_is_shown_in_train(tmp_path, capsys):
    path = write(tmp_path, """\
        layer { name: "d" type: "Data" top: "data" include { phase: TRAIN } data_param { batch_size: 4 } }
        layer { name: "r" type: "ReLU" bottom: "data" top: "r" }
        """)
    with pytest.raises(GraphError, match="include/exclude rules"):
        read_net(path, init="none")
    code, out, err = run_cli(capsys, "info", path)
    assert code == 0 and "shown in phase TRAIN" in out and "4xCxHxW" in out
