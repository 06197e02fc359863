"""TRAIN-phase lowering: the net as Caffe's TRAIN phase computes it, losses and labels included.

    module = to_torch(lower(read_net("train_val.prototxt", "w.caffemodel", phase="TRAIN"), training=True))
    outputs = module(data, label)               # module.input_names: ['data', 'label']
    objective = module.caffe_loss(outputs)      # sum of loss_weight * sum(top), what Caffe minimises
    objective.backward()                        # the gradients Caffe's backward computes

Only Split layers are removed: Dropout, BatchNorm (with its Scale as its own layer) and the losses stay as Caffe
runs them. The module is in train mode (Caffe's TRAIN phase); eval() gives Caffe's TEST behaviour of the same
layers. Besides `input_names` and `output_names` it carries `loss_weights` (output name -> Caffe's loss weight,
non-zero ones only), `caffe_loss` and `caffe_param_specs` (see train_params.py).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.fx as fx

from protodef.errors import ProtodefError, SchemaError, UnsupportedError
from protodef.ir import Layer, Net, Value

from .lower import Lowering, _keep, lower_torch
from .registry import converter_for
from .train_params import bind_caffe_params, float32_value


def to_torch_train(prepared: Net) -> fx.GraphModule:
    """The GraphModule computing a net lowered for training (protodef.lower(net, training=True), from a net read in
    the TRAIN phase) as Caffe's TRAIN phase does, in train mode."""
    return train_lowering(prepared).module


def train_lowering(prepared: Net) -> Lowering:
    """to_torch_train's lowering: its module, and the constructors generated source writes out."""
    _check_trainable(prepared)
    weights = caffe_loss_weights(prepared)
    lowering = lower_torch(prepared)
    module = lowering.module
    names = [prepared.value_name(v) for v in weights]
    _add_outputs(module, [n for n in names if n not in module.output_names])
    loss_weights = {name: w for name, w in zip(names, weights.values())}
    identifiers = {layer_name: identifier for identifier, layer_name in module.caffe_names.items()}
    specs = bind_caffe_params(prepared, module, identifiers)
    _keep(module, caffe_param_specs=specs, loss_weights=loss_weights,
          caffe_loss=CaffeObjective(list(module.output_names), loss_weights))
    module.train()
    return lowering


class CaffeObjective:
    """`module.caffe_loss(outputs)`: Caffe's objective, the sum over weighted tops of loss_weight * sum(top)
    (Net::ForwardBackward's loss). `outputs` is what the module returned (a tensor or a tuple in
    `output_names` order) or a mapping from output name to tensor."""

    def __init__(self, output_names: Sequence[str], loss_weights: Mapping[str, float]):
        self.output_names = list(output_names)
        self.loss_weights = dict(loss_weights)

    def __call__(self, outputs) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        named = dict(outputs) if isinstance(outputs, Mapping) else dict(zip(self.output_names, outputs))
        total = None
        for name, weight in self.loss_weights.items():
            term = named[name].sum() * weight
            total = term if total is None else total + term
        if total is None:
            raise UnsupportedError("this net has no loss: no top has a non-zero loss_weight")
        return total


def caffe_loss_weights(net: Net) -> dict[Value, float]:
    """The values with non-zero loss weights, in net order. Layer::SetLossWeights: a layer's loss_weight is
    given once per top or not at all; LossLayer::LayerSetUp gives a loss layer without any loss_weight 1 (one
    value, so Caffe then refuses a loss layer with two tops and none); other layers default to 0."""
    weights: dict[Value, float] = {}
    for layer in net.layers():
        given = list(layer.loss_weights)
        if not given and is_loss_layer(layer):
            given = [1.0]
        if given and len(given) != len(layer.outputs):
            raise SchemaError("loss_weight must be unspecified or specified once per top blob", where=layer.where,
                              layer=layer, expected=len(layer.outputs), found=len(given))
        weights.update((value, float32_value(w)) for value, w in zip(layer.outputs, given) if w != 0)
    return weights


def _check_trainable(net: Net) -> None:
    """Every training-only layer can be computed, and its inputs fit each other (a deploy view never asks)."""
    net.require_input_shapes()
    for layer in net.layers():
        if not layer.spec.training_only:
            continue
        if converter_for(layer) is None:
            raise UnsupportedError(f"protodef does not compute {layer.type} for training", where=layer.where,
                                   layer=layer)
        try:
            layer.params.check_inputs(*(net.shape(v) for v in layer.inputs))
        except ProtodefError as error:
            raise error.at(layer.where, layer) from None


def _add_outputs(module: fx.GraphModule, value_names: list[str]) -> None:
    """Weighted values that later layers read are not net outputs; Caffe's objective counts them all the same,
    so they become outputs after the net's own."""
    if not value_names:
        return
    nodes = {node.name: node for node in module.graph.nodes}
    added = [nodes[module.value_nodes[name]] for name in value_names]
    for node in added:
        for user in node.users:    # an in-place ReLU after it would change the value returned
            if user.op == "call_module" and getattr(module.get_submodule(user.target), "inplace", False):
                module.get_submodule(user.target).inplace = False
    (output,) = [node for node in module.graph.nodes if node.op == "output"]
    current = output.args[0]
    current = list(current) if isinstance(current, (tuple, list)) else [current]
    output.args = (tuple(current + added),)
    module.recompile()
    _keep(module, output_names=list(module.output_names) + value_names)


def is_loss_layer(layer: Layer) -> bool:
    """A subclass of Caffe's LossLayer (Accuracy is not one)."""
    return layer.spec.loss_layer
