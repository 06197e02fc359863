"""protodef.Solver against the NumPy transcription of Caffe's solvers (reference_solvers.py): every solver
type under every learning-rate policy, with iter_size 2, changing rates, shared, frozen and statistics blobs."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference_solvers import (
    TINY_LOSS_WEIGHTS,
    TINY_MULTS,
    ReferenceSolver,
    solver_fields,
    solver_text,
    tiny_forward_backward,
    tiny_params,
)
from support import assert_close
from torch import nn

import protodef
from protodef.errors import GraphError, ParseError, SchemaError, WeightsError

TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
POLICIES = {
    "fixed": {},
    "step": {"stepsize": 5, "gamma": 0.5},
    "exp": {"gamma": 0.93},
    "inv": {"gamma": 0.1, "power": 0.75},
    "multistep": {"stepvalue": (4, 9, 15), "gamma": 0.3},
    "poly": {"max_iter": 30, "power": 1.5},
    "sigmoid": {"gamma": 0.3, "stepsize": 10},
}
RULE_FIELDS = {
    "SGD": {"base_lr": 0.05, "momentum": 0.9},
    "Nesterov": {"base_lr": 0.05, "momentum": 0.9},
    "AdaGrad": {"base_lr": 0.05},
    "RMSProp": {"base_lr": 0.01, "rms_decay": 0.95},
    "AdaDelta": {"base_lr": 1.0, "momentum": 0.95, "delta": 1e-6},
    "Adam": {"base_lr": 0.01, "momentum": 0.9, "momentum2": 0.999},
}


class TinyNet(nn.Module):
    """The torch twin of reference_solvers' tiny net, carrying what protodef.load gives a training module."""

    input_names = ["data", "target"]
    output_names = ["loss1", "loss2"]
    loss_weights = dict(zip(output_names, TINY_LOSS_WEIGHTS))

    def __init__(self, params: list[np.ndarray]):
        super().__init__()
        w1, b1, w2, b2, b3, stats = (torch.tensor(p) for p in params)
        self.ip1 = nn.Linear(w1.shape[1], w1.shape[0])
        self.ip2 = nn.Linear(w2.shape[1], w2.shape[0])
        self.ip3 = nn.Module()
        self.ip3.weight = self.ip2.weight            # Caffe: param { name: "shared" } in ip2 and ip3
        self.ip3.bias = nn.Parameter(b3.clone())
        self.stats = nn.Module()
        self.stats.register_buffer("mean", stats.clone())
        with torch.no_grad():
            for target, value in ((self.ip1.weight, w1), (self.ip1.bias, b1), (self.ip2.weight, w2),
                                  (self.ip2.bias, b2)):
                target.copy_(value)
        names = ["ip1.weight", "ip1.bias", "ip2.weight", "ip2.bias", "ip3.weight", "ip3.bias", "stats.mean"]
        layers = ["ip1", "ip1", "ip2", "ip2", "ip3", "ip3", "stats"]
        lr = [1.0, 2.0, 1.0, 0.0, 1.0, 1.0, 0.0]
        decay = [1.0, 0.0, 1.0, 1.0, 1.0, 0.5, 1.0]
        self.caffe_param_specs = [
            {"layer": layer, "blob": int(name.endswith(("bias",))), "parameter": name, "lr_mult": l,
             "decay_mult": d, "share": "shared" if name.endswith("2.weight") or name == "ip3.weight" else None,
             "buffer": name == "stats.mean"}
            for layer, name, l, d in zip(layers, names, lr, decay)]

    def forward(self, data, target):
        pre = self.ip1(data)
        hidden = F.relu(pre)
        if self.training:
            with torch.no_grad():
                self.stats.mean.mul_(0.9).add_(pre.mean(0))
        n = data.shape[0]
        y = self.ip2(hidden)
        z = F.linear(hidden, self.ip3.weight, self.ip3.bias)
        return ((y - target) ** 2).sum() / (2 * n), ((z - target) ** 2).sum() / (2 * n)


def learnable_arrays(module: TinyNet) -> list[np.ndarray]:
    names = ["ip1.weight", "ip1.bias", "ip2.weight", "ip2.bias", "ip3.bias", "stats.mean"]
    state = module.state_dict(keep_vars=True)
    return [state[n].detach().numpy().copy() for n in names]


