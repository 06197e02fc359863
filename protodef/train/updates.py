"""Caffe's update rules (src/caffe/solvers/*_solver.cpp), as torch foreach ops on groups of blobs.

Each rule turns the regularised gradients ("diffs") of a group of blobs sharing one local rate into the values
Caffe subtracts from them, updating the rule's history in place. The arithmetic follows Caffe's CPU code step
by step: caffe_cpu_axpby(a, x, b, y) is y = b*y then y += a*x, powx(., 2) is a square, powx(., 0.5) a root.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import SchemaError

f32 = np.float32
Tensors = list[torch.Tensor]


@dataclass(frozen=True)
class Hyper:
    """The solver fields the rules read, as Caffe's float values."""

    momentum: float
    momentum2: float
    delta: float
    rms_decay: float


@dataclass(frozen=True)
class UpdateRule:
    name: str
    slots: int        # history blobs per learnable blob; Caffe stores slot s of blob i at s * count + i
    compute: Callable[[Tensors, list[Tensors], Hyper, float, int], Tensors]


RULES: dict[str, UpdateRule] = {}


def update_rule(name: str, *, slots: int = 1):
    def register(function):
        RULES[name] = UpdateRule(name, slots, function)
        return function
    return register


def rule_named(name: str, where=None) -> UpdateRule:
    if name not in RULES:
        raise SchemaError("unknown solver type", where=where, expected=" / ".join(RULES), found=repr(name))
    return RULES[name]


def _decay_into(history: Tensors, keep: float, values: Tensors, add: float) -> None:
    """history = keep * history + add * values (caffe_cpu_axpby)."""
    torch._foreach_mul_(history, keep)
    torch._foreach_add_(history, values, alpha=add)


@update_rule("SGD")
def sgd(diffs: Tensors, history: list[Tensors], hyper: Hyper, local_rate: float, iteration: int) -> Tensors:
    """history = momentum * history + local_rate * diff; the update is the history (so the rate is inside
    the momentum, unlike torch.optim.SGD)."""
    (momentum_history,) = history
    _decay_into(momentum_history, hyper.momentum, diffs, local_rate)
    return momentum_history


@update_rule("Nesterov")
def nesterov(diffs: Tensors, history: list[Tensors], hyper: Hyper, local_rate: float, iteration: int) -> Tensors:
    (momentum_history,) = history
    previous = [h.clone() for h in momentum_history]
    _decay_into(momentum_history, hyper.momentum, diffs, local_rate)
    # step back, then over-step: (1 + momentum) * history - momentum * previous
    _decay_into(previous, float(-f32(hyper.momentum)), momentum_history, float(f32(1) + f32(hyper.momentum)))
    return previous


@update_rule("AdaGrad")
def adagrad(diffs: Tensors, history: list[Tensors], hyper: Hyper, local_rate: float, iteration: int) -> Tensors:
    (squares,) = history
    torch._foreach_add_(squares, torch._foreach_mul(diffs, diffs))
    return _scaled_by_root(diffs, squares, hyper.delta, local_rate)


@update_rule("RMSProp")
def rmsprop(diffs: Tensors, history: list[Tensors], hyper: Hyper, local_rate: float, iteration: int) -> Tensors:
    (squares,) = history
    _decay_into(squares, hyper.rms_decay, torch._foreach_mul(diffs, diffs), float(f32(1) - f32(hyper.rms_decay)))
    return _scaled_by_root(diffs, squares, hyper.delta, local_rate)


def _scaled_by_root(diffs: Tensors, squares: Tensors, delta: float, local_rate: float) -> Tensors:
    """local_rate * diff / (sqrt(squares) + delta)."""
    roots = torch._foreach_sqrt(squares)
    torch._foreach_add_(roots, delta)
    update = torch._foreach_div(diffs, roots)
    torch._foreach_mul_(update, local_rate)
    return update


@update_rule("AdaDelta", slots=2)
def adadelta(diffs: Tensors, history: list[Tensors], hyper: Hyper, local_rate: float, iteration: int) -> Tensors:
    gradient_squares, update_squares = history
    keep, add = hyper.momentum, float(f32(1) - f32(hyper.momentum))
    _decay_into(gradient_squares, keep, torch._foreach_mul(diffs, diffs), add)
    ratio = torch._foreach_add(update_squares, hyper.delta)
    torch._foreach_div_(ratio, torch._foreach_add(gradient_squares, hyper.delta))
    torch._foreach_sqrt_(ratio)
    update = torch._foreach_mul(diffs, ratio)
    _decay_into(update_squares, keep, torch._foreach_mul(update, update), add)
    torch._foreach_mul_(update, local_rate)
    return update


@update_rule("Adam", slots=2)
def adam(diffs: Tensors, history: list[Tensors], hyper: Hyper, local_rate: float, iteration: int) -> Tensors:
    first, second = history
    beta1, beta2 = f32(hyper.momentum), f32(hyper.momentum2)
    _decay_into(first, float(beta1), diffs, float(f32(1) - beta1))
    _decay_into(second, float(beta2), torch._foreach_mul(diffs, diffs), float(f32(1) - beta2))
    t = iteration + 1   # Caffe: the update at iteration 0 is Adam's step 1
    correction = f32(np.sqrt(1.0 - float(beta2) ** t) / (1.0 - float(beta1) ** t))
    roots = torch._foreach_sqrt(second)
    torch._foreach_add_(roots, hyper.delta)
    update = torch._foreach_div(first, roots)
    torch._foreach_mul_(update, float(f32(local_rate) * correction))
    return update


def clip_gradients(diffs: Tensors, clip: float) -> None:
    """Caffe's ClipGradients: scale every diff by clip / L2 norm of all of them, when that norm exceeds clip."""
    if clip < 0 or not diffs:
        return
    norms = torch._foreach_norm(diffs)
    total = float(torch.linalg.vector_norm(torch.stack([n.to(diffs[0].device) for n in norms])))
    if total > clip:
        torch._foreach_mul_(diffs, float(f32(clip) / f32(total)))


def regularize(params: Tensors, diffs: Tensors, local_decay: float, kind: str) -> None:
    """Caffe's Regularize: diff += local_decay * data (L2) or local_decay * sign(data) (L1)."""
    if not local_decay:
        return
    if kind == "L2":
        torch._foreach_add_(diffs, params, alpha=local_decay)
    else:
        torch._foreach_add_(diffs, torch._foreach_sign(params), alpha=local_decay)


REGULARIZATION_TYPES = ("L2", "L1")
