"""NumPy transcription of Caffe's solvers (src/caffe/solvers/*.cpp, src/caffe/solver.cpp), the oracle for
protodef.Solver. Written from Caffe's CPU code, one blob at a time in Caffe's loop order, in float32.

    reference = ReferenceSolver(fields, params, lr_mults, decay_mults)
    reference.apply_update(diffs)       # SGDSolver::ApplyUpdate: mutates params, history, iter

`fields` is a dict of SolverParameter fields (Caffe's defaults filled in by `solver_fields`).
"""
from __future__ import annotations

import math

import numpy as np

f32 = np.float32

DEFAULTS = {"base_lr": 0.0, "lr_policy": "fixed", "gamma": 0.0, "power": 0.0, "momentum": 0.0,
            "weight_decay": 0.0, "regularization_type": "L2", "stepsize": 0, "stepvalue": (), "clip_gradients": -1.0,
            "iter_size": 1, "max_iter": 0, "type": "SGD", "delta": 1e-8, "momentum2": 0.999, "rms_decay": 0.99}


def solver_fields(**given) -> dict:
    fields = dict(DEFAULTS)
    fields.update(given)
    return fields


def solver_text(fields: dict, net: str = "") -> str:
    """The fields as solver.prototxt text."""
    lines = [f'net: "{net}"'] if net else []
    for name, value in fields.items():
        if name == "stepvalue":
            lines += [f"stepvalue: {v}" for v in value]
        elif isinstance(value, str):
            lines.append(f'{name}: "{value}"')
        else:
            lines.append(f"{name}: {value!r}")
    return "\n".join(lines) + "\n"


def caffe_learning_rate(p: dict, it: int, current_step: int) -> tuple[np.float32, int]:
    """SGDSolver::GetLearningRate, with C++'s promotions: pow(float, int) is double, pow(float, float) and
    exp(float) are float."""
    policy, base = p["lr_policy"], f32(p["base_lr"])
    gamma, power = f32(p["gamma"]), f32(p["power"])
    if policy == "fixed":
        return base, current_step
    if policy == "step":
        current_step = it // p["stepsize"]
        return f32(float(base) * math.pow(float(gamma), current_step)), current_step
    if policy == "exp":
        return f32(float(base) * math.pow(float(gamma), it)), current_step
    if policy == "inv":
        return base * np.power(f32(1) + gamma * f32(it), -power), current_step
    if policy == "multistep":
        if current_step < len(p["stepvalue"]) and it >= p["stepvalue"][current_step]:
            current_step += 1
        return f32(float(base) * math.pow(float(gamma), current_step)), current_step
    if policy == "poly":
        return base * np.power(f32(1) - f32(it) / f32(p["max_iter"]), power), current_step
    if policy == "sigmoid":
        return base * (f32(1) / (f32(1) + np.exp(-gamma * (f32(it) - f32(p["stepsize"]))))), current_step
    raise ValueError(policy)


def axpby(a, x, b, y):
    """caffe_cpu_axpby: y = b * y; y += a * x (in place)."""
    y *= f32(b)
    y += f32(a) * x


