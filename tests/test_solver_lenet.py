"""Must show: a LeNet-style TRAIN net with BatchNorm + Scale and ceil-mode pooling, trained 12 iterations by
protodef.Solver, ends with the weights and per-iteration losses of Caffe's arithmetic (reference_train.py's
forward/backward + reference_solvers.py's update), for SGD and for Adam; a snapshot restores to an identical
continuation; the saved caffemodel loads in OpenCV for the net's deploy form."""
from __future__ import annotations

import numpy as np
import pytest
import reference_train
import torch
from reference_solvers import ReferenceSolver, solver_fields, solver_text
from support import assert_close

import protodef
from protodef.weights import read_caffemodel, write_caffemodel

TYPES = {"conv1": "Convolution", "bn1": "BatchNorm", "scale1": "Scale", "ip1": "InnerProduct", "ip2": "InnerProduct"}
# Caffe's learnable blobs in order, with the multipliers lenet_bn_prototxt gives them.
LEARNABLE = [("conv1", 0), ("conv1", 1), ("bn1", 0), ("bn1", 1), ("bn1", 2), ("scale1", 0), ("scale1", 1),
             ("ip1", 0), ("ip1", 1), ("ip2", 0), ("ip2", 1)]
LR_MULTS = [1, 2, 0, 0, 0, 1, 1, 1, 2, 0.5, 1]
DECAY_MULTS = [1, 0, 1, 1, 1, 1, 1, 1, 0, 2, 0]

SGD = solver_fields(type="SGD", base_lr=0.05, momentum=0.9, weight_decay=0.01, lr_policy="multistep",
                    stepvalue=(3, 7, 10), gamma=0.5)
# conv1's bias feeds BatchNorm, so its gradient is zero up to rounding (1e-17 in the float64 oracle, 1e-9 in
# float32); Adam divides it by its own root mean square, which turns rounding noise into full steps unless delta
# dominates it. delta 1e-4 keeps that blob comparable; the other blobs' gradients are 1e-3 and up.
ADAM = solver_fields(type="Adam", base_lr=0.02, momentum=0.9, momentum2=0.999, weight_decay=0.005, delta=1e-4,
                     lr_policy="poly", power=2.0, max_iter=16, iter_size=2, clip_gradients=0.5)
ITERATIONS = 12


def write_lenet(directory, fields):
    (directory / "lenet.prototxt").write_text(reference_train.lenet_bn_prototxt(4))
    blobs = {**reference_train.random_params(3), **reference_train.random_bn_blobs(3)}
    write_caffemodel(directory / "init.caffemodel", [(name, TYPES[name], blobs[name]) for name in TYPES])
    text = solver_text(fields, net="lenet.prototxt") + 'weights: "init.caffemodel"\n'
    (directory / "solver.prototxt").write_text(text)
    return directory / "solver.prototxt", [blobs[layer][i].astype(np.float32) for layer, i in LEARNABLE]


def caffe_iteration(reference: ReferenceSolver, passes) -> float:
    """Caffe's Step on the NumPy oracle: iter_size forward/backward passes (each moving the BatchNorm blobs),
    the summed diffs, then the solver's update."""
    def blobs_of(layer):
        return [reference.params[k] for k, (name, _) in enumerate(LEARNABLE) if name == layer]

    total, diffs = 0.0, [np.zeros_like(p) for p in reference.params]
    for batch in passes:
        params = {layer: blobs_of(layer) for layer in reference_train.LEARNED_LAYERS}
        loss, grads, statistics = reference_train.forward_backward(params, {"bn1": blobs_of("bn1")}, batch)
        for blob, value in zip(blobs_of("bn1"), statistics["bn1"]):
            blob[...] = value
        total += loss
        for k, (layer, i) in enumerate(LEARNABLE):
            if layer in grads and LR_MULTS[k]:
                diffs[k] += grads[layer][i].astype(np.float32)
    reference.apply_update(diffs)
    return total / len(passes)


def batches_for(fields, seed=0):
    size = fields["iter_size"]
    return [[reference_train.random_batch(seed + 100 * it + k) for k in range(size)] for it in range(ITERATIONS)]


