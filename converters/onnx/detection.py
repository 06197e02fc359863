"""Detection layers of the SSD and YOLO forks: Permute, Normalize, PriorBox, DetectionOutput, Reorg and the
YOLO detection outputs.

PriorBox depends only on shapes: it becomes a constant. The detection outputs become subgraphs around
NonMaxSuppression, whose rules match Caffe's: candidates score strictly above the threshold, are taken by
descending score with ties to the lower index, and a box is dropped when its IoU with a kept one exceeds the
threshold. Their row count is data-dependent, as in Caffe.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from protodef.errors import UnsupportedError
from protodef.ir import Layer
from protodef.layers.detection import (
    DetectionOutput,
    Normalize,
    Permute,
    PriorBox,
    Reorg,
    YoloDetectionOutput,
    Yolov3DetectionOutput,
)

from .proto import NodeProto, TensorProto, from_array
from .registry import OnnxContext, onnx_converter

NEG_INF = float("-inf")


class Subgraph:
    """The nodes of one layer's subgraph, each output a fresh name inside the layer (`layer/what`)."""

    def __init__(self, layer: Layer, ctx: OnnxContext):
        self.layer, self.ctx = layer, ctx
        self.nodes: list[NodeProto] = []

    def __call__(self, op: str, *inputs: str, what: str | None = None, outputs: int = 1, out: str | None = None,
                 **attributes: Any) -> Any:
        what = what or op[0].lower() + op[1:]
        names = [out] if out else [self.ctx.tensor(self.layer, what) for _ in range(outputs)]
        self.nodes.append(self.ctx.node(op, list(inputs), names, self.layer, what, **attributes))
        return names[0] if outputs == 1 else names

    def ints(self, what: str, values: Sequence[int]) -> str:
        return self.ctx.ints(self.layer, what, values)

    def int_scalar(self, what: str, value: int) -> str:
        """A 0-d int64 constant (Gather with it drops the axis; Range wants scalars)."""
        return self("Constant", what=what, value=from_array(np.asarray(value, np.int64)))

    def floats(self, what: str, values: Any) -> str:
        return self.ctx.initializer(self.layer, what, np.asarray(values, np.float32))

    def column(self, source: str, index: int, what: str) -> str:
        """source[..., index], the last axis dropped."""
        return self("Gather", source, self.int_scalar(f"{what}_index", index), what=what, axis=-1)

    def as_column(self, source: str, what: str) -> str:
        """A 1-D tensor as an (n, 1) matrix."""
        return self("Reshape", source, self.ints(f"{what}_shape", [-1, 1]), what=what)

    def filled(self, shape: str, value: float, what: str, dtype: Any = np.float32) -> str:
        return self("ConstantOfShape", shape, what=what, value=from_array(np.asarray([value], dtype)))


def require_opset(layer: Layer, ctx: OnnxContext, opset: int, why: str) -> None:
    if ctx.opset < opset:
        raise UnsupportedError(f"{layer.type} needs ONNX opset {opset} or later ({why})", layer=layer,
                               where=layer.where, expected=f">= {opset}", found=ctx.opset)


# ---- shapes and arithmetic ----------------------------------------------------------------------------


