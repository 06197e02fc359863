"""Caffe's losses and Accuracy, forward as Caffe computes them (TRAIN-phase lowering).

Each class is copied verbatim into generated source (codegen.py), with the functions and constants of this file it
uses: they import only torch, math and typing."""

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

FLT_MIN = 1.17549435e-38         # softmax_loss_layer.cpp clips probabilities at FLT_MIN


LOG_THRESHOLD = 1e-20            # kLOG_THRESHOLD of loss_layer.hpp (infogain, multinomial logistic)


def _clipped_below(x: torch.Tensor, low: float) -> torch.Tensor:
    """max(x, low) in value, x in gradient: Caffe's backward of log(max(p, threshold)) ignores the clip."""
    return x + (x.clamp(min=low) - x).detach()


def _labels(label: torch.Tensor, shape: List[int]) -> torch.Tensor:
    return label.detach().reshape(shape).long()


def _normalizer(mode: str, outer: int, inner: int, valid: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """get_normalizer of the loss layers: FULL, VALID (the non-ignored count), BATCH_SIZE or NONE; at least 1."""
    if mode == "FULL" or (mode == "VALID" and valid is None):
        value = float(outer * inner)
    elif mode == "VALID":
        return valid.sum().to(like.dtype).clamp(min=1.0)
    elif mode == "BATCH_SIZE":
        value = float(outer)
    else:
        value = 1.0
    return torch.tensor(max(1.0, value), dtype=like.dtype, device=like.device)


class _ClassScores(nn.Module):
    """Scores along `axis` with one integer label per other position (Caffe's outer x inner layout)."""

    def __init__(self, axis: int, ignore_label: Optional[int]):
        super().__init__()
        self.axis = axis
        self.ignore_label = ignore_label

    def labelled(self, x: torch.Tensor, label: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The labels shaped like x without `axis`, ignored ones replaced by 0, and the mask of valid ones
        (None when no label is ignored)."""
        shape = list(x.shape[:self.axis]) + list(x.shape[self.axis + 1:])
        labels = _labels(label, shape)
        if self.ignore_label is None:
            return labels, None
        valid = labels != self.ignore_label
        return torch.where(valid, labels, torch.zeros_like(labels)), valid

    def counts(self, x: torch.Tensor) -> Tuple[int, int]:
        return math.prod(x.shape[:self.axis]), math.prod(x.shape[self.axis + 1:])


class SoftmaxWithLoss(_ClassScores):
    """softmax_loss_layer.cpp: -sum over valid positions of log(max(softmax(x)[label], FLT_MIN)) / normalizer;
    gradient (softmax - onehot) / normalizer at valid positions, 0 at ignored ones. The optional second output
    is the softmax, through which Caffe's backward sends nothing."""

    def __init__(self, axis: int, normalization: str, ignore_label: Optional[int], with_softmax: bool):
        super().__init__(axis, ignore_label)
        self.normalization = normalization
        self.with_softmax = with_softmax

    def forward(self, x: torch.Tensor, label: torch.Tensor):
        labels, valid = self.labelled(x, label)
        log_p = F.log_softmax(x, self.axis)
        picked = _clipped_below(log_p.gather(self.axis, labels.unsqueeze(self.axis)).squeeze(self.axis),
                                math.log(FLT_MIN))
        if valid is not None:
            picked = picked * valid
        loss = -picked.sum() / _normalizer(self.normalization, *self.counts(x), valid, x)
        if self.with_softmax:
            return loss, F.softmax(x.detach(), self.axis)
        return loss


class InfogainLoss(_ClassScores):
    """infogain_loss_layer.cpp: p = softmax(x); -sum_l H[label, l] * log(max(p_l, 1e-20)) over valid
    positions / normalizer; gradient (p * rowsum(H)[label] - H[label]) / normalizer. H is the third input or,
    read from `infogain_loss_param.source`, the `infogain` buffer."""

    def __init__(self, axis: int, normalization: str, ignore_label: Optional[int], with_softmax: bool,
                 labels: int, stored_matrix: bool):
        super().__init__(axis, ignore_label)
        self.normalization = normalization
        self.with_softmax = with_softmax
        if stored_matrix:
            self.register_buffer("infogain", torch.zeros(labels, labels))
        else:
            self.infogain = None

    def forward(self, x: torch.Tensor, label: torch.Tensor, matrix: Optional[torch.Tensor] = None):
        labels, valid = self.labelled(x, label)
        h = (matrix if matrix is not None else self.infogain).detach()
        num_labels = x.shape[self.axis]
        rows = h.reshape(num_labels, num_labels)[labels]                     # (..., L) per position
        log_p = _clipped_below(F.log_softmax(x, self.axis), math.log(LOG_THRESHOLD)).movedim(self.axis, -1)
        per_position = -(rows * log_p).sum(-1)
        if valid is not None:
            per_position = per_position * valid
        loss = per_position.sum() / _normalizer(self.normalization, *self.counts(x), valid, x)
        if self.with_softmax:
            return loss, F.softmax(x.detach(), self.axis)
        return loss


class SigmoidCrossEntropyLoss(nn.Module):
    """sigmoid_cross_entropy_loss_layer.cpp: -(x * (t - [x >= 0]) - log(1 + exp(x - 2x[x >= 0]))) summed over
    the elements whose target is not ignored, / normalizer; autograd's gradient is Caffe's sigmoid(x) - t."""

    def __init__(self, normalization: str, ignore_label: Optional[int]):
        super().__init__()
        self.normalization = normalization
        self.ignore_label = ignore_label

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = target.detach().reshape(x.shape).to(x.dtype)
        positive = (x >= 0).to(x.dtype)
        elements = -(x * (t - positive) - torch.log(1 + torch.exp(x - 2 * x * positive)))
        valid: Optional[torch.Tensor] = None
        if self.ignore_label is not None:
            valid = t.long() != self.ignore_label
            elements = elements * valid
        outer = x.shape[0]
        return elements.sum() / _normalizer(self.normalization, outer, x.numel() // max(outer, 1), valid, x)


class EuclideanLoss(nn.Module):
    """euclidean_loss_layer.cpp: sum((a - b)^2) / N / 2; both inputs get gradients (Caffe's +/- diff / N)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        diff = a - b.reshape(a.shape)
        return (diff * diff).sum() / a.shape[0] / 2


class HingeLoss(nn.Module):
    """hinge_loss_layer.cpp: t = max(0, 1 + s * x) with s = -1 at each sample's label and 1 elsewhere, over
    the flattened sample; sum(t) / N (L1) or sum(t^2) / N (L2). Caffe's L1 gradient sign(t) * s is 0 where
    t is 0, as relu's is."""

    def __init__(self, norm: str):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        num = x.shape[0]
        flat = x.reshape(num, -1)
        labels = _labels(label, [num, 1])
        sign = torch.ones_like(flat).scatter(1, labels, -1.0)
        margins = F.relu(1 + sign * flat)
        total = margins.sum() if self.norm == "L1" else (margins * margins).sum()
        return total / num


class ContrastiveLoss(nn.Module):
    """contrastive_loss_layer.cpp: d^2 = |a - b|^2 per pair; similar pairs add d^2, dissimilar ones
    max(margin - d, 0)^2, or max(margin - d^2, 0) with legacy_version; the sum / 2N. Caffe's backward divides
    by d + 1e-4 where the derivative of d divides by d; that is the gradient given here."""

    def __init__(self, margin: float, legacy_version: bool):
        super().__init__()
        self.margin = margin
        self.legacy_version = legacy_version

    def forward(self, a: torch.Tensor, b: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
        num = a.shape[0]
        diff = a.reshape(num, -1) - b.reshape(num, -1)
        distance_sq = (diff * diff).sum(1)
        is_similar = _labels(similar, [num]) != 0
        if self.legacy_version:
            dissimilar = F.relu(self.margin - distance_sq)
        else:
            distance = distance_sq.detach().sqrt()
            # Value: d. Gradient: diff / (d + 1e-4), from d^2's gradient 2 * diff.
            distance = distance + (distance_sq - distance_sq.detach()) / (2 * (distance + 1e-4))
            dissimilar = F.relu(self.margin - distance) ** 2
        return torch.where(is_similar, distance_sq, dissimilar).sum() / num / 2


class MultinomialLogisticLoss(nn.Module):
    """multinomial_logistic_loss_layer.cpp: -sum log(max(p[label], 1e-20)) / N over probabilities p;
    gradient -1 / (N * max(p[label], 1e-20)) at the label."""

    def forward(self, p: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        num = p.shape[0]
        picked = p.reshape(num, -1).gather(1, _labels(label, [num, 1]))
        return -torch.log(_clipped_below(picked, LOG_THRESHOLD)).sum() / num


class SmoothL1Loss(nn.Module):
    """py-faster-rcnn smooth_L1_loss_layer.cu: d = w_in * (a - b); f(d) = 0.5 * sigma^2 * d^2 where |d| <
    1 / sigma^2, else |d| - 0.5 / sigma^2; sum(w_out * f(d)) / N. Gradient w_in * w_out * f'(d) / N to a and
    its negative to b; none to the weights."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma2 = sigma * sigma

    def forward(self, a: torch.Tensor, b: torch.Tensor, inside: Optional[torch.Tensor] = None,
                outside: Optional[torch.Tensor] = None) -> torch.Tensor:
        d = a - b.reshape(a.shape)
        if inside is not None:
            d = inside.detach().reshape(a.shape) * d
        size = d.abs()
        errors = torch.where(size < 1.0 / self.sigma2, 0.5 * d * d * self.sigma2, size - 0.5 / self.sigma2)
        if outside is not None:
            errors = outside.detach().reshape(a.shape) * errors
        return errors.sum() / a.shape[0]


class Accuracy(_ClassScores):
    """accuracy_layer.cpp: a position is right when fewer than top_k + 1 scores are >= its label's score
    (its own included, so ties count against it); the share of right positions among the valid ones (0 when
    none), and with a second output the same per class (0 for a class with no position). No gradient."""

    def __init__(self, top_k: int, axis: int, ignore_label: Optional[int], per_class: bool):
        super().__init__(axis, ignore_label)
        self.top_k = top_k
        self.per_class = per_class

    def forward(self, x: torch.Tensor, label: torch.Tensor):
        x = x.detach()
        labels, valid = self.labelled(x, label)
        scores = x.movedim(self.axis, -1)
        truth = scores.gather(-1, labels.unsqueeze(-1))
        right = (scores >= truth).sum(-1) <= self.top_k
        if valid is None:
            valid = torch.ones_like(right)
        right = right & valid
        accuracy = right.sum().to(x.dtype) / valid.sum().clamp(min=1).to(x.dtype)
        if not self.per_class:
            return accuracy
        num_labels = x.shape[self.axis]
        seen = torch.bincount(labels[valid], minlength=num_labels).to(x.dtype)
        hits = torch.bincount(labels[right], minlength=num_labels).to(x.dtype)
        return accuracy, torch.where(seen > 0, hits / seen.clamp(min=1), torch.zeros_like(seen))
