"""A YOLOv3 deploy prototxt (Darknet-53 backbone, three detection heads) as the Darknet-to-Caffe converters of
the MobileNet-YOLO fork write it: every convolution followed by BatchNorm, Scale and a leaky ReLU (slope 0.1),
residual Eltwise sums, a depthwise Deconvolution (bilinear, stride 2) to upsample and Concat for the routes, as
the fork's yolov3-tiny.prototxt has them. The detection layer itself is left out (OpenCV does not know it):
its three 255-channel inputs are the net's outputs, so every backend, OpenCV included, runs the whole net.

`python bench/yolov3_prototxt.py [--size 608] > yolov3.prototxt`
"""
from __future__ import annotations

import argparse

_DARKNET53_STAGES = ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))   # (channels, residual blocks)
_CLASSES_TIMES_BOXES = 255                                                 # 3 boxes x (80 classes + 5)


class _Writer:
    def __init__(self, size: int):
        self.lines = ['name: "YOLOv3"', 'input: "data"', *(f"input_dim: {d}" for d in (1, 3, size, size))]
        self.count = 0

    def layer(self, name: str, kind: str, bottoms: list[str], top: str, params: str = "") -> str:
        inputs = " ".join(f'bottom: "{b}"' for b in bottoms)
        self.lines.append(f'layer {{ name: "{name}" type: "{kind}" {inputs} top: "{top}" {params} }}')
        return top

    def conv(self, bottom: str, channels: int, kernel: int, stride: int = 1) -> str:
        """Convolution without bias, BatchNorm, Scale with bias, leaky ReLU: darknet's [convolutional]."""
        self.count += 1
        name = f"layer{self.count}-conv"
        self.layer(name, "Convolution", [bottom], name,
                   f"convolution_param {{ num_output: {channels} kernel_size: {kernel} stride: {stride} "
                   f"pad: {kernel // 2} bias_term: false }}")
        self.layer(f"layer{self.count}-bn", "BatchNorm", [name], name, "batch_norm_param { use_global_stats: true }")
        self.layer(f"layer{self.count}-scale", "Scale", [name], name, "scale_param { bias_term: true }")
        return self.layer(f"layer{self.count}-act", "ReLU", [name], name, "relu_param { negative_slope: 0.1 }")

    def head(self, bottom: str, channels: int) -> tuple[str, str]:
        """Five convolutions (the route) and the two that make one scale's detections."""
        x = bottom
        for index in range(5):
            x = self.conv(x, channels if index % 2 == 0 else channels * 2, 1 if index % 2 == 0 else 3)
        route = x
        x = self.conv(x, channels * 2, 3)
        self.count += 1
        name = f"layer{self.count}-conv"
        out = self.layer(name, "Convolution", [x], name,
                         f"convolution_param {{ num_output: {_CLASSES_TIMES_BOXES} kernel_size: 1 }}")
        return route, out

    def upsample_and_join(self, route: str, skip: str, channels: int) -> str:
        x = self.conv(route, channels, 1)
        self.count += 1
        up = self.layer(f"layer{self.count}-upsample", "Deconvolution", [x], f"layer{self.count}-upsample",
                        f"convolution_param {{ num_output: {channels} group: {channels} kernel_size: 4 stride: 2 "
                        "pad: 1 bias_term: false weight_filler { type: 'bilinear' } }")
        self.count += 1
        return self.layer(f"layer{self.count}-concat", "Concat", [up, skip], f"layer{self.count}-concat")


def yolov3_prototxt(size: int = 608, detection: bool = False) -> str:
    """Darknet-53 (52 convolutions, 23 residual sums) and YOLOv3's three heads at strides 32, 16 and 8: 75
    convolutions, each with BatchNorm, Scale and a leaky ReLU but the three last; `detection` adds the fork's
    Yolov3DetectionOutput on them (COCO's anchors), which OpenCV cannot run."""
    w = _Writer(size)
    x = w.conv("data", 32, 3)
    taps = []
    for channels, blocks in _DARKNET53_STAGES:
        x = w.conv(x, channels, 3, 2)
        for _ in range(blocks):
            shortcut = x
            y = w.conv(w.conv(x, channels // 2, 1), channels, 3)
            w.count += 1
            x = w.layer(f"layer{w.count}-shortcut", "Eltwise", [shortcut, y], f"layer{w.count}-shortcut")
        taps.append(x)
    route, large = w.head(x, 512)
    route, medium = w.head(w.upsample_and_join(route, taps[3], 256), 256)
    _, small = w.head(w.upsample_and_join(route, taps[2], 128), 128)
    if detection:
        anchors = "10 13 16 30 33 23 30 61 62 45 59 119 116 90 156 198 373 326".split()
        params = " ".join([*(f"biases: {a}" for a in anchors), *(f"mask: {m}" for m in (6, 7, 8, 3, 4, 5, 0, 1, 2)),
                           "mask_group_num: 3", "anchors_scale: 32 anchors_scale: 16 anchors_scale: 8"])
        w.layer("detection_out", "Yolov3DetectionOutput", [large, medium, small], "detection_out",
                f"yolov3_detection_output_param {{ num_classes: 80 nms_threshold: 0.45 {params} }}")
    return "\n".join(w.lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=608)
    parser.add_argument("--detection", action="store_true", help="end with Yolov3DetectionOutput")
    args = parser.parse_args()
    print(yolov3_prototxt(args.size, args.detection), end="")


if __name__ == "__main__":
    main()
