"""Tests for protodef.fillers: Caffe's weight fillers, checked by their statistics and exact kernels."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from protodef.errors import SchemaError, ShapeError
from protodef.fillers import fill


def spec(kind: str, **fields) -> SimpleNamespace:
    return SimpleNamespace(type=kind, **fields)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_constant():
    out = fill(spec("constant", value=0.25), (3, 4), rng())
    assert out.dtype == np.float32 and out.shape == (3, 4)
    assert np.all(out == np.float32(0.25))


def test_missing_attributes_take_filler_parameter_defaults():
    assert np.all(fill(SimpleNamespace(), (5,), rng()) == 0)              # type 'constant', value 0
    out = fill(SimpleNamespace(type="uniform"), (20_000,), rng())        # min 0, max 1
    assert out.min() >= 0 and out.max() <= 1
    assert abs(out.mean() - 0.5) < 0.02


def test_uniform_range_and_moments():
    out = fill(spec("uniform", min=-3.0, max=5.0), (200, 500), rng(1))
    assert out.dtype == np.float32
    assert out.min() >= -3.0 and out.max() <= 5.0
    assert out.min() < -2.99 and out.max() > 4.99
    assert abs(out.mean() - 1.0) < 0.03
    assert abs(out.std() - 8.0 / math.sqrt(12)) < 0.03


def test_gaussian_moments():
    out = fill(spec("gaussian", mean=2.0, std=0.5, sparse=-1), (300, 400), rng(2))
    assert abs(out.mean() - 2.0) < 0.01
    assert abs(out.std() - 0.5) < 0.01


def test_gaussian_sparse_keeps_sparse_over_num_outputs():
    # Caffe keeps each weight with probability sparse / shape(0).
    out = fill(spec("gaussian", mean=0.0, std=1.0, sparse=10), (40, 5000), rng(3))
    kept = np.count_nonzero(out) / out.size
    assert abs(kept - 10 / 40) < 0.01
    survivors = out[out != 0]
    assert abs(survivors.std() - 1.0) < 0.03
    assert np.count_nonzero(fill(spec("gaussian", sparse=0), (8, 8), rng())) == 0


def test_positive_unitball_rows_sum_to_one():
    out = fill(spec("positive_unitball"), (6, 3, 4, 5), rng(4))
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out.reshape(6, -1).sum(axis=1), np.ones(6), rtol=1e-5)
    assert abs(out.mean() - 1 / 60) < 2e-3


@pytest.mark.parametrize("norm, n", [(0, 3 * 3 * 3), (1, 16 * 3 * 3), (2, (27 + 144) / 2),
                                     ("FAN_IN", 27), ("FAN_OUT", 144), ("AVERAGE", 85.5)])
def test_xavier_scale_follows_variance_norm(norm, n):
    # Shape (16, 3, 3, 3): fan_in = count / shape(0) = 27, fan_out = count / shape(1) = 144.
    out = fill(spec("xavier", variance_norm=norm), (16, 3, 3, 3), rng(5))
    out = np.concatenate([out.ravel()] + [fill(spec("xavier", variance_norm=norm), (16, 3, 3, 3), rng(s)).ravel()
                                          for s in range(6, 60)])
    bound = math.sqrt(3.0 / n)
    assert np.abs(out).max() <= bound * (1 + 1e-6)
    assert np.abs(out).max() > bound * 0.99
    assert abs(out.std() - bound / math.sqrt(3)) < 0.03 * bound


def test_xavier_on_2d_and_1d_blobs():
    # 2-D (outputs, inputs): fan_in = shape(1); fan_out = shape(0).  1-D: fan_in = 1, fan_out = count.
    out = fill(spec("xavier", variance_norm=1), (50, 2000), rng(6))
    assert abs(np.abs(out).max() - math.sqrt(3.0 / 50)) < 1e-3
    out = fill(spec("xavier"), (2000, 50), rng(7))
    assert abs(np.abs(out).max() - math.sqrt(3.0 / 50)) < 1e-3
    out = fill(spec("xavier", variance_norm=1), (30_000,), rng(8))
    assert abs(np.abs(out).max() - math.sqrt(3.0 / 30_000)) < 1e-4


@pytest.mark.parametrize("norm, n", [(0, 64 * 9), (1, 128 * 9), (2, (576 + 1152) / 2)])
def test_msra_std(norm, n):
    out = fill(spec("msra", variance_norm=norm), (128, 64, 3, 3), rng(9))
    assert abs(out.mean()) < 0.01 * math.sqrt(2.0 / n)
    assert abs(out.std() / math.sqrt(2.0 / n) - 1) < 0.01


def _bilinear_reference(k: int) -> np.ndarray:
    """Caffe's bilinear kernel written out directly from its formula, one value at a time."""
    f = math.ceil(k / 2)
    c = (k - 1) / (2 * f)
    return np.array([[(1 - abs(x / f - c)) * (1 - abs(y / f - c)) for x in range(k)] for y in range(k)])


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7, 8, 16])
def test_bilinear_kernel(k):
    out = fill(spec("bilinear"), (3, 2, k, k), rng())
    assert out.shape == (3, 2, k, k) and out.dtype == np.float32
    want = _bilinear_reference(k)
    for i in range(3):
        for j in range(2):
            np.testing.assert_allclose(out[i, j], want, rtol=0, atol=1e-6)


