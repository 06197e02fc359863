"""Users' own layer types: `protodef.register_layer("MyLayer", shape=..., onnx=..., torch=...)`.

A plugin's layer gets its parameters as plain data: every `*_param` block the layer sets (typed ones
converted to dicts) and every block our schema lacks (a fork's `my_param { ... }`), by field name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from google.protobuf.json_format import MessageToDict

from .errors import ShapeError
from .ir import Shape
from .layers.registry import FAMILIES, LAYER_SPECS, LayerSpec, Registry, spec_of


@dataclass(frozen=True)
class Plugin:
    type: str
    shape: Callable[[list[Shape], dict[str, Any]], Any]
    onnx: Callable | None = None          # (layer, ctx) -> list of NodeProto, like a built-in converter
    torch: Callable | None = None         # (layer, ctx) -> torch.nn.Module taking the layer's inputs, likewise
    weights: Callable[[list[Shape], dict[str, Any]], list[Shape]] | None = None


PLUGINS: dict[str, Plugin] = {}


@dataclass(frozen=True, eq=False)
class PluginParams:
    """Params of a plugin layer: its parameter blocks as plain data, and the number of outputs."""

    fields: dict[str, Any] = field(default_factory=dict)
    n_outputs: int = 1
    plugin: Plugin | None = None

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...], extra: dict[str, Any] | None = None) -> "PluginParams":
        fields = {d.name: MessageToDict(v, preserving_proto_field_name=True)
                  for d, v in lp.ListFields() if d.name.endswith("_param") and d.message_type is not None}
        fields.update(extra or {})
        return cls(fields, len(lp.top), PLUGINS[lp.type])

    def infer(self, *inputs: Shape) -> Shape | list[Shape]:
        result = self.plugin.shape(list(inputs), self.fields)
        shapes = [tuple(result)] if _is_shape(result) else [tuple(s) for s in result]
        if len(shapes) != self.n_outputs:
            raise ShapeError(f"the plugin for {self.plugin.type} gave the wrong number of output shapes",
                             expected=self.n_outputs, found=len(shapes))
        return shapes if self.n_outputs != 1 else shapes[0]

    def weight_shapes(self, *inputs: Shape) -> list[Shape]:
        if self.plugin.weights is None:
            return []
        return [tuple(s) for s in self.plugin.weights(list(inputs), self.fields)]


def _is_shape(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(d, int) for d in value)


def register_layer(type_name: str, *, shape: Callable, onnx: Callable | None = None, torch: Callable | None = None,
                   weights: Callable | None = None, family: str = "misc", replace: bool = False) -> Plugin:
    """Teach protodef a layer type without patching it: the spec and the converters go into the same tables
    as the built-in types', with the same converter signatures.

    shape(input_shapes, fields) -> one shape or a list of shapes (one per top);
    weights(input_shapes, fields) -> the shapes of the layer's blobs in the caffemodel (optional);
    onnx(layer, ctx) -> a list of ONNX nodes, like converters/onnx's: built with ctx.node (protodef's own
        ONNX classes) or with onnx.helper (taken as they are);
    torch(layer, ctx) -> an nn.Module (or Steps), like converters/pytorch's.
    `replace=True` overrides a built-in type until `unregister_layer`.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}")
    if spec_of(type_name) is not None and not replace:
        raise ValueError(f"layer type {type_name!r} is already known; pass replace=True to override it")
    plugin = Plugin(type_name, shape, onnx, torch, weights)
    LAYER_SPECS.register(type_name, LayerSpec(type=type_name, params=PluginParams, family=family, source="plugin",
                                              inputs=(0, None), outputs=(0, None), plugin=True), replace=True)
    for table, converter in _converter_tables(onnx=onnx, torch=torch):
        table.load()      # built-ins first, so that a replaced one comes back on unregister
        table.register(type_name, converter, replace=True)
    PLUGINS[type_name] = plugin
    return plugin


def unregister_layer(type_name: str) -> None:
    """Forget a plugin; a built-in type it replaced comes back."""
    plugin = PLUGINS.pop(type_name, None)
    if plugin is None:
        return
    LAYER_SPECS.remove(type_name)
    for table, _ in _converter_tables(onnx=plugin.onnx, torch=plugin.torch):
        table.remove(type_name)


def _converter_tables(*, onnx: Callable | None, torch: Callable | None) -> list[tuple[Registry, Callable]]:
    """The backends' converter tables a plugin has converters for (torch's only when it gives one, so that
    registering an ONNX-only plugin never imports torch)."""
    tables = []
    if onnx is not None:
        from converters.onnx.registry import ONNX_CONVERTERS
        tables.append((ONNX_CONVERTERS, onnx))
    if torch is not None:
        from converters.pytorch.registry import TORCH_CONVERTERS
        tables.append((TORCH_CONVERTERS, torch))
    return tables