def batches(seed: int, count: int, n: int = 4, d: int = 5, k: int = 3) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"data": rng.standard_normal((n, d)).astype(np.float32),
             "target": rng.standard_normal((n, k)).astype(np.float32)} for _ in range(count)]


def make_solver(tmp_path, fields: dict, seed: int = 0) -> protodef.Solver:
    path = tmp_path / "solver.prototxt"
    path.write_text(solver_text(fields))
    return protodef.Solver(path, module=TinyNet(tiny_params(seed)))


def run_side_by_side(tmp_path, fields: dict, iterations: int = 20, seed: int = 0):
    solver = make_solver(tmp_path, fields, seed)
    reference = ReferenceSolver(fields, tiny_params(seed), TINY_MULTS["lr"], TINY_MULTS["decay"])
    data = batches(seed + 1, iterations * fields["iter_size"])
    for it in range(iterations):
        passes = data[it * fields["iter_size"]:(it + 1) * fields["iter_size"]]
        expected_lr = reference_rate(reference)
        assert solver.lr == pytest.approx(float(expected_lr), rel=1e-6), f"lr at iteration {it}"
        loss = solver.step(passes if len(passes) > 1 else passes[0])
        total, accumulated = np.float32(0), None
        for batch in passes:
            objective, diffs = tiny_forward_backward(reference.params, batch["data"], batch["target"])
            total += objective
            accumulated = diffs if accumulated is None else [a + g for a, g in zip(accumulated, diffs)]
        reference.apply_update(accumulated)
        assert_close(np.float32(loss), total / np.float32(len(passes)), f"loss at iteration {it}")
        for i, (ours, theirs) in enumerate(zip(learnable_arrays(solver.module), reference.params)):
            assert_close(ours, theirs, f"blob {i} after iteration {it}")
    assert solver.iter == reference.iter == iterations
    assert solver.current_step == reference.current_step
    return solver, reference


def reference_rate(reference: ReferenceSolver) -> np.float32:
    from reference_solvers import caffe_learning_rate
    return caffe_learning_rate(reference.p, reference.iter, reference.current_step)[0]


@pytest.mark.parametrize("kind, policy", list(itertools.product(TYPES, POLICIES)))
def test_every_rule_and_policy_matches_caffe(tmp_path, kind, policy):
    variant = TYPES.index(kind) + list(POLICIES).index(policy)
    fields = solver_fields(type=kind, lr_policy=policy, iter_size=2, weight_decay=0.01,
                           regularization_type="L1" if variant % 3 == 0 else "L2",
                           clip_gradients=0.8 if variant % 2 else -1.0, **RULE_FIELDS[kind], **POLICIES[policy])
    solver, reference = run_side_by_side(tmp_path, fields)
    ours = [h.numpy() for slot in solver.history for h in slot]
    assert len(ours) == len(reference.history)
    for i, (a, b) in enumerate(zip(ours, reference.history)):
        assert_close(a, b, f"history blob {i}")


def test_iter_size_one_takes_a_single_mapping(tmp_path):
    fields = solver_fields(type="SGD", lr_policy="step", stepsize=3, gamma=0.1, base_lr=0.1, momentum=0.9,
                           weight_decay=0.005)
    run_side_by_side(tmp_path, fields, iterations=8)


