"""Tests for protodef.weights: the caffemodel reader and writer."""
from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protodef.errors import InputError, WeightsError
from protodef.weights import CaffeModel, read_caffemodel, write_caffemodel

# A tiny protobuf encoder of the test's own, so files can be built field by field (V1, unpacked, broken...).

def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def ld(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def vint(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def text(number: int, value: str) -> bytes:
    return ld(number, value.encode())


def packed_floats(number: int, values) -> bytes:
    return ld(number, np.asarray(values, dtype="<f4").tobytes())


def unpacked_floats(number: int, values) -> bytes:
    return b"".join(key(number, 5) + struct.pack("<f", v) for v in values)


def unpacked_doubles(number: int, values) -> bytes:
    return b"".join(key(number, 1) + struct.pack("<d", v) for v in values)


def shape(*dims: int) -> bytes:
    return ld(7, ld(1, b"".join(varint(d) for d in dims)))


def v2_layer(name: str, kind: str, *blobs: bytes) -> bytes:
    return ld(100, text(1, name) + text(2, kind) + b"".join(ld(7, b) for b in blobs))


def write(tmp_path, data: bytes, name: str = "m.caffemodel") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def error_of(path: str) -> str:
    with pytest.raises(WeightsError) as info:
        read_caffemodel(path)
    return str(info.value)


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_keeps_names_types_shapes_and_values(tmp_path):
    rng = np.random.default_rng(7)
    layers = [
        ("conv1", "Convolution", [rng.standard_normal((8, 3, 5, 5)).astype(np.float32),
                                  rng.standard_normal(8).astype(np.float32)]),
        ("relu1", "ReLU", []),
        ("scale", "Scale", [np.array(2.5, dtype=np.float32)]),
        ("ip", "InnerProduct", [rng.standard_normal((10, 200)), np.zeros((10,), dtype=np.float64)]),
        ("empty", "Dummy", [np.zeros((0, 4), dtype=np.float32)]),
        ("naïve ünïcode", "Custom", [np.arange(6, dtype=np.int32).reshape(1, 2, 3)]),
    ]
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, layers, name="tiny net")
    model = read_caffemodel(path)
    assert isinstance(model, CaffeModel)
    assert model.name == "tiny net"
    assert [(l.name, l.type) for l in model.layers] == [(n, t) for n, t, _ in layers]
    for (_, _, blobs), got in zip(layers, model.layers):
        assert len(got.blobs) == len(blobs)
        assert got.legacy_shape == [False] * len(blobs)
        for want, have in zip(blobs, got.blobs):
            assert have.dtype == np.float32
            assert have.shape == np.shape(want)
            np.testing.assert_array_equal(have, np.asarray(want, dtype=np.float32))


def test_writer_output_is_canonical_protobuf(tmp_path):
    """Byte for byte what protobuf would write: name, then per layer name, type, blobs{data, shape}."""
    path = tmp_path / "c.caffemodel"
    weights = np.array([[1.0, -2.0]], dtype=np.float32)
    write_caffemodel(path, [("fc", "InnerProduct", [weights])], name="n")
    blob = packed_floats(5, [1.0, -2.0]) + shape(1, 2)
    assert path.read_bytes() == text(1, "n") + v2_layer("fc", "InnerProduct", blob)


def test_writer_matches_caffe_pb2_when_available(tmp_path):
    from caffe_proto import caffe_pb2
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    path = tmp_path / "pb.caffemodel"
    write_caffemodel(path, [("conv", "Convolution", [w, b])], name="pb")
    net = caffe_pb2.NetParameter()
    net.ParseFromString(path.read_bytes())
    assert net.name == "pb"
    assert [l.name for l in net.layer] == ["conv"]
    assert list(net.layer[0].blobs[0].shape.dim) == [3, 2, 2, 2]
    np.testing.assert_array_equal(np.array(net.layer[0].blobs[0].data, dtype=np.float32), w.ravel())
    np.testing.assert_array_equal(np.array(net.layer[0].blobs[1].data, dtype=np.float32), b)
    assert net.SerializeToString() == path.read_bytes()


def test_writer_replaces_the_file_atomically(tmp_path):
    path = tmp_path / "a.caffemodel"
    path.write_bytes(b"old")

    def layers():
        yield ("ok", "ReLU", [])
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_caffemodel(path, layers())
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.caffemodel"]


PROTOTXT = """
name: "tiny"
input: "data"
input_shape { dim: 1 dim: 3 dim: 6 dim: 6 }
layer {
  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 1 }
}
layer {
  name: "fc1" type: "InnerProduct" bottom: "conv1" top: "fc1"
  inner_product_param { num_output: 5 }
}
"""


def _conv2d_pad1(x, w, b):
    """Reference convolution, stride 1, padding 1 (cross-correlation as Caffe does it)."""
    _, _, h, wd = x.shape
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((1, w.shape[0], h, wd), dtype=np.float64)
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i:i + h, j:j + wd]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b[None, :, None, None]


