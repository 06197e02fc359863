"""NumPy transcriptions of Caffe's (and the forks') forward passes, used as oracles where OpenCV lacks a layer
or computes it differently. Each follows the C++ loop it names, in float32 where Caffe computes in Dtype,
so that it is an independent reading of the source, not of our converters."""
from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def caffe_pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool, clip: bool) -> int:
    """pooling_layer.cpp Reshape: ceil (or floor, round_mode FLOOR) of the window count; when the layer pads on
    either axis (`clip`), a last window that would start in the padding is dropped."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if clip and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def caffe_pool(x: np.ndarray, method: str, kernel, stride, pad, out_size=None,
               ceil: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """pooling_layer.cpp Forward_cpu (MAX with its mask, AVE) and pooling_layer.cu StoPoolForwardTest
    (STOCHASTIC); returns the output and, for MAX, the mask (argmax as h * W + w, first maximum wins). A
    window that lies wholly in the padding gives -FLT_MAX (MAX) or a division by its zero or negative area
    (AVE), as in Caffe. `out_size` defaults to Caffe's rule (`caffe_pooled_size`)."""
    n, c, height, width = x.shape
    (kh, kw), (sh, sw), (ph_, pw_) = kernel, stride, pad
    if out_size is None:
        clip = bool(ph_ or pw_)
        out_size = (caffe_pooled_size(height, kh, sh, ph_, ceil, clip),
                    caffe_pooled_size(width, kw, sw, pw_, ceil, clip))
    oh, ow = out_size
    out = np.zeros((n, c, oh, ow), F32)
    mask = np.full((n, c, oh, ow), -1, F32)
    for ph in range(oh):
        for pw in range(ow):
            if method == "STOCHASTIC":
                # Test-time stochastic pooling ignores the padding: windows start at ph * stride.
                hs, ws = ph * sh, pw * sw
                window = x[:, :, hs:min(hs + kh, height), ws:min(ws + kw, width)]
                # BVLC starts the sum at FLT_MIN "to avoid divide-by-zero problems".
                total = np.finfo(F32).tiny + window.sum(axis=(2, 3), dtype=F32)
                out[:, :, ph, pw] = (window * window).sum(axis=(2, 3), dtype=F32) / total
                continue
            hs, ws = ph * sh - ph_, pw * sw - pw_
            he, we = min(hs + kh, height + ph_), min(ws + kw, width + pw_)
            pool_size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, height), min(we, width)
            if method == "AVE":
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[:, :, ph, pw] = x[:, :, hs:he, ws:we].sum(axis=(2, 3), dtype=F32) / F32(pool_size)
                continue
            out[:, :, ph, pw] = np.finfo(F32).min
            for h in range(hs, he):
                for w in range(ws, we):
                    better = x[:, :, h, w] > out[:, :, ph, pw]      # Caffe's strict '>': first maximum wins
                    out[:, :, ph, pw] = np.where(better, x[:, :, h, w], out[:, :, ph, pw])
                    mask[:, :, ph, pw] = np.where(better, h * width + w, mask[:, :, ph, pw])
    return out, mask


def interp(x: np.ndarray, size, crop=(0, 0)) -> np.ndarray:
    """DeepLab/PSPNet util/interp.cpp caffe_cpu_interp2 on the cropped input."""
    begin, end = crop
    x = x[:, :, begin:x.shape[2] - end, begin:x.shape[3] - end]
    h1, w1 = x.shape[2:]
    h2, w2 = size
    if (h1, w1) == (h2, w2):
        return x.copy()
    out = np.empty((*x.shape[:2], h2, w2), F32)
    rheight = F32(h1 - 1) / F32(h2 - 1) if h2 > 1 else F32(0)
    rwidth = F32(w1 - 1) / F32(w2 - 1) if w2 > 1 else F32(0)
    for i in range(h2):
        h1r = F32(rheight * F32(i))
        r = int(h1r)
        rp = 1 if r < h1 - 1 else 0
        hl1 = F32(h1r - F32(r))
        hl0 = F32(1) - hl1
        for j in range(w2):
            w1r = F32(rwidth * F32(j))
            col = int(w1r)
            cp = 1 if col < w1 - 1 else 0
            wl1 = F32(w1r - F32(col))
            wl0 = F32(1) - wl1
            out[:, :, i, j] = (hl0 * (wl0 * x[:, :, r, col] + wl1 * x[:, :, r, col + cp])
                               + hl1 * (wl0 * x[:, :, r + rp, col] + wl1 * x[:, :, r + rp, col + cp]))
    return out


