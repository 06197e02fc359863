"""Snapshots: .caffemodel + .solverstate as Caffe writes them, restored into a fresh solver to continue
exactly; a SolverState built by hand the way Caffe writes it is read."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from reference_solvers import (
    TINY_MULTS,
    ReferenceSolver,
    solver_fields,
    solver_text,
    tiny_forward_backward,
    tiny_params,
)
from support import assert_close
from test_solver import TinyNet, batches, learnable_arrays

import protodef
from caffe_proto import caffe_pb2
from protodef.errors import OutputError
from protodef.weights import read_caffemodel, write_caffemodel

ADAM = solver_fields(type="Adam", lr_policy="multistep", stepvalue=(2, 5, 7), gamma=0.5, base_lr=0.01,
                     momentum=0.9, iter_size=2, weight_decay=0.01, clip_gradients=0.7)
SGD = solver_fields(type="SGD", lr_policy="multistep", stepvalue=(1, 3), gamma=0.1, base_lr=0.1, momentum=0.9,
                    weight_decay=0.005)


def solver_for(tmp_path, fields, seed=0, extra=""):
    path = tmp_path / "solver.prototxt"
    path.write_text(solver_text(fields) + extra)
    return protodef.Solver(path, module=TinyNet(tiny_params(seed)))


def passes(data, it, size):
    chunk = data[it * size:(it + 1) * size]
    return chunk if size > 1 else chunk[0]


@pytest.mark.parametrize("fields", [ADAM, SGD], ids=["Adam", "SGD"])
def test_snapshot_restores_an_identical_continuation(tmp_path, fields):
    size, total, cut = fields["iter_size"], 9, 4
    data = batches(11, total * size)
    straight = solver_for(tmp_path, fields)
    straight_losses = [straight.step(passes(data, it, size)) for it in range(total)]

    first = solver_for(tmp_path, fields)
    for it in range(cut):
        first.step(passes(data, it, size))
    model, state = first.snapshot(tmp_path / "run")
    assert (model, state) == (f"{tmp_path}/run_iter_{cut}.caffemodel", f"{tmp_path}/run_iter_{cut}.solverstate")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    resumed = solver_for(tmp_path, fields, seed=99)     # different starting weights: the snapshot must win
    resumed.restore(state)
    assert (resumed.iter, resumed.current_step) == (cut, first.current_step)
    losses = [resumed.step(passes(data, it, size)) for it in range(cut, total)]
    assert losses == straight_losses[cut:]
    for name, tensor in straight.module.state_dict().items():
        assert torch.equal(tensor, resumed.module.state_dict()[name]), name
    for a, b in zip(sum(straight.history, []), sum(resumed.history, [])):
        assert torch.equal(a, b)


def test_solverstate_holds_what_caffe_writes(tmp_path):
    solver = solver_for(tmp_path, ADAM)
    data = batches(2, 6)
    for it in range(3):
        solver.step(passes(data, it, 2))
    model, state_path = solver.snapshot(tmp_path / "adam")
    state = caffe_pb2.SolverState.FromString(open(state_path, "rb").read())
    assert (state.iter, state.learned_net, state.current_step) == (3, model, 1)   # stepvalue 2 passed
    assert len(state.history) == 2 * 6        # Adam: m then v, for each learnable blob (ip3's weight is ip2's)
    flat = [h for slot in solver.history for h in slot]
    for blob, tensor in zip(state.history, flat):
        assert tuple(blob.shape.dim) == tuple(tensor.shape)
        assert np.array_equal(np.array(blob.data, dtype=np.float32).reshape(tensor.shape), tensor.numpy())
    layers = {layer.name: layer.blobs for layer in read_caffemodel(model).layers}
    assert list(layers) == ["ip1", "ip2", "ip3", "stats"]
    assert [len(b) for b in layers.values()] == [2, 2, 2, 1]
    assert np.array_equal(layers["ip3"][0], layers["ip2"][0])      # the shared blob under both layers
    assert np.array_equal(layers["stats"][0], solver.module.stats.mean.numpy())


def test_a_state_written_by_caffe_continues_here(tmp_path):
    """Caffe's SnapshotSolverStateToBinaryProto, by hand: Blob::ToProto (shape + data), one blob in the
    legacy 4-D fields as older Caffe wrote, learned_net naming a caffemodel in another directory."""
    rng = np.random.default_rng(7)
    weights = tiny_params(5)
    history = [(rng.standard_normal(w.shape) * 0.01).astype(np.float32) for w in weights]
    caffe_dir = tmp_path / "caffe_run"
    caffe_dir.mkdir()
    w1, b1, w2, b2, b3, stats = weights
    write_caffemodel(caffe_dir / "net_iter_40.caffemodel",
                     [("ip1", "InnerProduct", [w1, b1]), ("ip2", "InnerProduct", [w2, b2]),
                      ("ip3", "InnerProduct", [w2, b3]), ("stats", "BatchNorm", [stats])])
    state = caffe_pb2.SolverState(iter=40, learned_net="/nowhere/caffe_run/net_iter_40.caffemodel", current_step=1)
    for i, h in enumerate(history):
        blob = state.history.add()
        if i == 0:
            blob.num, blob.channels, blob.height, blob.width = 1, 1, *h.shape
        else:
            blob.shape.dim.extend(h.shape)
        blob.data.extend(h.ravel().tolist())
    (caffe_dir / "net_iter_40.solverstate").write_bytes(state.SerializeToString())

    solver = solver_for(tmp_path, SGD, seed=3)
    solver.restore(caffe_dir / "net_iter_40.solverstate")
    assert (solver.iter, solver.current_step) == (40, 1)
    for ours, theirs in zip(learnable_arrays(solver.module), weights):
        assert np.array_equal(ours, theirs)
    for ours, theirs in zip(solver.history[0], history):
        assert np.array_equal(ours.numpy(), theirs)

    reference = ReferenceSolver(SGD, [w.copy() for w in weights], TINY_MULTS["lr"], TINY_MULTS["decay"])
    reference.iter, reference.current_step = 40, 1
    reference.history = [h.copy() for h in history]
    for batch in batches(4, 3):
        loss = solver.step(batch)
        objective, diffs = tiny_forward_backward(reference.params, batch["data"], batch["target"])
        reference.apply_update(diffs)
        assert_close(np.float32(loss), objective, "loss")
    assert reference.rates[0] == pytest.approx(0.1 * 0.1 ** 2)     # multistep caught up one step, as Caffe
    for ours, theirs in zip(learnable_arrays(solver.module), reference.params):
        assert_close(ours, theirs, "weights after continuing")


def test_snapshot_every_n_iterations_as_the_solver_says(tmp_path):
    prefix = tmp_path / "auto"
    solver = solver_for(tmp_path, SGD, extra=f'snapshot: 2\nsnapshot_prefix: "{prefix}"\n')
    for batch in batches(1, 5):
        solver.step(batch)
    written = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("auto"))
    assert written == ["auto_iter_2.caffemodel", "auto_iter_2.solverstate",
                       "auto_iter_4.caffemodel", "auto_iter_4.solverstate"]


def test_snapshot_into_a_missing_directory_fails_cleanly(tmp_path):
    solver = solver_for(tmp_path, SGD)
    with pytest.raises(OutputError, match="does not exist"):
        solver.snapshot(tmp_path / "missing" / "run")
