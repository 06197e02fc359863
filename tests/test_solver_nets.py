"""Solver on nets protodef.load builds: an inline net_param with a train_state stage, InnerProduct blobs stored
transposed, a net without a loss, a solver naming no net."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import protodef
from protodef.errors import GraphError, SchemaError
from protodef.weights import read_caffemodel

NET = """name: "T"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 3 dim: 4 } shape { dim: 3 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 6 transpose: true weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "drop" type: "Dropout" bottom: "ip1" top: "ip1" include { stage: "noisy" } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""
SOLVER = 'base_lr: 0.1\nlr_policy: "fixed"\nmomentum: 0.9\n'


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return {"data": rng.standard_normal((3, 4)), "label": rng.integers(0, 2, 3)}


def test_inline_net_param_with_a_train_state_stage(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text(SOLVER + "net_param {\n" + NET + "}\ntrain_state { stage: 'noisy' }\n")
    solver = protodef.Solver(path)
    assert "drop" in dict(solver.module.named_modules())        # the stage's layer is in
    plain = tmp_path / "plain.prototxt"
    plain.write_text(SOLVER + "net_param {\n" + NET + "}\n")
    assert "drop" not in dict(protodef.Solver(plain).module.named_modules())
    loss = solver.step(batch())
    assert np.isfinite(loss) and solver.iter == 1


def test_transposed_inner_product_blobs_keep_caffes_layout(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER + 'net: "net.prototxt"\n')
    solver = protodef.Solver(tmp_path / "solver.prototxt")
    for seed in range(3):
        solver.step(batch(seed))
    _model, state = solver.snapshot(tmp_path / "t")
    layers = {layer.name: layer.blobs for layer in read_caffemodel(tmp_path / "t_iter_3.caffemodel").layers}
    weight = dict(solver.module.named_parameters())["ip1.weight"].detach().numpy()
    assert layers["ip1"][0].shape == (4, 6)                      # Caffe's transposed blob: K x N
    assert np.array_equal(layers["ip1"][0], weight.T)
    fresh = protodef.Solver(tmp_path / "solver.prototxt")
    fresh.restore(state)
    for a, b in zip(sum(solver.history, []), sum(fresh.history, [])):
        assert torch.equal(a, b)
    assert torch.equal(dict(fresh.module.named_parameters())["ip1.weight"], torch.from_numpy(weight))
    assert fresh.step(batch(5)) == solver.step(batch(5))


def test_a_net_without_a_loss_or_without_a_definition_is_reported(tmp_path):
    no_loss = NET.replace('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }',
                          'layer { name: "silence" type: "Silence" bottom: "label" }')
    (tmp_path / "net.prototxt").write_text(no_loss)
    (tmp_path / "solver.prototxt").write_text(SOLVER + 'net: "net.prototxt"\n')
    solver = protodef.Solver(tmp_path / "solver.prototxt")
    with pytest.raises(GraphError, match="no loss"):
        solver.step(batch())
    (tmp_path / "bare.prototxt").write_text(SOLVER)
    with pytest.raises(SchemaError, match="names no train net"):
        protodef.Solver(tmp_path / "bare.prototxt")
