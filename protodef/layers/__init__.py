"""Layer specs: one definition per Caffe layer type (see registry.py)."""
from .registry import LAYER_SPECS, LayerSpec, layer, spec_of

__all__ = ["LAYER_SPECS", "LayerSpec", "layer", "spec_of"]