def test_opencv_loads_written_weights_and_computes_the_same_forward(tmp_path):
    import cv2
    rng = np.random.default_rng(1234)
    conv_w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    conv_b = rng.standard_normal(4).astype(np.float32)
    fc_w = rng.standard_normal((5, 4 * 6 * 6)).astype(np.float32)
    fc_b = rng.standard_normal(5).astype(np.float32)
    prototxt = tmp_path / "tiny.prototxt"
    prototxt.write_text(PROTOTXT)
    model = tmp_path / "tiny.caffemodel"
    write_caffemodel(model, [("conv1", "Convolution", [conv_w, conv_b]), ("fc1", "InnerProduct", [fc_w, fc_b])],
                     name="tiny")

    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(model))
    net.setInput(x)
    got = net.forward("fc1")

    conv = _conv2d_pad1(x.astype(np.float64), conv_w.astype(np.float64), conv_b.astype(np.float64))
    want = conv.reshape(1, -1) @ fc_w.T.astype(np.float64) + fc_b
    assert got.shape == (1, 5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    back = read_caffemodel(model)
    np.testing.assert_array_equal(back.layers[0].blobs[0], conv_w)
    np.testing.assert_array_equal(back.layers[1].blobs[0], fc_w)


# ------------------------------------------------------------------------------------------ old formats


def test_v1_layers_with_legacy_4d_shapes(tmp_path):
    w = np.arange(12, dtype=np.float32) - 5.5
    blob_w = vint(1, 2) + vint(2, 3) + vint(3, 1) + vint(4, 2) + packed_floats(5, w)
    blob_b = vint(1, 1) + vint(2, 1) + vint(3, 1) + vint(4, 2) + packed_floats(5, [0.5, -0.5])
    v1 = (text(2, "data") + text(3, "conv1") + text(4, "conv1") + vint(5, 4)   # bottom, top, name, type
          + ld(6, blob_w) + ld(6, blob_b) + key(7, 5) + struct.pack("<f", 1.0)  # blobs, blobs_lr
          + ld(10, vint(1, 2)))                                                 # convolution_param
    v1_relu = text(4, "relu1") + vint(5, 18)
    path = write(tmp_path, text(1, "old net") + ld(2, v1) + ld(2, v1_relu) + ld(2, text(4, "x") + vint(5, 99)))
    model = read_caffemodel(path)
    assert model.name == "old net"
    assert [(l.name, l.type) for l in model.layers] == [
        ("conv1", "CONVOLUTION"), ("relu1", "RELU"), ("x", "UNKNOWN_V1_TYPE_99")]
    conv = model.layers[0]
    assert conv.legacy_shape == [True, True]
    assert conv.blobs[0].shape == (2, 3, 1, 2)
    np.testing.assert_array_equal(conv.blobs[0].ravel(), w)
    assert conv.blobs[1].shape == (1, 1, 1, 2)
    np.testing.assert_array_equal(conv.blobs[1].ravel(), [0.5, -0.5])
    assert model.layers[1].blobs == []


def test_legacy_fields_win_over_blob_shape_as_in_caffe(tmp_path):
    blob = vint(1, 1) + vint(2, 1) + vint(3, 2) + vint(4, 3) + packed_floats(5, range(6)) + shape(6)
    model = read_caffemodel(write(tmp_path, v2_layer("l", "T", blob)))
    assert model.layers[0].blobs[0].shape == (1, 1, 2, 3)
    assert model.layers[0].legacy_shape == [True]


def test_partial_legacy_shape_defaults_missing_fields_to_zero(tmp_path):
    blob = vint(3, 2) + vint(4, 3)   # only height and width: Caffe makes it (0, 0, 2, 3), no values
    model = read_caffemodel(write(tmp_path, v2_layer("l", "T", blob)))
    assert model.layers[0].blobs[0].shape == (0, 0, 2, 3)


def test_blob_without_any_shape_is_a_scalar(tmp_path):
    model = read_caffemodel(write(tmp_path, v2_layer("l", "T", packed_floats(5, [4.0]))))
    assert model.layers[0].blobs[0].shape == ()
    assert model.layers[0].blobs[0] == np.float32(4.0)


def test_v0_layers_inside_v1_layers(tmp_path):
    w = np.linspace(-1, 1, 6, dtype=np.float32)
    v0_blob = vint(1, 1) + vint(2, 1) + vint(3, 2) + vint(4, 3) + packed_floats(5, w)
    v0 = text(1, "fc6") + text(2, "innerproduct") + vint(3, 2) + ld(50, v0_blob) + key(51, 5) + b"\0\0\x80?"
    conv_v0 = text(1, "conv") + text(2, "conv")
    pad_v0 = text(1, "pad1") + text(2, "padding")
    data = (ld(2, ld(1, v0) + text(2, "fc5") + text(3, "fc6"))
            + ld(2, ld(1, conv_v0)) + ld(2, ld(1, pad_v0)))
    model = read_caffemodel(write(tmp_path, data))
    assert [(l.name, l.type) for l in model.layers] == [
        ("fc6", "INNER_PRODUCT"), ("conv", "CONVOLUTION"), ("pad1", "padding")]
    assert model.layers[0].legacy_shape == [True]
    np.testing.assert_array_equal(model.layers[0].blobs[0], w.reshape(1, 1, 2, 3))


# ------------------------------------------------------------------------------------------ encodings


def test_double_data_is_converted_to_float32(tmp_path):
    values = np.array([1.5, -2.25, 1e-3, 3.0e38], dtype=np.float64)
    packed = ld(8, values.astype("<f8").tobytes()) + shape(2, 2)
    unpacked = unpacked_doubles(8, values) + shape(4)
    model = read_caffemodel(write(tmp_path, v2_layer("d", "T", packed, unpacked)))
    first, second = model.layers[0].blobs
    assert first.dtype == np.float32 and second.dtype == np.float32
    np.testing.assert_array_equal(first, values.astype(np.float32).reshape(2, 2))
    np.testing.assert_array_equal(second, values.astype(np.float32))


def test_double_data_wins_over_float_data_as_in_caffe(tmp_path):
    blob = packed_floats(5, [9.0, 9.0]) + ld(8, np.array([1.0, 2.0]).tobytes()) + shape(2)
    model = read_caffemodel(write(tmp_path, v2_layer("d", "T", blob)))
    np.testing.assert_array_equal(model.layers[0].blobs[0], [1.0, 2.0])


def test_doubles_beyond_float32_range_become_inf_without_warnings(tmp_path):
    big = [1e300, -1e300]
    blob_packed = ld(8, np.array(big).tobytes()) + shape(2)
    blob_unpacked = unpacked_doubles(8, big) + shape(2)
    path = write(tmp_path, v2_layer("d", "T", blob_packed, blob_unpacked))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = read_caffemodel(path)
    for blob in model.layers[0].blobs:
        np.testing.assert_array_equal(blob, [np.inf, -np.inf])


def test_empty_packed_data_and_empty_blobs(tmp_path):
    path = write(tmp_path, v2_layer("e", "T", ld(5, b"") + shape(0), shape(0, 3)))
    model = read_caffemodel(path)
    assert [b.shape for b in model.layers[0].blobs] == [(0,), (0, 3)]
    # An empty BlobProto has shape () and so needs one value, as in Caffe.
    path = write(tmp_path, v2_layer("e", "T", shape(0), b""), "bad.caffemodel")
    assert error_of(path) == f"{path}: layer 'e' (T): blob 1 has 0 values but its shape () needs 1"


def test_unpacked_floats_are_read(tmp_path):
    rng = np.random.default_rng(5)
    big = rng.standard_normal(70_001).astype(np.float32)   # spans more than one scanning chunk
    small = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    blob_big = unpacked_floats(5, big) + shape(70_001)
    blob_small = shape(3) + unpacked_floats(5, small)        # shape first, values last in the blob
    blob_mixed = packed_floats(5, [1.0]) + unpacked_floats(5, [2.0, 3.0]) + packed_floats(5, [4.0]) + shape(2, 2)
    model = read_caffemodel(write(tmp_path, v2_layer("u", "T", blob_big, blob_small, blob_mixed)))
    got = model.layers[0].blobs
    np.testing.assert_array_equal(got[0], big)
    np.testing.assert_array_equal(got[1], small)
    np.testing.assert_array_equal(got[2], [[1.0, 2.0], [3.0, 4.0]])


def test_unpacked_value_with_overlong_tag(tmp_path):
    # Tag 45 (field 5, fixed32) written in two bytes: still one float.
    blob = b"\xad\x00" + struct.pack("<f", 7.0) + unpacked_floats(5, [8.0]) + shape(2)
    model = read_caffemodel(write(tmp_path, v2_layer("u", "T", blob)))
    np.testing.assert_array_equal(model.layers[0].blobs[0], [7.0, 8.0])


def test_diffs_are_skipped(tmp_path):
    blob = (packed_floats(5, [1.0, 2.0]) + packed_floats(6, [9.0, 9.0]) + unpacked_floats(6, [9.0, 9.0])
            + ld(9, np.array([9.0, 9.0]).tobytes()) + unpacked_doubles(9, [9.0, 9.0]) + shape(2))
    model = read_caffemodel(write(tmp_path, v2_layer("l", "T", blob)))
    np.testing.assert_array_equal(model.layers[0].blobs[0], [1.0, 2.0])


def test_unknown_fields_and_groups_are_skipped(tmp_path):
    layer = (text(1, "c") + text(3, "bottom") + text(4, "top") + ld(6, text(1, "p") + vint(3, 1))
             + ld(106, vint(1, 8))                        # convolution_param
             + key(200, 3) + vint(1, 5) + key(200, 4)    # a group nobody knows
             + text(2, "Convolution") + key(150, 1) + b"\0" * 8 + key(151, 5) + b"\0" * 4
             + ld(7, vint(10, 1) + shape(2) + packed_floats(5, [5.0, 6.0])))
    data = vint(5, 1) + text(3, "data") + ld(100, layer) + ld(6, vint(1, 1)) + text(1, "late name")
    model = read_caffemodel(write(tmp_path, data))
    assert model.name == "late name"
    assert [(l.name, l.type) for l in model.layers] == [("c", "Convolution")]
    np.testing.assert_array_equal(model.layers[0].blobs[0], [5.0, 6.0])


# ------------------------------------------------------------------------------------------ broken input


def _good_file() -> bytes:
    blob = packed_floats(5, np.arange(24, dtype=np.float32)) + shape(2, 3, 4)
    return text(1, "n") + v2_layer("conv1", "Convolution", blob, packed_floats(5, [1.0]) + shape(1))


def test_count_disagreeing_with_shape(tmp_path):
    path = write(tmp_path, v2_layer("conv1", "Convolution", packed_floats(5, range(12)) + shape(2, 3, 4)))
    assert error_of(path) == f"{path}: layer 'conv1' (Convolution): blob 0 has 12 values but its shape (2, 3, 4) needs 24"


def test_count_mismatch_names_the_blob_index_and_v1_layer(tmp_path):
    good = vint(1, 1) + vint(2, 1) + vint(3, 1) + vint(4, 2) + packed_floats(5, [1, 2])
    bad = vint(1, 1) + vint(2, 1) + vint(3, 2) + vint(4, 2) + packed_floats(5, [1, 2, 3])
    path = write(tmp_path, ld(2, text(4, "ip") + vint(5, 14) + ld(6, good) + ld(6, bad)))
    assert error_of(path) == f"{path}: layer 'ip' (INNER_PRODUCT): blob 1 has 3 values but its shape (1, 1, 2, 2) needs 4"


def test_missing_data_for_a_shaped_blob(tmp_path):
    path = write(tmp_path, v2_layer("w", "Scale", shape(3)))
    assert error_of(path) == f"{path}: layer 'w' (Scale): blob 0 has 0 values but its shape (3) needs 3"


def test_truncated_file(tmp_path):
    data = _good_file()
    path = write(tmp_path, data[:40])
    assert error_of(path) == (f"{path}: not a valid caffemodel: layer #0 at byte 3 declares 140 bytes "
                              f"but only 33 remain before the end of the file")


def test_every_truncation_is_a_weights_error(tmp_path):
    data = _good_file()
    path = tmp_path / "cut.caffemodel"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsError) as info:
            read_caffemodel(path)
        assert str(path) in str(info.value)


