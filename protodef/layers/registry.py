"""The tables keyed by Caffe layer type: the layer specs here, and each backend's converters (one `Registry`
type serves all three). Each Caffe type is defined once, by a spec class in a family module."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from ..ir import Shape

# Families group layer types for drawing, reporting and passes; each is one module in protodef/layers/,
# converters/onnx/ and converters/pytorch/.
FAMILIES = ("data", "conv", "pool", "dense", "norm", "activation", "merge", "reshape", "resize", "softmax",
            "detection", "loss", "misc")

Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
    """A table keyed by Caffe layer type. An entry is registered once (a second is an error unless it
    replaces on purpose, and removing it brings back what it replaced); the modules that register the
    built-in entries are imported on first use, so importing a table costs nothing."""

    def __init__(self, what: str, package: str, families: tuple[str, ...] | None = None):
        self.what = what                    # "layer spec", "ONNX converter", ...: for error messages
        self.package = package              # its modules register the built-in entries when imported:
        self.families = families            # one per family (FAMILIES by default; a package may lack some)
        self._entries: dict[str, Entry] = {}
        self._replaced: dict[str, list[Entry]] = {}
        self._loading = False
        self._loaded = False

    def load(self) -> None:
        if not self._loaded and not self._loading:
            self._loading = True
            try:
                for family in self.families or FAMILIES:
                    _import_if_present(f"{self.package}.{family}")
                self._loaded = True
            finally:
                self._loading = False

    def register(self, type_name: str, entry: Entry, *, replace: bool = False) -> Entry:
        if type_name in self._entries:
            if not replace:
                existing = self._entries[type_name]
                origin = getattr(existing, "__module__", "")
                raise ValueError(f"a {self.what} for {type_name!r} is already registered"
                                 + (f" ({origin}.{getattr(existing, '__name__', '')})" if origin else ""))
            self._replaced.setdefault(type_name, []).append(self._entries[type_name])
        self._entries[type_name] = entry
        return entry

    def decorator(self, type_name: str) -> Callable[[Entry], Entry]:
        def register(entry: Entry) -> Entry:
            return self.register(type_name, entry)
        return register

    def remove(self, type_name: str) -> None:
        """Forget an entry; the one it replaced, if any, comes back."""
        previous = self._replaced.get(type_name)
        if previous:
            self._entries[type_name] = previous.pop()
        else:
            self._entries.pop(type_name, None)

    def get(self, type_name: str) -> Entry | None:
        self.load()
        return self._entries.get(type_name)

    def __getitem__(self, type_name: str) -> Entry:
        self.load()
        return self._entries[type_name]

    def __contains__(self, type_name: object) -> bool:
        self.load()
        return type_name in self._entries

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self.load()
        return len(self._entries)

    def items(self) -> list[tuple[str, Entry]]:
        self.load()
        return list(self._entries.items())


def _import_if_present(name: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:     # a module that is there but fails to import is a bug, not an absent family
            raise


class NetContext:
    """What every backend's converters ask of the net they lower: its values' shapes."""

    def __init__(self, net: Any):
        self.net = net

    def shape(self, value: Any) -> Shape:
        return self.net.shape(value)

    def input_shape(self, layer: Any, index: int = 0) -> Shape:
        return self.net.shape(layer.inputs[index])

    def output_shape(self, layer: Any, index: int = 0) -> Shape:
        return self.net.shape(layer.outputs[index])


@dataclass(frozen=True)
class OpenCVDifference:
    """Where OpenCV's dnn computes something other than Caffe for this type (docs/opencv-differences.md):
    `protodef check` takes onnxruntime as the reference from such a layer on."""

    reason: str
    applies: Callable[[Any], bool] = lambda params: True    # some differences depend on the parameters


@dataclass(frozen=True)
class LayerSpec:
    """What protodef knows of one Caffe layer type."""

    type: str
    params: type                       # a frozen dataclass with from_proto/infer (see `layer`)
    family: str
    source: str = "BVLC"               # BVLC Caffe, or the fork the type comes from
    aliases: tuple[str, ...] = ()      # other spellings of the same type (forks, legacy names)
    label: tuple[str, ...] = ()        # params worth showing in drawings and tables
    inputs: tuple[int, int | None] = (1, 1)    # allowed number of bottoms (max None: unbounded)
    outputs: tuple[int, int | None] = (1, 1)   # allowed number of tops
    one_top_per_bottom: bool = False   # Caffe's EqualNumBottomTopBlobs: as many tops as bottoms, top i from bottom i
    training_only: bool = False        # loss/accuracy: a deploy view drops them
    loss_layer: bool = False           # a subclass of Caffe's LossLayer: its first top's loss_weight defaults to 1
    produces_input: bool = False       # data layers: their tops are net inputs
    in_place_ok: bool = True           # whether Caffe lets top == bottom
    # The LayerParameter field holding the type's settings (pooling_param) and the fields of it protodef honours:
    # the build refuses any other field set to a non-default value, before from_proto runs.
    parameter: str = ""
    honoured: tuple[str, ...] = ()
    plugin: bool = False
    # Computes a new tensor its backward does not need, so an in-place activation may overwrite it (PyTorch).
    fresh_output: bool = False
    # Per-element and drawn as part of the layer before it even with its own top (BatchNorm, Scale, Bias).
    stacks_in_drawing: bool = False
    opencv_differs: OpenCVDifference | None = None
    # Weight blobs that are statistics, not learned values: index -> "variance" (random init keeps it
    # positive) or "scale_factor" (random init makes it 1).
    statistics: dict[int, str] = field(default_factory=dict)
    # Output axes whose size depends on the data (detections): output index -> {axis: symbol}.
    dynamic_axes: dict[int, dict[int, str]] = field(default_factory=dict)
    # The input taking boxes as (R, 5) rows (batch index, x1, y1, x2, y2) in image pixels, which params'
    # spatial_scale maps onto input 0's (N, C, H, W): random inputs give it valid boxes (protodef.verify).
    rois_input: int | None = None

    def differs_in_opencv(self, params: Any) -> bool:
        return self.opencv_differs is not None and self.opencv_differs.applies(params)


class _SpecRegistry(Registry[LayerSpec]):
    """The layer specs, where an alias finds the spec it spells."""

    def __init__(self) -> None:
        super().__init__("layer spec", "protodef.layers")
        self._aliases: dict[str, str] = {}

    def register(self, type_name: str, entry: LayerSpec, *, replace: bool = False) -> LayerSpec:
        for name in (type_name, *entry.aliases):
            if not replace and (name in self._entries or name in self._aliases):
                raise ValueError(f"layer type {name!r} is already registered")
        super().register(type_name, entry, replace=replace)
        for name in entry.aliases:
            self._aliases[name] = type_name
        return entry

    def get(self, type_name: str) -> LayerSpec | None:
        self.load()
        return self._entries.get(self._aliases.get(type_name, type_name))

    def aliases(self) -> dict[str, str]:
        self.load()
        return dict(self._aliases)


LAYER_SPECS = _SpecRegistry()


def layer(type_name: str, *, family: str, **options: Any) -> Callable[[type], type]:
    """Class decorator registering a params class as the spec of Caffe type `type_name`.

    The class must provide:
      from_proto(cls, lp: LayerParameter, inputs: tuple[Shape, ...]) -> instance (raise SchemaError on
          parameters it cannot honour);
      infer(self, *inputs: Shape) -> Shape | list[Shape]  (a list when the layer has several tops);
    and may provide weight_shapes(self, *inputs) -> list[Shape], weight_fillers(self) -> list[filler|None]
    and macs(self, inputs, outputs) -> int.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown layer family {family!r}")

    def register(cls: type) -> type:
        LAYER_SPECS.register(type_name, LayerSpec(type=type_name, params=cls, family=family, **options))
        return cls

    return register


def spec_of(type_name: str) -> LayerSpec | None:
    return LAYER_SPECS.get(type_name)


__all__ = ["FAMILIES", "LAYER_SPECS", "LayerSpec", "NetContext", "OpenCVDifference", "Registry", "Shape", "layer",
           "spec_of"]
