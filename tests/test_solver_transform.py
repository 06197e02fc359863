"""protodef.data_transform against a per-pixel transcription of Caffe's DataTransformer::Transform."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import protodef
from caffe_proto import caffe_pb2
from protodef.errors import GraphError, SchemaError, ShapeError

NET = """
name: "t"
layer { name: "train_data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.5 mirror: true crop_size: 4 mean_file: "mean.binaryproto" }
  data_param { source: "train_lmdb" batch_size: 2 backend: LMDB } }
layer { name: "test_data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 4 mean_value: 10 mean_value: 20 mean_value: 30 }
  data_param { source: "test_lmdb" batch_size: 2 backend: LMDB } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }
"""


def caffe_transform(datum, crop, h_off, w_off, mirror, scale=1.0, mean_image=None, mean_values=None):
    """data_transformer.cpp, Transform(const Datum&, Dtype*), element by element."""
    channels, height, width = datum.shape
    h, w = (crop, crop) if crop else (height, width)
    out = np.zeros((channels, h, w), np.float32)
    for c, i, j in itertools.product(range(channels), range(h), range(w)):
        top_j = w - 1 - j if mirror else j
        element = np.float32(datum[c, h_off + i, w_off + j])
        if mean_image is not None:
            out[c, i, top_j] = (element - mean_image[c, h_off + i, w_off + j]) * np.float32(scale)
        elif mean_values is not None:
            out[c, i, top_j] = (element - np.float32(mean_values[c])) * np.float32(scale)
        else:
            out[c, i, top_j] = element * np.float32(scale)
    return out


@pytest.fixture
def net_dir(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    mean = np.random.default_rng(1).uniform(0, 255, (3, 6, 7)).astype(np.float32)
    blob = caffe_pb2.BlobProto(num=1, channels=3, height=6, width=7)
    blob.data.extend(mean.ravel().tolist())
    (tmp_path / "mean.binaryproto").write_bytes(blob.SerializeToString())
    return tmp_path, mean


def images(n=1):
    return np.random.default_rng(2).integers(0, 256, (n, 3, 6, 7)).astype(np.uint8)


def test_test_phase_crops_the_centre_and_subtracts_mean_values(net_dir):
    directory, _mean = net_dir
    transform = protodef.data_transform(directory / "net.prototxt", "TEST")
    image = images()[0]
    expected = caffe_transform(image, 4, 1, 1, False, mean_values=[10, 20, 30])
    assert np.array_equal(transform(image), expected)


def test_train_phase_crops_and_mirrors_at_random_with_the_mean_file(net_dir):
    directory, mean = net_dir
    transform = protodef.data_transform(directory / "net.prototxt", "train", seed=0)
    batch = images(24)
    out = transform(batch)
    assert out.shape == (24, 3, 4, 4) and out.dtype == np.float32
    seen = set()
    for image, result in zip(batch, out):
        matches = [(h, w, m) for h, w, m in itertools.product(range(3), range(4), (False, True))
                   if np.array_equal(result, caffe_transform(image, 4, h, w, m, 0.5, mean_image=mean))]
        assert len(matches) == 1
        seen.add(matches[0])
    assert {m for _, _, m in seen} == {False, True} and len({(h, w) for h, w, _ in seen}) > 4


def test_transform_errors(net_dir, tmp_path):
    directory, _mean = net_dir
    transform = protodef.data_transform(directory / "net.prototxt", "TEST")
    with pytest.raises(ShapeError, match="smaller than crop_size"):
        transform(np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(ShapeError, match="one mean_value, or one per channel"):
        transform(np.zeros((2, 6, 6), np.uint8))
    with pytest.raises(GraphError, match="exactly one data layer"):
        protodef.data_transform(directory / "net.prototxt", "TEST", layer="train_data")
    both = NET.replace('mean_value: 10 mean_value', 'mean_file: "m" mean_value: 10 mean_value')
    (tmp_path / "both.prototxt").write_text(both)
    with pytest.raises(SchemaError, match="mean_file and mean_value"):
        protodef.data_transform(tmp_path / "both.prototxt", "TEST")


def test_data_transform_does_not_import_torch(net_dir):
    import subprocess
    import sys

    from support import REPO
    directory, _mean = net_dir
    code = ("import sys, protodef\n"
            f"protodef.data_transform({str(directory / 'net.prototxt')!r}, 'TEST')\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