def test_length_running_past_its_parent(tmp_path):
    blob = packed_floats(5, [1.0, 2.0]) + shape(2)
    layer = text(1, "c") + text(2, "T") + key(7, 2) + varint(len(blob) + 3) + blob
    path = write(tmp_path, ld(100, layer) + ld(100, text(1, "next") + text(2, "T")))
    assert error_of(path) == (f"{path}: layer 'c' (T): not a valid caffemodel: blob 0 at byte 9 declares "
                              f"18 bytes but only 15 remain before the end of its enclosing message")


def test_wrong_wire_type_for_a_known_field(tmp_path):
    path = write(tmp_path, ld(100, vint(1, 7) + text(2, "T")))
    assert error_of(path) == (f"{path}: layer #0: not a valid caffemodel: LayerParameter.name (field 1) "
                              f"at byte 3 has wire type varint, expected length-delimited")
    path = write(tmp_path, ld(2, text(4, "old") + text(5, "CONVOLUTION")), "v1.caffemodel")
    assert error_of(path) == (f"{path}: layer 'old': not a valid caffemodel: V1LayerParameter.type (field 5) "
                              f"at byte 7 has wire type length-delimited, expected varint")
    path = write(tmp_path, v2_layer("c", "T", key(5, 1) + b"\0" * 8), "data.caffemodel")
    assert error_of(path) == (f"{path}: layer 'c' (T): not a valid caffemodel: BlobProto.data (field 5) "
                              f"at byte 11 has wire type 64-bit, expected length-delimited")


