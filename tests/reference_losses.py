"""NumPy transcriptions of Caffe's loss layers and Accuracy, Forward_cpu and Backward_cpu, loop for loop.

Each loss function takes the bottoms and `loss_weight` (the top's diff, as Net::Backward leaves it) and returns
(loss top, [bottom diffs]) in float64; a diff is None where Caffe does not back-propagate (labels, weights).
Sources: BVLC caffe src/caffe/layers/*_loss_layer.cpp and accuracy_layer.cpp; SmoothL1Loss from
py-faster-rcnn's caffe-fast-rcnn smooth_L1_loss_layer.cu.
"""
from __future__ import annotations

import numpy as np

FLT_MIN = float(np.finfo(np.float32).tiny)
LOG_THRESHOLD = 1e-20


def _outer_inner(shape, axis):
    axis = axis % len(shape)
    return int(np.prod(shape[:axis])), int(np.prod(shape[axis + 1:])), shape[axis]


def normalizer(mode: str, outer: int, inner: int, valid_count: int) -> float:
    """get_normalizer (valid_count -1: no count kept)."""
    if mode == "FULL":
        value = outer * inner
    elif mode == "VALID":
        value = outer * inner if valid_count == -1 else valid_count
    elif mode == "BATCH_SIZE":
        value = outer
    else:
        value = 1
    return max(1.0, float(value))


def _softmax(x, axis):
    shifted = x - x.max(axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis, keepdims=True)


def softmax_with_loss(x, label, *, axis=1, normalization="VALID", ignore_label=None, loss_weight=1.0):
    """softmax_loss_layer.cpp; returns (loss, [dx, None], prob)."""
    x = np.asarray(x, np.float64)
    outer, inner, channels = _outer_inner(x.shape, axis)
    prob = _softmax(x, axis % x.ndim).reshape(outer, channels, inner)
    labels = np.asarray(label).reshape(-1)
    loss, count = 0.0, 0
    diff = prob.copy()
    for i in range(outer):
        for j in range(inner):
            value = int(labels[i * inner + j])
            if ignore_label is not None and value == ignore_label:
                diff[i, :, j] = 0
                continue
            loss -= np.log(max(prob[i, value, j], FLT_MIN))
            diff[i, value, j] -= 1
            count += 1
    norm = normalizer(normalization, outer, inner, count)
    return loss / norm, [diff.reshape(x.shape) * loss_weight / norm, None], prob.reshape(x.shape)


