"""Convolution family: Convolution, Deconvolution and the forks' depthwise types."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import GraphError, SchemaError, ShapeError
from ..symbolic import definitely
from .common import canonical_axis, count, positive, spatial
from .registry import OpenCVDifference, Shape, layer

_CONV_FIELDS = ("num_output", "bias_term", "pad", "kernel_size", "stride", "dilation", "group", "pad_h", "pad_w",
                "kernel_h", "kernel_w", "stride_h", "stride_w", "axis", "force_nd_im2col", "weight_filler",
                "bias_filler")


@dataclass(frozen=True)
class Convolution:
    """Caffe's convolution (base_conv_layer.cpp): weights (num_output, C/group, *kernel), bias (num_output,).
    Several bottoms of one shape are each convolved with the same weights into the top of the same index
    (FlowNet's conv1 on both images)."""

    num_output: int
    in_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]
    group: int
    bias_term: bool
    axis: int
    weight_filler: Any = None
    bias_filler: Any = None

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Convolution":
        p = lp.convolution_param
        x = inputs[0]
        _same_shapes(lp, inputs)
        axis = canonical_axis(p.axis, len(x))
        n = len(x) - axis - 1
        if n < 1:
            raise ShapeError("the input needs at least one spatial axis after the channel axis", found=x)
        kernel = spatial(p.kernel_size, None, p.kernel_h, p.kernel_w, default=0, n=n, what="kernel_size",
                         has_hw=p.HasField("kernel_h") or p.HasField("kernel_w"))
        if any(k <= 0 for k in kernel):
            raise SchemaError("kernel size must be given and positive", found=kernel)
        stride = spatial(p.stride, None, p.stride_h, p.stride_w, default=1, n=n, what="stride",
                         has_hw=p.HasField("stride_h") or p.HasField("stride_w"))
        pad = spatial(p.pad, None, p.pad_h, p.pad_w, default=0, n=n, what="pad",
                      has_hw=p.HasField("pad_h") or p.HasField("pad_w"))
        dilation = spatial(p.dilation, None, None, None, default=1, n=n, what="dilation", has_hw=False)
        if any(s <= 0 for s in stride) or any(d <= 0 for d in dilation):
            raise SchemaError("stride and dilation must be positive", found=(stride, dilation))
        group = cls._group(p, x[axis])
        if group <= 0:   # Caffe divides by it unchecked
            raise SchemaError("convolution_param.group must be positive", expected="> 0", found=group)
        in_channels = x[axis]
        positive(p.num_output, what="convolution_param.num_output")
        if in_channels % group or p.num_output % group:
            raise ShapeError("channels and num_output must be multiples of group",
                             expected=f"multiples of {group}", found=(in_channels, p.num_output))
        return cls(num_output=p.num_output, in_channels=in_channels, kernel=kernel, stride=stride, pad=pad,
                   dilation=dilation, group=group, bias_term=p.bias_term, axis=axis,
                   weight_filler=p.weight_filler, bias_filler=p.bias_filler)

    @staticmethod
    def _group(p: Any, channels: int) -> int:
        return p.group

    def infer(self, *inputs: Shape) -> Shape | list[Shape]:
        shapes = [self.output_shape(x) for x in inputs]
        return shapes if len(shapes) > 1 else shapes[0]

    def output_shape(self, x: Shape) -> Shape:
        sizes = x[self.axis + 1:]
        out = tuple(_conv_size(*a) for a in zip(sizes, self.kernel, self.stride, self.pad, self.dilation))
        return (*x[:self.axis], self.num_output, *out)

    def weight_shapes(self, *inputs: Shape) -> list[Shape]:
        weight = (self.num_output, self.in_channels // self.group, *self.kernel)
        return [weight, (self.num_output,)] if self.bias_term else [weight]

    def weight_fillers(self) -> list[Any]:
        return [self.weight_filler, self.bias_filler]

    def macs(self, inputs: list[Shape], outputs: list[Shape]) -> int:
        per_output = (self.in_channels // self.group) * count(self.kernel)
        return sum(count(y) for y in outputs) * per_output


@dataclass(frozen=True)
class Deconvolution(Convolution):
    """Caffe's deconvolution: weights (C, num_output/group, *kernel); output s*(i-1) + d*(k-1) + 1 - 2p."""

    def output_shape(self, x: Shape) -> Shape:
        sizes = x[self.axis + 1:]
        out = tuple(_deconv_size(*a) for a in zip(sizes, self.kernel, self.stride, self.pad, self.dilation))
        return (*x[:self.axis], self.num_output, *out)

    def weight_shapes(self, *inputs: Shape) -> list[Shape]:
        weight = (self.in_channels, self.num_output // self.group, *self.kernel)
        return [weight, (self.num_output,)] if self.bias_term else [weight]

    def macs(self, inputs: list[Shape], outputs: list[Shape]) -> int:
        return sum(count(x) for x in inputs) * (self.num_output // self.group) * count(self.kernel)


@dataclass(frozen=True)
class DepthwiseConvolution(Convolution):
    """The forks' depthwise layers: one filter per input channel, whatever `group` says. DepthwiseConvolution
    (yonghenglh6's, a BaseConvolutionLayer in eric612's MobileNet-YOLO) takes several bottoms as Convolution
    does; farmingyard's ConvolutionDepthwise takes exactly one (ExactNumBottomBlobs)."""

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> DepthwiseConvolution:
        if lp.type == "ConvolutionDepthwise" and len(inputs) != 1:
            raise GraphError("wrong number of bottoms: ConvolutionDepthwise (farmingyard's fork) takes one bottom; "
                             "the forks' DepthwiseConvolution and Caffe's Convolution take several",
                             expected=1, found=len(inputs))
        return super().from_proto(lp, inputs)

    @staticmethod
    def _group(p: Any, channels: int) -> int:
        return channels


def _same_shapes(lp: Any, inputs: tuple[Shape, ...]) -> None:
    """Caffe base_conv_layer.cpp Reshape: every bottom has bottom 0's shape (one set of weights reads them all)."""
    first = inputs[0]
    for name, x in zip(lp.bottom[1:], inputs[1:]):
        if len(x) != len(first) or any(definitely(a != b) for a, b in zip(x, first)):
            raise ShapeError(f"bottom '{name}' differs in shape from bottom '{lp.bottom[0]}': a convolution applies "
                             "one set of weights to bottoms of one shape", expected=tuple(first), found=tuple(x))


def _conv_size(size: int, k: int, s: int, p: int, d: int) -> int:
    out = (size + 2 * p - (d * (k - 1) + 1)) // s + 1
    return positive(out, what="convolution output size")


def _deconv_size(size: int, k: int, s: int, p: int, d: int) -> int:
    out = s * (size - 1) + d * (k - 1) + 1 - 2 * p
    return positive(out, what="deconvolution output size")


layer("Convolution", family="conv", label=("num_output", "kernel", "stride", "pad", "dilation", "group"),
      inputs=(1, None), outputs=(1, None), one_top_per_bottom=True, in_place_ok=False, honoured=_CONV_FIELDS,
      parameter="convolution_param", fresh_output=True)(Convolution)
layer("Deconvolution", family="conv", label=("num_output", "kernel", "stride", "pad", "dilation", "group"),
      inputs=(1, None), outputs=(1, None), one_top_per_bottom=True, in_place_ok=False, honoured=_CONV_FIELDS,
      fresh_output=True,
      opencv_differs=OpenCVDifference("leaves dilation out of the output size",
                                      applies=lambda p: any(d != 1 for d in p.dilation)))(Deconvolution)
layer("ConvolutionDepthwise", family="conv", aliases=("DepthwiseConvolution",),
      source="ShuffleNet fork (farmingyard); as DepthwiseConvolution: MobileNet forks (yonghenglh6, eric612)",
      label=("num_output", "kernel", "stride", "pad", "dilation"), inputs=(1, None), outputs=(1, None),
      one_top_per_bottom=True, in_place_ok=False, honoured=_CONV_FIELDS, fresh_output=True)(DepthwiseConvolution)


_IM2COL_FIELDS = ("pad", "kernel_size", "stride", "dilation", "pad_h", "pad_w", "kernel_h", "kernel_w", "stride_h",
                  "stride_w", "axis", "force_nd_im2col",
                  # Caffe's Im2colLayer never reads these: they do not change what it computes.
                  "num_output", "bias_term", "group", "weight_filler", "bias_filler")


@dataclass(frozen=True)
class Im2col:
    """Caffe im2col_layer.cpp: each output position holds, as channels, the input window a convolution would
    read there: channel c * prod(kernel) + (flat kernel offset), zero outside the padded input. Output
    (N, C * prod(kernel), *convolution output size)."""

    channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]

    @classmethod
    def from_proto(cls, lp: Any, inputs: tuple[Shape, ...]) -> "Im2col":
        p = lp.convolution_param
        x = inputs[0]
        if canonical_axis(p.axis, len(x)) != 1:
            raise SchemaError("Im2col is supported with the channel axis 1 only", found=p.axis)
        n = len(x) - 2
        if not 1 <= n <= 3:
            raise ShapeError("Im2col takes 1 to 3 spatial axes after (N, C)", found=x)
        kernel = spatial(p.kernel_size, None, p.kernel_h, p.kernel_w, default=0, n=n, what="kernel_size",
                         has_hw=p.HasField("kernel_h") or p.HasField("kernel_w"))
        stride = spatial(p.stride, None, p.stride_h, p.stride_w, default=1, n=n, what="stride",
                         has_hw=p.HasField("stride_h") or p.HasField("stride_w"))
        pad = spatial(p.pad, None, p.pad_h, p.pad_w, default=0, n=n, what="pad",
                      has_hw=p.HasField("pad_h") or p.HasField("pad_w"))
        dilation = spatial(p.dilation, None, None, None, default=1, n=n, what="dilation", has_hw=False)
        if min(kernel) <= 0 or min(stride) <= 0 or min(dilation) <= 0:
            raise SchemaError("kernel size, stride and dilation must be positive", found=(kernel, stride, dilation))
        for args in zip(x[2:], kernel, stride, pad, dilation):
            _conv_size(*args)   # raises where the window does not fit
        return cls(x[1], kernel, stride, pad, dilation)

    def infer(self, x: Shape) -> Shape:
        sizes = [(size + 2 * p - (d * (k - 1) + 1)) // s + 1
                 for size, k, s, p, d in zip(x[2:], self.kernel, self.stride, self.pad, self.dilation)]
        return (x[0], x[1] * count(self.kernel), *sizes)


layer("Im2col", family="conv", label=("kernel", "stride", "pad", "dilation"), in_place_ok=False,
      honoured=_IM2COL_FIELDS, parameter="convolution_param")(Im2col)
