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
    try:
        if lenient:
            from .lenient import build_in_some_phase
            net = build_in_some_phase(build_net, param, source, phase=phase, **options)
        else:
            net = build_net(param, source, phase=phase, **options)
    except (AttributeError, KeyError, ValueError) as error:
        # A message field outside any one layer's (a layer's own are told apart in build._params, with the layer).
        from .build import schema_gap
        gap = schema_gap(error, param, where=os.fspath(proto) if proto else None)
        if gap is None:
            raise
        raise gap from None
    if weights is not None or init != "none":
        from .sizes import require_fixed_weights
        require_fixed_weights(net)
    if weights is not None:
        from .weights import read_caffemodel
        net = attach_weights(net, read_caffemodel(weights), path=os.fspath(weights),
                             allow_missing=allow_missing_weights, seed=seed)
        net.metadata.update(weights="caffemodel", weights_file=os.path.basename(os.fspath(weights)))
        return net
    if init not in ("fillers", "random", "none"):
        raise ValueError(f"init must be 'fillers', 'random' or 'none', not {init!r}")
    if init == "none":
        return net
    # Made-up weights are said so in every model converted from them: outputs mean nothing (and the fillers of
    # some nets give NaN or Inf), and the seed makes them reproducible.
    net = fill_weights(net, seed=seed) if init == "fillers" else random_weights(net, seed=seed)
    if any(layer.weights for layer in net.layers()):
        net.metadata.update(weights=init, seed=str(seed))
    return net


def load_proto_module(path: str | os.PathLike):
    """Compile a fork's caffe.proto at run time (users of forks point us at their schema)."""
    from .forkproto import compile_proto
    try:
        return compile_proto(path)
    except ProtodefError:
        raise


def lower(net: Net, *, fold: bool = True, training: bool = False) -> Net:
    """The net as every backend takes it: training layers, Splits and Dropouts gone and, when `fold`, BatchNorm
    and Scale folded into the layers before them; for `training` (a TRAIN-phase net for PyTorch), only Splits
    gone. Its `pass_report` says what each pass changed."""
    from .passes import run_pipeline
    return run_pipeline(net, fold=fold, training=training)[0]


def _as_net(net_or_path, weights, read_options) -> Net:
    if isinstance(net_or_path, Net):
        if weights is not None:
            raise ValueError("weights go with a prototxt path; a Net already carries its weights")
        return net_or_path
    return read_net(net_or_path, weights, **read_options)


def _lowered(net_or_path, weights, read_options, *, fold: bool, training: bool = False) -> Net:
    """A prototxt path or a Net, through the pass pipeline once (a net that has been through it stays as is)."""
    net = _as_net(net_or_path, weights, read_options)
    return net if net.pass_report is not None else lower(net, fold=fold, training=training)


def to_onnx(prototxt, weights=None, *, opset: int | None = None, dynamic_batch: bool = False, fold: bool = True,
            **read_options):
    """Convert a net (a prototxt path or a Net) to an onnx.ModelProto. Never imports torch."""
    from converters.onnx import to_onnx as lower_to_onnx
    return lower_to_onnx(_lowered(prototxt, weights, read_options, fold=fold), opset=opset,
                         dynamic_batch=dynamic_batch)


def save_onnx(prototxt, path: str | os.PathLike, weights=None, *, opset: int | None = None,
              dynamic_batch: bool = False, fold: bool = True, **read_options) -> None:
    """Convert and write `path` atomically (nothing is written when the conversion fails)."""
    from converters.onnx import save_onnx as write_onnx
    write_onnx(_lowered(prototxt, weights, read_options, fold=fold), path, opset=opset, dynamic_batch=dynamic_batch)


def load(prototxt, weights=None, *, phase: str = "test", fold: bool | None = None,
         input_shape: Mapping[str, Shape] | None = None, **read_options):
    """A torch.fx.GraphModule computing the net (a prototxt path or a Net) as Caffe does; submodules are named
    after the layers.

    phase "test" (default): the deploy view in eval mode, BatchNorm and Scale folded unless fold=False.
    phase "train": Caffe's TRAIN net in train mode, labels in and losses and metrics out, never folded
    (converters/pytorch/train.py says what it carries for training).
    Without torch installed, a DependencyError says how to install it."""
    from .convert import require_torch
    require_torch()
    from converters.pytorch import to_torch
    training = phase.upper() == "TRAIN"
    read_options = {"phase": phase.upper(), "input_shape": input_shape, **read_options}
    return to_torch(_lowered(prototxt, weights, read_options, fold=not training if fold is None else fold,
                             training=training))


def save_pytorch(prototxt, path: str | os.PathLike, weights=None, *, fold: bool = True, form: str = "source",
                 dynamic_batch: bool = True, **read_options) -> list[str]:
    """Write the net for PyTorch (form "source": a .py module and its .pt weights; "export": a .pt2)."""
    from converters.pytorch import save_pytorch as write_pytorch
    return write_pytorch(_lowered(prototxt, weights, read_options, fold=fold), path, form=form,
                         dynamic_batch=dynamic_batch)


def draw(prototxt, *, rankdir: str = "TB", collapse: bool = False, shapes: bool = True, folded: bool = False,
         **read_options):
    """A graphviz.Digraph of the net (shows itself inline in Jupyter); `folded` draws it as the backends see it."""
    from converters.graphviz import draw as render
    return render(drawn_net(prototxt, folded=folded, **read_options), rankdir=rankdir, collapse=collapse,
                  shapes=shapes)


def drawn_net(prototxt, *, folded: bool = False, **read_options) -> Net:
    """The net a drawing shows: as read, or after the passes. Folding does arithmetic on the weights, so a net
    read without a caffemodel gets its fillers' values (the structure drawn does not depend on them)."""
    if not folded:
        read_options.setdefault("init", "none")
        read_options.setdefault("lenient", True)   # as `protodef draw`: any well-formed prototxt
        return _as_net(prototxt, None, read_options)
    read_options.setdefault("init", "fillers")
    net = _as_net(prototxt, None, read_options)
    from .attach import expected_weight_shapes, fill_weights
    missing = [layer.name for layer in net.layers() if expected_weight_shapes(net, layer) and not layer.weights]
    if missing:
        net = fill_weights(net, only=missing)
    return _lowered(net, None, {}, fold=True)


def export_caffe(model, example_inputs=None, output=None, **options):
    """Export a PyTorch module (on `example_inputs`), an onnx.ModelProto or an .onnx path to Caffe; with
    `output` (a .prototxt path) also write it and the .caffemodel beside it. See converters.caffe."""
    from converters.caffe import export_caffe as export
    return export(model, example_inputs, output, **options)