def test_absurd_declared_size_fails_before_allocating(tmp_path):
    # 10^12 floats declared in a file of a few bytes, with every enclosing length claiming to hold them.
    claim = 4 * 10**12
    data_field = key(5, 2) + varint(claim)
    blob = key(7, 2) + varint(claim + len(data_field)) + data_field
    path = write(tmp_path, key(100, 2) + varint(claim + 99) + blob)
    assert error_of(path) == (f"{path}: not a valid caffemodel: layer #0 at byte 0 declares 4000000000099 "
                              f"bytes but only 14 remain before the end of the file")
    # Consistent envelopes; only the data length lies.
    blob = shape(10**6, 10**6) + data_field + b"\0" * 4
    path = write(tmp_path, v2_layer("big", "InnerProduct", blob), "big.caffemodel")
    assert error_of(path) == (f"{path}: layer 'big' (InnerProduct): not a valid caffemodel: the BlobProto.data "
                              f"of blob 0 at byte 34 declares 4000000000000 bytes but only 4 remain before the "
                              f"end of the file")


def test_four_byte_file(tmp_path):
    path = write(tmp_path, key(5, 2) + varint(4 * 10**12)[:3])
    assert error_of(path) == (f"{path}: not a valid caffemodel: the length of NetParameter field 5 at byte 1 "
                              f"runs past the end of the file")


