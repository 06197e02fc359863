"""The one table of layer types: each Caffe type is defined once, by a spec class in a family module."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

Shape = tuple[int, ...]

# Families group layer types for drawing, reporting and passes.
FAMILIES = ("data", "conv", "pool", "dense", "norm", "activation", "merge", "reshape", "softmax",
            "detection", "loss", "misc")


@dataclass(frozen=True)
class LayerSpec:
    """What protodef knows of one Caffe layer type."""

    type: str
    params: type                       # a frozen dataclass with from_proto/infer (see layers/README in docstring)
    family: str
    source: str = "BVLC"               # BVLC Caffe, or the fork the type comes from
    label: tuple[str, ...] = ()        # params worth showing in drawings and tables
    inputs: tuple[int, int | None] = (1, 1)    # allowed number of bottoms (max None: unbounded)
    outputs: tuple[int, int | None] = (1, 1)   # allowed number of tops
    training_only: bool = False        # loss/accuracy: a deploy view drops them
    produces_input: bool = False       # data layers: their tops are net inputs
    in_place_ok: bool = True           # whether Caffe lets top == bottom
    honoured: tuple[str, ...] = ()     # parameter fields honoured (for docs/layers.md)
    plugin: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


LAYER_SPECS: dict[str, LayerSpec] = {}


def layer(type_name: str, *, family: str, **options: Any) -> Callable[[type], type]:
    """Class decorator registering a params class as the spec of Caffe type `type_name`.

    The class must provide:
      from_proto(cls, lp: LayerParameter, inputs: tuple[Shape, ...]) -> instance (raise SchemaError on
          parameters it cannot honour);
      infer(self, *inputs: Shape) -> Shape | list[Shape]  (a list when the layer has several tops);
    and may provide weight_shapes(self, *inputs) -> list[Shape] and weight_fillers(self) -> list[filler|None].
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown layer family {family!r}")

    def register(cls: type) -> type:
        register_spec(LayerSpec(type=type_name, params=cls, family=family, **options))
        return cls

    return register


def register_spec(spec: LayerSpec, *, replace: bool = False) -> None:
    if spec.type in LAYER_SPECS and not replace:
        raise ValueError(f"layer type {spec.type!r} is already registered")
    LAYER_SPECS[spec.type] = spec


def alias(type_name: str, target: str, **overrides: Any) -> None:
    """Register `type_name` (a fork's or a legacy spelling) with the same params class as `target`."""
    base = LAYER_SPECS[target]
    options = {f: getattr(base, f) for f in base.__dataclass_fields__ if f not in ("type",)}
    options.update(overrides)
    register_spec(LayerSpec(type=type_name, **options))


def spec_of(type_name: str) -> LayerSpec | None:
    _load_families()
    return LAYER_SPECS.get(type_name)


_loaded = False


def _load_families() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from . import families  # noqa: F401  (imports every family module, which registers its specs)
