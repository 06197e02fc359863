"""NumPy transcriptions of the forward passes of the layer types the census added, each following the C++ or
CUDA loop it names (float32 where the source computes in Dtype/float), read from the source, not from our
converters: FlowNet 2's FlowWarp, Resample, Correlation1D, ChannelNorm and NegReLU; R-FCN's PSROIPooling;
BVLC's Im2col, BatchReindex and LSTMUnit; PSPNet's SpatialProduct; caffe-windows' Flip; arcface-caffe's
NormL2."""
from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def c_round(value) -> float:
    """C's round() on a float: half away from zero."""
    value = F32(value)
    whole = math.floor(abs(value))
    return math.copysign(whole + (1 if abs(value) - whole >= 0.5 else 0), value)


def flow_warp(image: np.ndarray, flow: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """flow_warp_layer.cpp Forward_cpu."""
    n_, c_, height, width = image.shape
    out = np.empty_like(image)
    for n in range(n_):
        for x in range(width):
            for y in range(height):
                x2 = F32(x) + F32(flow[n, 0, y, x])
                y2 = F32(y) + F32(flow[n, 1, y, x])
                if x2 >= 0 and y2 >= 0 and x2 < width and y2 < height:
                    left, top = int(x2), int(y2)
                    right, bottom = min(left + 1, width - 1), min(top + 1, height - 1)
                    alpha, beta = F32(x2 - left), F32(y2 - top)
                    out[n, :, y, x] = ((1 - alpha) * (1 - beta) * image[n, :, top, left]
                                       + alpha * (1 - beta) * image[n, :, top, right]
                                       + (1 - alpha) * beta * image[n, :, bottom, left]
                                       + alpha * beta * image[n, :, bottom, right])
                else:
                    out[n, :, y, x] = fill
    return out


def channel_norm(x: np.ndarray) -> np.ndarray:
    """channel_norm_layer.cpp Forward_cpu: sqrt of the channel sum of squares, one output channel."""
    return np.sqrt((x.astype(np.float64) ** 2).sum(axis=1, keepdims=True)).astype(F32)


def neg_relu(x: np.ndarray, slope: float) -> np.ndarray:
    """neg_relu_layer.cpp Forward_cpu."""
    return np.minimum(x, 0) + F32(slope) * np.maximum(x, 0)


def _bicubic(x: float) -> float:
    x = abs(x)
    if x <= 1:
        return x * x * (1.5 * x - 2.5) + 1
    if x < 2:
        return x * (x * (-0.5 * x + 2.5) - 4) + 2
    return 0.0


def _triangle(x: float) -> float:
    if -1 <= x < 0:
        return x + 1
    if 0 <= x <= 1:
        return 1 - x
    return 0.0


def resample(x: np.ndarray, out_h: int, out_w: int, method: str, antialias: bool = True) -> np.ndarray:
    """resample_layer.cu InterpolationKernel (LINEAR: triangle, CUBIC) and NearestNeighborKernel, output pixel
    by output pixel; note the kernel's x offset uses fy and its y offset fx."""
    n_, c_, in_h, in_w = x.shape
    fx, fy = F32(in_w) / F32(out_w), F32(in_h) / F32(out_h)
    out = np.zeros((n_, c_, out_h, out_w), F32)
    kernel_width = 4 if method == "CUBIC" else 2
    coeff = _bicubic if method == "CUBIC" else _triangle
    alias = antialias and (fx > 1 or fy > 1)
    ax, ay = F32(1) / (fx if alias else F32(1)), F32(1) / (fy if alias else F32(1))
    rx = 2 if fx < 1 else math.ceil(F32(kernel_width) / ax)
    ry = 2 if fy < 1 else math.ceil(F32(kernel_width) / ay)
    for y_out in range(out_h):
        for x_out in range(out_w):
            x_in = F32(x_out) * fx + fy / F32(2) - F32(0.5)
            y_in = F32(y_out) * fy + fx / F32(2) - F32(0.5)
            xr, yr = int(c_round(x_in)), int(c_round(y_in))
            if method == "NEAREST":
                out[:, :, y_out, x_out] = x[:, :, yr, xr]
                continue
            total = np.zeros((n_, c_), np.float64)
            weights = 0.0
            for y in range(yr - ry, yr + ry + 1):
                for x_ in range(xr - rx, xr + rx + 1):
                    if y < 0 or x_ < 0 or y >= in_h or x_ >= in_w:
                        continue
                    w = ax * coeff(ax * (x_in - x_)) * ay * coeff(ay * (y_in - y))
                    total += w * x[:, :, y, x_]
                    weights += w
            out[:, :, y_out, x_out] = 0 if weights == 0 else total / weights
    return out


def correlation_1d(a: np.ndarray, b: np.ndarray, kernel_size: int, max_displacement: int, pad: int, stride_1: int,
                   stride_2: int, single_direction: int = 0, subtract: bool = False) -> np.ndarray:
    """correlation_layer1d.cu: Reshape's sizes, CorrelateData (x1 = x * stride_1 + max_displacement,
    y1 = y * stride_1, patch to the right and down) and CorrelateDataSubtract."""
    n_, c_, height, width = a.shape
    pa = np.pad(a, ((0, 0), (0, 0), (0, 0), (pad, pad))).astype(np.float64)
    pb = np.pad(b, ((0, 0), (0, 0), (0, 0), (pad, pad))).astype(np.float64)
    kernel_radius = (kernel_size - 1) // 2
    border = max_displacement + kernel_radius
    top_w = math.ceil((width + 2 * pad - 2 * border) / stride_1)
    top_h = math.ceil((height - 2 * kernel_radius) / stride_1)
    grid_radius = max_displacement // stride_2
    grid_width = grid_radius + 1 if single_direction else 2 * grid_radius + 1
    x_shift = 0 if single_direction == 1 else -grid_radius
    out = np.zeros((n_, grid_width, top_h, top_w), F32)
    for channel in range(grid_width):
        s2o = (channel % grid_width + x_shift) * stride_2
        for y in range(top_h):
            for x in range(top_w):
                x1, y1 = x * stride_1 + max_displacement, y * stride_1
                p1 = pa[:, :, y1:y1 + kernel_size, x1:x1 + kernel_size]
                p2 = pb[:, :, y1:y1 + kernel_size, x1 + s2o:x1 + s2o + kernel_size]
                values = np.abs(p1 - p2) if subtract else p1 * p2
                out[:, channel, y, x] = values.reshape(n_, -1).sum(axis=1) / (kernel_size * kernel_size * c_)
    return out


def psroi_pooling(x: np.ndarray, rois: np.ndarray, output_dim: int, group_size: int,
                  spatial_scale: float) -> np.ndarray:
    """R-FCN psroi_pooling_layer.cu PSROIPoolingForward, one output element at a time."""
    _, channels, height, width = x.shape
    scale = F32(spatial_scale)
    rois = rois.reshape(-1, 5)
    out = np.zeros((rois.shape[0], output_dim, group_size, group_size), F32)
    for n, roi in enumerate(rois):
        batch = int(roi[0])
        start_w, start_h = F32(c_round(roi[1])) * scale, F32(c_round(roi[2])) * scale
        end_w, end_h = F32(c_round(roi[3]) + 1) * scale, F32(c_round(roi[4]) + 1) * scale
        roi_w, roi_h = max(F32(end_w - start_w), F32(0.1)), max(F32(end_h - start_h), F32(0.1))
        bin_h, bin_w = roi_h / F32(group_size), roi_w / F32(group_size)
        for ctop in range(output_dim):
            for ph in range(group_size):
                for pw in range(group_size):
                    hstart = min(max(math.floor(F32(ph) * bin_h + start_h), 0), height)
                    wstart = min(max(math.floor(F32(pw) * bin_w + start_w), 0), width)
                    hend = min(max(math.ceil(F32(ph + 1) * bin_h + start_h), 0), height)
                    wend = min(max(math.ceil(F32(pw + 1) * bin_w + start_w), 0), width)
                    if hend <= hstart or wend <= wstart:
                        continue
                    c = (ctop * group_size + ph) * group_size + pw
                    area = (hend - hstart) * (wend - wstart)
                    out[n, ctop, ph, pw] = x[batch, c, hstart:hend, wstart:wend].astype(np.float64).sum() / area
    return out


def im2col(x: np.ndarray, kernel, stride, pad, dilation) -> np.ndarray:
    """im2col.cpp im2col_cpu (2-D), batch item by item as im2col_layer.cpp."""
    n_, channels, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, pad, dilation
    out_h = (height + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    out_w = (width + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    out = np.zeros((n_, channels * kh * kw, out_h, out_w), F32)
    for n in range(n_):
        row = 0
        for c in range(channels):
            for ki in range(kh):
                for kj in range(kw):
                    for oy in range(out_h):
                        iy = -ph + ki * dh + oy * sh
                        for ox in range(out_w):
                            ix = -pw + kj * dw + ox * sw
                            if 0 <= iy < height and 0 <= ix < width:
                                out[n, row, oy, ox] = x[n, c, iy, ix]
                    row += 1
    return out


def batch_reindex(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """batch_reindex_layer.cpp Forward_cpu: item i is x[int(index[i])]."""
    return np.stack([x[int(i)] for i in index])


def lstm_unit(c_prev: np.ndarray, gates: np.ndarray, cont: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lstm_unit_layer.cpp Forward_cpu."""
    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    _, num, hidden = c_prev.shape
    c, h = np.zeros_like(c_prev), np.zeros_like(c_prev)
    for n in range(num):
        x = gates[0, n]
        i, o, g = sigmoid(x[:hidden]), sigmoid(x[2 * hidden:3 * hidden]), np.tanh(x[3 * hidden:])
        f = 0 if cont[0, n] == 0 else cont[0, n] * sigmoid(x[hidden:2 * hidden])
        c[0, n] = f * c_prev[0, n] + i * g
        h[0, n] = o * np.tanh(c[0, n])
    return c, h


def spatial_product(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """spatial_product_layer.cpp Forward_cpu: each channel of x times s's one channel."""
    return np.stack([x[:, c] * s[:, 0] for c in range(x.shape[1])], axis=1)


def flip(x: np.ndarray, width: bool = True, height: bool = False) -> np.ndarray:
    """caffe-windows flip_layer.cpp Forward_cpu."""
    rows = range(x.shape[2] - 1, -1, -1) if height else range(x.shape[2])
    cols = range(x.shape[3] - 1, -1, -1) if width else range(x.shape[3])
    return x[:, :, list(rows)][:, :, :, list(cols)]


def norm_l2(x: np.ndarray) -> np.ndarray:
    """arcface-caffe normL2_layer.cpp Forward_cpu: scale by 1 / sqrt(asum of squares + 1e-7)."""
    flat = x.reshape(x.shape[0], -1)
    norms = np.array([1.0 / math.sqrt(float(np.sum(row.astype(np.float64) ** 2)) + 1e-7) for row in flat], F32)
    return (flat * norms[:, None]).reshape(x.shape)


def _inner_product(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """inner_product_layer.cpp on the flattened trailing axes."""
    y = x.astype(np.float64) @ weight.T.astype(np.float64)
    return (y if bias is None else y + bias).astype(F32)


def lstm(x: np.ndarray, cont: np.ndarray, weights: list, static: np.ndarray | None = None, h0=None, c0=None):
    """lstm_layer.cpp FillUnrolledNet, layer by layer: x_transform (W_xc, b_c), W_xc_x_static, then per step
    h_conted = h * cont_t (Scale, axis 0), W_hc h_conted, the gate_input sum and LSTMUnit. Returns (h, h_T, c_T)."""
    steps, streams = x.shape[:2]
    w_xc, b_c, *rest = weights
    w_static, w_hc = rest if static is not None else (None, rest[0])
    x_part = _inner_product(x.reshape(steps, streams, -1), w_xc, b_c)
    static_part = _inner_product(static.reshape(streams, -1), w_static)[None] if static is not None else 0
    hidden = w_hc.shape[1]
    h = np.zeros((1, streams, hidden), F32) if h0 is None else h0
    c = np.zeros((1, streams, hidden), F32) if c0 is None else c0
    outputs = []
    for t in range(steps):
        conted = h * cont[t][None, :, None]
        gate_input = _inner_product(conted, w_hc) + x_part[t][None] + static_part
        c, h = lstm_unit(c, gate_input.astype(F32), cont[t][None])
        outputs.append(h)
    return np.concatenate(outputs, 0), h, c


def rnn(x: np.ndarray, cont: np.ndarray, weights: list, static: np.ndarray | None = None, h0=None):
    """rnn_layer.cpp FillUnrolledNet: h_t = tanh(W_hh (h * cont_t) + W_xh x_t + b_h [+ W_xh_static x_static]),
    o_t = tanh(W_ho h_t + b_o). Returns (o, h_T)."""
    steps, streams = x.shape[:2]
    w_xh, b_h, *rest = weights
    w_static, w_hh, w_ho, b_o = rest if static is not None else (None, *rest)
    x_part = _inner_product(x.reshape(steps, streams, -1), w_xh, b_h)
    static_part = _inner_product(static.reshape(streams, -1), w_static)[None] if static is not None else 0
    h = np.zeros((1, streams, w_hh.shape[1]), F32) if h0 is None else h0
    outputs = []
    for t in range(steps):
        h = np.tanh(_inner_product(h * cont[t][None, :, None], w_hh) + x_part[t][None] + static_part).astype(F32)
        outputs.append(np.tanh(_inner_product(h, w_ho, b_o)))
    return np.concatenate(outputs, 0), h
