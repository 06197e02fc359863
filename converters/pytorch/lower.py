"""Net -> torch.fx.GraphModule: each layer's module registered under the layer's name, one node per step.

Converters (one module per family) say what computes a layer; only this driver touches the graph. Caffe names
that are not Python identifiers (`conv1/7x7_s2`) are mangled once (`conv1_7x7_s2`); `caffe_names` on the
module maps every mangled name back.
"""
from __future__ import annotations

import builtins
import dataclasses
import keyword
import operator
import re
from dataclasses import dataclass, field

import torch.fx as fx
from torch import nn

from protodef.errors import ProtodefError, UnsupportedError
from protodef.ir import Layer, Net, Value

from .registry import Constructor, Step, TorchContext, converter_for
from .sizes import TorchSizes

# Names generated code must keep meaning what they mean (forward's locals and the file's globals).
_GLOBALS = {"self", "torch", "nn", "F", "math", "operator", "List", "Optional", "Tuple", "fx_pytree", "pytree"}


@dataclass
class Lowering:
    """A lowered net: the GraphModule, and how each submodule was made (for writing it out as source)."""

    module: fx.GraphModule
    constructors: dict[str, Constructor] = field(default_factory=dict)
    foreign: list[str] = field(default_factory=list)      # submodules made by plugins: no constructor known


class Names:
    """Python identifiers for Caffe names, each made once; `table` maps every one back to its Caffe name."""

    def __init__(self, reserved: set[str]):
        self.reserved = reserved
        self.used: set[str] = set()
        self.table: dict[str, str] = {}

    def identifier(self, name: str) -> str:
        base = _sanitized(name)
        if keyword.iskeyword(base) or base in self.reserved:
            base += "_"
        candidate, k = base, 1
        while candidate in self.used or candidate in self.reserved:
            candidate, k = f"{base}_{k}", k + 1
        self.used.add(candidate)
        self.table[candidate] = name
        return candidate


def lower_torch(net: Net) -> Lowering:
    """The GraphModule computing `net` (in eval mode): forward takes the net's inputs in Caffe's order and
    returns its output, or a tuple of outputs in the order of `output_names`. `value_nodes` maps the IR's value
    names (net.value_name) to the graph nodes computing them, for comparing intermediate blobs."""
    net.require_lowered()
    net.require_input_shapes()
    net.require_outputs()
    check_convertible(net)
    outputs = net.outputs()
    builder = GraphBuilder(net)
    for net_input in net.inputs:
        builder.values[net_input.value] = builder.graph.placeholder(builder.arguments.identifier(net_input.value.blob))
    for layer in net.layers():
        builder.add(layer)
    values = [builder.values[v] for v in outputs]
    builder.graph.output(values[0] if len(values) == 1 else tuple(values))
    module = fx.GraphModule(builder.root, builder.graph, class_name=class_name(net.name))
    value_nodes = {net.value_name(v): node.name for v, node in builder.values.items()}
    _keep(module, caffe_names=dict(builder.modules.table), input_names=[i.value.blob for i in net.inputs],
          output_names=[net.value_name(v) for v in outputs], value_nodes=value_nodes)
    builder.lowering.module = module.eval()
    return builder.lowering


