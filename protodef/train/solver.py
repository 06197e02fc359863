"""protodef.Solver: a solver.prototxt run on a PyTorch module, one Caffe iteration per `step`.

    solver = protodef.Solver("solver.prototxt")          # builds the TRAIN net named in it
    for batch in loader:                                  # {"data": images, "label": labels}
        loss = solver.step(batch)
    solver.snapshot("snapshots/lenet")                    # lenet_iter_N.caffemodel + .solverstate
    solver.restore("snapshots/lenet_iter_N.solverstate")  # also one Caffe wrote

An iteration is Caffe's Solver::Step + SGDSolver::ApplyUpdate: iter_size forward/backward passes accumulating
gradients, then ClipGradients, Normalize (1 / iter_size), Regularize, ComputeUpdateValue, Update, iter + 1.
Caffe's data layers are not run: LMDB, LevelDB, HDF5 and image lists are read by your own loader, which
passes their tops (data and labels) to `step`; protodef.data_transform gives it the layer's transform_param.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import GraphError, Location, SchemaError, UnsupportedError
from .files import path_beside
from .params import BlobGroup, blob_groups, caffe_blobs, learnable_blobs
from .policies import learning_rate
from .solverparam import checked_solver_param, read_solver_param
from .solverstate import (SolverState, copy_trained_layers, read_solverstate, write_net_blobs,
                          write_solverstate)
from .updates import Hyper, clip_gradients, regularize, rule_named

f32 = np.float32
Batch = Mapping[str, Any]


class Solver:
    """Caffe's solver for `module` (by default the TRAIN-phase net the solver file names, BatchNorm unfolded).

    `iter` counts the updates made; `lr` is the rate the next update applies (what Caffe logs as
    "Iteration <iter>, lr = ..."); `smoothed_loss` is Caffe's displayed loss, the mean of the last
    `average_loss` iteration losses; `outputs` holds the net's outputs (losses, accuracies) of the last pass.
    """

    def __init__(self, solver: str | os.PathLike | Any, module: torch.nn.Module | None = None, *,
                 input_shape: Mapping[str, Sequence[int]] | None = None):
        if isinstance(solver, (str, os.PathLike)):
            self.path = os.fspath(solver)
            self.param = read_solver_param(self.path)
        else:
            self.path = "<solver>"
            self.param = checked_solver_param(solver)
        self.net = _TrainNet(self.param, self.path)
        self.module = module if module is not None else self.net.load(input_shape)
        self.rule = rule_named(self.param.type)
        self.hyper = Hyper(float(f32(self.param.momentum)), float(f32(self.param.momentum2)),
                           float(f32(self.param.delta)), float(f32(self.param.rms_decay)))
        self.blobs = caffe_blobs(self.module)
        self.learnable = learnable_blobs(self.blobs)
        self.groups = blob_groups(self.learnable)
        self._device = self.learnable[0].tensor.device if self.learnable else torch.device("cpu")
        self.history = [[torch.zeros_like(b.tensor, memory_format=torch.contiguous_format)
                         for b in self.learnable] for _ in range(self.rule.slots)]
        self.iter = 0
        self.current_step = 0
        self.outputs: dict[str, torch.Tensor] = {}
        self._losses: list[float] = []
        self._loss_start = 0
        self.smoothed_loss = 0.0
        if self.param.random_seed >= 0:
            torch.manual_seed(self.param.random_seed)
        for weights in self.param.weights:
            for path in weights.split(","):
                copy_trained_layers(self.net.resolve(path), self.blobs)

    # ------------------------------------------------------------------------------------------ training

    @property
    def lr(self) -> float:
        return float(learning_rate(self.param, self.iter, self.current_step)[0])

    def step(self, batch: Batch | Sequence[Batch]) -> float:
        """One Caffe iteration; returns its loss (the mean over iter_size passes of the weighted losses)."""
        passes = self._passes(batch)
        if not any(self.module.loss_weights.values()):
            raise GraphError("the net has no loss to minimise (no output with a loss_weight)", where=self.path)
        was_training = self.module.training
        self.module.train()
        try:
            self.module.zero_grad(set_to_none=True)
            loss = f32(0)
            for inputs in passes:
                loss += f32(self._forward_backward(inputs))
            loss /= f32(len(passes))
            self._smooth(float(loss))
            self._apply_update()
        finally:
            self.module.train(was_training)
        if self.param.snapshot and self.iter % self.param.snapshot == 0:
            self.snapshot()
        return float(loss)

    def _passes(self, batch: Batch | Sequence[Batch]) -> list[Batch]:
        """The iteration's batches, checked before anything runs (forward moves BatchNorm's statistics)."""
        passes = [batch] if isinstance(batch, Mapping) else list(batch)
        if len(passes) != self.param.iter_size:
            raise GraphError("step takes one batch per forward/backward pass of the iteration",
                             where=self.path, expected=f"iter_size = {self.param.iter_size} batch(es)",
                             found=len(passes))
        names = list(self.module.input_names)
        for inputs in passes:
            if not isinstance(inputs, Mapping) or any(n not in inputs for n in names):
                given = ", ".join(map(str, inputs)) if isinstance(inputs, Mapping) else type(inputs).__name__
                raise GraphError("the batch lacks inputs of the net (protodef does not run Caffe's data layers: "
                                 "read LMDB/LevelDB/HDF5 sources yourself and pass their tops)",
                                 expected=", ".join(names), found=given or "nothing")
        return passes

    def _forward_backward(self, inputs: Batch) -> float:
        results = self.module(*(_as_tensor(inputs[n], self._device) for n in self.module.input_names))
        results = results if isinstance(results, tuple) else (results,)
        self.outputs = {n: r.detach() for n, r in zip(self.module.output_names, results)}
        weights = self.module.loss_weights
        objective = sum(float(weights[n]) * r.sum() for n, r in zip(self.module.output_names, results)
                        if weights.get(n))
        objective.backward()
        return float(objective.detach())

    def _smooth(self, loss: float) -> None:
        """Caffe's UpdateSmoothedLoss: a running mean over the last average_loss iterations."""
        window = max(self.param.average_loss, 1)
        if len(self._losses) < window:
            self._losses.append(loss)
            self.smoothed_loss = (self.smoothed_loss * (len(self._losses) - 1) + loss) / len(self._losses)
        else:
            slot = (self.iter - self._loss_start) % window
            self.smoothed_loss += (loss - self._losses[slot]) / window
            self._losses[slot] = loss

    @torch.no_grad()
    def _apply_update(self) -> None:
        rate, self.current_step = learning_rate(self.param, self.iter, self.current_step)
        diffs = self._diffs()
        clip_gradients(diffs, self.param.clip_gradients)
        if self.param.iter_size > 1:
            torch._foreach_mul_(diffs, float(f32(1) / f32(self.param.iter_size)))
        weight_decay = f32(self.param.weight_decay)
        for group in self.groups:
            self._update_group(group, diffs, rate, weight_decay)
        self.iter += 1

    def _update_group(self, group: BlobGroup, diffs: list[torch.Tensor], rate: np.float32,
                      weight_decay: np.float32) -> None:
        params = [self.learnable[i].tensor for i in group.indices]
        group_diffs = [diffs[i] for i in group.indices]
        regularize(params, group_diffs, float(weight_decay * group.decay_mult), self.param.regularization_type)
        history = [[slot[i] for i in group.indices] for slot in self.history]
        update = self.rule.compute(group_diffs, history, self.hyper, float(rate * group.lr_mult), self.iter)
        torch._foreach_sub_(params, update)

    def _diffs(self) -> list[torch.Tensor]:
        """Caffe's diffs: the accumulated gradients, zero where Caffe computes none (lr_mult 0, statistics)."""
        diffs = []
        for blob in self.learnable:
            grad = blob.tensor.grad
            if grad is None or blob.lr_mult == 0 or blob.buffer:
                grad = torch.zeros_like(blob.tensor)
            diffs.append(grad)
        return diffs

    # ------------------------------------------------------------------------------------------ files

    def save_caffemodel(self, path: str | os.PathLike) -> None:
        """The net's blobs in Caffe's layout (BatchNorm's statistics included), written atomically."""
        write_net_blobs(path, self.blobs, self.net.layer_types(), self.net.name)

    def snapshot(self, prefix: str | os.PathLike | None = None) -> tuple[str, str]:
        """Write <prefix>_iter_<iter>.caffemodel and .solverstate (Caffe's names); returns both paths.
        Without a prefix, the solver's snapshot_prefix (default: the solver file's path without extension)."""
        if self.param.snapshot_format != self.param.BINARYPROTO:
            raise UnsupportedError("HDF5 snapshots are not written; use snapshot_format: BINARYPROTO",
                                   where=self.path)
        base = os.fspath(prefix) if prefix is not None else self.net.snapshot_prefix()
        model = f"{base}_iter_{self.iter}.caffemodel"
        state = f"{base}_iter_{self.iter}.solverstate"
        self.save_caffemodel(model)
        history = [blob.caffe_array(h) for slot in self.history for blob, h in zip(self.learnable, slot)]
        write_solverstate(state, SolverState(self.iter, model, self.current_step, history))
        return model, state

    def restore(self, path: str | os.PathLike) -> None:
        """Continue from a .solverstate (ours or Caffe's): iteration, current step, history, and the weights
        of the caffemodel it names (looked for as written, then beside the .solverstate)."""
        where = os.fspath(path)
        state = read_solverstate(where)
        expected = self.rule.slots * len(self.learnable)
        if len(state.history) != expected:
            raise SchemaError(f"the solver state does not fit this {self.rule.name} solver and net: "
                              "incorrect number of history blobs", where=where, expected=expected,
                              found=len(state.history))
        count = len(self.learnable)
        history = [self.learnable[k % count].as_tensor_layout(array, where=where, what=f"history blob {k}")
                   for k, array in enumerate(state.history)]        # all checked before anything changes
        if state.learned_net:
            copy_trained_layers(_learned_net(state.learned_net, where), self.blobs)
        for k, values in enumerate(history):
            self.history[k // count][k % count].copy_(values)
        self.iter = state.iteration
        self.current_step = state.current_step
        self._losses, self._loss_start, self.smoothed_loss = [], self.iter, 0.0


def _as_tensor(value: Any, device: torch.device) -> torch.Tensor:
    if not torch.is_tensor(value):
        array = np.asarray(value)
        value = torch.from_numpy(array.astype(np.float32) if array.dtype == np.float64 else array)
    return value.to(device)


def _learned_net(path: str, state_path: str) -> str:
    """Caffe opens learned_net from the working directory; a snapshot moved with its caffemodel is found
    beside the .solverstate."""
    if os.path.exists(path):
        return path
    beside = os.path.join(os.path.dirname(state_path), os.path.basename(path))
    return beside if os.path.exists(beside) else path


class _TrainNet:
    """The train net a SolverParameter names (net, train_net, net_param or train_net_param), as Caffe's
    Solver::InitTrainNet picks it, with the NetState it is built in."""

    def __init__(self, param: Any, solver_path: str):
        self.param = param
        self.solver_path = solver_path
        self.definition = self._definition()      # NetParameter, or None when the solver names no net
        self.name = self.definition.name if self.definition is not None else ""

    def resolve(self, path: str) -> str:
        return path_beside(path, self.solver_path)

    def _file(self) -> str | None:
        for field in ("net", "train_net"):
            if self.param.HasField(field):
                return self.resolve(getattr(self.param, field))
        return None

    def _definition(self) -> Any:
        from ..source import read_prototxt
        from ..upgrade import needs_upgrade, upgrade_net

        for field in ("net_param", "train_net_param"):
            if self.param.HasField(field):
                return getattr(self.param, field)
        path = self._file()
        if path is None:
            return None
        definition, _source = read_prototxt(path)
        return upgrade_net(definition, path=path)[0] if needs_upgrade(definition) else definition

    def load(self, input_shape: Mapping[str, Sequence[int]] | None) -> torch.nn.Module:
        from .. import api

        if self.definition is None:
            raise SchemaError("the solver names no train net (net, train_net, net_param or train_net_param) "
                              "and no module was given", where=Location(self.solver_path))
        state = self.param.train_state
        options = {"stages": tuple(state.stage), "level": state.level} if state.stage or state.level else {}
        if input_shape is not None:
            options["input_shape"] = {k: tuple(v) for k, v in input_shape.items()}
        path = self._file()
        if path is not None:
            return api.load(path, None, phase="train", fold=False, **options)
        with tempfile.TemporaryDirectory() as scratch:     # an inline net: protodef.load reads files
            inline = Path(scratch) / (Path(self.solver_path).stem + "_net.prototxt")
            inline.write_text(str(self.definition))
            return api.load(inline, None, phase="train", fold=False, **options)

    def layer_types(self) -> dict[str, str]:
        """Caffe's type of each layer holding blobs (written into caffemodels; readers match by name)."""
        types: dict[str, str] = {}
        for layer in self.definition.layer if self.definition is not None else ():
            types.setdefault(layer.name, layer.type)
        return types

    def snapshot_prefix(self) -> str:
        """Caffe's UpgradeSnapshotPrefixProperty: the solver file's path without extension when not given; a
        directory gets the solver file's stem inside it."""
        prefix = self.param.snapshot_prefix
        if not prefix:
            return str(Path(self.solver_path).with_suffix(""))
        if os.path.isdir(prefix):
            return os.path.join(prefix, Path(self.solver_path).stem)
        return prefix
