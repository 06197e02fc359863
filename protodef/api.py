"""The front end as one call: prototxt (+ caffemodel) -> Net with shapes and weights."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

from .errors import ProtodefError
from .ir import Net
from .layers.registry import Shape


def read_net(prototxt: str | os.PathLike, weights: str | os.PathLike | None = None, *, phase: str = "TEST",
             stages: Sequence[str] = (), level: int = 0, input_shape: Mapping[str, Shape] | None = None,
             allow_missing_weights: bool = False, seed: int = 0, proto: str | os.PathLike | None = None,
             init: str = "fillers") -> Net:
    """Read a net and its weights. Without a caffemodel, weights come from the fillers (`init="fillers"`,
    as Caffe does), are random (`init="random"`, for tests), or are left off (`init="none"`)."""
    from .attach import attach_weights, fill_weights, random_weights
    from .build import build_net
    from .source import read_prototxt

    proto_module = load_proto_module(proto) if proto else None
    param, source = read_prototxt(prototxt, proto_module=proto_module)
    net = build_net(param, source, phase=phase, stages=stages, level=level, input_shapes=input_shape)
    if weights is not None:
        from .weights import read_caffemodel
        return attach_weights(net, read_caffemodel(weights), path=os.fspath(weights),
                              allow_missing=allow_missing_weights, seed=seed)
    if init == "fillers":
        return fill_weights(net, seed=seed)
    if init == "random":
        return random_weights(net, seed=seed)
    if init == "none":
        return net
    raise ValueError(f"init must be 'fillers', 'random' or 'none', not {init!r}")


def load_proto_module(path: str | os.PathLike):
    """Compile a fork's caffe.proto at run time (users of forks point us at their schema)."""
    from .forkproto import compile_proto
    try:
        return compile_proto(path)
    except ProtodefError:
        raise