def test_momentum_is_caffes_not_torchs(tmp_path):
    """Caffe's history holds lr * gradient: after the rate drops, the momentum carries the old rate.
    torch.optim.SGD multiplies the whole buffer by the new rate, so the two differ from the first drop on."""
    fields = solver_fields(type="SGD", lr_policy="step", stepsize=2, gamma=0.1, base_lr=0.1, momentum=0.9)
    solver = make_solver(tmp_path, fields)
    twin = TinyNet(tiny_params(0))
    twin.ip2.bias.requires_grad_(False)     # lr_mult 0
    optimizer = torch.optim.SGD([{"params": [twin.ip1.weight, twin.ip2.weight, twin.ip3.bias], "mult": 1.0},
                                 {"params": [twin.ip1.bias], "mult": 2.0}], lr=0.1, momentum=0.9)
    for it, batch in enumerate(batches(3, 4)):
        solver.step(batch)
        for group in optimizer.param_groups:
            group["lr"] = 0.1 * group["mult"] * 0.1 ** (it // 2)
        optimizer.zero_grad()
        loss1, loss2 = twin(*(torch.from_numpy(batch[n]) for n in twin.input_names))
        (loss1 + 0.5 * loss2).backward()
        optimizer.step()
        gap = float((solver.module.ip1.weight - twin.ip1.weight).detach().abs().max())
        assert (gap < 1e-6) if it < 2 else (gap > 1e-4), f"iteration {it}: gap {gap}"


def test_smoothed_loss_is_caffes_running_mean(tmp_path):
    fields = solver_fields(type="SGD", lr_policy="fixed", base_lr=0.05)
    path = tmp_path / "solver.prototxt"
    path.write_text(solver_text(fields) + "average_loss: 3\n")
    solver = protodef.Solver(path, module=TinyNet(tiny_params(0)))
    losses = [solver.step(b) for b in batches(5, 6)]
    assert solver.smoothed_loss == pytest.approx(np.mean(losses[-3:]), rel=1e-5)
    assert set(solver.outputs) == {"loss1", "loss2"}


def test_legacy_solver_type_enum(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text('solver_type: NESTEROV\nbase_lr: 0.1\nlr_policy: "fixed"\nmomentum: 0.9\n')
    solver = protodef.Solver(path, module=TinyNet(tiny_params(0)))
    assert solver.rule.name == "Nesterov"


@pytest.mark.parametrize("text, error, words", [
    ('type: "Adamax"\nlr_policy: "fixed"\n', SchemaError, "unknown solver type"),
    ('lr_policy: "cosine"\n', SchemaError, "unknown lr_policy"),
    ('lr_policy: "step"\n', SchemaError, "stepsize > 0"),
    ('lr_policy: "fixed"\ntype: "AdaGrad"\nmomentum: 0.9\n', SchemaError, "momentum cannot be used"),
    ('lr_policy: "fixed"\ntype: "SGD"\nsolver_type: ADAM\n', SchemaError, "both given"),
    ('lr_policy: "fixed"\nregularization_type: "L3"\n', SchemaError, "regularization_type"),
    ('lr_policy: "fixed"\nnet: "a.prototxt"\ntrain_net: "b.prototxt"\n', SchemaError, "more than one train net"),
    ('lr_policy: "fixed"\nbase_lr: {\n', ParseError, "solver.prototxt:2"),
    ('lr_policy: "fixed"\nlearning_rate: 0.1\n', SchemaError, "solver.prototxt:2"),
])
def test_bad_solver_files_are_reported(tmp_path, text, error, words):
    path = tmp_path / "solver.prototxt"
    path.write_text(text)
    with pytest.raises(error, match=words):
        protodef.Solver(path, module=TinyNet(tiny_params(0)))


def test_bad_batches_are_reported(tmp_path):
    solver = make_solver(tmp_path, solver_fields(type="SGD", lr_policy="fixed", base_lr=0.1, iter_size=2))
    batch = batches(0, 2)
    with pytest.raises(GraphError, match="iter_size = 2"):
        solver.step(batch[0])
    with pytest.raises(GraphError, match="data layers"):
        solver.step([{"data": batch[0]["data"]}] * 2)
    assert solver.iter == 0


def test_restore_rejects_a_state_of_another_solver(tmp_path):
    sgd = make_solver(tmp_path, solver_fields(type="SGD", lr_policy="fixed", base_lr=0.1))
    sgd.step(batches(0, 1)[0])
    _model, state = sgd.snapshot(tmp_path / "sgd")
    adam = make_solver(tmp_path, solver_fields(type="Adam", lr_policy="fixed", base_lr=0.1))
    with pytest.raises(SchemaError, match="history blobs"):
        adam.restore(state)
    (tmp_path / "broken.solverstate").write_bytes(b"\xff\xff\xff")
    with pytest.raises(WeightsError, match="not a valid"):
        sgd.restore(tmp_path / "broken.solverstate")
    from caffe_proto import caffe_pb2
    message = caffe_pb2.SolverState.FromString(open(state, "rb").read())
    message.iter = 77
    message.history[2].shape.dim[:] = [7, 3]              # ip2's weight is 3 x 7
    (tmp_path / "reshaped.solverstate").write_bytes(message.SerializeToString())
    before = learnable_arrays(sgd.module)
    with pytest.raises(WeightsError, match="history blob 2 has the wrong shape"):
        sgd.restore(tmp_path / "reshaped.solverstate")
    assert sgd.iter == 1 and all(np.array_equal(a, b) for a, b in zip(before, learnable_arrays(sgd.module)))
