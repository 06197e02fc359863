"""The detection forks' modules: Normalize, PriorBox, DetectionOutput, YOLO's outputs.

Each class is copied verbatim into generated source (codegen.py): it stands alone, importing only torch."""

from typing import List, Optional

import torch
from torch import nn


class Normalize(nn.Module):
    """SSD's Normalize: x / sqrt(sum(x^2) + eps) * scale, the sum over channels (at each position) or over
    the whole sample (across_spatial); one scale per channel, or one for all (channel_shared)."""

    axes: List[int]
    view: List[int]

    def __init__(self, channels: int, rank: int, across_spatial: bool, channel_shared: bool, eps: float):
        super().__init__()
        self.axes = list(range(1, rank)) if across_spatial else [1]
        self.view = [] if channel_shared else [1, channels] + [1] * (rank - 2)
        self.scale = nn.Parameter(torch.ones([1] if channel_shared else [channels]))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.sqrt(torch.sum(x * x, dim=self.axes, keepdim=True) + self.eps)
        return x / norm * self.scale.view(self.view)


class PriorBox(nn.Module):
    """SSD's PriorBox: its output depends only on the input shapes, so it is a constant buffer (the priors
    and their variances, (1, 2, H * W * num_priors * 4))."""

    def __init__(self, size: int):
        super().__init__()
        self.register_buffer("priors", torch.zeros([1, 2, size]))

    def forward(self, feature: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.priors


class DetectionOutput(nn.Module):
    """SSD's DetectionOutput (detection_output_layer.cpp, Forward_cpu): decode the location offsets against
    the priors; per image and class (not the background) keep scores > confidence_threshold, their top_k
    best, greedy NMS (a box goes when its IoU with a kept one exceeds the threshold, which eta < 1 lowers as
    boxes are kept); the keep_top_k best of the image. Rows [image, label, score, xmin, ymin, xmax, ymax]
    by image, label, score, as (1, 1, rows, 7); one row [i, -1, ...] per image when nothing is found."""

    def __init__(self, num_classes: int, share_location: bool, background_label_id: int, code_type: str,
                 variance_encoded_in_target: bool, keep_top_k: int, confidence_threshold: float,
                 nms_threshold: float, top_k: int, eta: float):
        super().__init__()
        self.num_classes = num_classes
        self.share_location = share_location
        self.background_label_id = background_label_id
        self.code_type = code_type
        self.variance_encoded_in_target = variance_encoded_in_target
        self.keep_top_k = keep_top_k
        self.confidence_threshold = confidence_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.eta = eta

    def decode(self, priors: torch.Tensor, variances: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """bbox_util.cpp DecodeBBox in its float operation order; offsets (..., P, L, 4), priors (P, 4)."""
        p0, p1, p2, p3 = priors[:, None, 0], priors[:, None, 1], priors[:, None, 2], priors[:, None, 3]
        t0, t1, t2, t3 = offsets[..., 0], offsets[..., 1], offsets[..., 2], offsets[..., 3]
        if not self.variance_encoded_in_target:
            t0 = variances[:, None, 0] * t0
            t1 = variances[:, None, 1] * t1
            t2 = variances[:, None, 2] * t2
            t3 = variances[:, None, 3] * t3
        if self.code_type == "CORNER":
            return torch.stack([p0 + t0, p1 + t1, p2 + t2, p3 + t3], dim=-1)
        pw = p2 - p0
        ph = p3 - p1
        if self.code_type == "CORNER_SIZE":
            return torch.stack([p0 + t0 * pw, p1 + t1 * ph, p2 + t2 * pw, p3 + t3 * ph], dim=-1)
        cx = t0 * pw + (p0 + p2) / 2.0
        cy = t1 * ph + (p1 + p3) / 2.0
        half_w = torch.exp(t2) * pw / 2.0
        half_h = torch.exp(t3) * ph / 2.0
        return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)

    def box_sizes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Caffe's BBoxSize: width * height, 0 for a box with xmax < xmin or ymax < ymin."""
        w = boxes[..., 2] - boxes[..., 0]
        h = boxes[..., 3] - boxes[..., 1]
        return torch.where((w < 0) | (h < 0), torch.zeros_like(w), w * h)

    def overlaps(self, box: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        """Caffe's JaccardOverlap of `box` with each of `others`: 0 unless the intersection has positive
        width and height."""
        iw = torch.minimum(box[2], others[:, 2]) - torch.maximum(box[0], others[:, 0])
        ih = torch.minimum(box[3], others[:, 3]) - torch.maximum(box[1], others[:, 1])
        inter = iw * ih
        iou = inter / (self.box_sizes(box) + self.box_sizes(others) - inter)
        return torch.where((iw > 0) & (ih > 0), iou, torch.zeros_like(iou))

    def nms(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """ApplyNMSFast: indices of the kept boxes, best first."""
        candidates = torch.nonzero(scores > self.confidence_threshold).reshape(-1)
        order = torch.sort(scores[candidates], descending=True, stable=True).indices
        candidates = candidates[order]
        if -1 < self.top_k < candidates.shape[0]:
            candidates = candidates[:self.top_k]
        kept: List[torch.Tensor] = []
        if self.eta == 1.0:
            # With a fixed threshold a candidate survives iff no kept box overlaps it too much: drop, for each
            # box kept, every later candidate it suppresses.
            while candidates.shape[0] > 0:
                best = candidates[0]
                kept.append(best)
                rest = candidates[1:]
                candidates = rest[self.overlaps(boxes[best], boxes[rest]) <= self.nms_threshold]
        else:
            threshold = torch.tensor(self.nms_threshold, dtype=torch.float32)
            for index in range(candidates.shape[0]):
                candidate = candidates[index]
                keep = True
                if len(kept) > 0:
                    keep = bool(torch.all(self.overlaps(boxes[candidate], boxes[torch.stack(kept)]) <= threshold))
                if keep:
                    kept.append(candidate)
                    if threshold > 0.5:     # Caffe: adaptive NMS shrinks the threshold down to 0.5
                        threshold = threshold * torch.tensor(self.eta, dtype=torch.float32)
        if len(kept) == 0:
            return torch.zeros([0], dtype=torch.long, device=scores.device)
        return torch.stack(kept)

    def forward(self, loc: torch.Tensor, conf: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        num = loc.shape[0]
        num_priors = prior.shape[2] // 4
        loc_classes = 1 if self.share_location else self.num_classes
        pairs = prior[0].reshape(2, num_priors, 4)
        boxes = self.decode(pairs[0], pairs[1], loc.reshape(num, num_priors, loc_classes, 4))
        scores = conf.reshape(num, num_priors, self.num_classes)
        rows: List[torch.Tensor] = []
        for i in range(num):
            picked: List[torch.Tensor] = []
            labels: List[torch.Tensor] = []
            for c in range(self.num_classes):
                if c == self.background_label_id:
                    continue
                kept = self.nms(boxes[i, :, 0 if self.share_location else c], scores[i, :, c])
                picked.append(kept)
                labels.append(torch.full_like(kept, c))
            if len(picked) == 0:
                continue
            index = torch.cat(picked)
            label = torch.cat(labels)
            score = scores[i, index, label]
            if -1 < self.keep_top_k < index.shape[0]:
                # The best keep_top_k, then back in label order (each label's boxes stay best first).
                best = torch.sort(score, descending=True, stable=True).indices[:self.keep_top_k]
                best = torch.sort(best).values
                index, label, score = index[best], label[best], score[best]
            box = boxes[i, index, torch.zeros_like(label) if self.share_location else label]
            image = torch.full_like(score, float(i))
            rows.append(torch.cat([image[:, None], label.to(score.dtype)[:, None], score[:, None], box], dim=1))
        found = torch.cat(rows) if len(rows) > 0 else torch.zeros([0, 7], dtype=conf.dtype, device=conf.device)
        if found.shape[0] == 0:
            found = torch.full([num, 7], -1.0, dtype=conf.dtype, device=conf.device)
            found[:, 0] = torch.arange(num, dtype=conf.dtype, device=conf.device)
        return found.reshape(1, 1, -1, 7)


class YoloDetectionOutput(nn.Module):
    """MobileNet-YOLO's YoloDetectionOutput (version 2) and Yolov3DetectionOutput (version 3). Per cell and
    box of input t: x = (col + sigmoid(tx)) / side, w = exp(tw) * anchor_w / (side * scales[t]) (y, h
    alike; scales are 1 in version 2). Version 2: score = sigmoid(objectness) * the best softmax class
    probability, a candidate when >= threshold. Version 3: each class with sigmoid(class) *
    sigmoid(objectness) > threshold is a candidate. Then one class-agnostic greedy NMS over all inputs and
    images (IoU >= nms_threshold suppresses), best score first; rows [0, label + 1, score, corners], or
    [i, -1, ...] per image when nothing is found."""

    anchors: List[List[float]]
    scales: List[int]

    def __init__(self, version: int, num_classes: int, num_box: int, confidence_threshold: float,
                 nms_threshold: float, anchors: List[List[float]], scales: List[int]):
        super().__init__()
        self.version = version
        self.num_classes = num_classes
        self.num_box = num_box
        self.confidence_threshold = confidence_threshold
        self.nms_threshold = nms_threshold
        self.anchors = [list(a) for a in anchors]
        self.scales = list(scales)

    def head(self, index: int, x: torch.Tensor, boxes: List[torch.Tensor], scores: List[torch.Tensor],
             labels: List[torch.Tensor]) -> None:
        """Candidates of input `index`: boxes (x, y, w, h), scores and class indices."""
        n, c, side = x.shape[0], x.shape[1], x.shape[3]
        per_box = c // self.num_box if self.version == 2 else 5 + self.num_classes
        t = x[:, :self.num_box * per_box].reshape(n, self.num_box, per_box, side, side).permute(0, 3, 4, 1, 2)
        grid = torch.arange(side, dtype=x.dtype, device=x.device)
        anchors = torch.tensor(self.anchors[index], dtype=x.dtype, device=x.device).reshape(-1, 2)
        size = float(side * self.scales[index])
        box = torch.stack([(grid[None, None, :, None] + torch.sigmoid(t[..., 0])) / side,
                           (grid[None, :, None, None] + torch.sigmoid(t[..., 1])) / side,
                           torch.exp(t[..., 2]) * anchors[:, 0] / size,
                           torch.exp(t[..., 3]) * anchors[:, 1] / size], dim=-1)     # (N, S, S, B, 4)
        logits = t[..., 5:5 + self.num_classes]
        if self.version == 2:
            probs = torch.softmax(logits, dim=-1)
            score = torch.sigmoid(t[..., 4]) * torch.max(probs, dim=-1).values
            chosen = score >= self.confidence_threshold
            boxes.append(box[chosen])
            scores.append(score[chosen])
            labels.append(torch.argmax(probs, dim=-1)[chosen])
        else:
            score = torch.sigmoid(logits) * torch.sigmoid(t[..., 4:5])     # (N, S, S, B, classes)
            where = torch.nonzero(score > self.confidence_threshold)
            boxes.append(box[where[:, 0], where[:, 1], where[:, 2], where[:, 3]])
            scores.append(score[where[:, 0], where[:, 1], where[:, 2], where[:, 3], where[:, 4]])
            labels.append(where[:, 4])

    def overlaps(self, boxes: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        """The YOLO layers' box_iou on (x, y, w, h) boxes, of each of `boxes` (rows) with each of `others`
        (columns): the union is w * h + w' * h' - intersection."""
        a, b = boxes[:, None, :], others[None, :, :]
        left = torch.maximum(a[..., 0] - a[..., 2] / 2, b[..., 0] - b[..., 2] / 2)
        right = torch.minimum(a[..., 0] + a[..., 2] / 2, b[..., 0] + b[..., 2] / 2)
        top = torch.maximum(a[..., 1] - a[..., 3] / 2, b[..., 1] - b[..., 3] / 2)
        bottom = torch.minimum(a[..., 1] + a[..., 3] / 2, b[..., 1] + b[..., 3] / 2)
        w = right - left
        h = bottom - top
        inter = torch.where((w < 0) | (h < 0), torch.zeros_like(w), w * h)
        return inter / (a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter)

    def greedy(self, box: torch.Tensor) -> torch.Tensor:
        """Caffe's greedy NMS over boxes sorted best first: the positions kept, each suppressing the later
        boxes it overlaps by nms_threshold or more. Taken in blocks (every kept box against a block at once,
        then the block's own boxes one by one against a small matrix), the same decisions cost a few hundred
        tensor operations instead of a dozen for each box kept, which with 9,000 kept took minutes."""
        kept = torch.zeros([0], dtype=torch.long, device=box.device)
        block = 256
        for start in range(0, box.shape[0], block):
            part = box[start:start + block]
            alive = torch.ones([part.shape[0]], dtype=torch.bool, device=box.device)
            if kept.shape[0] > 0:
                alive = ~torch.any(self.overlaps(box[kept], part) >= self.nms_threshold, dim=0)
            within = self.overlaps(part, part) >= self.nms_threshold
            chosen: List[int] = []
            for j in range(part.shape[0]):
                if bool(alive[j]):
                    chosen.append(j)
                    alive = alive & ~within[j]
            kept = torch.cat([kept, start + torch.tensor(chosen, dtype=torch.long, device=box.device)])
        return kept

    def first_copies(self, box: torch.Tensor) -> torch.Tensor:
        """Positions of the candidates whose box no candidate before them has. A later copy of a box never
        survives greedy NMS: the first copy suppresses it (IoU 1) if kept, and whatever suppressed the first
        copy suppresses it too (same IoU). YOLOv3 repeats each box once per class above the threshold, so with
        untrained weights (80 classes, every score ~0.25) this turns 1.8 M candidates at 608x608 into 23 k
        and NMS from hours into seconds. A box without area (IoU 0/0) is kept as its own."""
        position = torch.arange(box.shape[0], device=box.device)
        distinct, copy_of = torch.unique(box, dim=0, return_inverse=True)
        first = torch.full([distinct.shape[0]], box.shape[0], dtype=position.dtype, device=box.device)
        first = first.scatter_reduce(0, copy_of, position, "amin")
        return position[(first[copy_of] == position) | ~(box[:, 2] * box[:, 3] > 0)]

    def forward(self, x0: torch.Tensor, x1: Optional[torch.Tensor] = None, x2: Optional[torch.Tensor] = None,
                x3: Optional[torch.Tensor] = None) -> torch.Tensor:
        boxes: List[torch.Tensor] = []
        scores: List[torch.Tensor] = []
        labels: List[torch.Tensor] = []
        self.head(0, x0, boxes, scores, labels)
        if x1 is not None:
            self.head(1, x1, boxes, scores, labels)
        if x2 is not None:
            self.head(2, x2, boxes, scores, labels)
        if x3 is not None:
            self.head(3, x3, boxes, scores, labels)
        box = torch.cat(boxes)
        score = torch.cat(scores)
        label = torch.cat(labels)
        remaining = torch.sort(score, descending=True, stable=True).indices
        if self.nms_threshold < 0.999:
            remaining = remaining[self.first_copies(box[remaining])]
        index = remaining[self.greedy(box[remaining])]
        if index.shape[0] == 0:
            empty = torch.full([x0.shape[0], 7], -1.0, dtype=x0.dtype, device=x0.device)
            empty[:, 0] = torch.arange(x0.shape[0], dtype=x0.dtype, device=x0.device)
            return empty.reshape(1, 1, -1, 7)
        b = box[index]
        corners = torch.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2,
                               b[:, 1] + b[:, 3] / 2], dim=1)
        kept_score = score[index]
        rows = torch.cat([torch.zeros_like(kept_score)[:, None], (label[index] + 1).to(x0.dtype)[:, None],
                          kept_score[:, None], corners], dim=1)
        return rows.reshape(1, 1, -1, 7)
