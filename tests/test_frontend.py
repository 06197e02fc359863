"""Front end: parsing, phases, in-place resolution and shape inference."""
from __future__ import annotations

import pytest
from support import CORPUS, corpus_files, corpus_params

from protodef.api import read_net
from protodef.build import build_net
from protodef.errors import (
    GraphError,
    ParseError,
    SchemaError,
    ShapeError,
    UnsupportedError,
)
from protodef.source import parse_prototxt


def build(text: str, **options):
    param, source = parse_prototxt(text, path="t.prototxt")
    return build_net(param, source, **options)


RESNET_HEAD = """
name: "head"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 224 input_dim: 224
layer { bottom: "data" top: "conv1" name: "conv1" type: "Convolution"
        convolution_param { num_output: 64 kernel_size: 7 pad: 3 stride: 2 } }
layer { bottom: "conv1" top: "conv1" name: "bn_conv1" type: "BatchNorm" batch_norm_param { use_global_stats: true } }
layer { bottom: "conv1" top: "conv1" name: "scale_conv1" type: "Scale" scale_param { bias_term: true } }
layer { bottom: "conv1" top: "conv1" name: "conv1_relu" type: "ReLU" }
layer { bottom: "conv1" top: "pool1" name: "pool1" type: "Pooling"
        pooling_param { kernel_size: 3 stride: 2 pool: MAX } }
"""


def test_in_place_layers_become_distinct_values():
    net = build(RESNET_HEAD)
    relu = net.layer("conv1_relu")
    assert [str(v) for v in relu.inputs] == ["conv1@2"] and [str(v) for v in relu.outputs] == ["conv1@3"]
    assert net.shape(net.layer("pool1").outputs[0]) == (1, 64, 56, 56)   # 112 -> ceil((112-3)/2)+1 = 56
    assert net.value_name(relu.outputs[0]) == "conv1"                  # the final version keeps the blob's name
    net.validate()


@pytest.mark.parametrize("size,kernel,stride,pad,expected", [
    (112, 3, 2, 0, 56),     # ceil((112 - 3) / 2) + 1
    (7, 2, 2, 0, 4),        # ceil rounding adds a partial window
    (6, 3, 2, 1, 4),        # ceil((6 + 2 - 3) / 2) + 1; the last window starts inside the input
    (5, 2, 2, 1, 3),        # ceil gives 4, but the 4th window would start in the padding: dropped
    (5, 3, 3, 1, 2),
    (14, 3, 2, 0, 7),       # GoogLeNet's pool4/3x3_s2
])
def test_pooling_uses_caffe_rounding(size, kernel, stride, pad, expected):
    net = build(f"""input: "x" input_shape {{ dim: 1 dim: 2 dim: {size} dim: {size} }}
        layer {{ name: "p" type: "Pooling" bottom: "x" top: "y"
                pooling_param {{ pool: AVE kernel_size: {kernel} stride: {stride} pad: {pad} }} }}""")
    assert net.shape(net.layer("p").outputs[0]) == (1, 2, expected, expected)


def test_conv_hw_forms_dilation_and_group():
    net = build("""input: "x" input_shape { dim: 2 dim: 4 dim: 17 dim: 20 }
        layer { name: "c" type: "Convolution" bottom: "x" top: "y"
                convolution_param { num_output: 6 kernel_h: 3 kernel_w: 5 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 2
                                    dilation: 2 group: 2 } }""")
    layer = net.layer("c")
    # h: (17 + 2 - (2*2+1)) // 2 + 1 = 8; w: (20 + 4 - (2*4+1)) // 1 + 1 = 16
    assert net.shape(layer.outputs[0]) == (2, 6, 8, 16)
    assert layer.params.weight_shapes((2, 4, 17, 20)) == [(6, 2, 3, 5), (6,)]


def test_scale_axes_and_two_bottom_form():
    net = build("""input: "x" input_shape { dim: 2 dim: 3 dim: 4 dim: 5 }
        input: "s" input_shape { dim: 3 dim: 4 }
        layer { name: "a" type: "Scale" bottom: "x" top: "a" scale_param { axis: 1 num_axes: 2 bias_term: true } }
        layer { name: "b" type: "Scale" bottom: "x" bottom: "s" top: "b" }
        layer { name: "c" type: "Scale" bottom: "x" top: "c" scale_param { num_axes: 0 } }""")
    assert net.layer("a").params.weight_shapes() == [(3, 4), (3, 4)]
    assert net.layer("b").params.weight_shapes() == []
    assert net.layer("c").params.weight_shapes() == [()]


def test_reshape_flatten_slice_concat_crop():
    net = build("""input: "x" input_shape { dim: 2 dim: 6 dim: 4 dim: 5 }
        input: "r" input_shape { dim: 2 dim: 6 dim: 3 dim: 3 }
        layer { name: "re" type: "Reshape" bottom: "x" top: "re" reshape_param { shape { dim: 0 dim: -1 dim: 10 } } }
        layer { name: "fl" type: "Flatten" bottom: "x" top: "fl" flatten_param { axis: 2 } }
        layer { name: "sl" type: "Slice" bottom: "x" top: "s1" top: "s2" top: "s3" slice_param { slice_point: 1 slice_point: 4 } }
        layer { name: "cc" type: "Concat" bottom: "s1" bottom: "s3" top: "cc" concat_param { concat_dim: 1 } }
        layer { name: "cr" type: "Crop" bottom: "x" bottom: "r" top: "cr" crop_param { axis: 2 offset: 1 offset: 2 } }""")
    shape = lambda name, i=0: net.shape(net.layer(name).outputs[i])
    assert shape("re") == (2, 12, 10)
    assert shape("fl") == (2, 6, 20)
    assert [shape("sl", i) for i in range(3)] == [(2, 1, 4, 5), (2, 3, 4, 5), (2, 2, 4, 5)]
    assert shape("cc") == (2, 3, 4, 5)
    assert shape("cr") == (2, 6, 3, 3)