def step_of(passes):
    return passes if len(passes) > 1 else passes[0]


@pytest.mark.parametrize("fields", [SGD, ADAM], ids=["SGD-multistep-momentum-decay", "Adam-poly-iter_size2-clip"])
def test_lenet_bn_trains_as_caffe_does(tmp_path, fields):
    solver_path, initial = write_lenet(tmp_path, fields)
    solver = protodef.Solver(solver_path)
    reference = ReferenceSolver(fields, initial, LR_MULTS, DECAY_MULTS)
    for it, passes in enumerate(batches_for(fields)):
        loss = solver.step(step_of(passes))
        expected = caffe_iteration(reference, passes)
        assert_close(np.float32(loss), np.float32(expected), f"loss of iteration {it}")
    solver.save_caffemodel(tmp_path / "trained.caffemodel")
    saved = {layer.name: layer for layer in read_caffemodel(tmp_path / "trained.caffemodel").layers}
    assert {name: layer.type for name, layer in saved.items()} == TYPES
    for k, (layer, i) in enumerate(LEARNABLE):
        assert_close(saved[layer].blobs[i], reference.params[k], f"{layer} blob {i} after {ITERATIONS} iterations")
    assert reference.rates[0] != reference.rates[-1]            # the schedule moved the rate
    protodef.read_net(tmp_path / "lenet.prototxt", tmp_path / "trained.caffemodel", phase="TRAIN")


def test_lenet_bn_snapshot_continues_identically(tmp_path):
    solver_path, _initial = write_lenet(tmp_path, ADAM)
    data = batches_for(ADAM, seed=7)
    straight = protodef.Solver(solver_path)
    straight_losses = []
    for it, passes in enumerate(data):
        straight_losses.append(straight.step(step_of(passes)))
        if it == 5:
            _model, state = straight.snapshot(tmp_path / "lenet")
    resumed = protodef.Solver(solver_path)
    resumed.restore(state)
    losses = [resumed.step(step_of(passes)) for passes in data[6:]]
    assert losses == straight_losses[6:]
    for name, tensor in straight.module.state_dict().items():
        assert torch.equal(tensor, resumed.module.state_dict()[name]), name


def deploy_prototxt(batch: int) -> str:
    """The TEST-phase deploy form of lenet_bn_prototxt: data in, ip2 out."""
    lines = reference_train.lenet_bn_prototxt(batch).splitlines()
    kept = [line for line in lines if '"SoftmaxWithLoss"' not in line and '"Accuracy"' not in line]
    text = "\n".join(kept).replace('top: "data" top: "label"', 'top: "data"')
    return text.replace(f"shape {{ dim: {batch} }} ", "")


def test_saved_caffemodel_loads_in_opencv_for_the_deploy_net(tmp_path):
    import cv2
    solver_path, _initial = write_lenet(tmp_path, SGD)
    solver = protodef.Solver(solver_path)
    for passes in batches_for(SGD)[:3]:
        solver.step(passes[0])
    solver.save_caffemodel(tmp_path / "trained.caffemodel")
    (tmp_path / "deploy.prototxt").write_text(deploy_prototxt(4))
    x = reference_train.random_batch(99)["data"]
    ours = protodef.load(tmp_path / "deploy.prototxt", tmp_path / "trained.caffemodel")(torch.from_numpy(x))
    net = cv2.dnn.readNetFromCaffe(str(tmp_path / "deploy.prototxt"), str(tmp_path / "trained.caffemodel"))
    net.setInput(x)
    assert_close(ours.detach().numpy(), net.forward(), "ip2, OpenCV against protodef")
    # The statistics OpenCV used are those the solver's module holds (Caffe's TEST phase: the saved blobs).
    solver.module.eval()
    loss, _accuracy = solver.module(torch.from_numpy(x), torch.zeros(4))
    scores = net.forward()
    shifted = scores - scores.max(1, keepdims=True)
    expected = -(shifted[:, 0] - np.log(np.exp(shifted).sum(1))).mean()
    assert_close(loss.detach().numpy(), np.float32(expected), "eval-mode loss against OpenCV's scores")
