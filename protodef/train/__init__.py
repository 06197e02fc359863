"""Training as Caffe trains: Solver (a solver.prototxt's update rule on a PyTorch module) and data_transform
(a data layer's transform_param, for your own loader). Solver imports torch; data_transform does not."""
from __future__ import annotations

__all__ = ["Solver", "data_transform"]


def __getattr__(name: str):
    if name == "Solver":
        from .solver import Solver
        return Solver
    if name == "data_transform":
        from .transform import data_transform
        return data_transform
    raise AttributeError(f"module 'protodef.train' has no attribute {name!r}")
