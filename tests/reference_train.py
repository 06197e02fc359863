"""NumPy transcription of one Caffe TRAIN iteration (forward and backward) of a small LeNet-style net with
BatchNorm + Scale and ceil-mode MAX pooling: the oracle that the PyTorch TRAIN lowering and the solver are
checked against.

The net is LENET_BN (`lenet_bn_prototxt(batch)` gives its text, with Input layers for `data` and `label`):

    data (N, 3, 10, 10) -> conv1 (Convolution 4 x 3x3; params lr_mult 1 / 2, decay_mult 1 / 0)
      -> bn1 (BatchNorm, batch statistics, moving_average_fraction 0.9) -> scale1 (Scale with bias)
      -> relu1 (in place) -> pool1 (MAX 3x3 stride 2: 8x8 -> 4x4, Caffe's ceil rounding, last window clipped)
      -> ip1 (InnerProduct 10; params lr_mult 1 / 2, decay_mult 1 / 0) -> relu2
      -> ip2 (InnerProduct 5; params lr_mult 0.5 / 1, decay_mult 2 / 0)
      -> loss (SoftmaxWithLoss with label, normalization VALID, loss_weight 1)  and  accuracy (Accuracy)

API:

    loss, grads, new_bn_blobs = forward_backward(params, bn_blobs, batch)

- `params`: {layer: [blob, ...]} for conv1, scale1, ip1 and ip2, in Caffe's blob order and layout
  (conv1: weight (4, 3, 3, 3), bias (4,); scale1: scale (4,), bias (4,); ip1: weight (10, 64), bias (10,);
  ip2: weight (5, 10), bias (5,));
- `bn_blobs`: {"bn1": [mean (4,), variance (4,), scale_factor (1,)]}, Caffe's three BatchNorm blobs;
- `batch`: {"data": (N, 3, 10, 10), "label": (N,) of class indices 0..4 (floats or integers)};
- returns Caffe's objective for the iteration (the loss top times its loss_weight 1, a float), the gradient of
  that objective for every blob in `params` (same structure; what Caffe's backward leaves in the blobs' diffs,
  before any solver step), and the BatchNorm blobs after the forward pass updated them.

Everything is computed in float64 (Caffe computes in float32; the difference is far below the 1e-4 tolerance).
`random_params`, `random_bn_blobs` and `random_batch` make seeded inputs. The formulas are those of Caffe's
conv_layer / batch_norm_layer / scale_layer / relu_layer / pooling_layer / inner_product_layer /
softmax_loss_layer .cpp, forward and backward.
"""
from __future__ import annotations

import numpy as np
from reference_layers import caffe_pool

F64 = np.float64
FLT_MIN = float(np.finfo(np.float32).tiny)
BN_EPS = 1e-5
MOVING_AVERAGE_FRACTION = 0.9
POOL = dict(kernel=(3, 3), stride=(2, 2), pad=(0, 0), out_size=(4, 4))
LEARNED_LAYERS = ("conv1", "scale1", "ip1", "ip2")


def lenet_bn_prototxt(batch: int = 4) -> str:
    """The TRAIN net this module transcribes (layers named as in the module docstring)."""
    return f'''name: "LeNetBN"
layer {{ name: "data" type: "Input" top: "data" top: "label"
  input_param {{ shape {{ dim: {batch} dim: 3 dim: 10 dim: 10 }} shape {{ dim: {batch} }} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
  convolution_param {{ num_output: 4 kernel_size: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1"
  param {{ lr_mult: 0 }} param {{ lr_mult: 0 }} param {{ lr_mult: 0 }}
  batch_norm_param {{ moving_average_fraction: {MOVING_AVERAGE_FRACTION} }} }}
layer {{ name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param {{ bias_term: true }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
  inner_product_param {{ num_output: 10 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu2" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param {{ lr_mult: 0.5 decay_mult: 2 }} param {{ lr_mult: 1 decay_mult: 0 }}
  inner_product_param {{ num_output: 5 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy" }}
'''