def test_phase_rules_with_stage_and_level():
    text = """input: "x" input_shape { dim: 1 dim: 2 }
        layer { name: "a" type: "ReLU" bottom: "x" top: "a" include { phase: TRAIN } }
        layer { name: "b" type: "ReLU" bottom: "x" top: "b" include { phase: TEST stage: "deploy" } }
        layer { name: "c" type: "ReLU" bottom: "x" top: "c" exclude { min_level: 2 } }"""
    assert [l.name for l in build(text)] == ["c"]
    assert [l.name for l in build(text, stages=["deploy"], level=3)] == ["b"]
    assert [l.name for l in build(text, phase="TRAIN")] == ["a", "c"]


def test_duplicate_layer_names_are_kept_apart():
    net = build("""input: "x" input_shape { dim: 1 dim: 2 }
        layer { name: "r" type: "ReLU" bottom: "x" top: "y" }
        layer { name: "r" type: "ReLU" bottom: "y" top: "z" }""")
    assert [(l.name, l.caffe_name) for l in net] == [("r", "r"), ("r_1", "r")]


def test_errors_name_the_place():
    with pytest.raises(GraphError, match=r"t.prototxt:2:9: layer 'r' \(ReLU\): bottom 'nope' is not produced"):
        build('input: "x" input_shape { dim: 1 }\n        layer { name: "r" type: "ReLU" bottom: "nope" top: "y" }')
    with pytest.raises(SchemaError, match=r"t.prototxt:2:44: layer 'r' \(ReLU\): unknown parameter field\(s\) 'bogus'"):
        build('input: "x" input_shape { dim: 1 }\nlayer { name: "r" type: "ReLU" bottom: "x" bogus: 1 top: "y" }')
    with pytest.raises(SchemaError, match=r"t.prototxt:2:22: .*has no field named \"bogus\""):
        build('input: "x" input_shape { dim: 1 }\nlayer { relu_param { bogus: 1 } }')
    with pytest.raises(ParseError, match=r"t.prototxt:1:\d+: "):
        build('layer { name: "x" ')
    with pytest.raises(GraphError, match="already produced"):
        build('input: "x" input_shape { dim: 1 }\nlayer { name: "a" type: "ReLU" bottom: "x" top: "x2" }\n'
              'layer { name: "b" type: "ReLU" bottom: "x" top: "x2" }')
    with pytest.raises(ShapeError, match="has no known shape.*--input-shape x="):
        build('input: "x"\nlayer { name: "a" type: "ReLU" bottom: "x" top: "y" }')
    with pytest.raises(UnsupportedError, match=r"2 layer\(s\).*'a' \(Foo\).*'b' \(Bar\)"):
        build('input: "x" input_shape { dim: 1 }\nlayer { name: "a" type: "Foo" bottom: "x" top: "y" }\n'
              'layer { name: "b" type: "Bar" bottom: "y" top: "z" }')
    with pytest.raises(ShapeError, match="pooled size must be positive|output dimension"):
        build('input: "x" input_shape { dim: 1 dim: 1 dim: 2 dim: 2 }\n'
              'layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { kernel_size: 5 } }')


def test_input_shape_override():
    net = build(RESNET_HEAD, input_shapes={"data": (2, 3, 64, 64)})
    assert net.shape(net.layer("pool1").outputs[0]) == (2, 64, 16, 16)


@pytest.mark.parametrize("path", corpus_params(corpus_files()))
def test_every_corpus_file_parses(path):
    param, source = parse_prototxt(path.read_bytes(), path=str(path))
    assert len(param.layer) + len(param.layers) == len(source.layer_locations) + len(source.layers_locations)


@pytest.mark.corpus
def test_resnet50_shapes():
    path = CORPUS / "resnet_kaiminghe" / "prototxt_ResNet-50-deploy.prototxt"
    net = read_net(path, init="none")
    shapes = {net.value_name(v): net.shapes[v] for layer in net for v in layer.outputs}
    assert shapes["res5c"] == (1, 2048, 7, 7) and shapes["pool5"] == (1, 2048, 1, 1) and shapes["prob"] == (1, 1000)


def test_data_transformation_is_reported_not_lost():
    net = build("""layer { name: "d" type: "Data" top: "data" top: "label"
                     transform_param { scale: 0.00390625 mean_value: 104 } data_param { batch_size: 4 } }
                   layer { name: "r" type: "ReLU" bottom: "data" top: "r" }""", input_shapes={"data": (4, 3, 8, 8)})
    assert any("layer 'd' (Data) transforms its data before the net" in note and "multiply by 0.00390625" in note
               for note in net.notes)