@onnx_converter("Permute")
def permute(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    p: Permute = layer.params
    if p.order[0] != 0:
        ctx.require_batch_axis_kept(layer, 0, "Permute")
    return [ctx.node("Transpose", [ctx.value(layer.inputs[0])], [ctx.value(layer.outputs[0])], layer,
                     perm=list(p.order))]


@onnx_converter("Normalize")
def normalize(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """x / sqrt(sum of squares + eps) * scale, the sum over channels or over the whole sample."""
    p: Normalize = layer.params
    g = Subgraph(layer, ctx)
    x = ctx.value(layer.inputs[0])
    rank = len(ctx.input_shape(layer))
    axes = list(range(1, rank)) if p.across_spatial else [1]
    nodes, squares = ctx.reduce("ReduceSumSquare", layer, "sum_squares", x, axes)
    g.nodes += nodes
    norm = g("Sqrt", g("Add", squares, ctx.scalar(layer, "eps", p.eps), what="plus_eps"), what="norm")
    scale_shape = () if p.channel_shared else (1, p.channels) + (1,) * (rank - 2)
    scale = ctx.initializer(layer, "scale", np.asarray(layer.weights[0], np.float32).reshape(scale_shape))
    g("Mul", g("Div", x, norm, what="normalized"), scale, out=ctx.value(layer.outputs[0]))
    return g.nodes


@onnx_converter("PriorBox")
def prior_box(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """The priors depend only on the shapes, which are fixed: a constant (for any batch, as in Caffe)."""
    p: PriorBox = layer.params
    return [ctx.node("Constant", [], [ctx.value(layer.outputs[0])], layer,
                     value=from_array(p.priors(), f"{layer.name}.priors"))]


@onnx_converter("Reorg")
def reorg(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """reverse: DepthToSpace in DCR order. Otherwise darknet's reading of the (N, C, H, W) buffer as
    (N, C/s^2, H*s, W*s), SpaceToDepth, and the result's buffer as (N, C*s^2, H/s, W/s)."""
    p: Reorg = layer.params
    g = Subgraph(layer, ctx)
    x, y = ctx.value(layer.inputs[0]), ctx.value(layer.outputs[0])
    n, c, h, w = ctx.input_shape(layer)
    s = p.stride
    if p.reverse:
        g("DepthToSpace", x, out=y, blocksize=s, mode="DCR")
        return g.nodes
    wide = g("Reshape", x, g.ints("wide_shape", ctx.reshape_target((n, c // (s * s), h * s, w * s))), what="wide")
    blocks = g("SpaceToDepth", wide, what="blocks", blocksize=s)
    g("Reshape", blocks, g.ints("shape", ctx.reshape_target(ctx.output_shape(layer))), out=y)
    return g.nodes


# ---- DetectionOutput ----------------------------------------------------------------------------------


@onnx_converter("DetectionOutput")
def detection_output(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """SSD's DetectionOutput: decode, per-class top_k and NMS (NonMaxSuppression with one batch entry per
    image, or per image and class when locations are per class), keep_top_k per image, rows in Caffe's
    order (image, label, score); one [i, -1, ...] row per image when nothing is found."""
    p: DetectionOutput = layer.params
    require_opset(layer, ctx, 11, "NonMaxSuppression, TopK with k as an input, GatherND")
    if p.eta != 1:
        raise UnsupportedError("adaptive NMS (nms_param.eta < 1) lowers the IoU threshold after each kept box; "
                               "ONNX NonMaxSuppression has one fixed threshold, so it cannot be exact",
                               layer=layer, where=layer.where, expected="eta 1", found=p.eta)
    g = Subgraph(layer, ctx)
    loc, conf, prior = (ctx.value(v) for v in layer.inputs)
    boxes = decoded_boxes(g, p, loc, prior)                      # (N, L, P, 4)
    scores = class_scores(g, p, conf)                            # (N, C, P)
    if p.share_location:
        nms_boxes = g("Reshape", boxes, g.ints("image_boxes_shape", [0, p.num_priors, 4]), what="image_boxes")
        nms_scores = scores
    else:
        nms_boxes = g("Reshape", boxes, g.ints("class_boxes_shape", [-1, p.num_priors, 4]), what="class_boxes")
        nms_scores = g("Reshape", scores, g.ints("class_scores_shape", [-1, 1, p.num_priors]), what="class_scores")
    suppressible = nms_boxes if p.code_type == "CENTER_SIZE" else collapse_inverted(g, nms_boxes)
    selected = g("NonMaxSuppression", suppressible, nms_scores,
                 g.ints("max_boxes", [p.num_priors]), g.floats("iou_threshold", [p.nms_threshold]),
                 g.floats("score_threshold", [p.confidence_threshold]), what="selected")
    batch, cls, prior_index = (g.column(selected, k, what) for k, what in enumerate(("batch", "class", "prior")))
    if p.share_location:
        image, label = batch, cls
    else:
        classes = g.int_scalar("num_classes", p.num_classes)
        image, label = g("Div", batch, classes, what="image"), g("Mod", batch, classes, what="label")
    score = g("GatherND", nms_scores, selected, what="score")
    box_index = g("Concat", g.as_column(batch, "batch_column"), g.as_column(prior_index, "prior_column"),
                  what="box_index", axis=1)
    box = g("GatherND", nms_boxes, box_index, what="box")
    columns = [image, label, score, box]
    if p.keep_top_k > -1:
        keep = best_per_image(g, p, loc, image, label, prior_index, score)
        columns = [g("Compress", column, keep, what=f"kept_{name}", axis=0)
                   for column, name in zip(columns, ("image", "label", "score", "box"))]
    image, label, score, box = columns
    rows = g("Concat", g.as_column(g("Cast", image, what="image_float", to=TensorProto.FLOAT), "image_col"),
             g.as_column(g("Cast", label, what="label_float", to=TensorProto.FLOAT), "label_col"),
             g.as_column(score, "score_col"), box, what="rows", axis=1)
    finish_rows(g, loc, rows, ctx.value(layer.outputs[0]))
    return g.nodes


def decoded_boxes(g: Subgraph, p: DetectionOutput, loc: str, prior: str) -> str:
    """bbox_util.cpp DecodeBBox for every prior and location class, in Caffe's float operation order."""
    priors = g("Reshape", prior, g.ints("prior_shape", [2, p.num_priors, 4]), what="prior_pairs")
    corners = g("Gather", priors, g.int_scalar("boxes_index", 0), what="prior_boxes", axis=0)
    variances = g("Gather", priors, g.int_scalar("variances_index", 1), what="prior_variances", axis=0)
    pieces = g("Reshape", loc, g.ints("loc_shape", [0, p.num_priors, p.num_loc_classes, 4]), what="loc_pieces")
    offsets = g("Transpose", pieces, what="offsets", perm=[0, 2, 1, 3])          # (N, L, P, 4)
    px0, py0, px1, py1 = (g.column(corners, k, f"prior_{k}") for k in range(4))  # (P,)
    v = [None if p.variance_encoded_in_target else g.column(variances, k, f"variance_{k}") for k in range(4)]
    t = [g.column(offsets, k, f"offset_{k}") for k in range(4)]                # (N, L, P)

    def scaled(k: int, *factors: str) -> str:
        """variance[k] * offset[k] * factors, multiplied left to right as Caffe writes it."""
        value = t[k] if v[k] is None else g("Mul", v[k], t[k], what=f"scaled_{k}")
        for factor in factors:
            value = g("Mul", value, factor, what=f"scaled_{k}")
        return value

    if p.code_type == "CORNER":
        out = [g("Add", base, scaled(k), what=f"corner_{k}") for k, base in enumerate((px0, py0, px1, py1))]
    else:
        pw = g("Sub", px1, px0, what="prior_width")
        ph = g("Sub", py1, py0, what="prior_height")
        if p.code_type == "CORNER_SIZE":
            sizes = (pw, ph, pw, ph)
            out = [g("Add", base, scaled(k, sizes[k]), what=f"corner_{k}")
                   for k, base in enumerate((px0, py0, px1, py1))]
        else:
            two = g.floats("two", 2.0)
            pcx = g("Div", g("Add", px0, px1, what="prior_x_sum"), two, what="prior_center_x")
            pcy = g("Div", g("Add", py0, py1, what="prior_y_sum"), two, what="prior_center_y")
            cx = g("Add", scaled(0, pw), pcx, what="center_x")
            cy = g("Add", scaled(1, ph), pcy, what="center_y")
            half_w = g("Div", g("Mul", g("Exp", scaled(2), what="exp_w"), pw, what="width"), two, what="half_width")
            half_h = g("Div", g("Mul", g("Exp", scaled(3), what="exp_h"), ph, what="height"), two,
                       what="half_height")
            out = [g("Sub", cx, half_w, what="xmin"), g("Sub", cy, half_h, what="ymin"),
                   g("Add", cx, half_w, what="xmax"), g("Add", cy, half_h, what="ymax")]
    shape = g.ints("corner_shape", [0, p.num_loc_classes, p.num_priors, 1])
    return g("Concat", *(g("Reshape", c, shape, what=f"corner_column_{k}") for k, c in enumerate(out)),
             what="boxes", axis=3)


def class_scores(g: Subgraph, p: DetectionOutput, conf: str) -> str:
    """(N, C, P) scores with the background class and everything outside each class's top_k at -inf, which
    no threshold lets through (Caffe takes the top_k of the scores above the threshold: the same boxes)."""
    table = g("Reshape", conf, g.ints("conf_shape", [0, p.num_priors, p.num_classes]), what="conf_table")
    scores = g("Transpose", table, what="class_major", perm=[0, 2, 1])
    if 0 <= p.background_label_id < p.num_classes:
        background = np.zeros((1, p.num_classes, 1), bool)
        background[0, p.background_label_id] = True
        mask = g.ctx.initializer(g.layer, "background", background, dtype=np.bool_)
        scores = g("Where", mask, g.floats("minus_inf", NEG_INF), scores, what="without_background")
    if -1 < p.top_k < p.num_priors:
        values, indices = g("TopK", scores, g.ints("top_k", [p.top_k]), what="top_k_of_class", outputs=2, axis=2)
        floor = g.filled(g("Shape", scores, what="scores_shape"), NEG_INF, "all_minus_inf")
        scores = g("ScatterElements", floor, indices, values, what="top_k_scores", axis=2)
    return scores


def collapse_inverted(g: Subgraph, boxes: str) -> str:
    """Caffe gives a box with xmax < xmin or ymax < ymin size 0 and IoU 0 with everything; NonMaxSuppression
    would reorder its corners instead. A zero-width box at (xmin, ymin) overlaps nothing there either."""
    x0, y0, x1, y1 = (g.column(boxes, k, f"nms_corner_{k}") for k in range(4))
    inverted = g("Or", g("Less", x1, x0, what="x_inverted"), g("Less", y1, y0, what="y_inverted"), what="inverted")
    shape = g.ints("nms_corner_shape", [0, 0, 1])
    point = g("Concat", *(g("Reshape", c, shape, what="point_corner") for c in (x0, y0, x0, y0)),
              what="point", axis=2)
    column = g("Reshape", inverted, shape, what="inverted_column")
    return g("Where", column, point, boxes, what="suppressible_boxes")


def best_per_image(g: Subgraph, p: DetectionOutput, loc: str, image: str, label: str, prior_index: str,
                   score: str) -> str:
    """Which selected rows are among their image's keep_top_k best: a dense (N, C*P) score table (-inf where
    nothing was selected), TopK per image (ties to the lower class, then prior, as our references order
    them: Caffe's std::sort leaves ties unordered), looked up at each selected row."""
    flat = g("Add", g("Mul", label, g.int_scalar("priors_per_class", p.num_priors), what="class_offset"),
             prior_index, what="flat_index")
    where = g("Concat", g.as_column(image, "image_column"), g.as_column(flat, "flat_column"), what="table_index",
              axis=1)
    batch = g("Slice", g("Shape", loc, what="loc_shape_now"), g.ints("batch_start", [0]), g.ints("batch_end", [1]),
              what="batch_size")
    table_shape = g("Concat", batch, g.ints("table_width", [p.num_classes * p.num_priors]), what="table_shape",
                    axis=0)
    table = g("ScatterND", g.filled(table_shape, NEG_INF, "empty_table"), where, score, what="score_table")
    k = min(p.keep_top_k, p.num_classes * p.num_priors)
    _, best = g("TopK", table, g.ints("keep_top_k", [k]), what="best", outputs=2, axis=1)
    marks = g("ScatterElements", g.filled(table_shape, 0.0, "no_marks"),
              best, g.filled(g("Shape", best, what="best_shape"), 1.0, "ones"), what="marks", axis=1)
    return g("Cast", g("GatherND", marks, where, what="marked"), what="keep", to=TensorProto.BOOL)


def finish_rows(g: Subgraph, reference: str, rows: str, output: str) -> None:
    """(1, 1, R, 7): the rows, or Caffe's [i, -1, -1, -1, -1, -1, -1] per image when there are none."""
    batch = g("Slice", g("Shape", reference, what="input_shape"), g.ints("n_start", [0]), g.ints("n_end", [1]),
              what="images")
    count = g("Gather", g("Shape", reference, what="input_dims"), g.int_scalar("batch_axis", 0), what="image_count",
              axis=0)
    ids = g("Range", g.int_scalar("zero", 0), count, g.int_scalar("one", 1), what="image_ids")
    ids = g.as_column(g("Cast", ids, what="image_ids_float", to=TensorProto.FLOAT), "image_id_column")
    minus_ones = g.filled(g("Concat", batch, g.ints("six", [6]), what="filler_shape", axis=0), -1.0, "minus_ones")
    empty = g("Concat", ids, minus_ones, what="nothing_found", axis=1)
    found = g("Slice", g("Shape", rows, what="rows_shape"), g.ints("r_start", [0]), g.ints("r_end", [1]),
              what="found")
    none = g("Cast", g("Equal", found, g.ints("no_rows", [0]), what="none_found"), what="none_found_int",
             to=TensorProto.INT64)
    end = g("Add", found, g("Mul", none, batch, what="fallback_rows"), what="row_end")
    both = g("Concat", rows, empty, what="rows_or_nothing", axis=0)
    chosen = g("Slice", both, g.ints("start", [0]), end, g.ints("row_axis", [0]), what="chosen_rows")
    g("Reshape", chosen, g.ints("output_shape", [1, 1, -1, 7]), out=output)


# ---- YOLO detection outputs ---------------------------------------------------------------------------


def below(value: float) -> float:
    """The float32 just below `value`: x >= value is x > below(value) for float32 x, which NonMaxSuppression's
    strict comparisons can test."""
    return float(np.nextafter(np.float32(value), np.float32(-np.inf)))


def yolo_channels(g: Subgraph, head: str, source: str, shape: Sequence[int], num_box: int, per_box: int
                  ) -> tuple[list[str], str]:
    """The input as (N, B, channels, S, S): x, y, w, h and objectness (N, B, S, S) each, and the class
    logits (N, B, classes, S, S). Box b's channels start at b * per_box."""
    _, c, side, _ = shape
    grouped = g("Reshape", source, g.ints(f"{head}_group_shape", [0, num_box, per_box, side, side]),
                what=f"{head}_grouped")
    t = [g("Gather", grouped, g.int_scalar(f"{head}_t{k}_index", k), what=f"{head}_t{k}", axis=2) for k in range(5)]
    logits = g("Slice", grouped, g.ints(f"{head}_class_from", [5]), g.ints(f"{head}_class_to", [per_box]),
               g.ints(f"{head}_class_axis", [2]), what=f"{head}_logits")
    return t, logits


def yolo_boxes(g: Subgraph, head: str, t: list[str], side: int, anchors: np.ndarray, divisor: float) -> str:
    """(N, B, S, S, 4) corners x -+ w/2, y -+ h/2, with x = (col + sigmoid(tx)) / side and w = exp(tw) *
    anchor_w / divisor (the YOLO layers' get_region_box); y and h alike."""
    cols, rows = np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32))
    s = g.floats(f"{head}_side", float(side))
    x = g("Div", g("Add", g.floats(f"{head}_col", cols), g("Sigmoid", t[0], what=f"{head}_sx"), what=f"{head}_cx"),
          s, what=f"{head}_x")
    y = g("Div", g("Add", g.floats(f"{head}_row", rows), g("Sigmoid", t[1], what=f"{head}_sy"), what=f"{head}_cy"),
          s, what=f"{head}_y")
    d = g.floats(f"{head}_divisor", divisor)
    anchor_w = g.floats(f"{head}_anchor_w", anchors[:, 0].reshape(-1, 1, 1))     # (B, 1, 1) against (N, B, S, S)
    anchor_h = g.floats(f"{head}_anchor_h", anchors[:, 1].reshape(-1, 1, 1))
    w = g("Div", g("Mul", g("Exp", t[2], what=f"{head}_ew"), anchor_w, what=f"{head}_aw"), d, what=f"{head}_w")
    h = g("Div", g("Mul", g("Exp", t[3], what=f"{head}_eh"), anchor_h, what=f"{head}_ah"), d, what=f"{head}_h")
    two = g.floats(f"{head}_two", 2.0)
    hw, hh = g("Div", w, two, what=f"{head}_half_w"), g("Div", h, two, what=f"{head}_half_h")
    corners = [g("Sub", x, hw, what=f"{head}_x0"), g("Sub", y, hh, what=f"{head}_y0"),
               g("Add", x, hw, what=f"{head}_x1"), g("Add", y, hh, what=f"{head}_y1")]
    last = g.ints(f"{head}_last_axis", [-1])
    return g("Concat", *(g("Unsqueeze", c, last, what=f"{head}_corner") for c in corners), what=f"{head}_boxes",
             axis=-1)


def finish_yolo(g: Subgraph, layer: Layer, boxes: list[str], scores: list[str], labels: list[str],
                nms_threshold: float, score_threshold: float) -> None:
    """One pool of candidates over all inputs and images (Caffe's `predicts`), NonMaxSuppression (IoU >=
    nms_threshold suppresses; score > score_threshold), rows [0, label + 1, score, corners] best first."""
    box_shape, flat = g.ints("pool_box_shape", [-1, 4]), g.ints("pool_flat", [-1])
    pool_boxes = g("Concat", *(g("Reshape", b, box_shape, what="pool_box") for b in boxes), what="pool_boxes", axis=0)
    pool_scores = g("Concat", *(g("Reshape", s, flat, what="pool_score") for s in scores), what="pool_scores", axis=0)
    pool_labels = g("Concat", *(g("Reshape", lab, flat, what="pool_label") for lab in labels), what="pool_labels",
                    axis=0)
    selected = g("NonMaxSuppression", g("Unsqueeze", pool_boxes, g.ints("batch_axis", [0]), what="nms_boxes"),
                 g("Reshape", pool_scores, g.ints("nms_score_shape", [1, 1, -1]), what="nms_scores"),
                 g("Shape", pool_scores, what="pool_size"), g.floats("iou_threshold", [below(nms_threshold)]),
                 g.floats("score_threshold", [score_threshold]), what="selected")
    index = g.column(selected, 2, "chosen")
    score = g("Gather", pool_scores, index, what="score", axis=0)
    box = g("Gather", pool_boxes, index, what="box", axis=0)
    label = g("Cast", g("Gather", pool_labels, index, what="class", axis=0), what="class_float",
              to=TensorProto.FLOAT)
    label = g("Add", label, g.floats("one_float", 1.0), what="label")
    image = g("Mul", label, g.floats("zero_float", 0.0), what="image")   # Caffe writes image 0 on every row
    rows = g("Concat", g.as_column(image, "image_col"), g.as_column(label, "label_col"),
             g.as_column(score, "score_col"), box, what="rows", axis=1)
    finish_rows(g, g.ctx.value(layer.inputs[0]), rows, g.ctx.value(layer.outputs[0]))


@onnx_converter("YoloDetectionOutput")
def yolo_detection_output(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """YOLOv2 region output: score = sigmoid(objectness) * the best softmax class probability, a candidate
    when >= threshold; one class-agnostic NMS over all cells, boxes, inputs and images."""
    p: YoloDetectionOutput = layer.params
    require_opset(layer, ctx, 13, "Unsqueeze with axes as an input")
    g = Subgraph(layer, ctx)
    anchors = np.asarray(p.biases[:2 * p.num_box], np.float32).reshape(p.num_box, 2)
    boxes, scores, labels = [], [], []
    for index, value in enumerate(layer.inputs):
        head, shape = f"head{index}", ctx.shape(value)
        t, logits = yolo_channels(g, head, ctx.value(value), shape, p.num_box, shape[1] // p.num_box)
        logits = g("Slice", logits, g.ints(f"{head}_used_from", [0]), g.ints(f"{head}_used_to", [p.num_classes]),
                   g.ints(f"{head}_used_axis", [2]), what=f"{head}_class_logits")
        probs = g("Softmax", logits, what=f"{head}_probs", axis=2)
        nodes, best = ctx.reduce("ReduceMax", layer, f"{head}_best_prob", probs, [2], keepdims=False)
        g.nodes += nodes
        labels.append(g("ArgMax", probs, what=f"{head}_class", axis=2, keepdims=0))
        scores.append(g("Mul", g("Sigmoid", t[4], what=f"{head}_objectness"), best, what=f"{head}_score"))
        boxes.append(yolo_boxes(g, head, t, shape[3], anchors, float(shape[3])))
    finish_yolo(g, layer, boxes, scores, labels, p.nms_threshold, below(p.confidence_threshold))
    return g.nodes


@onnx_converter("Yolov3DetectionOutput")
def yolov3_detection_output(layer: Layer, ctx: OnnxContext) -> list[NodeProto]:
    """YOLOv3 output: each class whose sigmoid times sigmoid objectness is > threshold is a candidate (its
    cell's box repeated per class); one class-agnostic NMS over all of them."""
    p: Yolov3DetectionOutput = layer.params
    require_opset(layer, ctx, 13, "Unsqueeze with axes as an input")
    g = Subgraph(layer, ctx)
    boxes, scores, labels = [], [], []
    per_box = 5 + p.num_classes
    for index, value in enumerate(layer.inputs):
        head, shape = f"head{index}", ctx.shape(value)
        source = ctx.value(value)
        if shape[1] != p.num_box * per_box:      # Caffe reads only the first num_box * per_box channels
            source = g("Slice", source, g.ints(f"{head}_from", [0]), g.ints(f"{head}_to", [p.num_box * per_box]),
                       g.ints(f"{head}_axis", [1]), what=f"{head}_channels")
        anchors = np.asarray([p.biases[2 * p.anchor(index, n): 2 * p.anchor(index, n) + 2]
                              for n in range(p.num_box)], np.float32)
        t, logits = yolo_channels(g, head, source, shape, p.num_box, per_box)
        objectness = g("Unsqueeze", g("Sigmoid", t[4], what=f"{head}_objectness"), g.ints(f"{head}_class_dim", [2]),
                       what=f"{head}_objectness_per_class")
        score = g("Mul", g("Sigmoid", logits, what=f"{head}_class_probs"), objectness, what=f"{head}_scores")
        box = yolo_boxes(g, head, t, shape[3], anchors, float(shape[3] * p.anchors_scale[index]))
        per_class = g("Unsqueeze", box, g.ints(f"{head}_box_class_dim", [2]), what=f"{head}_box_per_class")
        boxes.append(g("Tile", per_class, g.ints(f"{head}_repeat", [1, 1, p.num_classes, 1, 1, 1]),
                       what=f"{head}_class_boxes"))
        scores.append(score)
        class_ids = ctx.initializer(layer, f"{head}_class_ids",
                                    np.arange(p.num_classes, dtype=np.int64).reshape(1, 1, -1, 1, 1), dtype=np.int64)
        labels.append(g("Expand", class_ids, g("Shape", score, what=f"{head}_score_shape"), what=f"{head}_labels"))
    finish_yolo(g, layer, boxes, scores, labels, p.nms_threshold, p.confidence_threshold)
    return g.nodes