def upsample_unpool(x: np.ndarray, mask: np.ndarray, size) -> np.ndarray:
    """SegNet upsample_layer.cpp: top[mask[i]] = bottom[i] per channel plane, in order of i."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, size[0] * size[1]), F32)
    flat_x, flat_m = x.reshape(n, c, h * w), mask.reshape(n, c, h * w)
    for b in range(n):
        for ch in range(c):
            for i in range(h * w):
                index = int(flat_m[b, ch, i])
                if index >= size[0] * size[1]:
                    raise IndexError("upsample top index out of range")
                out[b, ch, index] = flat_x[b, ch, i]
    return out.reshape(n, c, *size)


def upsample_nearest(x: np.ndarray, scale: int) -> np.ndarray:
    """MobileNet-YOLO upsample_layer.cpp: output[h, w] = input[h / scale, w / scale]."""
    h, w = x.shape[-2:]
    rows = np.arange(h * scale) // scale
    cols = np.arange(w * scale) // scale
    return x[..., rows[:, None], cols[None, :]]


def accum(inputs: list[np.ndarray], size, have_reference: bool) -> np.ndarray:
    """FlowNet accum_layer.cpp Forward_cpu (its clamped neighbour reads carry zero weight on the edges)."""
    th, tw = size
    parts = []
    for x in (inputs[:-1] if have_reference else inputs):
        n, c, bh, bw = x.shape
        flat = x.reshape(-1)
        out = np.empty((n, c, th, tw), F32)
        count = flat.size
        for b in range(n):
            for ch in range(c):
                cn = b * c + ch
                for hh in range(th):
                    ypos = F32(F32(hh) / F32(th - 1)) * F32(bh - 1)
                    tly = math.floor(ypos)
                    ydist = F32(ypos - F32(tly))
                    for ww in range(tw):
                        xpos = F32(F32(ww) / F32(tw - 1)) * F32(bw - 1)
                        tlx = math.floor(xpos)
                        xdist = F32(xpos - F32(tlx))
                        off = bw * (bh * cn + tly) + tlx
                        tl = flat[off]
                        tr = flat[min(off + 1, count - 1)]
                        bl = flat[min(off + bw, count - 1)]
                        br = flat[min(off + 1 + bw, count - 1)]
                        out[b, ch, hh, ww] = ((1 - xdist) * (1 - ydist) * tl + xdist * ydist * br
                                              + (1 - xdist) * ydist * bl + xdist * (1 - ydist) * tr)
        parts.append(out)
    return np.concatenate(parts, axis=1)


def shuffle_channel(x: np.ndarray, group: int) -> np.ndarray:
    """ShuffleNet Resize_cpu: output channel j * group + i = input channel i * (C / group) + j."""
    c = x.shape[1]
    columns = c // group
    out = np.empty_like(x)
    for i in range(group):
        for j in range(columns):
            out[:, j * group + i] = x[:, i * columns + j]
    return out


def relu6(x: np.ndarray, slope: float = 0.0) -> np.ndarray:
    return np.minimum(np.maximum(x, 0) + F32(slope) * np.minimum(x, 0), F32(6))


def clip(x: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.maximum(F32(low), np.minimum(x, F32(high)))


def swish(x: np.ndarray, beta: float) -> np.ndarray:
    return x / (1 + np.exp(-F32(beta) * x))


def mish(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return (x64 * np.tanh(np.logaddexp(0.0, x64))).astype(F32)


def axpy(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n, c = x.shape[:2]
    return a.reshape(n, c, *([1] * (x.ndim - 2))) * x + y


def tile(x: np.ndarray, axis: int, tiles: int) -> np.ndarray:
    """tile_layer.cpp: for each outer index, the inner block (axes >= axis) is copied `tiles` times."""
    outer = int(np.prod(x.shape[:axis]))
    inner = x.reshape(outer, -1)
    return np.concatenate([inner] * tiles, axis=1).reshape(*x.shape[:axis], x.shape[axis] * tiles, *x.shape[axis + 1:])


def reduction(x: np.ndarray, operation: str, axis: int, coeff: float) -> np.ndarray:
    """reduction_layer.cpp: per outer index a dot product over the flattened tail, then times coeff
    (coeff / dim for MEAN)."""
    outer = int(np.prod(x.shape[:axis]))
    rows = x.reshape(outer, -1).astype(np.float64)
    dim = rows.shape[1]
    if operation in ("SUM", "MEAN"):
        values = rows.sum(axis=1)
    elif operation == "ASUM":
        values = np.abs(rows).sum(axis=1)
    else:
        values = (rows * rows).sum(axis=1)
    scale = coeff / dim if operation == "MEAN" else coeff
    return (values * scale).astype(F32).reshape(x.shape[:axis])


def mvn(x: np.ndarray, normalize_variance: bool, across_channels: bool, eps: float) -> np.ndarray:
    """mvn_layer.cpp: rows of num = N (across channels) or N * C, each row centred, then divided by
    sqrt(mean of squares) + eps."""
    shape = x.shape
    legacy = shape + (1,) * (4 - len(shape))
    num = legacy[0] if across_channels else legacy[0] * legacy[1]
    rows = x.reshape(num, -1).astype(np.float64)
    centred = rows - rows.mean(axis=1, keepdims=True)
    if normalize_variance:
        centred = centred / (np.sqrt((centred ** 2).mean(axis=1, keepdims=True)) + eps)
    return centred.astype(F32).reshape(shape)


def embed(indices: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    out = weight[indices.astype(np.int64)]
    return out + bias if bias is not None else out


def spp(x: np.ndarray, pyramid_height: int, method: str) -> np.ndarray:
    """spp_layer.cpp GetPoolingParam per level, Caffe pooling, flatten and concat (one level: no flatten)."""
    n, c, height, width = x.shape
    outputs = []
    for level in range(pyramid_height):
        bins = 2 ** level
        kh, kw = math.ceil(height / bins), math.ceil(width / bins)
        ph, pw = (kh * bins - height + 1) // 2, (kw * bins - width + 1) // 2
        size = tuple(caffe_pooled_size(d, k, k, p, True, bool(ph or pw))
                     for d, k, p in ((height, kh, ph), (width, kw, pw)))
        out, _ = caffe_pool(x, method, (kh, kw), (kh, kw), (ph, pw), size)
        outputs.append(out)
    if pyramid_height == 1:
        return outputs[0]
    return np.concatenate([o.reshape(n, -1) for o in outputs], axis=1)


def roi_pooling(x: np.ndarray, rois: np.ndarray, pooled, spatial_scale: float) -> np.ndarray:
    """py-faster-rcnn roi_pooling_layer.cpp Forward_cpu."""
    _, c, height, width = x.shape
    ph_n, pw_n = pooled
    scale = F32(spatial_scale)
    out = np.zeros((rois.shape[0], c, ph_n, pw_n), F32)

    def rounded(v):      # C's round(): half away from zero
        v = float(F32(F32(v) * scale))
        return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)

    for r, roi in enumerate(rois.reshape(rois.shape[0], 5)):
        batch = int(roi[0])
        x1, y1, x2, y2 = (rounded(v) for v in roi[1:])
        roi_h, roi_w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        bin_h, bin_w = F32(roi_h) / F32(ph_n), F32(roi_w) / F32(pw_n)
        for ph in range(ph_n):
            for pw in range(pw_n):
                hs = min(max(int(math.floor(F32(ph) * bin_h)) + y1, 0), height)
                he = min(max(int(math.ceil(F32(ph + 1) * bin_h)) + y1, 0), height)
                ws = min(max(int(math.floor(F32(pw) * bin_w)) + x1, 0), width)
                we = min(max(int(math.ceil(F32(pw + 1) * bin_w)) + x1, 0), width)
                if he <= hs or we <= ws:
                    out[r, :, ph, pw] = 0
                else:
                    out[r, :, ph, pw] = x[batch, :, hs:he, ws:we].reshape(c, -1).max(axis=1)
    return out


def bn_segnet(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, learn: bool) -> np.ndarray:
    """SegNet/ENet bn_layer.cpp: INFERENCE x * scale + shift; LEARN with the batch's mean and
    E[x^2] - mean^2 over (N, H, W), eps 1e-9."""
    if learn:
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=(0, 2, 3), keepdims=True)
        var = (x64 ** 2).mean(axis=(0, 2, 3), keepdims=True) - mean ** 2
        x = ((x64 - mean) / np.sqrt(var + 1e-9)).astype(F32)
    return x * scale + shift


def bn_pspnet(x: np.ndarray, slope, bias, mean, var, eps: float, batch: bool) -> np.ndarray:
    """PSPNet bn_layer.cpp: stored statistics (TEST phase or frozen) or the batch's (TRAIN)."""
    x64 = x.astype(np.float64)
    if batch:
        mean = x64.mean(axis=(0, 2, 3), keepdims=True)
        var = ((x64 - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    return (slope * (x64 - mean) / np.sqrt(var + eps) + bias).astype(F32)


def correlation(a: np.ndarray, b: np.ndarray, kernel_size: int, max_displacement: int, pad: int,
                stride_1: int, stride_2: int, subtract: bool = False) -> np.ndarray:
    """FlowNet 2 correlation_layer.cu CorrelateData / CorrelateDataSubtract."""
    n, c, h, w = a.shape
    pa = np.pad(a, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    pb = np.pad(b, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    radius = (kernel_size - 1) // 2
    border = max_displacement + radius
    top_h = math.ceil((h + 2 * pad - 2 * border) / stride_1)
    top_w = math.ceil((w + 2 * pad - 2 * border) / stride_1)
    grid_r = max_displacement // stride_2
    grid_w = 2 * grid_r + 1
    out = np.zeros((n, grid_w * grid_w, top_h, top_w), F32)
    for channel in range(grid_w * grid_w):
        dx = (channel % grid_w - grid_r) * stride_2
        dy = (channel // grid_w - grid_r) * stride_2
        for y in range(top_h):
            for x in range(top_w):
                y1, x1 = y * stride_1 + max_displacement, x * stride_1 + max_displacement
                p1 = pa[:, :, y1:y1 + kernel_size, x1:x1 + kernel_size].astype(np.float64)
                p2 = pb[:, :, y1 + dy:y1 + dy + kernel_size, x1 + dx:x1 + dx + kernel_size].astype(np.float64)
                values = np.abs(p1 - p2) if subtract else p1 * p2
                out[:, channel, y, x] = values.reshape(n, -1).sum(axis=1) / (kernel_size * kernel_size * c)
    return out


def deconvolution(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, *, group: int, kernel, stride, pad,
                  dilation) -> np.ndarray:
    """deconv_layer.cpp: each input pixel scatters weight * value into the full output (col2im), of size
    s * (i - 1) + d * (k - 1) + 1, from which pad is cut on both sides."""
    x, weight = x.astype(np.float64), weight.astype(np.float64)
    n, c, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, pad, dilation
    per_group_in, per_group_out = c // group, weight.shape[1]
    outputs = per_group_out * group
    full = np.zeros((n, outputs, sh * (height - 1) + dh * (kh - 1) + 1, sw * (width - 1) + dw * (kw - 1) + 1))
    for g in range(group):
        xs = x[:, g * per_group_in:(g + 1) * per_group_in]
        ws = weight[g * per_group_in:(g + 1) * per_group_in]
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + sh * (height - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (width - 1) + 1, sw)
                full[:, g * per_group_out:(g + 1) * per_group_out, rows, cols] += np.einsum(
                    "nchw,co->nohw", xs, ws[:, :, i, j])
    y = full[:, :, ph: full.shape[2] - ph, pw: full.shape[3] - pw]
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y.astype(F32)


def inner_product(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, *, axis: int = 1,
                  transpose: bool = False) -> np.ndarray:
    """inner_product_layer.cpp: the axes from `axis` on flattened, times W^T (or W with `transpose`), plus b."""
    axis = axis % x.ndim
    matrix = x.astype(np.float64).reshape(math.prod(x.shape[:axis]), -1)
    y = matrix @ (weight if transpose else weight.T).astype(np.float64)
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:axis], -1).astype(F32)


def batch_norm(x: np.ndarray, mean, variance, factor: float, eps: float, global_stats: bool) -> np.ndarray:
    """batch_norm_layer.cpp: stored statistics divided by the scale factor (0 means 0), or the batch's own
    (mean and biased variance over every axis but 1)."""
    if global_stats:
        s = 0.0 if factor == 0 else 1.0 / factor
        m, v = np.asarray(mean, np.float64) * s, np.asarray(variance, np.float64) * s
    else:
        axes = (0, *range(2, x.ndim))
        m = x.mean(axis=axes, dtype=np.float64)
        v = ((x - m.reshape(-1, *(1,) * (x.ndim - 2))) ** 2).mean(axis=axes)
    shape = (-1, *(1,) * (x.ndim - 2))
    return ((x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + eps)).astype(F32)


def scale(x: np.ndarray, factor: np.ndarray, bias: np.ndarray | None, axis: int) -> np.ndarray:
    """scale_layer.cpp / bias_layer.cpp: the operand covers axes [axis, axis + its rank) of x."""
    axis = axis % x.ndim if x.ndim else 0
    trailing = (1,) * (x.ndim - axis - factor.ndim)
    y = x.astype(np.float64) * factor.astype(np.float64).reshape(*factor.shape, *trailing)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape(*bias.shape, *trailing)
    return y.astype(F32)


def bias(x: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    axis = axis % x.ndim
    return (x.astype(np.float64) + b.astype(np.float64).reshape(*b.shape, *(1,) * (x.ndim - axis - b.ndim))
            ).astype(F32)


def lrn(x: np.ndarray, size: int, alpha: float, beta: float, k: float, region: str) -> np.ndarray:
    """lrn_layer.cpp: ACROSS_CHANNELS x / (k + alpha / n * sum of n channels' squares)^beta; WITHIN_CHANNEL
    x / (1 + alpha / n^2 * sum of an n x n window's squares)^beta (k unused there), zero-padded."""
    x64 = x.astype(np.float64)
    half = (size - 1) // 2
    if region == "ACROSS_CHANNELS":
        padded = np.pad(x64 ** 2, ((0, 0), (half, half), (0, 0), (0, 0)))
        total = sum(padded[:, i:i + x.shape[1]] for i in range(size))
        return (x64 / (k + alpha / size * total) ** beta).astype(F32)
    padded = np.pad(x64 ** 2, ((0, 0), (0, 0), (half, half), (half, half)))
    total = sum(padded[:, :, i:i + x.shape[2], j:j + x.shape[3]] for i in range(size) for j in range(size))
    return (x64 * (1 + alpha * total / size ** 2) ** -beta).astype(F32)


def bnll(x: np.ndarray) -> np.ndarray:
    """bnll_layer.cpp: x + log(1 + exp(-x)) for x > 0, else log(1 + exp(x)), without overflow."""
    x = x.astype(np.float64)
    positive = x + np.log1p(np.exp(-np.abs(x)))
    return np.where(x > 0, positive, np.log1p(np.exp(np.minimum(x, 0)))).astype(F32)


def prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """prelu_layer.cpp: max(x, 0) + a * min(x, 0), one slope per channel or one for all."""
    a = slope.reshape(-1, *(1,) * (x.ndim - 2)) if slope.size > 1 else slope.reshape(())
    return (np.maximum(x, 0) + a * np.minimum(x, 0)).astype(F32)


def argmax(x: np.ndarray, top_k: int, out_max_val: bool, axis: int | None) -> np.ndarray:
    """argmax_layer.cpp: std::partial_sort of (value, index) pairs with std::greater, so equal values put the
    larger index first; values or indices (as floats) out. Without an axis, per sample over the rest, giving
    (N, 1 or 2, top_k) padded to 3 axes."""
    x = x.astype(np.float64)
    if axis is None:
        flat = x.reshape(x.shape[0], -1)
        rows = [sorted(((v, j) for j, v in enumerate(row)), reverse=True)[:top_k] for row in flat]
        index = np.array([[j for _, j in r] for r in rows], F32)
        value = np.array([[v for v, _ in r] for r in rows], F32)
        out = np.stack([index, value], 1) if out_max_val else index[:, None]
        return out.reshape(out.shape + (1,) * (max(3, x.ndim) - 3))
    moved = np.moveaxis(x, axis, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    rows = [sorted(((v, j) for j, v in enumerate(row)), reverse=True)[:top_k] for row in flat]
    picked = np.array([[v if out_max_val else j for v, j in r] for r in rows], F32)
    return np.moveaxis(picked.reshape(*moved.shape[:-1], top_k), -1, axis)


def slice_points(x: np.ndarray, axis: int, points: list[int], tops: int) -> list[np.ndarray]:
    """slice_layer.cpp: at the given points, or into `tops` equal pieces when none are given."""
    if not points:
        points = [x.shape[axis] // tops * i for i in range(1, tops)]
    return np.split(x, points, axis=axis)
