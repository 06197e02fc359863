"""Caffe's snapshot files: the .solverstate (a binary SolverState) and the caffemodel it names.

SolverState (caffe.proto): iter = 1, learned_net = 2 (the caffemodel's path as Caffe wrote it), history = 3
(BlobProto, one per learnable blob and history slot: slot s of blob i is entry s * count + i), current_step = 4.
The history blobs' float data goes through bytes, not through per-value protobuf calls, so a ResNet's state
is written and read in well under a second.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from ..errors import UnsupportedError, WeightsError
from ..weights import blob_message, read_caffemodel, write_caffemodel
from ..write import atomic_write
from .files import blob_values
from .params import CaffeBlob, blobs_by_layer


@dataclass
class SolverState:
    iteration: int
    learned_net: str
    current_step: int
    history: list[np.ndarray]


def write_solverstate(path: str | os.PathLike, state: SolverState) -> None:
    from caffe_proto import caffe_pb2

    message = caffe_pb2.SolverState(iter=state.iteration, learned_net=state.learned_net,
                                    current_step=state.current_step)
    for array in state.history:
        message.history.append(caffe_pb2.BlobProto.FromString(blob_message(array)))
    atomic_write(path, message.SerializeToString())


def read_solverstate(path: str | os.PathLike) -> SolverState:
    """Read a binary .solverstate as Caffe's RestoreSolverStateFromBinaryProto does."""
    from caffe_proto import caffe_pb2

    where = os.fspath(path)
    if where.endswith(".h5"):
        raise UnsupportedError("HDF5 solver states are not read; snapshot with snapshot_format: BINARYPROTO",
                               where=where)
    try:
        raw = Path(where).read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read the solver state: {exc.strerror}", where=where) from None
    try:
        message = caffe_pb2.SolverState.FromString(raw)
    except DecodeError as exc:
        raise WeightsError(f"not a valid .solverstate: {exc}", where=where) from None
    history = [_blob_array(blob, i, where) for i, blob in enumerate(message.history)]
    return SolverState(message.iter, message.learned_net, message.current_step, history)


def _blob_array(blob, index: int, where: str) -> np.ndarray:
    shape, values = blob_values(blob)
    if values.size != int(np.prod(shape, dtype=np.int64)):
        raise WeightsError(f"history blob {index} has {values.size} values but its shape {shape} needs "
                           f"{int(np.prod(shape, dtype=np.int64))}", where=where)
    return values.reshape(shape)


def write_net_blobs(path: str | os.PathLike, blobs: list[CaffeBlob], layer_types: dict[str, str],
                    net_name: str = "") -> None:
    """A caffemodel with every layer's blobs in Caffe's order (shared blobs under each layer holding them)."""
    layers = [(name, layer_types.get(name, ""), [b.caffe_array() for b in held])
              for name, held in blobs_by_layer(blobs).items()]
    write_caffemodel(path, layers, name=net_name)


def copy_trained_layers(path: str | os.PathLike, blobs: list[CaffeBlob]) -> None:
    """Caffe's Net::CopyTrainedLayersFrom: by layer name; layers the net lacks are skipped; a layer's blob
    count and every shape must match."""
    where = os.fspath(path)
    targets = blobs_by_layer(blobs)
    for source in read_caffemodel(where).layers:
        held = targets.get(source.name)
        if held is None or not source.blobs:
            continue
        if len(held) != len(source.blobs):
            raise WeightsError("incompatible number of blobs", where=where, layer=(source.name, source.type),
                               expected=len(held), found=len(source.blobs))
        for blob, array in zip(held, source.blobs):
            blob.load(array, where=where, what=f"blob {blob.index}")