def sigmoid_cross_entropy_loss(x, target, *, normalization="BATCH_SIZE", ignore_label=None, loss_weight=1.0):
    x = np.asarray(x, np.float64).reshape(-1)
    t = np.asarray(target, np.float64).reshape(-1)
    loss, valid = 0.0, 0
    diff = 1 / (1 + np.exp(-x)) - t
    for i in range(x.size):
        if ignore_label is not None and int(t[i]) == ignore_label:
            diff[i] = 0
            continue
        positive = float(x[i] >= 0)
        loss -= x[i] * (t[i] - positive) - np.log(1 + np.exp(x[i] - 2 * x[i] * positive))
        valid += 1
    outer = np.asarray(target).shape[0]
    norm = normalizer(normalization, outer, x.size // outer, valid)
    return loss / norm, [diff.reshape(np.shape(target)) * loss_weight / norm, None]


def euclidean_loss(a, b, *, loss_weight=1.0):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    num = a.shape[0]
    diff = a - b.reshape(a.shape)
    loss = float((diff * diff).sum()) / num / 2
    return loss, [loss_weight / num * diff, (-loss_weight / num * diff).reshape(b.shape)]


def hinge_loss(x, label, *, norm="L1", loss_weight=1.0):
    x = np.asarray(x, np.float64)
    num = x.shape[0]
    dim = x.size // num
    work = x.reshape(num, dim).copy()
    labels = np.asarray(label).reshape(-1)
    for i in range(num):
        work[i, int(labels[i])] *= -1
    work = np.maximum(0, 1 + work)
    loss = work.sum() / num if norm == "L1" else (work * work).sum() / num
    for i in range(num):
        work[i, int(labels[i])] *= -1
    diff = np.sign(work) * loss_weight / num if norm == "L1" else work * loss_weight * 2 / num
    return float(loss), [diff.reshape(x.shape), None]


def contrastive_loss(a, b, similar, *, margin=1.0, legacy_version=False, loss_weight=1.0):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    num = a.shape[0]
    channels = a.size // num
    diff = (a - b).reshape(num, channels)
    pair = np.asarray(similar).reshape(-1)
    dist_sq = (diff * diff).sum(1)
    loss = 0.0
    for i in range(num):
        if int(pair[i]):
            loss += dist_sq[i]
        elif legacy_version:
            loss += max(margin - dist_sq[i], 0.0)
        else:
            loss += max(margin - np.sqrt(dist_sq[i]), 0.0) ** 2
    loss = loss / num / 2
    diffs = []
    for sign in (1, -1):
        alpha = sign * loss_weight / num
        out = np.zeros_like(diff)
        for j in range(num):
            if int(pair[j]):
                out[j] = alpha * diff[j]
                continue
            if legacy_version:
                mdist, beta = margin - dist_sq[j], -alpha
            else:
                dist = np.sqrt(dist_sq[j])
                mdist = margin - dist
                beta = -alpha * mdist / (dist + 1e-4)
            out[j] = beta * diff[j] if mdist > 0 else 0
        diffs.append(out.reshape(a.shape))
    return float(loss), diffs + [None]


def infogain_loss(x, label, matrix, *, axis=1, normalization="VALID", ignore_label=None, loss_weight=1.0):
    """infogain_loss_layer.cpp (softmax inside); returns (loss, [dx, None, None])."""
    x = np.asarray(x, np.float64)
    outer, inner, num_labels = _outer_inner(x.shape, axis)
    prob = _softmax(x, axis % x.ndim).reshape(outer, num_labels, inner)
    h = np.asarray(matrix, np.float64).reshape(num_labels, num_labels)
    labels = np.asarray(label).reshape(-1)
    row_sums = h.sum(1)
    loss, count = 0.0, 0
    diff = np.zeros_like(prob)
    for i in range(outer):
        for j in range(inner):
            value = int(labels[i * inner + j])
            if ignore_label is not None and value == ignore_label:
                continue
            for label_index in range(num_labels):
                loss -= h[value, label_index] * np.log(max(prob[i, label_index, j], LOG_THRESHOLD))
                diff[i, label_index, j] = prob[i, label_index, j] * row_sums[value] - h[value, label_index]
            count += 1
    norm = normalizer(normalization, outer, inner, count)
    return loss / norm, [diff.reshape(x.shape) * loss_weight / norm, None, None]


def multinomial_logistic_loss(p, label, *, loss_weight=1.0):
    p = np.asarray(p, np.float64)
    num = p.shape[0]
    flat = p.reshape(num, -1)
    labels = np.asarray(label).reshape(-1)
    loss = 0.0
    diff = np.zeros_like(flat)
    scale = -loss_weight / num
    for i in range(num):
        prob = max(flat[i, int(labels[i])], LOG_THRESHOLD)
        loss -= np.log(prob)
        diff[i, int(labels[i])] = scale / prob
    return loss / num, [diff.reshape(p.shape), None]


def smooth_l1_loss(a, b, inside=None, outside=None, *, sigma=1.0, loss_weight=1.0):
    a = np.asarray(a, np.float64)
    sigma2 = sigma * sigma
    d = a - np.asarray(b, np.float64).reshape(a.shape)
    if inside is not None:
        d = np.asarray(inside, np.float64).reshape(a.shape) * d
    small = np.abs(d) < 1.0 / sigma2
    errors = np.where(small, 0.5 * d * d * sigma2, np.abs(d) - 0.5 / sigma2)
    slopes = np.where(small, sigma2 * d, np.sign(d))
    if inside is not None:
        errors = np.asarray(outside, np.float64).reshape(a.shape) * errors
    num = a.shape[0]
    diffs = []
    for sign in (1, -1):
        out = sign * loss_weight / num * slopes
        if inside is not None:
            out = out * np.asarray(inside, np.float64).reshape(a.shape)
            out = out * np.asarray(outside, np.float64).reshape(a.shape)
        diffs.append(out)
    extra = [None, None] if inside is not None else []
    return float(errors.sum()) / num, [diffs[0], diffs[1].reshape(np.shape(b))] + extra


def accuracy(x, label, *, top_k=1, axis=1, ignore_label=None):
    """accuracy_layer.cpp; returns (accuracy, per-class accuracy)."""
    x = np.asarray(x, np.float64)
    outer, inner, num_labels = _outer_inner(x.shape, axis)
    scores = x.reshape(outer, num_labels, inner)
    labels = np.asarray(label).reshape(-1)
    right, count = 0, 0
    seen, hits = np.zeros(num_labels), np.zeros(num_labels)
    for i in range(outer):
        for j in range(inner):
            value = int(labels[i * inner + j])
            if ignore_label is not None and value == ignore_label:
                continue
            seen[value] += 1
            truth = scores[i, value, j]
            better = -1
            k = 0
            while k < num_labels and better < top_k:
                better += scores[i, k, j] >= truth
                k += 1
            if better < top_k:
                right += 1
                hits[value] += 1
            count += 1
    per_class = np.where(seen > 0, hits / np.maximum(seen, 1), 0)
    return (right / count if count else 0.0), per_class