def test_negative_dimensions(tmp_path):
    path = write(tmp_path, v2_layer("n", "T", ld(7, ld(1, varint(2) + varint(-3))) + packed_floats(5, [1.0])))
    assert error_of(path) == f"{path}: layer 'n' (T): blob 0 has a negative dimension in its shape (2, -3)"
    path = write(tmp_path, ld(2, text(4, "v1") + ld(6, vint(1, -1) + vint(2, 1))), "legacy.caffemodel")
    assert error_of(path) == f"{path}: layer 'v1': blob 0 has a negative dimension in its shape (-1, 1, 0, 0)"


def test_too_many_axes(tmp_path):
    path = write(tmp_path, v2_layer("n", "T", ld(7, ld(1, b"\x01" * 100_000))))
    assert error_of(path) == f"{path}: layer 'n' (T): blob 0 has more than 32 axes in its shape (Caffe's limit)"


def test_packed_floats_of_odd_length(tmp_path):
    path = write(tmp_path, v2_layer("p", "T", ld(5, b"\0" * 6)))
    assert error_of(path) == (f"{path}: layer 'p' (T): not a valid caffemodel: packed BlobProto.data at byte 11 "
                              f"has 6 bytes, not a multiple of 4")


def test_not_a_caffemodel(tmp_path):
    path = write(tmp_path, PROTOTXT.lstrip().encode(), "text.caffemodel")
    assert error_of(path) == (f"{path}: not a valid caffemodel: invalid protobuf wire type 6 (field 13) at byte 0 "
                              f"(this looks like a text file; is it a prototxt?)")
    path = write(tmp_path, b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "h5.caffemodel")
    assert error_of(path) == (f"{path}: not a valid caffemodel: invalid field number 0 at byte 10 "
                              f"(this looks like an HDF5 file; only binary protobuf caffemodels are read)")
    path = write(tmp_path, vint(3, 1) + text(4, "x"), "nolayers.caffemodel")
    assert error_of(path) == f"{path}: not a caffemodel: it holds no layers"
    path = write(tmp_path, b"", "empty.caffemodel")
    assert error_of(path) == f"{path}: the file is empty, not a caffemodel"
    path = write(tmp_path, b"\xff" * 12, "ff.caffemodel")
    assert error_of(path) == f"{path}: not a valid caffemodel: a field tag at byte 0 is a varint longer than 10 bytes"
    path = write(tmp_path, b"\x00\x00", "zero.caffemodel")
    assert error_of(path) == f"{path}: not a valid caffemodel: invalid field number 0 at byte 0"