class GraphBuilder:
    """The one place that adds to the fx graph: a node (or a few) per layer, its module under its name."""

    def __init__(self, net: Net):
        self.ctx = TorchContext(net)
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.modules = Names(_module_reserved())
        self.arguments = Names(_argument_reserved())
        self.values: dict[Value, fx.Node] = {}
        self.sizes = TorchSizes(net, self.graph, self.values)   # symbolic sizes, computed at run time
        self.lowering = Lowering(module=None)     # type: ignore[arg-type]  (set once the graph is complete)

    def add(self, layer: Layer) -> None:
        inputs = [self.values[v] for v in layer.inputs]
        try:
            lowered = converter_for(layer)(layer, self.ctx)
        except ProtodefError as error:
            raise error.at(layer.where, layer) from None
        self.values.update(zip(layer.outputs, self.emit(layer, lowered, inputs)))

    def emit(self, layer: Layer, lowered, inputs: list[fx.Node]) -> list[fx.Node]:
        """The nodes computing `layer`; one node per output."""
        if lowered is None:
            return [inputs[0]] * len(layer.outputs)
        steps = [s if isinstance(s, Step) else Step(s) for s in (lowered if isinstance(lowered, list) else [lowered])]
        if sum(isinstance(s.target, nn.Module) for s in steps) > 1:
            raise TypeError(f"the converter of {layer.type} returned more than one module")
        if any(s.per_input for s in steps[:-1]):
            raise TypeError(f"the converter of {layer.type} returned a per-input step before its last")
        current = inputs
        for index, step in enumerate(steps):
            if isinstance(step.target, nn.Module):
                op, step = "call_module", dataclasses.replace(step, target=self.register(layer, step.target))
            else:
                op = "call_method" if isinstance(step.target, str) else "call_function"
            if step.per_input and len(current) > 1:   # one call per input, each named after its output
                return [self.call(op, step, [x], local_name(value.blob)) for x, value in zip(current, layer.outputs)]
            # The layer's result is named after the layer; steps before it get torch's default names.
            name = local_name(layer.name) if index == len(steps) - 1 else None
            current = [self.call(op, step, current, name)]
        (node,) = current
        if len(layer.outputs) <= 1:
            return [node] * len(layer.outputs)
        return [self.graph.create_node("call_function", operator.getitem, (node, i), name=local_name(value.blob))
                for i, value in enumerate(layer.outputs)]

    def register(self, layer: Layer, module: nn.Module) -> str:
        target = self.modules.identifier(layer.name)
        self.root.add_module(target, module)
        if id(module) in self.ctx.constructors:
            self.lowering.constructors[target] = self.ctx.constructors[id(module)]
        else:
            self.lowering.foreign.append(target)
        return target

    def call(self, op: str, step: Step, inputs: list[fx.Node], name: str | None) -> fx.Node:
        step = dataclasses.replace(step, args=self.sizes.resolve(step.args), kwargs=self.sizes.resolve(step.kwargs))
        if not step.pairwise:
            args = ([*inputs], *step.args) if step.packed else (*inputs, *step.args)
            return self.graph.create_node(op, step.target, args, dict(step.kwargs), name=name)
        node = inputs[0]
        for index, other in enumerate(inputs[1:], start=2):
            node = self.graph.create_node(op, step.target, (node, other, *step.args), dict(step.kwargs),
                                          name=name if index == len(inputs) else None)
        return node


def _keep(module: fx.GraphModule, **attributes) -> None:
    """Set attributes that survive copy.deepcopy too (a GraphModule's deepcopy rebuilds it from its graph and
    keeps only what its meta lists) and pickling (which keeps the instance dict)."""
    preserved_key = getattr(fx.graph_module, "_USER_PRESERVED_ATTRIBUTES_KEY", None)
    for name, value in attributes.items():
        setattr(module, name, value)
    if preserved_key is not None:
        module.meta.setdefault(preserved_key, {}).update(attributes)


def check_convertible(net: Net) -> None:
    """Every layer has a converter; all the ones that do not are reported together."""
    missing: dict[str, list[str]] = {}
    for layer in net.layers():
        if converter_for(layer) is None:
            missing.setdefault(layer.type, []).append(layer.name)
    if not missing:
        return
    listed = "; ".join(f"{t} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                       for t, names in missing.items())
    raise UnsupportedError(f"the PyTorch backend has no converter for {len(missing)} layer type(s): {listed}",
                           where=net.source)


def local_name(name: str) -> str:
    """A variable name for generated code: the Caffe name as an identifier that shadows nothing it uses."""
    base = _sanitized(name)
    if keyword.iskeyword(base) or base in _GLOBALS or hasattr(builtins, base):
        base += "_"
    return base


def _sanitized(name: str) -> str:
    base = re.sub(r"[^0-9A-Za-z_]", "_", name) or "_"
    return "_" + base if base[0].isdigit() else base


def class_name(net_name: str) -> str:
    """The net's name in CamelCase (`ResNet-50` -> `ResNet50`, `bvlc_googlenet` -> `BvlcGooglenet`)."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", net_name) if p]
    name = "".join(p[0].upper() + p[1:] for p in parts)
    if not name or name[0].isdigit():
        name = "Net" + name
    return name


def _module_reserved() -> set[str]:
    """Attribute names a submodule must not take: everything a GraphModule already has."""
    sample = fx.GraphModule(nn.Module(), fx.Graph())
    return set(dir(fx.GraphModule)) | set(vars(sample)) | {"caffe_names", "input_names", "output_names",
                                                            "caffe_param_specs", "loss_weights", "caffe_loss",
                                                            "conversion_metadata"}


def _argument_reserved() -> set[str]:
    return set(_GLOBALS) | set(dir(builtins))