class ReferenceSolver:
    def __init__(self, fields: dict, params: list[np.ndarray], lr_mults: list[float], decay_mults: list[float]):
        self.p = fields
        self.params = params
        self.lr_mults = [f32(v) for v in lr_mults]
        self.decay_mults = [f32(v) for v in decay_mults]
        slots = 2 if fields["type"] in ("AdaDelta", "Adam") else 1
        self.history = [np.zeros_like(w) for _ in range(slots) for w in params]
        self.iter = 0
        self.current_step = 0
        self.rates: list[np.float32] = []

    def apply_update(self, diffs: list[np.ndarray]) -> None:
        diffs = [d.astype(f32).copy() for d in diffs]
        rate, self.current_step = caffe_learning_rate(self.p, self.iter, self.current_step)
        self.rates.append(rate)
        self.clip_gradients(diffs)
        for i in range(len(self.params)):
            self.normalize(diffs, i)
            self.regularize(diffs, i)
            self.compute_update_value(diffs, i, rate)
        for w, d in zip(self.params, diffs):
            w -= d
        self.iter += 1

    def clip_gradients(self, diffs):
        clip = f32(self.p["clip_gradients"])
        if clip < 0:
            return
        sumsq = f32(0)
        for d in diffs:
            sumsq += f32(np.dot(d.ravel(), d.ravel()))
        l2 = f32(np.sqrt(sumsq))
        if l2 > clip:
            for d in diffs:
                d *= clip / l2

    def normalize(self, diffs, i):
        if self.p["iter_size"] == 1:
            return
        diffs[i] *= f32(1) / f32(self.p["iter_size"])

    def regularize(self, diffs, i):
        local_decay = f32(self.p["weight_decay"]) * self.decay_mults[i]
        if not local_decay:
            return
        if self.p["regularization_type"] == "L2":
            diffs[i] += local_decay * self.params[i]
        else:
            diffs[i] += local_decay * np.sign(self.params[i]).astype(f32)

    def compute_update_value(self, diffs, i, rate):
        local_rate = f32(rate) * self.lr_mults[i]
        getattr(self, "update_" + self.p["type"].lower())(diffs, i, local_rate)

    def update_sgd(self, diffs, i, local_rate):
        h = self.history[i]
        axpby(local_rate, diffs[i], self.p["momentum"], h)
        diffs[i][...] = h

    def update_nesterov(self, diffs, i, local_rate):
        h = self.history[i]
        momentum = f32(self.p["momentum"])
        update = h.copy()
        axpby(local_rate, diffs[i], momentum, h)
        axpby(f32(1) + momentum, h, -momentum, update)
        diffs[i][...] = update

    def update_adagrad(self, diffs, i, local_rate):
        h = self.history[i]
        update = diffs[i] ** 2
        h += update
        update = np.sqrt(h) + f32(self.p["delta"])
        update = diffs[i] / update
        diffs[i][...] = local_rate * update

    def update_rmsprop(self, diffs, i, local_rate):
        h = self.history[i]
        rms_decay = f32(self.p["rms_decay"])
        update = diffs[i] ** 2
        axpby(f32(1) - rms_decay, update, rms_decay, h)
        update = np.sqrt(h) + f32(self.p["delta"])
        update = diffs[i] / update
        diffs[i][...] = local_rate * update

    def update_adadelta(self, diffs, i, local_rate):
        n = len(self.params)
        h, h_update = self.history[i], self.history[n + i]
        momentum, delta = f32(self.p["momentum"]), f32(self.p["delta"])
        update = diffs[i] ** 2
        axpby(f32(1) - momentum, update, momentum, h)
        update = delta + h_update
        temp = delta + h
        update = np.sqrt(update / temp)
        diffs[i] *= update
        update = diffs[i] ** 2
        axpby(f32(1) - momentum, update, momentum, h_update)
        diffs[i] *= local_rate

    def update_adam(self, diffs, i, local_rate):
        n = len(self.params)
        m, v = self.history[i], self.history[n + i]
        beta1, beta2 = f32(self.p["momentum"]), f32(self.p["momentum2"])
        t = self.iter + 1
        correction = f32(math.sqrt(1.0 - math.pow(float(beta2), t)) / (1.0 - math.pow(float(beta1), t)))
        axpby(f32(1) - beta1, diffs[i], beta1, m)
        axpby(f32(1) - beta2, diffs[i] * diffs[i], beta2, v)
        val_t = np.sqrt(v) + f32(self.p["delta"])
        val_t = m / val_t
        diffs[i][...] = (local_rate * correction) * val_t


# A tiny net for the solver tests, in Caffe's terms (what the torch twin in test_solver.py declares):
#   ip1 (InnerProduct D->H) -> ReLU -> ip2 (H->K) -> loss1 = EuclideanLoss(., target), loss_weight 1
#                                   -> ip3 (H->K, weight shared with ip2 by a named param) -> loss2, weight 0.5
#   stats: a BatchNorm-like statistics blob of ip1's output, moved by forward (maf 0.9), never by the solver.
# Learnable blobs in Caffe's order: ip1.w, ip1.b, ip2.w, ip2.b, ip3.b, stats (ip3.w is ip2.w's).
TINY_MULTS = {"lr": [1.0, 2.0, 1.0, 0.0, 1.0, 0.0], "decay": [1.0, 0.0, 1.0, 1.0, 0.5, 1.0]}
TINY_LOSS_WEIGHTS = (1.0, 0.5)


def tiny_params(seed: int, d: int = 5, h: int = 7, k: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(h, d), (h,), (k, h), (k,), (k,), (h,)]
    return [(rng.standard_normal(s) * 0.5).astype(f32) for s in shapes]


def tiny_forward_backward(params: list[np.ndarray], x: np.ndarray, t: np.ndarray) -> tuple[np.float32, list]:
    """Caffe's objective (sum of loss_weight * loss) and the diffs of the learnable blobs (zero for lr_mult 0
    blobs, which Caffe does not back-propagate into). Updates the statistics blob as forward does."""
    w1, b1, w2, b2, b3, stats = params
    n = x.shape[0]
    pre = x @ w1.T + b1
    hidden = np.maximum(pre, 0)
    stats *= f32(0.9)
    stats += pre.mean(axis=0)
    y, z = hidden @ w2.T + b2, hidden @ w2.T + b3
    losses = [f32(np.sum((o - t) ** 2) / f32(2 * n)) for o in (y, z)]
    dy, dz = [(o - t) / f32(n) * f32(lw) for o, lw in zip((y, z), TINY_LOSS_WEIGHTS)]
    dw2 = dy.T @ hidden + dz.T @ hidden
    dpre = (dy @ w2 + dz @ w2) * (pre > 0)
    diffs = [dpre.T @ x, dpre.sum(axis=0), dw2, np.zeros_like(b2), dz.sum(axis=0), np.zeros_like(stats)]
    objective = f32(sum(f32(lw) * loss for lw, loss in zip(TINY_LOSS_WEIGHTS, losses)))
    return objective, [d.astype(f32) for d in diffs]