def test_bilinear_known_values():
    k4 = fill(spec("bilinear"), (1, 1, 4, 4), rng())[0, 0]
    np.testing.assert_allclose(k4[0], [0.0625, 0.1875, 0.1875, 0.0625], atol=1e-7)
    np.testing.assert_allclose(k4[1], [0.1875, 0.5625, 0.5625, 0.1875], atol=1e-7)
    k3 = fill(spec("bilinear"), (1, 1, 3, 3), rng())[0, 0]
    np.testing.assert_allclose(k3, [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], atol=1e-7)


def test_bilinear_shape_requirements():
    with pytest.raises(ShapeError) as info:
        fill(spec("bilinear"), (4, 4), rng())
    assert str(info.value) == "the 'bilinear' filler needs a 4-D blob: expected 4 axes, found (4, 4)"
    with pytest.raises(ShapeError) as info:
        fill(spec("bilinear"), (1, 1, 3, 4), rng())
    assert str(info.value) == "the 'bilinear' filler needs a square kernel: found (1, 1, 3, 4)"


@pytest.mark.parametrize("kind", ["uniform", "gaussian", "xavier", "msra", "positive_unitball"])
def test_same_seed_same_values(kind):
    a = fill(spec(kind), (8, 4, 3, 3), rng(42))
    b = fill(spec(kind), (8, 4, 3, 3), rng(42))
    c = fill(spec(kind), (8, 4, 3, 3), rng(43))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_type_is_a_schema_error():
    with pytest.raises(SchemaError) as info:
        fill(spec("orthogonal"), (2, 2), rng())
    assert str(info.value) == ("unknown filler type 'orthogonal': expected one of constant, gaussian, "
                               "positive_unitball, uniform, xavier, msra, bilinear, diagonal, found orthogonal")


def test_parameter_errors():
    with pytest.raises(SchemaError, match="the 'xavier' filler does not support sparse: expected -1, found 3"):
        fill(spec("xavier", sparse=3), (2, 2), rng())
    with pytest.raises(SchemaError, match="needs min <= max"):
        fill(spec("uniform", min=1.0, max=0.0), (2, 2), rng())
    with pytest.raises(SchemaError, match="standard deviation above 0"):
        fill(spec("gaussian", std=0.0), (2, 2), rng())
    with pytest.raises(SchemaError, match=r"sparse \(5\) exceeds the number of outputs \(2\)"):
        fill(spec("gaussian", sparse=5), (2, 2), rng())
    with pytest.raises(SchemaError, match="unknown variance_norm 7"):
        fill(spec("msra", variance_norm=7), (2, 2), rng())
    with pytest.raises(ShapeError, match="at least one element"):
        fill(spec("xavier"), (0, 3), rng())


def test_caffe_filler_parameter_messages_work():
    from caffe_proto import caffe_pb2
    param = caffe_pb2.FillerParameter(type="msra", variance_norm=caffe_pb2.FillerParameter.FAN_OUT)
    out = fill(param, (256, 8, 3, 3), rng(11))
    assert abs(out.std() / math.sqrt(2.0 / (256 * 9)) - 1) < 0.02
    assert np.all(fill(caffe_pb2.FillerParameter(), (2, 3), rng()) == 0)   # proto default: constant 0


def test_diagonal_averages_each_output_over_its_own_input_channel():
    """FlowNet 2's DiagonalFiller: kernel (n, n) holds diag_val[n] / kernel area (1 past the list), all else 0;
    its deploy nets end with such a 1x1 convolution scaling the flow."""
    out = fill(spec("diagonal", diag_val=[2.0, -1.0]), (3, 4, 2, 3), rng())
    for n in range(3):
        for c in range(4):
            want = ([2.0, -1.0, 1.0][n] / 6.0) if n == c else 0.0
            np.testing.assert_array_equal(out[n, c], np.full((2, 3), np.float32(want)))
    from caffe_proto import caffe_pb2
    param = caffe_pb2.FillerParameter(type="diagonal", diag_val=[0.5, 4])
    np.testing.assert_array_equal(fill(param, (2, 2), rng()), np.float32([[0.5, 0], [0, 4]]))
    with pytest.raises(ShapeError, match="2 to 4 axes"):
        fill(spec("diagonal"), (3,), rng())
