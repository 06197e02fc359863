"""NumPy references of the SSD and YOLO fork layers, written from their Caffe sources (weiliu89/caffe
normalize_layer.cpp, prior_box_layer.cpp, detection_output_layer.cpp with bbox_util.cpp; eric612/MobileNet-YOLO
reorg, yolo_detection_output_layer.cpp, yolov3_detection_output_layer.cpp). They are the oracles where OpenCV
differs from Caffe (DetectionOutput pads its rows) or lacks the layer.

Arithmetic is float32 where Caffe's is float and float64 where Caffe's C++ promotes to double. They take the
layers' settings as the prototxt writes them, so they share nothing with protodef's specs.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

f32 = np.float32
FLT_MAX = float(np.finfo(np.float32).max)


# ---- Normalize ---------------------------------------------------------------------------------------


def normalize(x: np.ndarray, scale: np.ndarray, *, across_spatial: bool = True, channel_shared: bool = True,
              eps: float = 1e-10) -> np.ndarray:
    """NormalizeLayer::Forward_cpu: norm = sqrt(sum of squares + eps), per sample or per position."""
    x = x.astype(f32)
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    eps = f32(eps)
    if across_spatial:
        norm = np.sqrt(np.sum(flat * flat, axis=(1, 2), dtype=f32) + eps)[:, None, None]
    else:
        norm = np.sqrt(np.sum(flat * flat, axis=1, dtype=f32) + eps)[:, None, :]
    out = flat / norm
    scale = np.asarray(scale, f32)
    out = out * (scale.reshape(()) if channel_shared else scale.reshape(1, c, 1))
    return out.reshape(x.shape)


# ---- PriorBox ----------------------------------------------------------------------------------------


def prior_box(layer_hw: tuple[int, int], image_hw: tuple[int, int], *, min_sizes: Sequence[float],
              max_sizes: Sequence[float] = (), aspect_ratios: Sequence[float] = (), flip: bool = True,
              clip: bool = False, variance: Sequence[float] = (), img_size: int | None = None,
              img_hw: tuple[int, int] | None = None, step: float | None = None,
              step_hw: tuple[float, float] | None = None, offset: float = 0.5) -> np.ndarray:
    """PriorBoxLayer::LayerSetUp + Forward_cpu, one box at a time."""
    ratios = [1.0]
    for ar in aspect_ratios:
        ar = float(f32(ar))
        if any(abs(ar - known) < 1e-6 for known in ratios):
            continue
        ratios.append(ar)
        if flip:
            ratios.append(float(f32(1.0 / ar)))
    num_priors = len(ratios) * len(min_sizes) + len(max_sizes)
    layer_h, layer_w = layer_hw
    if img_hw is not None:
        img_h, img_w = img_hw
    elif img_size is not None:
        img_h = img_w = img_size
    else:
        img_h, img_w = image_hw
    if step_hw is not None:
        step_h, step_w = f32(step_hw[0]), f32(step_hw[1])
    elif step is not None:
        step_h = step_w = f32(step)
    else:
        step_w = f32(img_w) / f32(layer_w)
        step_h = f32(img_h) / f32(layer_h)
    out = []

    def corners(cx: f32, cy: f32, bw: f32, bh: f32) -> None:
        out.extend([f32((float(cx) - float(bw) / 2.0) / img_w), f32((float(cy) - float(bh) / 2.0) / img_h),
                    f32((float(cx) + float(bw) / 2.0) / img_w), f32((float(cy) + float(bh) / 2.0) / img_h)])

    for h in range(layer_h):
        for w in range(layer_w):
            cx = (f32(w) + f32(offset)) * step_w
            cy = (f32(h) + f32(offset)) * step_h
            for s, min_size in enumerate(min_sizes):
                side = int(min_size)
                corners(cx, cy, f32(side), f32(side))
                if max_sizes:
                    root = f32(math.sqrt(side * int(max_sizes[s])))
                    corners(cx, cy, root, root)
                for ar in ratios:
                    if abs(ar - 1.0) < 1e-6:
                        continue
                    corners(cx, cy, f32(side * math.sqrt(ar)), f32(side / math.sqrt(ar)))
    boxes = np.asarray(out, f32)
    assert boxes.size == layer_h * layer_w * num_priors * 4
    if clip:
        boxes = np.minimum(np.maximum(boxes, f32(0)), f32(1))
    variance = list(variance) or [0.1]
    variances = np.asarray([variance[0] if len(variance) == 1 else variance[i % 4] for i in range(boxes.size)], f32)
    return np.stack([boxes, variances])[None]


# ---- DetectionOutput ---------------------------------------------------------------------------------


def decode_boxes(prior: np.ndarray, variance: np.ndarray, loc: np.ndarray, code_type: str,
                 variance_encoded_in_target: bool) -> np.ndarray:
    """bbox_util.cpp DecodeBBox for each prior (float32, clip_bbox false): (P, 4) corners."""
    px0, py0, px1, py1 = (prior[:, k] for k in range(4))
    l0, l1, l2, l3 = (loc[:, k] for k in range(4))
    v = np.ones_like(variance) if variance_encoded_in_target else variance
    if code_type == "CORNER":
        return np.stack([px0 + v[:, 0] * l0, py0 + v[:, 1] * l1, px1 + v[:, 2] * l2, py1 + v[:, 3] * l3], axis=1)
    pw, ph = px1 - px0, py1 - py0
    if code_type == "CORNER_SIZE":
        return np.stack([px0 + v[:, 0] * l0 * pw, py0 + v[:, 1] * l1 * ph,
                         px1 + v[:, 2] * l2 * pw, py1 + v[:, 3] * l3 * ph], axis=1)
    assert code_type == "CENTER_SIZE", code_type
    pcx, pcy = (px0 + px1) / f32(2), (py0 + py1) / f32(2)
    cx = v[:, 0] * l0 * pw + pcx
    cy = v[:, 1] * l1 * ph + pcy
    w = np.exp(v[:, 2] * l2) * pw
    h = np.exp(v[:, 3] * l3) * ph
    return np.stack([cx - w / f32(2), cy - h / f32(2), cx + w / f32(2), cy + h / f32(2)], axis=1).astype(f32)


def box_size(boxes: np.ndarray) -> np.ndarray:
    """BBoxSize: width * height, 0 for an inverted box."""
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return np.where((w < 0) | (h < 0), f32(0), w * h).astype(f32)


def jaccard(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """JaccardOverlap(box, each of others), float32."""
    disjoint = ((others[:, 0] > box[2]) | (others[:, 2] < box[0]) | (others[:, 1] > box[3])
                | (others[:, 3] < box[1]))
    iw = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    ih = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = iw * ih
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (box_size(box) + box_size(others) - inter)
    return np.where(disjoint | ~((iw > 0) & (ih > 0)), f32(0), iou).astype(f32)


def apply_nms_fast(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float,
                   eta: float, top_k: int) -> list[int]:
    """ApplyNMSFast: scores > threshold, stable sort descending, top_k, greedy keep if IoU <= threshold."""
    candidates = [i for i in range(len(scores)) if scores[i] > f32(score_threshold)]
    candidates.sort(key=lambda i: -scores[i])      # stable: equal scores keep index order
    if -1 < top_k < len(candidates):
        candidates = candidates[:top_k]
    adaptive = f32(nms_threshold)
    kept: list[int] = []
    for index in candidates:
        keep = not kept or bool(np.all(jaccard(boxes[index], boxes[kept]) <= adaptive))
        if keep:
            kept.append(index)
            if eta < 1 and adaptive > 0.5:
                adaptive = f32(adaptive * f32(eta))
    return kept


def detection_output(loc: np.ndarray, conf: np.ndarray, prior: np.ndarray, *, num_classes: int,
                     share_location: bool = True, background_label_id: int = 0, code_type: str = "CORNER",
                     variance_encoded_in_target: bool = False, keep_top_k: int = -1,
                     confidence_threshold: float | None = None, nms_threshold: float = 0.3, top_k: int = -1,
                     eta: float = 1.0) -> np.ndarray:
    """DetectionOutputLayer::Forward_cpu: (1, 1, rows, 7)."""
    num = loc.shape[0]
    num_priors = prior.shape[2] // 4
    loc_classes = 1 if share_location else num_classes
    loc = loc.astype(f32).reshape(num, num_priors, loc_classes, 4)
    conf = conf.astype(f32).reshape(num, num_priors, num_classes)
    priors = prior[0, 0].astype(f32).reshape(num_priors, 4)
    variances = prior[0, 1].astype(f32).reshape(num_priors, 4)
    threshold = -FLT_MAX if confidence_threshold is None else confidence_threshold
    rows = []
    for i in range(num):
        decoded = {}
        for c in range(loc_classes):
            label = -1 if share_location else c
            # Forward_cpu's DecodeBBoxesAll also skips shared boxes when background_label_id is -1, then aborts
            # ("Could not find location predictions"); protodef decodes them there, and so do we.
            if not share_location and label == background_label_id:
                continue
            decoded[label] = decode_boxes(priors, variances, loc[i, :, c], code_type, variance_encoded_in_target)
        indices: dict[int, list[int]] = {}
        for c in range(num_classes):
            if c == background_label_id:
                continue
            boxes = decoded[-1 if share_location else c]
            indices[c] = apply_nms_fast(boxes, conf[i, :, c], threshold, nms_threshold, eta, top_k)
        total = sum(len(v) for v in indices.values())
        if -1 < keep_top_k < total:
            pairs = [(conf[i, idx, c], c, idx) for c in sorted(indices) for idx in indices[c]]
            pairs.sort(key=lambda pair: -pair[0])     # Caffe's std::sort leaves ties unordered; we keep them stable
            indices = {}
            for _, c, idx in pairs[:keep_top_k]:
                indices.setdefault(c, []).append(idx)
        for c in sorted(indices):
            boxes = decoded[-1 if share_location else c]
            for idx in indices[c]:
                rows.append([i, c, conf[i, idx, c], *boxes[idx]])
    if not rows:
        rows = [[i, -1, -1, -1, -1, -1, -1] for i in range(num)]
    return np.asarray(rows, f32).reshape(1, 1, -1, 7)


# ---- Reorg -------------------------------------------------------------------------------------------


def reorg(x: np.ndarray, stride: int, reverse: bool = False) -> np.ndarray:
    """reorg_cpu(bottom, W, H, C, N, stride, forward=reverse, top), with Reshape's top shape."""
    n, c, h, w = x.shape
    s = stride
    out_c = c // (s * s)
    b, k, j, i = np.meshgrid(np.arange(n), np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    bottom_index = i + w * (j + h * (k + c * b))
    c2, offset = k % out_c, k // out_c
    w2, h2 = i * s + offset % s, j * s + offset // s
    top_index = w2 + w * s * (h2 + h * s * (c2 + out_c * b))
    src, dst = x.reshape(-1), np.empty(x.size, x.dtype)
    if reverse:
        dst[top_index.ravel()] = src[bottom_index.ravel()]
        return dst.reshape(n, c // (s * s), h * s, w * s)
    dst[bottom_index.ravel()] = src[top_index.ravel()]
    return dst.reshape(n, c * s * s, h // s, w // s)


# ---- YOLO detection outputs --------------------------------------------------------------------------


def sigmoid(x):
    return f32(1) / (f32(1) + np.exp(-f32(x)))


def center_ious(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """box_iou of the YOLO layers: one (x, y, w, h) box against rows of others, in float."""
    half = f32(2)

    def overlap(x1, w1, x2, w2):
        return np.minimum(f32(x1 + w1 / half), x2 + w2 / half) - np.maximum(f32(x1 - w1 / half), x2 - w2 / half)

    w = overlap(box[0], box[2], others[:, 0], others[:, 2])
    h = overlap(box[1], box[3], others[:, 1], others[:, 3])
    inter = np.where((w < 0) | (h < 0), f32(0), w * h)
    union = f32(box[2] * box[3]) + others[:, 2] * others[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def yolo_nms_rows(predicts: list[tuple], nms_threshold: float, batch: int) -> np.ndarray:
    """The YOLO layers' ApplyNms (greedy, class-agnostic, IoU >= threshold suppresses) and rows."""
    predicts = sorted(predicts, key=lambda p: -p[4])   # Caffe: std::sort by confidence (ties unordered)
    boxes = np.asarray([p[:4] for p in predicts], f32).reshape(-1, 4)
    suppressed = np.zeros(len(predicts), bool)
    for i in range(len(predicts) - 1):
        if not suppressed[i]:
            later = ~suppressed[i + 1:] & (center_ious(boxes[i], boxes[i + 1:]) >= f32(nms_threshold))
            suppressed[i + 1:] |= later
    rows = []
    for index, (x, y, w, h, score, label) in enumerate(predicts):
        if not suppressed[index]:
            rows.append([0, label + 1, score, x - w / f32(2), y - h / f32(2), x + w / f32(2), y + h / f32(2)])
    if not rows:
        rows = [[i, -1, -1, -1, -1, -1, -1] for i in range(batch)]
    return np.asarray(rows, f32).reshape(1, 1, -1, 7)


def yolo_detection_output(inputs: Sequence[np.ndarray], *, num_classes: int, num_box: int, biases: Sequence[float],
                          confidence_threshold: float = 0.01, nms_threshold: float = 0.45) -> np.ndarray:
    """YoloDetectionOutputLayer::Forward_cpu (YOLOv2): softmax classes, best class only, score >= threshold."""
    predicts = []
    for x in inputs:
        x = x.astype(f32)
        n, c, side, _ = x.shape
        per_box = c // num_box
        for b in range(n):
            for j in range(side):
                for i in range(side):
                    for box in range(num_box):
                        t = x[b, box * per_box:(box + 1) * per_box, j, i]
                        px = f32((i + sigmoid(t[0])) / side)
                        py = f32((j + sigmoid(t[1])) / side)
                        pw = f32(np.exp(t[2]) * f32(biases[2 * box]) / side)
                        ph = f32(np.exp(t[3]) * f32(biases[2 * box + 1]) / side)
                        logits = t[5:5 + num_classes]
                        e = np.exp(logits - logits.max())
                        probs = e / np.sum(e, dtype=f32)
                        best = int(np.argmax(probs))       # first maximum, as Caffe's strict > scan
                        score = f32(sigmoid(t[4]) * probs[best])
                        if score >= f32(confidence_threshold):
                            predicts.append((px, py, pw, ph, score, best))
    return yolo_nms_rows(predicts, nms_threshold, inputs[0].shape[0])


def yolov3_detection_output(inputs: Sequence[np.ndarray], *, num_classes: int, num_box: int,
                            biases: Sequence[float], anchors_scale: Sequence[int], mask: Sequence[int],
                            mask_group_num: int = 2, confidence_threshold: float = 0.01,
                            nms_threshold: float = 0.45) -> np.ndarray:
    """Yolov3DetectionOutputLayer::Forward_cpu: sigmoid classes times objectness, every class > threshold."""
    predicts = []
    groups = len(mask) // mask_group_num
    for t, x in enumerate(inputs):
        x = x.astype(f32)
        n, c, side, _ = x.shape
        length = 5 + num_classes
        for b in range(n):
            for s in range(side * side):
                row, col = divmod(s, side)
                for box in range(num_box):
                    v = x[b, box * length:(box + 1) * length].reshape(length, -1)[:, s]
                    anchor = mask[box + t * groups]
                    px = f32((col + sigmoid(v[0])) / side)
                    py = f32((row + sigmoid(v[1])) / side)
                    pw = f32(np.exp(v[2]) * f32(biases[2 * anchor]) / (side * anchors_scale[t]))
                    ph = f32(np.exp(v[3]) * f32(biases[2 * anchor + 1]) / (side * anchors_scale[t]))
                    objectness = sigmoid(v[4])
                    for cls in range(num_classes):
                        score = f32(sigmoid(v[5 + cls]) * objectness)
                        if score > f32(confidence_threshold):
                            predicts.append((px, py, pw, ph, score, cls))
    return yolo_nms_rows(predicts, nms_threshold, inputs[0].shape[0])
