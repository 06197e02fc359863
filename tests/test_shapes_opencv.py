"""IR shapes equal OpenCV dnn's, layer by layer, for every corpus deploy net that OpenCV loads."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import (
    CORPUS_INPUT_SHAPES,
    OPENCV_CANNOT_LOAD,
    corpus_files,
    corpus_params,
    refused_as_known,
)

from protodef.api import read_net
from protodef.weights import write_caffemodel

MAX_PARAMETERS = 70_000_000      # bigger nets (VGG, SENet-154) are covered end to end in test_onnx.py
# Besides OPENCV_CANNOT_LOAD: nets whose shapes OpenCV's getLayersShapes cannot give.
NO_OPENCV_SHAPES = {"hand_pose_deploy.prototxt": "OpenCV 4.14's getLayersShapes fails on OpenPose's nets",
                    "pose_coco_pose_deploy_linevec.prototxt": "OpenCV 4.14's getLayersShapes fails on OpenPose's nets"}


def skipped(path: Path) -> list:
    reason = OPENCV_CANNOT_LOAD.get(path.name) or NO_OPENCV_SHAPES.get(path.name)
    return [pytest.mark.skip(reason=reason)] if reason else []


@pytest.mark.parametrize("path", corpus_params(corpus_files("deploy"), skipped))
def test_every_layer_shape_equals_opencv(path, tmp_path):
    if refused_as_known(path):
        return
    net = read_net(path, init="none", input_shape=CORPUS_INPUT_SHAPES.get(path.name))
    if len(net.inputs) != 1:
        pytest.skip("OpenCV's getLayersShapes takes one input shape")
    from protodef.attach import expected_weight_shapes
    if sum(math.prod(s) for layer in net.layers() for s in expected_weight_shapes(net, layer)) > MAX_PARAMETERS:
        pytest.skip("too big for this test's time budget")
    rng = np.random.default_rng(0)
    weights = tmp_path / "w.caffemodel"
    write_caffemodel(weights, [(l.caffe_name, l.type, [rng.standard_normal(s, dtype=np.float32)
                                                        for s in expected_weight_shapes(net, l)])
                               for l in net.layers() if expected_weight_shapes(net, l)]
                     or [(net.layers()[0].caffe_name, net.layers()[0].type, [])])
    cv_net = cv2.dnn.readNetFromCaffe(str(path), str(weights))
    ids, _, outs = cv_net.getLayersShapes([list(net.shape(net.inputs[0].value))])
    opencv = {cv_net.getLayer(int(i)).name: [tuple(int(d) for d in np.ravel(s)) for s in out]
              for i, out in zip(np.ravel(ids), outs)}
    names = [layer.caffe_name for layer in net.layers()]
    compared = 0
    for layer in net.layers():
        if names.count(layer.caffe_name) != 1 or layer.caffe_name not in opencv:
            continue
        if layer.spec.dynamic_axes:
            continue     # DetectionOutput's row count depends on the data (OpenCV pads it to keep_top_k)
        theirs = opencv[layer.caffe_name]
        ours = [net.shape(v) for v in layer.outputs]
        if len(theirs) != len(ours):
            continue     # OpenCV drops or adds tops for some layers (Split copies, pooling masks)
        # OpenCV keeps 4-D shapes where Caffe's are shorter; compare element counts and trailing axes then.
        for a, b in zip(ours, theirs):
            if len(a) == len(b):
                assert a == b, f"{layer.name} ({layer.type}): ours {a}, OpenCV {b}"
            else:
                assert math.prod(a) == math.prod(b), f"{layer.name} ({layer.type}): ours {a}, OpenCV {b}"
        compared += 1
    assert compared >= min(3, len(net))
