"""A catalogue of bad inputs: each case is a small file (or a generator of one) and the exact line the user
sees — path:line:column where there is one, the layer's name and type, what was expected and what was found.

Model files come from strangers' repositories and old disks: every failure must be a ProtodefError of the
right kind (the CLI turns it into one line on stderr and that kind's exit code), never a traceback.
"""
from __future__ import annotations

import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from support import REPO

from caffe_proto import caffe_pb2
from protodef import attach
from protodef.api import read_net
from protodef.cli import main
from protodef.errors import (
    ERROR_KINDS,
    GraphError,
    InputError,
    ParseError,
    ProtodefError,
    ProtodefWarning,
    SchemaError,
    ShapeError,
    UnsupportedError,
    WeightsError,
)
from protodef.source import MAX_PROTOTXT_BYTES

INPUT = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
# conv1: weights (2, 3, 3, 3) + bias (2,), output (1, 2, 6, 6); fc: weights (3, 72) + bias (3,).
NET = INPUT + (
    'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"\n'
    '        convolution_param { num_output: 2 kernel_size: 3 } }\n'
    'layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 3 } }\n')


def prototxt(tmp_path: Path, text: str, name: str = "net.prototxt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def failure(kind: type[ProtodefError], function, *args, **kwargs) -> str:
    """The one line a failure shows, checking its kind."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ProtodefError) as info:
            function(*args, **kwargs)
    assert type(info.value) is kind, f"{type(info.value).__name__}: {info.value}"
    line = str(info.value)
    assert "\n" not in line and "\r" not in line
    return line


def blob(array) -> caffe_pb2.BlobProto:
    array = np.asarray(array, dtype=np.float32)
    proto = caffe_pb2.BlobProto()
    proto.shape.dim.extend(array.shape)
    proto.data.extend(array.reshape(-1).tolist())
    return proto


def caffemodel(tmp_path: Path, layers, name: str = "net.caffemodel") -> Path:
    """A caffemodel built with protobuf's own classes (not our writer): layers are (name, type, [blobs])."""
    model = caffe_pb2.NetParameter()
    for layer_name, layer_type, blobs in layers:
        layer = model.layer.add()
        layer.name, layer.type = layer_name, layer_type
        layer.blobs.extend(b if isinstance(b, caffe_pb2.BlobProto) else blob(b) for b in blobs)
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def good_layers(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [("conv1", "Convolution", [rng.normal(size=(2, 3, 3, 3)), rng.normal(size=2)]),
            ("fc", "InnerProduct", [rng.normal(size=(3, 72)), rng.normal(size=3)])]


def messages(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ProtodefWarning)]


# ------------------------------------------------------------------------------------------- prototxt

def test_syntax_error_names_line_and_column(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer {\n  name: "conv1"\n  type: "Convolution"\n  bottom: "data" top\n}\n')
    assert failure(ParseError, read_net, path) == f"{path}:6:1: '}}': Expected \":\""


def test_string_where_a_number_goes(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
                                      '  convolution_param { num_output: "two" kernel_size: 3 } }\n')
    assert failure(ParseError, read_net, path) == (
        f"{path}:3:35: '  convolution_param {{ num_output: \"two\" kernel_size: 3 }} }}': "
        "Couldn't parse integer: \"two\"")


def test_syntax_error_on_a_huge_line_stays_short(tmp_path):
    # One line of 200 000 layers' worth of braces: the message quotes only the place around the column.
    path = prototxt(tmp_path, "layer " + "{ " * 100_000)
    excerpt = "layer " + "{ " * 37     # 80 characters from the start of the line, then an ellipsis
    assert failure(ParseError, read_net, path) == \
        f"{path}:1:9: '{excerpt}...': Expected identifier or number, got {{"


def test_unknown_field_is_a_schema_error(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
                                      '  convolution_param { num_output: 4 kernal_size: 3 } }\n')
    assert failure(SchemaError, read_net, path) == \
        f'{path}:3:37: Message type "ConvolutionParameter" has no field named "kernal_size" (did you mean ' \
        "'kernel_size'?)"


def test_a_fork_field_protodef_s_schema_lacks_points_to_proto(tmp_path):
    """RefineDet's objectness_score: no field of that name is close, so it is likely a fork's."""
    path = prototxt(tmp_path, INPUT + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
                                      '  convolution_param { num_output: 4 objectness_score: 3 } }\n')
    assert failure(SchemaError, read_net, path) == \
        f'{path}:3:37: Message type "ConvolutionParameter" has no field named "objectness_score" (a Caffe ' \
        "fork's field? protodef's schema has BVLC Caffe's fields and the forks' in caffe_proto/FORKS.md; give " \
        "the fork's caffe.proto with --proto)"


def test_unknown_enum_value(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p"\n'
                                      'pooling_param { pool: MEDIAN kernel_size: 2 } }\n')
    assert failure(SchemaError, read_net, path) == (
        f"{path}:3:23: 'pooling_param {{ pool: MEDIAN kernel_size: 2 }} }}': "
        'Enum type "PoolingParameter.PoolMethod" has no value named MEDIAN')


def test_unknown_fork_parameter_block(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r"\n'
                                      '  my_fork_param { gain: 2 } }\n')
    assert failure(SchemaError, read_net, path) == (
        f"{path}:3:3: layer 'r' (ReLU): unknown parameter field(s) 'my_fork_param' (3:3): our schema has no such "
        "field for this layer type; register the type with protodef.register_layer(...) to receive them, or give "
        "the fork's caffe.proto with --proto")


def test_broken_escape_in_a_fork_parameter_block(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r"\n'
                                      '  my_fork_param { label: "caf\\xé" } }\n')
    assert failure(ParseError, read_net, path) == \
        f'{path}:3:26: a string has a broken escape sequence: found "caf\\xé"'


def test_binary_file_given_as_prototxt(tmp_path):
    path = caffemodel(tmp_path, good_layers(), name="net.prototxt")
    assert failure(ParseError, read_net, path) == \
        f"{path}: this is a binary file, not prototxt text (a .caffemodel goes to --weights)"


def test_missing_and_unreadable_prototxt(tmp_path):
    missing = tmp_path / "missing.prototxt"
    assert failure(InputError, read_net, missing) == f"{missing}: cannot read the file: No such file or directory"
    assert failure(InputError, read_net, tmp_path) == f"{tmp_path}: cannot read the file: Is a directory"


def test_file_too_large_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.prototxt"
    layer = 'layer { name: "r" type: "ReLU" bottom: "x" top: "x" }\n'
    path.write_text(layer * (MAX_PROTOTXT_BYTES // len(layer) + 1))
    size = path.stat().st_size
    assert failure(ParseError, read_net, path) == (
        f"{path}: the file is too large for a net definition: expected at most {MAX_PROTOTXT_BYTES} bytes, "
        f"found {size} bytes")


def test_a_device_that_never_ends(tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    assert failure(ParseError, read_net, "/dev/zero") == (
        f"/dev/zero: the file is too large for a net definition: expected at most {MAX_PROTOTXT_BYTES} bytes, "
        "found more (it does not end)")


def test_deep_nesting_in_an_unknown_block(tmp_path):
    # 100 000 levels: read without recursion (the fork block is set aside as data), then refused by name.
    path = prototxt(tmp_path, INPUT + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r"\n  deep_param '
                    + "{ a " * 100_000 + "}" * 100_001 + "\n")
    assert failure(SchemaError, read_net, path) == (
        f"{path}:3:3: layer 'r' (ReLU): unknown parameter field(s) 'deep_param' (3:3): our schema has no such "
        "field for this layer type; register the type with protodef.register_layer(...) to receive them, or give "
        "the fork's caffe.proto with --proto")


def test_deep_nesting_of_known_blocks(tmp_path):
    line = 'layer { name: "r" type: "ReLU" relu_param ' + "{ " * 100_000 + "}" * 100_001
    path = prototxt(tmp_path, INPUT + line)
    # The second brace after relu_param (column 45) is the error; 40 characters either side are quoted.
    assert failure(ParseError, read_net, path) == \
        f"{path}:2:45: '...{line[4:84]}...': Expected identifier or number, got {{"


def test_every_unknown_type_is_named_at_once(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "a" type: "Foo" bottom: "data" top: "a" }\n'
                                      'layer { name: "b" type: "ReLU" bottom: "a" top: "b" }\n'
                                      'layer { name: "c" type: "Bar" bottom: "b" top: "c" }\n')
    assert failure(UnsupportedError, read_net, path) == (
        f"2 layer(s) of types protodef does not know: {path}:2:1: layer 'a' (Foo); {path}:4:1: layer 'c' (Bar). "
        "Register them with protodef.register_layer(...) or give the fork's schema with --proto")


def test_python_layer_is_named_not_run(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "rpn" type: "Python" bottom: "data" top: "rois"\n'
                                      '  python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" } }\n')
    assert failure(UnsupportedError, read_net, path) == (
        f"1 layer(s) of types protodef does not know: {path}:2:1: layer 'rpn' (Python). A Python layer runs user "
        "code that protodef never imports or executes; register a layer type for it with "
        "protodef.register_layer('Python', ...) to convert it")


def test_bottom_nobody_writes(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "r" type: "ReLU" bottom: "dta" top: "r" }\n')
    assert failure(GraphError, read_net, path) == \
        f"{path}:2:1: layer 'r' (ReLU): bottom 'dta' is not produced by any earlier layer or net input"


def test_top_written_twice(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "a" type: "ReLU" bottom: "data" top: "y" }\n'
                                      'layer { name: "b" type: "ReLU" bottom: "data" top: "y" }\n')
    assert failure(GraphError, read_net, path) == (
        f"{path}:3:1: layer 'b' (ReLU): top 'y' is already produced by an earlier layer; only an in-place layer "
        "(top i == bottom i) may write a blob again")


def test_wrong_number_of_bottoms(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "e" type: "Axpy" bottom: "data" top: "e" }\n')
    assert failure(GraphError, read_net, path) == \
        f"{path}:2:1: layer 'e' (Axpy): wrong number of bottoms: expected 3, found 1"


TWO_INPUTS = INPUT + INPUT.replace('"data"', '"data2"')


def test_convolution_with_fewer_tops_than_bottoms(tmp_path):
    path = prototxt(tmp_path, TWO_INPUTS + 'layer { name: "c" type: "Convolution" bottom: "data" bottom: "data2" '
                                           'top: "c" convolution_param { num_output: 4 kernel_size: 3 } }\n')
    assert failure(GraphError, read_net, path) == (
        f"{path}:3:1: layer 'c' (Convolution): wrong number of tops: one per bottom: expected 2, found 1")


def test_convolution_bottoms_of_different_shapes(tmp_path):
    other = 'layer { name: "d2" type: "Input" top: "small" input_param { shape { dim: 1 dim: 3 dim: 6 dim: 8 } } }\n'
    path = prototxt(tmp_path, INPUT + other + 'layer { name: "c" type: "Deconvolution" bottom: "data" '
                                              'bottom: "small" top: "c0" top: "c1"\n'
                                              '  convolution_param { num_output: 4 kernel_size: 3 } }\n')
    assert failure(ShapeError, read_net, path) == (
        f"{path}:3:1: layer 'c' (Deconvolution): bottom 'small' differs in shape from bottom 'data': a convolution "
        "applies one set of weights to bottoms of one shape: expected (1, 3, 8, 8), found (1, 3, 6, 8)")


def test_shufflenet_depthwise_convolution_takes_one_bottom(tmp_path):
    """farmingyard's ConvolutionDepthwise is ExactNumBottomBlobs 1; the DepthwiseConvolution of the MobileNet
    forks (a BaseConvolutionLayer) takes two."""
    def net(type_name):
        return prototxt(tmp_path, TWO_INPUTS + f'layer {{ name: "dw" type: "{type_name}" bottom: "data" '
                                               'bottom: "data2" top: "a" top: "b"\n'
                                               '  convolution_param { num_output: 3 kernel_size: 3 } }\n')
    path = net("ConvolutionDepthwise")
    assert failure(GraphError, read_net, path) == (
        f"{path}:3:1: layer 'dw' (ConvolutionDepthwise): wrong number of bottoms: ConvolutionDepthwise "
        "(farmingyard's fork) takes one bottom; the forks' DepthwiseConvolution and Caffe's Convolution take "
        "several: expected 1, found 2")
    built = read_net(net("DepthwiseConvolution"))
    assert [built.shape(v) for v in built.layer("dw").outputs] == [(1, 3, 6, 6), (1, 3, 6, 6)]


def test_convolution_output_becomes_negative(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"\n'
                                      '  convolution_param { num_output: 4 kernel_size: 11 } }\n')
    assert failure(ShapeError, read_net, path) == \
        f"{path}:2:1: layer 'conv1' (Convolution): convolution output size must be positive: expected > 0, found -2"


def test_pooled_size_becomes_negative(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "pool1" type: "Pooling" bottom: "data" top: "pool1"\n'
                                      '  pooling_param { pool: MAX kernel_size: 11 } }\n')
    assert failure(ShapeError, read_net, path) == \
        f"{path}:2:1: layer 'pool1' (Pooling): pooled size must be positive: expected > 0, found -2"


def test_mask_output_of_average_pooling(tmp_path):
    for params in ("pool: AVE kernel_size: 2", "pool: AVE global_pooling: true"):
        path = prototxt(tmp_path, INPUT + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" top: "mask"\n'
                                          f'  pooling_param {{ {params} }} }}\n')
        assert failure(SchemaError, read_net, path) == \
            f"{path}:2:1: layer 'p' (Pooling): only MAX pooling has a second (mask) output: found AVE"


def test_per_class_accuracy_of_a_shapeless_input(tmp_path):
    path = prototxt(tmp_path, 'layer { name: "d" type: "Data" top: "data" top: "label" }\n'
                              'layer { name: "acc" type: "Accuracy" bottom: "data" bottom: "label" top: "acc" '
                              'top: "per_class" }\n')
    assert failure(ShapeError, read_net, path, init="none") == (
        f"{path}:2:1: layer 'acc' (Accuracy): the second output's size comes from the first input's shape, which "
        "is not known; give it with --input-shape")


def test_reshape_cannot_infer(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "rs" type: "Reshape" bottom: "data" top: "rs"\n'
                                      '  reshape_param { shape { dim: 0 dim: 5 dim: -1 } } }\n')
    assert failure(ShapeError, read_net, path) == (
        f"{path}:2:1: layer 'rs' (Reshape): reshape cannot infer the -1 dimension: expected a divisor of 192, "
        "found 5")


@pytest.mark.parametrize("dims, found", [("dim: 1 dim: 0 dim: 8", "(1, 0, 8)"), ("dim: 1 dim: -3", "(1, -3)")])
def test_input_with_a_zero_or_negative_size(tmp_path, dims, found):
    path = prototxt(tmp_path, f'layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ {dims} }} }} }}\n'
                              'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n')
    assert failure(ShapeError, read_net, path) == (
        f"{path}:1:1: layer 'in' (Input): input_param.shape declares a size that is zero or negative: "
        f"expected all > 0, found {found}")


def test_input_larger_than_caffe_allows(tmp_path):
    path = prototxt(tmp_path, 'layer { name: "in" type: "Input" top: "x"\n'
                              '  input_param { shape { dim: 1 dim: 3 dim: 32 dim: 2147483648 } } }\n')
    assert failure(ShapeError, read_net, path, init="none") == (
        f"{path}:1:1: layer 'in' (Input): input_param.shape declares a blob larger than Caffe allows: "
        "expected at most 2147483647 elements, found (1, 3, 32, 2147483648)")


def test_zero_group(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
                                      '  convolution_param { num_output: 4 kernel_size: 3 group: 0 } }\n')
    assert failure(SchemaError, read_net, path) == \
        f"{path}:2:1: layer 'c' (Convolution): convolution_param.group must be positive: expected > 0, found 0"


def test_absurd_num_output_fails_before_allocating(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"\n'
                                      '  inner_product_param { num_output: 2000000000 } }\n')
    tracemalloc.start()
    try:
        for init in ("fillers", "random"):
            assert failure(ShapeError, read_net, path, init=init) == (
                f"{path}:2:1: layer 'fc' (InnerProduct): weight blob 0 would have 384000000000 elements: "
                "expected 0 to 2147483647 (Caffe's limit for one blob), found (2000000000, 192)")
        assert tracemalloc.get_traced_memory()[1] < 50 << 20
    finally:
        tracemalloc.stop()
    # Shapes alone are fine: `protodef info` and drawings never allocate weights.
    assert read_net(path, init="none").layer("fc").params.num_output == 2_000_000_000


def test_weights_larger_than_the_memory_fail_before_allocating(tmp_path, monkeypatch):
    monkeypatch.setattr(attach, "_memory_bytes", lambda: 1 << 30)
    path = prototxt(tmp_path, INPUT + "".join(
        f'layer {{ name: "fc{i}" type: "InnerProduct" bottom: "data" top: "fc{i}"\n'
        f'  inner_product_param {{ num_output: 1000000 }} }}\n' for i in range(2)))
    assert failure(WeightsError, read_net, path) == (
        f"{path}: initialising the weights would take 1.4 GiB of memory, more than the 1.0 GiB this machine has")


def test_filler_problem_names_the_layer(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"\n'
                                      '  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0 } } }\n')
    assert failure(SchemaError, read_net, path) == (
        f"{path}:2:1: layer 'fc' (InnerProduct): the 'gaussian' filler needs a standard deviation above 0: "
        "found 0.0")
    assert read_net(path, init="none").layer("fc").weights == ()


def test_names_with_newlines_keep_the_message_on_one_line(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "bad\\nname" type: "ReLU" bottom: "no\\rpe" top: "r" }\n')
    line = failure(GraphError, read_net, path)   # checks there is no line break in it
    assert line.startswith(f"{path}:2:1: layer 'bad") and "is not produced by any earlier layer" in line


# ------------------------------------------------------------------------------------------ caffemodels

def test_weights_load(tmp_path):
    net = read_net(prototxt(tmp_path, NET), caffemodel(tmp_path, good_layers()))
    np.testing.assert_array_equal(net.layer("fc").weights[0], np.float32(good_layers()[1][2][0]))


def test_truncated_caffemodel(tmp_path):
    path = caffemodel(tmp_path, good_layers())
    data = path.read_bytes()
    first = caffe_pb2.NetParameter.FromString(data).layer[0].ByteSize()
    path.write_bytes(data[:100])
    head = 2 + len(_varint(first))      # the layer's tag (2 bytes for field 100) and its length
    assert failure(WeightsError, read_net, prototxt(tmp_path, NET), path) == (
        f"{path}: not a valid caffemodel: layer #0 at byte 0 declares {first} bytes but only {100 - head} remain "
        "before the end of the file")


def test_every_truncation_of_a_caffemodel_is_a_weights_error(tmp_path):
    data = caffemodel(tmp_path, good_layers()).read_bytes()
    net = prototxt(tmp_path, NET)
    path = tmp_path / "cut.caffemodel"
    for cut in range(0, len(data), 7):
        path.write_bytes(data[:cut])
        line = failure(WeightsError, read_net, net, path)
        assert line.startswith(f"{path}: ")


def test_wrong_wire_type_in_a_caffemodel(tmp_path):
    # LayerParameter.name written as a varint: tag 100 (length-delimited), length 4, then field 1 as varint 7.
    path = tmp_path / "wire.caffemodel"
    path.write_bytes(bytes([0xA2, 0x06, 0x04, 0x08, 0x07, 0x12, 0x00]))
    assert failure(WeightsError, read_net, prototxt(tmp_path, NET), path) == (
        f"{path}: layer #0: not a valid caffemodel: LayerParameter.name (field 1) at byte 3 has wire type varint, "
        "expected length-delimited")


def test_blob_shape_disagrees_with_its_data(tmp_path):
    short = blob(np.zeros((2, 3, 3, 3)))
    del short.data[-1]
    layers = good_layers()
    layers[0] = ("conv1", "Convolution", [short, np.zeros(2)])
    path = caffemodel(tmp_path, layers)
    assert failure(WeightsError, read_net, prototxt(tmp_path, NET), path) == \
        f"{path}: layer 'conv1' (Convolution): blob 0 has 53 values but its shape (2, 3, 3, 3) needs 54"


def test_absurd_declared_size_fails_before_allocating(tmp_path):
    # A handful of bytes whose enclosing lengths agree, while the float data claims 10^12 values.
    claim = 4 * 10**12
    data_field = bytes([0x2A]) + _varint(claim) + b"\0" * 4                     # BlobProto.data
    blob_field = bytes([0x3A]) + _varint(len(data_field)) + data_field          # LayerParameter.blobs
    layer = bytes([0x0A, 0x02]) + b"fc" + blob_field
    path = tmp_path / "absurd.caffemodel"
    path.write_bytes(bytes([0xA2, 0x06]) + _varint(len(layer)) + layer)
    tracemalloc.start()
    try:
        assert failure(WeightsError, read_net, prototxt(tmp_path, NET), path) == (
            f"{path}: layer 'fc': not a valid caffemodel: the BlobProto.data of blob 0 at byte 9 declares "
            f"{claim} bytes but only 4 remain before the end of the file")
        assert tracemalloc.get_traced_memory()[1] < 10 << 20
    finally:
        tracemalloc.stop()


def test_nan_and_inf_in_weights_are_a_warning_naming_the_layer(tmp_path):
    layers = good_layers()
    layers[0][2][0][0, 0, 0, 0] = np.nan
    layers[1][2][1][2] = np.inf
    path = caffemodel(tmp_path, layers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = read_net(prototxt(tmp_path, NET), path)
    assert messages(caught) == [f"{path}: layer 'conv1' (Convolution): weight blob(s) [0] hold NaN or Inf",
                                f"{path}: layer 'fc' (InnerProduct): weight blob(s) [1] hold NaN or Inf"]
    assert np.isnan(net.layer("conv1").weights[0][0, 0, 0, 0]) and np.isinf(net.layer("fc").weights[1][2])


def test_weights_for_layers_the_net_lacks_are_listed(tmp_path):
    path = caffemodel(tmp_path, good_layers() + [("conv0", "Convolution", [np.ones((1, 1, 1, 1))]),
                                                 ("old_fc", "InnerProduct", [np.ones((2, 2)), np.ones(2)])])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_net(prototxt(tmp_path, NET), path)
    assert messages(caught) == [f"{path}: the caffemodel has weights for 2 layer(s) the net does not have: "
                                "conv0 (Convolution), old_fc (InnerProduct)"]


def test_layers_without_weights_are_an_error(tmp_path):
    path = caffemodel(tmp_path, good_layers()[:1])
    assert failure(WeightsError, read_net, prototxt(tmp_path, NET), path) == (
        f"{path}: the caffemodel has no weights for 1 layer(s): fc (InnerProduct): expected weights for every "
        "layer with parameters, found none (use --allow-missing-weights to initialise them from their fillers)")


def test_allow_missing_weights_uses_fillers_and_says_so(tmp_path):
    path = caffemodel(tmp_path, good_layers()[:1])
    net_path = prototxt(tmp_path, NET.replace("num_output: 3 }", 'num_output: 3 bias_filler { type: "constant" '
                                                                 'value: 0.5 } }'))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = read_net(net_path, path, allow_missing_weights=True)
    assert messages(caught) == ["no weights in the caffemodel for fc (InnerProduct): initialised from their "
                                "fillers (seed 0)"]
    np.testing.assert_array_equal(net.layer("fc").weights[1], np.full(3, 0.5, np.float32))
    np.testing.assert_array_equal(net.layer("fc").weights[0], np.zeros((3, 72), np.float32))   # Caffe's default


def test_wrong_blob_count_and_shape_against_the_net(tmp_path):
    layers = good_layers()
    layers[1] = ("fc", "InnerProduct", layers[1][2][:1])
    path = caffemodel(tmp_path, layers)
    assert failure(WeightsError, read_net, prototxt(tmp_path, NET), path) == (
        f"{path}: layer 'fc' (InnerProduct): wrong number of weight blobs in the caffemodel: expected 2, found 1")
    layers = good_layers()
    layers[1] = ("fc", "InnerProduct", [np.zeros((3, 71)), np.zeros(3)])
    path = caffemodel(tmp_path, layers, "shape.caffemodel")
    assert failure(WeightsError, read_net, prototxt(tmp_path, NET), path) == (
        f"{path}: layer 'fc' (InnerProduct): weight blob 0 has the wrong shape: expected (3, 72), found (3, 71)")


def test_duplicate_layer_names_in_the_net(tmp_path):
    # Two layers named "fc" of the same shape, and a caffemodel naming "fc" twice (as Caffe writes such a net).
    text = NET + 'layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc2" inner_product_param { num_output: 3 } }\n'
    rng = np.random.default_rng(1)
    second = [rng.normal(size=(3, 72)), rng.normal(size=3)]
    path = caffemodel(tmp_path, good_layers() + [("fc", "InnerProduct", second)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = read_net(prototxt(tmp_path, text), path)
    assert messages(caught) == [
        f"{path}: the caffemodel has weights for the same layer name more than once: fc (2 times); as in Caffe, the "
        "last of each is used",
        "layer names used more than once: fc; as in Caffe, the caffemodel's weights go to the first layer of each "
        "name and the others keep their fillers"]
    assert [layer.name for layer in net.layers()] == ["conv1", "fc", "fc_1"]
    # Caffe's CopyTrainedLayersFrom looks each stored layer up from the start of the net: the first "fc" gets
    # the last weights stored under that name, the second keeps its fillers (zeros).
    np.testing.assert_array_equal(net.layer("fc").weights[0], np.float32(second[0]))
    assert not net.layer("fc_1").weights[0].any()


def test_prototxt_given_as_caffemodel(tmp_path):
    path = prototxt(tmp_path, NET, name="net.caffemodel")
    assert failure(WeightsError, read_net, prototxt(tmp_path, NET), path) == (
        f"{path}: not a valid caffemodel: unexpected end-group marker for field 13 at byte 0 (this looks like a "
        "text file; is it a prototxt?)")     # 'l' of `layer` is 0x6C: field 13, wire type 4


def test_empty_caffemodel(tmp_path):
    path = tmp_path / "empty.caffemodel"
    path.write_bytes(b"")
    assert failure(WeightsError, read_net, prototxt(tmp_path, NET), path) == \
        f"{path}: the file is empty, not a caffemodel"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# --------------------------------------------------------------------------------------------- the CLI

def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    with warnings.catch_warnings():
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_exit_codes_are_distinct_and_documented():
    codes = [kind.exit_code for kind in ERROR_KINDS]
    assert len(set(codes)) == len(codes) and all(code not in (0, 1, 2) for code in codes)
    from protodef.cli import exit_code_table
    table = exit_code_table()
    for kind in ERROR_KINDS:
        assert f"| {kind.exit_code} | {kind.kind} |" in table


CLI_CASES = {
    "syntax": (ParseError, INPUT + "layer { name: \"x\" \n"),
    "schema": (SchemaError, INPUT + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" relu_param { slope: 1 } }\n'),
    "graph": (GraphError, INPUT + 'layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }\n'),
    "shape": (ShapeError, INPUT + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                                  'pooling_param { kernel_size: 11 } }\n'),
    "unsupported": (UnsupportedError, INPUT + 'layer { name: "x" type: "Frobnicate" bottom: "data" top: "x" }\n'),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_prints_one_line_and_exits_with_the_kinds_code(tmp_path, capsys, case):
    kind, text = CLI_CASES[case]
    path = prototxt(tmp_path, text)
    with pytest.raises(kind) as info:
        read_net(path)
    # info and draw show a type protodef does not know as an opaque node; converting it fails.
    for command in ("info", "draw") if kind is not UnsupportedError else ("convert",):
        code, out, err = run_cli(capsys, command, path)
        assert (code, out, err) == (kind.exit_code, "", f"protodef: {info.value}\n"), command


def test_cli_weights_error_and_output_error(tmp_path, capsys):
    net = prototxt(tmp_path, NET)
    weights = tmp_path / "empty.caffemodel"
    weights.write_bytes(b"")
    assert run_cli(capsys, "info", net, "--weights", weights) == \
        (7, "", f"protodef: {weights}: the file is empty, not a caffemodel\n")
    target = tmp_path / "no" / "such" / "dir" / "up.prototxt"
    assert run_cli(capsys, "upgrade", net, "-o", target) == (
        9, "", f"protodef: {target}: output directory does not exist: expected an existing directory, "
               f"found {target.parent}\n")
    assert not target.parent.exists()


def test_cli_debug_shows_the_traceback(tmp_path):
    path = prototxt(tmp_path, CLI_CASES["graph"][1])
    plain = subprocess.run([sys.executable, "-m", "protodef", "info", str(path)], capture_output=True, text=True,
                           cwd=REPO, timeout=120)
    assert plain.returncode == GraphError.exit_code and plain.stdout == ""
    assert plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "protodef", "--debug", "info", str(path)], capture_output=True,
                           text=True, cwd=REPO, timeout=120)
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr
    assert "protodef.errors.GraphError: " in debug.stderr


def test_batch_conversion_goes_on_past_failures(tmp_path, capsys):
    good = prototxt(tmp_path, NET, "good.prototxt")
    broken = prototxt(tmp_path, CLI_CASES["graph"][1], "broken.prototxt")
    unknown = prototxt(tmp_path, CLI_CASES["unsupported"][1], "unknown.prototxt")
    also_good = prototxt(tmp_path, INPUT + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n', "ok.prototxt")
    code, out, err = run_cli(capsys, "convert", broken, good, unknown, also_good)
    errors = {}
    for path in (broken, unknown):
        with pytest.raises(ProtodefError) as info:
            read_net(path)
        errors[path] = str(info.value)
    assert code == 1
    assert out == (f"{good} -> {good.with_suffix('.onnx')}\n"
                   f"{also_good} -> {also_good.with_suffix('.onnx')}\n")
    lines = err.splitlines()
    assert lines[1].startswith(f"protodef: {good}: warning: no --weights")   # ok.prototxt has no weights to make up
    assert lines[:1] + lines[2:] == [f"protodef: {errors[broken]}", f"protodef: {errors[unknown]}",
                                     "protodef: 2 of 4 conversions failed"]
    assert good.with_suffix(".onnx").stat().st_size > 0 and also_good.with_suffix(".onnx").exists()
    assert not broken.with_suffix(".onnx").exists() and not unknown.with_suffix(".onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ------------------------------------------------------------------ gaps in files this suite does not own

NO_SHAPE = ('layer { name: "in" type: "Input" top: "x" }\n' + INPUT
            + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')


def test_onnx_input_without_a_shape(tmp_path):
    from protodef.api import to_onnx
    path = prototxt(tmp_path, NO_SHAPE)
    net = read_net(path)
    line = failure(ShapeError, to_onnx, net)
    assert "'x'" in line and "--input-shape x=" in line


def test_pytorch_input_without_a_shape(tmp_path):
    from protodef import save_pytorch
    net = read_net(prototxt(tmp_path, NO_SHAPE))
    line = failure(ShapeError, save_pytorch, net, tmp_path / "out.py")
    assert "'x'" in line and "--input-shape x=" in line


def test_onnx_blob_with_an_empty_name(tmp_path):
    from protodef.api import to_onnx
    path = prototxt(tmp_path, 'input: "" input_shape { dim: 3 }\n' + INPUT
                    + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')
    line = failure(UnsupportedError, to_onnx, read_net(path))
    assert line == f"{path}: the converted model is not valid ONNX: a graph input has an empty name (a Caffe " \
                   'blob named ""?): every ONNX value needs one'


def test_an_empty_net_is_refused_when_read(tmp_path):
    path = prototxt(tmp_path, 'name: "empty"\n')
    assert failure(GraphError, read_net, path, init="none") == (
        f"{path}: the net is empty: it declares no inputs and, in this phase, no layers: expected at least one "
        "input or layer")


def test_intermediate_blob_larger_than_caffe_allows(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "up" type: "Deconvolution" bottom: "data" top: "up"\n'
                                      '  convolution_param { num_output: 1 kernel_size: 1 stride: 100000 } }\n')
    assert failure(ShapeError, read_net, path, init="none").startswith(f"{path}:2:1: layer 'up' (Deconvolution): ")
    assert failure(ShapeError, read_net, prototxt(tmp_path, INPUT, "in.prototxt"), init="none",
                   input_shape={"data": (1, 3, 100000, 100000)})


def test_many_layers_with_one_name_take_linear_time(tmp_path):
    from protodef import build
    code = build._Names.unique.__code__
    layers = 600
    path = prototxt(tmp_path, 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
                    + 'layer { name: "r" type: "ReLU" bottom: "x" top: "x" }\n' * layers)
    steps = 0

    def count(frame, event, arg):   # lines run inside the name picker: deterministic, unlike a timing
        nonlocal steps
        if frame.f_code is code:
            steps += event == "line"
            return count
        return None

    sys.settrace(count)
    try:
        net = read_net(path, init="none")
    finally:
        sys.settrace(None)
    assert len(net) == layers
    assert steps < 20 * layers, f"{steps} steps to name {layers} layers"


def test_cli_convert_reports_warnings(tmp_path, capsys):
    layers = good_layers()[:1]
    layers[0][2][0][0, 0, 0, 0] = np.nan
    weights = caffemodel(tmp_path, layers)
    code, out, err = run_cli(capsys, "convert", prototxt(tmp_path, NET), "-w", weights, "--allow-missing-weights",
                             "-o", tmp_path / "net.onnx")
    assert code == 0
    assert f"{weights}: layer 'conv1' (Convolution): weight blob(s) [0] hold NaN or Inf" in err
    assert "no weights in the caffemodel for fc (InnerProduct): initialised from their fillers (seed 0)" in err


def test_prior_box_with_a_zero_aspect_ratio(tmp_path):
    path = prototxt(tmp_path, INPUT + 'layer { name: "prior" type: "PriorBox" bottom: "data" bottom: "data" '
                                      'top: "prior"\n  prior_box_param { min_size: 4 aspect_ratio: 0 } }\n')
    assert failure(SchemaError, read_net, path, init="none").startswith(f"{path}:2:1: layer 'prior' (PriorBox): ")


@pytest.mark.parametrize("operation", ["PROD", "MAX"])
def test_an_eltwise_of_one_bottom_other_than_sum_is_refused(tmp_path, operation):
    """FlowNet 2's fork takes one bottom for SUM (coeff * x); its PROD and MAX would read a second one."""
    path = prototxt(tmp_path, INPUT + f'layer {{ name: "e" type: "Eltwise" bottom: "data" top: "e" '
                                      f'eltwise_param {{ operation: {operation} }} }}\n')
    line = failure(SchemaError, read_net, path)
    assert line == (f"{path}:2:1: layer 'e' (Eltwise): an Eltwise of one bottom computes SUM only (FlowNet 2's fork: "
                    f"coeff * x): expected operation: SUM, or a second bottom, found {operation}")


def test_a_solver_given_as_a_net_is_told_apart_and_names_its_net(tmp_path):
    path = prototxt(tmp_path, 'net: "models/train_val.prototxt"\ntest_iter: 10\nbase_lr: 0.01\nlr_policy: "fixed"\n',
                    name="solver.prototxt")
    line = failure(InputError, read_net, path)
    assert line == (f"{path}: this is a Caffe solver (SolverParameter), not a net; it trains net "
                    "'models/train_val.prototxt': give protodef that net (protodef.Solver trains it as Caffe would)")