def test_unreadable_paths(tmp_path):
    missing = str(tmp_path / "missing.caffemodel")
    for path, reason in ((missing, "No such file or directory"), (str(tmp_path), "Is a directory")):
        with pytest.raises(InputError) as info:
            read_caffemodel(path)
        assert str(info.value) == f"{path}: cannot open the caffemodel: {reason}"


def test_mismatched_end_group(tmp_path):
    path = write(tmp_path, key(9, 3) + vint(1, 1) + key(8, 4))
    assert error_of(path) == (f"{path}: not a valid caffemodel: end-group marker for field 8 at byte 3 does not "
                              f"close group 9")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_corrupted_files_raise_only_weights_errors(tmp_path, data):
    original = bytearray(_good_file() + ld(2, text(4, "v1") + vint(5, 4) + ld(6, unpacked_floats(5, [1.0, 2.0])
                                                                          + vint(1, 2))))
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(original) - 1))
        original[where] = data.draw(st.integers(0, 255))
    path = tmp_path / "fuzz.caffemodel"
    path.write_bytes(bytes(original))
    try:
        model = read_caffemodel(path)
    except WeightsError as exc:
        assert str(path) in str(exc)
    else:
        for layer in model.layers:
            assert len(layer.blobs) == len(layer.legacy_shape)
            assert all(b.dtype == np.float32 for b in layer.blobs)
