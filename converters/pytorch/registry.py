"""The PyTorch converter table, what a converter may return, and the context it builds modules with.

A converter is `(layer, ctx) -> Lowered`: it returns what computes its layer and never touches the graph;
`lower.py` registers modules under the layer's name and adds the graph nodes. What it may return:

- an `nn.Module`, called with the layer's inputs (a tuple result gives one output per top);
- a `Step` (a torch function, a tensor method, an operator, or a module taking its inputs as one list), or
  a list of Steps and at most one module, applied in order: the first gets the layer's inputs, each later
  one the previous result; a last Step `per_input` is called on each input alone, giving the output of the
  same index (Caffe's convolution of several bottoms: one module, its weights shared);
- `None`: the layer is the identity (every output is input 0: Split, a test-time Dropout).

Modules are made with `ctx.module(cls, *args, **kwargs)`, which records the constructor call so that
`save_pytorch(form="source")` can write it out, and get their weights with `with_weights`, which checks every
shape and names the layer when one does not fit.
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import numpy as np
import torch
from torch import nn

from protodef.errors import WeightsError
from protodef.ir import Layer, Net
from protodef.layers.registry import NetContext, Registry


@dataclass(frozen=True)
class Step:
    """One call in a layer's computation: `target(inputs..., *args, **kwargs)`.

    `target` is a function (torch.flatten, operator.add), the name of a tensor method ("reshape"), or a module.
    `packed` passes the inputs as one list (torch.cat); `pairwise` folds a binary function over them
    left to right ((a + b) + c, as Caffe accumulates); `per_input` calls it once per input, output i from
    input i (only as the last step).
    """

    target: Union[Callable, str, nn.Module]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    packed: bool = False
    pairwise: bool = False
    per_input: bool = False


Lowered = Union[nn.Module, Step, list, None]
Converter = Callable[[Layer, "TorchContext"], Lowered]

# Built-in converters and plugins' alike, keyed by the spec's type (an alias finds its spec's converter).
TORCH_CONVERTERS: Registry[Converter] = Registry("PyTorch converter", "converters.pytorch")


def torch_converter(type_name: str) -> Callable[[Converter], Converter]:
    """Register the PyTorch converter of Caffe layer type `type_name` (once: a second one is an error)."""
    return TORCH_CONVERTERS.decorator(type_name)


def converter_for(layer: Layer) -> Converter | None:
    return TORCH_CONVERTERS.get(layer.spec.type)


@dataclass(frozen=True)
class Constructor:
    """How a module was made, for writing it out as source: `cls(*args, **kwargs)`."""

    cls: type
    args: tuple
    kwargs: dict


class TorchContext(NetContext):
    """What a converter may ask for: shapes, modules whose construction is recorded, later layers it computes."""

    def __init__(self, net: Net):
        super().__init__(net)
        self.constructors: dict[int, Constructor] = {}   # id(module) -> how it was made

    def module(self, cls: type, *args: Any, **kwargs: Any) -> nn.Module:
        """`cls(*args, **kwargs)`, remembered so that the generated source makes the same module."""
        args, kwargs = _plain(args), _plain(kwargs)
        _refuse_symbolic(cls, args, kwargs)
        if cls.__module__.startswith("torch.nn"):
            args, kwargs = _tidy_torch_arguments(cls, args, kwargs)
        else:
            # Our own modules' calls are written out with every argument named: CaffeAvgPool2d(kernel_size=...).
            args, kwargs = (), dict(inspect.signature(cls).bind(*args, **kwargs).arguments)
        module = cls(*args, **kwargs)
        self.constructors[id(module)] = Constructor(cls, args, kwargs)
        return module

    def owns_input(self, layer: Layer, index: int = 0) -> bool:
        """Whether `layer` may overwrite input `index` in place: it reads that value once and nothing else
        reads it, and it is a fresh tensor made by a layer whose module keeps nothing of it for backward (not
        a net input, not a view of another tensor)."""
        value = layer.inputs[index]
        producer = self.net.producer(value)
        return (producer is not None and producer.spec.fresh_output
                and len(self.net.consumers(value)) == 1)


def with_weights(module: nn.Module, layer: Layer, **arrays: np.ndarray) -> nn.Module:
    """Copy arrays into the module's parameters or buffers of those names, checking every shape."""
    with torch.no_grad():
        for name, array in arrays.items():
            target = getattr(module, name)
            array = np.asarray(array, dtype=np.float32)
            if tuple(target.shape) != array.shape:
                raise WeightsError(f"weight '{name}' does not fit {type(module).__name__}", where=layer.where,
                                   layer=layer, expected=tuple(target.shape), found=array.shape)
            target.copy_(_as_tensor(array))
    return module


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor viewing `array`, to copy from. Weights read from a file may be read-only; torch warns about
    that even though nothing writes to them here."""
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def blobs(layer: Layer, count: int) -> tuple[np.ndarray, ...]:
    """The layer's first `count` weight blobs; an error naming the layer when it has fewer."""
    if len(layer.weights) < count:
        raise WeightsError("the layer has no weights to convert (read the net with a caffemodel or fillers)",
                           where=layer.where, layer=layer, expected=f"{count} blob(s)", found=len(layer.weights))
    return layer.weights[:count]


def _refuse_symbolic(cls: type, args: tuple, kwargs: dict) -> None:
    """A module is made once, so its sizes must be numbers; one that depends on a symbolic size is an error
    naming that size (the driver adds the layer)."""
    from protodef.sizes import needs_fixed_error
    from protodef.symbolic import names_in
    names = names_in(list(args) + list(kwargs.values()))
    if names:
        raise needs_fixed_error(names, f"its PyTorch module ({cls.__name__}) is made for fixed sizes and")


def _plain(value: Any) -> Any:
    """Python scalars and tuples, with float32 values at their shortest decimal (eps=1e-05, not
    9.999999747378752e-06): torch computes in float32, where both are the same number."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        short = float(str(np.float32(value)))
        return short if np.float32(short) == np.float32(value) else float(value)
    return value


def _tidy_torch_arguments(cls: type, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Write torch.nn constructor calls as people do: `kernel_size=3` for (3, 3), defaults left out."""
    kwargs = {k: (v[0] if isinstance(v, tuple) and v and all(x == v[0] for x in v) else v)
              for k, v in kwargs.items()}
    try:
        defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()
                    if p.default is not inspect.Parameter.empty}
    except (TypeError, ValueError):
        return args, kwargs
    return args, {k: v for k, v in kwargs.items() if not (k in defaults and _same(defaults[k], v))}


def _same(default: Any, value: Any) -> bool:
    return type(default) is type(value) and default == value