def random_params(seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return {"conv1": [normal(4, 3, 3, 3, scale=0.3), normal(4, scale=0.1)],
            "scale1": [1 + normal(4, scale=0.2), normal(4, scale=0.2)],
            "ip1": [normal(10, 64, scale=0.2), normal(10, scale=0.1)],
            "ip2": [normal(5, 10, scale=0.3), normal(5, scale=0.1)]}


def random_bn_blobs(seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Statistics as Caffe stores them after some iterations: weighted sums and their total weight."""
    rng = np.random.default_rng(seed + 1)
    factor = np.float32(2.5)
    return {"bn1": [(rng.standard_normal(4) * factor).astype(np.float32),
                    (rng.uniform(0.5, 2.0, 4) * factor).astype(np.float32), np.array([factor], np.float32)]}


def random_batch(seed: int = 0, batch: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 2)
    return {"data": rng.standard_normal((batch, 3, 10, 10)).astype(np.float32),
            "label": rng.integers(0, 5, batch).astype(np.float32)}


def forward_backward(params, bn_blobs, batch):
    """One Caffe TRAIN forward and backward; see the module docstring."""
    p = {name: [np.asarray(b, F64) for b in blobs] for name, blobs in params.items()}
    x = np.asarray(batch["data"], F64)
    labels = np.asarray(batch["label"]).astype(np.int64).reshape(-1)   # static_cast<int>: truncation
    conv_w, conv_b = p["conv1"]
    windows = _windows(x, conv_w.shape[2:])
    conv = np.einsum("nchwij,ocij->nohw", windows, conv_w) + conv_b[None, :, None, None]
    normalised, inv_std, new_bn = batch_norm_train(conv, [np.asarray(b, F64) for b in bn_blobs["bn1"]])
    gamma, beta = p["scale1"]
    scaled = normalised * gamma[None, :, None, None] + beta[None, :, None, None]
    relu1 = np.maximum(scaled, 0)
    pooled, mask = max_pool(relu1, **POOL)
    flat = pooled.reshape(len(x), -1)
    ip1_w, ip1_b = p["ip1"]
    ip1 = flat @ ip1_w.T + ip1_b
    relu2 = np.maximum(ip1, 0)
    ip2_w, ip2_b = p["ip2"]
    scores = relu2 @ ip2_w.T + ip2_b
    loss, d_scores = _softmax_loss(scores, labels)

    grads = {"ip2": [d_scores.T @ relu2, d_scores.sum(0)]}
    d_ip1 = (d_scores @ ip2_w) * (ip1 > 0)
    grads["ip1"] = [d_ip1.T @ flat, d_ip1.sum(0)]
    d_relu1 = max_pool_backward((d_ip1 @ ip1_w).reshape(pooled.shape), mask, relu1.shape)
    d_scaled = d_relu1 * (scaled > 0)
    grads["scale1"] = [(d_scaled * normalised).sum((0, 2, 3)), d_scaled.sum((0, 2, 3))]
    d_conv = batch_norm_backward(d_scaled * gamma[None, :, None, None], normalised, inv_std)
    grads["conv1"] = [np.einsum("nohw,nchwij->ocij", d_conv, windows), d_conv.sum((0, 2, 3))]
    return loss, grads, {"bn1": new_bn}


def _windows(x: np.ndarray, kernel) -> np.ndarray:
    """im2col: (N, C, OH, OW, kh, kw) views of a stride-1, unpadded convolution's input windows."""
    view = np.lib.stride_tricks.sliding_window_view(x, tuple(kernel), axis=(2, 3))
    return view


def batch_norm_train(x, blobs, maf=MOVING_AVERAGE_FRACTION, eps=BN_EPS):
    """batch_norm_layer.cpp, use_global_stats false: the batch's mean and biased variance normalise (eps inside
    the square root); the blobs become maf * blob + batch statistic (variance times m / (m - 1)), the scale
    factor maf * s + 1."""
    mean_blob, variance_blob, factor = blobs
    axes = (0,) + tuple(range(2, x.ndim))
    channel = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axes)
    variance = ((x - mean.reshape(channel)) ** 2).mean(axes)
    m = x.size // x.shape[1]
    correction = m / (m - 1) if m > 1 else 1.0
    updated = [maf * mean_blob + mean, maf * variance_blob + correction * variance, maf * factor + 1]
    inv_std = 1 / np.sqrt(variance + eps)
    return (x - mean.reshape(channel)) * inv_std.reshape(channel), inv_std, updated


def batch_norm_backward(dy, y, inv_std):
    """batch_norm_layer.cpp Backward_cpu: dx = (dy - mean(dy) - mean(dy * y) * y) / sqrt(var + eps), the means
    per channel over every axis but 1."""
    axes = (0,) + tuple(range(2, dy.ndim))
    centred = dy - dy.mean(axes, keepdims=True) - (dy * y).mean(axes, keepdims=True) * y
    return centred * inv_std.reshape((1, -1) + (1,) * (dy.ndim - 2))


def max_pool(x, kernel, stride, pad, out_size):
    """pooling_layer.cpp MAX: each window's maximum and its index h * W + w in the plane, the first one in scan
    order when several tie (the mask Caffe keeps for backward)."""
    _, mask = caffe_pool(x.astype(np.float32), "MAX", kernel, stride, pad, out_size)
    index = mask.astype(np.int64)
    n, c = x.shape[:2]
    pooled = np.take_along_axis(x.reshape(n, c, -1), index.reshape(n, c, -1), 2).reshape(index.shape)
    return pooled, index


def max_pool_backward(dy, index, shape):
    """Each output's gradient goes to the input its mask names (summed where windows overlap)."""
    n, c = shape[:2]
    dx = np.zeros((n, c, shape[2] * shape[3]))
    rows = np.arange(n)[:, None, None]
    channels = np.arange(c)[None, :, None]
    np.add.at(dx, (rows, channels, index.reshape(n, c, -1)), dy.reshape(n, c, -1))
    return dx.reshape(shape)


def _softmax_loss(scores, labels):
    """softmax_loss_layer.cpp, normalization VALID with no ignore_label: normaliser N; loss weight 1."""
    shifted = scores - scores.max(1, keepdims=True)
    prob = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    count = len(labels)
    picked = prob[np.arange(count), labels]
    loss = -np.log(np.maximum(picked, FLT_MIN)).sum() / count
    d_scores = prob.copy()
    d_scores[np.arange(count), labels] -= 1
    return float(loss), d_scores / count
