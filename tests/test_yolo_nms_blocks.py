"""The PyTorch YOLO detection output on many candidates: Caffe's greedy NMS exactly, in blocks rather than one
step per kept box (with untrained weights YOLOv3 at 608x608 has 1.8 M candidates and keeps ~9,000: one step
per kept box took hours, and `protodef check` never finished)."""
from __future__ import annotations

import numpy as np
import pytest
import reference_detection as reference
import torch
from support import assert_close

from converters.pytorch.modules.detection import YoloDetectionOutput

BIASES = [10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319]


def yolov3(num_classes: int, nms: float) -> YoloDetectionOutput:
    anchors = [[float(b) for b in BIASES[2 * a: 2 * a + 2]] for a in (3, 4, 5)]
    return YoloDetectionOutput(3, num_classes, 3, 0.01, nms, [sum(anchors, [])], [8])


@pytest.mark.parametrize("nms", [0.45, 0.7])
def test_many_candidates_are_kept_as_caffe_keeps_them(nms):
    # 10 x 10 cells x 3 boxes: 300 distinct boxes (two blocks of the NMS), each a candidate for both classes.
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 3 * (5 + 2), 10, 10)).astype(np.float32)
    with torch.no_grad():
        rows = yolov3(2, nms)(torch.from_numpy(x)).numpy()
    expected = reference.yolov3_detection_output([x], num_classes=2, num_box=3, biases=BIASES, anchors_scale=[8],
                                                 mask=[3, 4, 5], mask_group_num=1, nms_threshold=nms)
    assert rows.shape == expected.shape and rows.shape[2] > 20
    assert_close(rows, expected, "YOLOv3 detections")


def test_nms_works_per_block_not_per_kept_box(monkeypatch):
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((1, 3 * (5 + 80), 16, 16)).astype(np.float32))
    module = yolov3(80, 0.45)
    calls = []
    overlaps = YoloDetectionOutput.overlaps
    monkeypatch.setattr(YoloDetectionOutput, "overlaps", lambda self, a, b: calls.append(1) or overlaps(self, a, b))
    with torch.no_grad():
        rows = module(x)
    # 768 boxes, each a candidate for most of the 80 classes: copies of a box go before NMS, then 3 blocks of
    # 256 take two overlap matrices each.
    assert rows.shape[2] > 100
    assert len(calls) <= 6
