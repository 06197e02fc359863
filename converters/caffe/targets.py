"""Which Caffe each export targets: its layer types and the parameter features it reads, as data.

A converter asks the target before it emits a layer type or a field; a node whose only exact form needs
something the target lacks is refused, naming the target and what it would take.
"""
from __future__ import annotations

from dataclasses import dataclass

from protodef.errors import SchemaError

# BVLC Caffe 1.0 (tag 1.0, April 2017): src/caffe/layers/ at that tag, inference layers only.
BVLC_1_0 = frozenset({
    "AbsVal", "ArgMax", "BatchNorm", "BatchReindex", "Bias", "BNLL", "Concat", "Convolution", "Crop",
    "Deconvolution", "Dropout", "DummyData", "Eltwise", "ELU", "Embed", "Exp", "Filter", "Flatten", "Im2col",
    "InnerProduct", "Input", "Log", "LRN", "LSTM", "MVN", "Parameter", "Pooling", "Power", "PReLU", "Reduction",
    "ReLU", "Reshape", "RNN", "Scale", "Sigmoid", "Silence", "Slice", "Softmax", "Split", "SPP", "TanH",
    "Threshold", "Tile",
})

SSD_LAYERS = frozenset({"Permute", "Normalize", "PriorBox", "DetectionOutput"})

# What OpenCV 4.x's Caffe importer creates (docs/opencv-differences.md lists where it is not Caffe).
OPENCV_LAYERS = (BVLC_1_0 - {"Bias", "Embed", "Filter", "BatchReindex", "Im2col", "LSTM", "RNN", "SPP",
                             "DummyData", "Parameter", "Threshold", "Tile", "Reduction", "ArgMax"}
                 ) | SSD_LAYERS | {"ReLU6", "Interp"}

# Parameter features, by name:
#   round_mode        PoolingParameter.round_mode (BVLC after 1.0): FLOOR rounding
#   ceil_mode         PoolingParameter.ceil_mode (OpenCV, BVLC PR #3057 forks): false for floor rounding
#   lrn_k             LRN honours k (OpenCV's reader uses 1 whatever k says)
#   deconv_dilation   Deconvolution's output size counts the dilation (OpenCV's does not)
#   upsample_nearest  Upsample with one input repeats pixels `scale` times (MobileNet-YOLO)
CAFFE_FEATURES = frozenset({"lrn_k", "deconv_dilation"})


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    layers: frozenset[str]
    features: frozenset[str]

    def has(self, layer_type: str) -> bool:
        return layer_type in self.layers

    def reads(self, feature: str) -> bool:
        return feature in self.features


TARGETS: dict[str, Target] = {target.name: target for target in (
    Target("bvlc", "BVLC Caffe 1.0, the schema every Caffe toolchain reads", BVLC_1_0, CAFFE_FEATURES),
    Target("bvlc-master", "BVLC Caffe's last master (round_mode, Clip, Swish)", BVLC_1_0 | {"Clip", "Swish"},
           CAFFE_FEATURES | {"round_mode"}),
    Target("opencv", "OpenCV 4.x dnn's Caffe reader (ceil_mode, ReLU6, Permute, Interp)", OPENCV_LAYERS,
           frozenset({"ceil_mode"})),
    Target("ssd", "weiliu89/caffe, the SSD fork (Permute, Normalize, PriorBox, DetectionOutput)",
           BVLC_1_0 | SSD_LAYERS, CAFFE_FEATURES),
    Target("mobilenet-yolo", "eric612/MobileNet-YOLO (SSD's layers, ReLU6, nearest-neighbour Upsample)",
           BVLC_1_0 | SSD_LAYERS | {"ReLU6", "Upsample"}, CAFFE_FEATURES | {"upsample_nearest"}),
    Target("deeplab", "DeepLab v2 / PSPNet forks (Interp: bilinear with aligned corners)",
           BVLC_1_0 | {"Interp"}, CAFFE_FEATURES),
)}

DEFAULT_TARGET = "bvlc"


def target_named(name: str | Target) -> Target:
    if isinstance(name, Target):
        return name
    try:
        return TARGETS[name]
    except KeyError:
        raise SchemaError("unknown Caffe target", expected=", ".join(TARGETS), found=name) from None
