"""Tests for caffe_proto: bindings freshness, BVLC facts, fork additions, corpus.

The BVLC facts below were checked against upstream BVLC/caffe
src/caffe/proto/caffe.proto (master), not against our own caffe.proto, so a
typo in the schema shows up here rather than being copied into the test.
"""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor
from support import CORPUS, corpus_params

from caffe_proto import caffe_pb2

REPO_ROOT = Path(__file__).resolve().parents[1]


def _field(message, name):
    return message.DESCRIPTOR.fields_by_name[name]


# ---------------------------------------------------------------------------
# Bindings are generated from the committed caffe.proto


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None,
    reason="grpcio-tools not installed",
)
def test_bindings_up_to_date():
    result = subprocess.run(
        [sys.executable, "-m", "caffe_proto.regenerate", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_exposes_bindings():
    import caffe_proto

    assert caffe_proto.caffe_pb2 is caffe_pb2
    assert caffe_pb2.DESCRIPTOR.package == "caffe"


# ---------------------------------------------------------------------------
# BVLC defaults (as upstream declares them)

BVLC_DEFAULTS = [
    ("ConvolutionParameter", "bias_term", True),
    ("ConvolutionParameter", "group", 1),
    ("ConvolutionParameter", "axis", 1),
    ("PoolingParameter", "pool", caffe_pb2.PoolingParameter.MAX),
    ("PoolingParameter", "stride", 1),
    ("PoolingParameter", "round_mode", caffe_pb2.PoolingParameter.CEIL),
    ("BatchNormParameter", "eps", 1e-5),
    ("BatchNormParameter", "moving_average_fraction", 0.999),
    ("LRNParameter", "local_size", 5),
    ("LRNParameter", "alpha", 1.0),
    ("LRNParameter", "beta", 0.75),
    ("LRNParameter", "k", 1.0),
    ("LRNParameter", "norm_region", caffe_pb2.LRNParameter.ACROSS_CHANNELS),
    ("InnerProductParameter", "axis", 1),
    ("InnerProductParameter", "bias_term", True),
    ("InnerProductParameter", "transpose", False),
    ("SoftmaxParameter", "axis", 1),
    ("ConcatParameter", "axis", 1),
    ("ConcatParameter", "concat_dim", 1),
    ("EltwiseParameter", "operation", caffe_pb2.EltwiseParameter.SUM),
    ("EltwiseParameter", "stable_prod_grad", True),
    ("FlattenParameter", "axis", 1),
    ("FlattenParameter", "end_axis", -1),
    ("ReshapeParameter", "axis", 0),
    ("ReshapeParameter", "num_axes", -1),
    ("ScaleParameter", "axis", 1),
    ("ScaleParameter", "num_axes", 1),
    ("ScaleParameter", "bias_term", False),
    ("CropParameter", "axis", 2),
    ("DropoutParameter", "dropout_ratio", 0.5),
    ("FillerParameter", "type", "constant"),
    ("FillerParameter", "std", 1.0),
    ("FillerParameter", "sparse", -1),
    ("MVNParameter", "eps", 1e-9),
    ("ParamSpec", "lr_mult", 1.0),
    ("ParamSpec", "decay_mult", 1.0),
    ("NetState", "phase", caffe_pb2.TEST),
    ("LossParameter", "normalization", caffe_pb2.LossParameter.VALID),
    ("ELUParameter", "alpha", 1.0),
    ("SwishParameter", "beta", 1.0),
    ("ExpParameter", "base", -1.0),
    ("PythonParameter", "param_str", ""),
    ("ImageDataParameter", "batch_size", 1),
    ("DataParameter", "prefetch", 4),
    ("DataParameter", "backend", caffe_pb2.DataParameter.LEVELDB),
    ("V0LayerParameter", "biasterm", True),
    ("V0LayerParameter", "det_crop_mode", "warp"),
]


@pytest.mark.parametrize(
    "message,field,expected",
    BVLC_DEFAULTS,
    ids=[f"{m}.{f}" for m, f, _ in BVLC_DEFAULTS],
)
def test_bvlc_default(message, field, expected):
    instance = getattr(caffe_pb2, message)()
    value = getattr(instance, field)
    if isinstance(expected, float):
        assert value == pytest.approx(expected, rel=1e-6)
    else:
        assert value == expected
    assert not instance.HasField(field)


# ---------------------------------------------------------------------------
# BVLC field numbers / labels / types that .caffemodel decoding relies on

BVLC_NUMBERS = [
    ("NetParameter", "name", 1),
    ("NetParameter", "layers", 2),
    ("NetParameter", "input", 3),
    ("NetParameter", "input_dim", 4),
    ("NetParameter", "input_shape", 8),
    ("NetParameter", "layer", 100),
    ("LayerParameter", "name", 1),
    ("LayerParameter", "type", 2),
    ("LayerParameter", "bottom", 3),
    ("LayerParameter", "top", 4),
    ("LayerParameter", "loss_weight", 5),
    ("LayerParameter", "param", 6),
    ("LayerParameter", "blobs", 7),
    ("LayerParameter", "include", 8),
    ("LayerParameter", "exclude", 9),
    ("LayerParameter", "phase", 10),
    ("LayerParameter", "propagate_down", 11),
    ("LayerParameter", "transform_param", 100),
    ("LayerParameter", "loss_param", 101),
    ("LayerParameter", "convolution_param", 106),
    ("LayerParameter", "pooling_param", 121),
    ("LayerParameter", "batch_norm_param", 139),
    ("LayerParameter", "input_param", 143),
    ("LayerParameter", "recurrent_param", 146),
    ("LayerParameter", "swish_param", 147),
    ("LayerParameter", "clip_param", 148),
    ("V1LayerParameter", "layer", 1),
    ("V1LayerParameter", "bottom", 2),
    ("V1LayerParameter", "top", 3),
    ("V1LayerParameter", "name", 4),
    ("V1LayerParameter", "type", 5),
    ("V1LayerParameter", "blobs", 6),
    ("V1LayerParameter", "blobs_lr", 7),
    ("V1LayerParameter", "weight_decay", 8),
    ("V1LayerParameter", "param", 1001),
    ("V1LayerParameter", "blob_share_mode", 1002),
    ("V0LayerParameter", "blobs", 50),
    ("V0LayerParameter", "hdf5_output_param", 1001),
    ("BlobProto", "num", 1),
    ("BlobProto", "channels", 2),
    ("BlobProto", "height", 3),
    ("BlobProto", "width", 4),
    ("BlobProto", "data", 5),
    ("BlobProto", "diff", 6),
    ("BlobProto", "shape", 7),
    ("BlobProto", "double_data", 8),
    ("BlobProto", "double_diff", 9),
    ("BlobShape", "dim", 1),
]


@pytest.mark.parametrize(
    "message,field,number",
    BVLC_NUMBERS,
    ids=[f"{m}.{f}" for m, f, _ in BVLC_NUMBERS],
)
def test_bvlc_field_number(message, field, number):
    assert _field(getattr(caffe_pb2, message), field).number == number


@pytest.mark.parametrize(
    "message,field,type_",
    [
        ("BlobProto", "data", FieldDescriptor.TYPE_FLOAT),
        ("BlobProto", "diff", FieldDescriptor.TYPE_FLOAT),
        ("BlobProto", "double_data", FieldDescriptor.TYPE_DOUBLE),
        ("BlobProto", "double_diff", FieldDescriptor.TYPE_DOUBLE),
        ("BlobShape", "dim", FieldDescriptor.TYPE_INT64),
    ],
)
def test_blob_arrays_are_packed(message, field, type_):
    descriptor = _field(getattr(caffe_pb2, message), field)
    assert descriptor.type == type_
    assert descriptor.is_repeated
    assert descriptor.is_packed


def test_blob_data_wire_format_is_packed():
    # Field 5, wire type 2 (length-delimited), 8 bytes of little-endian floats.
    blob = caffe_pb2.BlobProto(data=[1.0, -2.5])
    expected = b"\x2a\x08" + struct.pack("<2f", 1.0, -2.5)
    assert blob.SerializeToString() == expected
    # And a V1-era blob with the 4-D header round-trips.
    legacy = caffe_pb2.BlobProto(num=1, channels=2, height=1, width=1)
    legacy.data.extend([0.5, 0.25])
    again = caffe_pb2.BlobProto.FromString(legacy.SerializeToString())
    assert (again.num, again.channels, again.height, again.width) == (1, 2, 1, 1)
    assert list(again.data) == [0.5, 0.25]


def test_legacy_shape_fields_are_int32():
    for name in ("num", "channels", "height", "width"):
        assert _field(caffe_pb2.BlobProto, name).type == FieldDescriptor.TYPE_INT32


def test_v1_layer_type_enum():
    v1 = caffe_pb2.V1LayerParameter
    assert v1.CONVOLUTION == 4
    assert v1.INNER_PRODUCT == 14
    assert v1.POOLING == 17
    assert v1.RELU == 18
    assert v1.SOFTMAX_LOSS == 21
    assert v1.DECONVOLUTION == 39
    assert v1.THRESHOLD == 31


def test_clip_fields_are_required():
    for name in ("min", "max"):
        assert _field(caffe_pb2.ClipParameter, name).is_required


# ---------------------------------------------------------------------------
# Fork additions (numbers documented in caffe_proto/FORKS.md)

FORK_NUMBERS = [
    ("FillerParameter", "diag_val", 9),          # FlowNet 2
    ("LayerParameter", "annotated_data_param", 200),
    ("LayerParameter", "multibox_loss_param", 201),
    ("LayerParameter", "permute_param", 202),
    ("LayerParameter", "prior_box_param", 203),
    ("LayerParameter", "detection_output_param", 204),
    ("LayerParameter", "detection_evaluate_param", 205),
    ("LayerParameter", "norm_param", 206),
    ("LayerParameter", "bn_param", 45),
    ("LayerParameter", "dense_image_data_param", 46),
    ("LayerParameter", "upsample_param", 150),
    ("LayerParameter", "interp_param", 10143),
    ("LayerParameter", "shuffle_channel_param", 164),
    ("LayerParameter", "roi_pooling_param", 8266711),
    ("LayerParameter", "reorg_param", 149),
    ("LayerParameter", "yolo_detection_output_param", 601),
    ("LayerParameter", "yolov3_detection_output_param", 602),
    ("LossParameter", "weight_by_label_freqs", 10003),
    ("LossParameter", "class_weighting", 4),
    ("DropoutParameter", "scale_train", 2),
    ("PoolingParameter", "ceil_mode", 10013),
    ("TransformationParameter", "resize_param", 8),
    ("TransformationParameter", "distort_param", 13),
    ("TransformationParameter", "expand_param", 14),
    ("TransformationParameter", "emit_constraint", 10),
]


@pytest.mark.parametrize(
    "message,field,number",
    FORK_NUMBERS,
    ids=[f"{m}.{f}" for m, f, _ in FORK_NUMBERS],
)
def test_fork_field_number(message, field, number):
    assert _field(getattr(caffe_pb2, message), field).number == number


def test_fork_numbers_do_not_shadow_bvlc():
    # Every number is unique within each message (protoc enforces this too,
    # but a regenerate that skipped validation would not).
    for message in caffe_pb2.DESCRIPTOR.message_types_by_name.values():
        numbers = [f.number for f in message.fields]
        assert len(numbers) == len(set(numbers)), message.full_name


def test_fork_defaults():
    assert caffe_pb2.PriorBoxParameter().flip is True
    assert caffe_pb2.PriorBoxParameter().offset == pytest.approx(0.5)
    assert caffe_pb2.PriorBoxParameter.CENTER_SIZE == 2
    assert caffe_pb2.DetectionOutputParameter().code_type == (
        caffe_pb2.PriorBoxParameter.CORNER
    )
    assert caffe_pb2.NonMaximumSuppressionParameter().nms_threshold == (
        pytest.approx(0.3)
    )
    assert caffe_pb2.NormalizeParameter().eps == pytest.approx(1e-10)
    assert caffe_pb2.InterpParameter().zoom_factor == 1
    assert caffe_pb2.InterpParameter().shrink_factor == 1
    assert caffe_pb2.UpsampleParameter().scale == 2
    assert caffe_pb2.ShuffleChannelParameter().group == 1
    assert caffe_pb2.ROIPoolingParameter().spatial_scale == 1.0
    assert caffe_pb2.BNParameter().bn_mode == caffe_pb2.BNParameter.LEARN


def test_fork_text_snippet_parses():
    text = """
    name: "forks"
    layer { name: "up" type: "Upsample" bottom: "x" bottom: "mask" top: "y"
            upsample_param { scale: 2 upsample_h: 45 upsample_w: 60 } }
    layer { name: "bn" type: "BN" bottom: "y" top: "y"
            bn_param { bn_mode: INFERENCE scale_filler { type: "constant" value: 1 }
                       slope_filler { value: 1 } frozen: true momentum: 0.95 } }
    layer { name: "interp" type: "Interp" bottom: "y" top: "z"
            interp_param { zoom_factor: 8 pad_beg: 0 pad_end: 0 } }
    layer { name: "prior" type: "PriorBox" bottom: "z" bottom: "data" top: "p"
            prior_box_param { min_size: 30 max_size: 60 aspect_ratio: 2
                              flip: true clip: false variance: 0.1 step: 8 } }
    layer { name: "roi" type: "ROIPooling" bottom: "z" bottom: "rois" top: "r"
            roi_pooling_param { pooled_h: 6 pooled_w: 6 spatial_scale: 0.0625 } }
    """
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    assert net.layer[0].upsample_param.upsample_h == 45
    assert net.layer[1].bn_param.bn_mode == caffe_pb2.BNParameter.INFERENCE
    assert net.layer[2].interp_param.zoom_factor == 8
    assert list(net.layer[3].prior_box_param.aspect_ratio) == [2.0]
    assert net.layer[4].roi_pooling_param.pooled_h == 6
    # Binary round trip keeps everything, renumbered fields included.
    again = caffe_pb2.NetParameter.FromString(net.SerializeToString())
    assert again == net


# ---------------------------------------------------------------------------
# Every real-world prototxt in the shared corpus parses


@pytest.mark.parametrize("path", corpus_params(sorted(CORPUS.rglob("*.prototxt"))))
def test_corpus_prototxt_parses(path):
    text = path.read_text(encoding="utf-8")
    net = caffe_pb2.NetParameter()
    # Merge (not Parse): some files legitimately repeat optional fields.
    text_format.Merge(text, net)
    assert len(net.layer) + len(net.layers) > 0
