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
             init: str = "fillers", lenient: bool = False) -> Net:
    """Read a net and its weights. Without a caffemodel, weights come from the fillers (`init="fillers"`,
    as Caffe does), are random (`init="random"`, for tests), or are left off (`init="none"`).

    A size in `input_shape` may be a name (`{"data": (1, 3, "H", "W")}`): the net is built for any value of it.
    `lenient` builds what a conversion would refuse, to look at it (`info`, `draw`; see protodef/lenient.py)."""
    from .attach import attach_weights, fill_weights, random_weights
    from .build import build_net
    from .source import read_prototxt

    proto_module = load_proto_module(proto) if proto else None
    param, source = read_prototxt(prototxt, proto_module=proto_module)
    options = dict(stages=stages, level=level, input_shapes=input_shape)
    if lenient:
        from .lenient import build_in_some_phase
        net = build_in_some_phase(build_net, param, source, phase=phase, **options)
    else:
        net = build_net(param, source, phase=phase, **options)
    if weights is not None or init != "none":
        from .sizes import require_fixed_weights
        require_fixed_weights(net)
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


def _as_net(net_or_path, weights, read_options) -> Net:
    if isinstance(net_or_path, Net):
        if weights is not None:
            raise ValueError("weights go with a prototxt path; a Net already carries its weights")
        return net_or_path
    return read_net(net_or_path, weights, **read_options)


def to_onnx(prototxt, weights=None, *, opset: int | None = None, dynamic_batch: bool = False, fold: bool = True,
            **read_options):
    """Convert a net (a prototxt path or a Net) to an onnx.ModelProto. Never imports torch."""
    from converters.onnx import to_onnx as lower
    return lower(_as_net(prototxt, weights, read_options), opset=opset, dynamic_batch=dynamic_batch, fold=fold)


def load(prototxt, weights=None, *, phase: str = "test", fold: bool = True,
         input_shape: Mapping[str, Shape] | None = None, **read_options):
    """A torch.fx.GraphModule computing the net as Caffe does; submodules are named after the layers."""
    from converters.pytorch import to_torch
    net = _as_net(prototxt, weights, {"phase": phase.upper(), "input_shape": input_shape, **read_options})
    return to_torch(net, fold=fold)


def draw(prototxt, *, rankdir: str = "TB", collapse: bool = False, shapes: bool = True, folded: bool = False,
         **read_options):
    """A graphviz.Digraph of the net (shows itself inline in Jupyter)."""
    from converters.graphviz import draw as render
    read_options.setdefault("init", "none" if not folded else "fillers")
    read_options.setdefault("lenient", not folded)   # as `protodef draw`: any well-formed prototxt
    net = _as_net(prototxt, None, read_options)
    return render(net, rankdir=rankdir, collapse=collapse, shapes=shapes, folded=folded)
