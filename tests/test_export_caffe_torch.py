"""PyTorch-authored models exported to Caffe and run by OpenCV's dnn equal PyTorch: a torchvision-layout
ResNet, a MobileNetV2-style net and a UNet-style net (random weights, random BatchNorm statistics)."""
from __future__ import annotations

import pytest
import torch
from export_support import run_export  # noqa: E402
from support import assert_close  # noqa: E402
from torch import nn  # noqa: E402

from converters.caffe import export_caffe  # noqa: E402


def randomize_batchnorm(module: nn.Module, seed: int = 0) -> nn.Module:
    """Statistics and affine parameters far from the identity, so folding them is tested."""
    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            with torch.no_grad():
                layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.5)
                layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
                layer.weight.copy_(torch.randn(layer.num_features, generator=generator))
                layer.bias.copy_(torch.randn(layer.num_features, generator=generator))
    return module.eval()


# ---------------------------------------------------------------------------------- torchvision layout
class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's resnet.py layout, narrow: floor-mode max pooling with padding, residual adds, global
    average pooling, a linear classifier."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ------------------------------------------------------------------------------------------ MobileNetV2
def conv_bn_relu6(inputs: int, outputs: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(outputs), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int, expand: int):
        super().__init__()
        hidden = inputs * expand
        self.use_residual = stride == 1 and inputs == outputs
        self.conv = nn.Sequential(conv_bn_relu6(inputs, hidden, 1), conv_bn_relu6(hidden, hidden, 3, stride, hidden),
                                  nn.Conv2d(hidden, outputs, 1, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """Depthwise convolutions, ReLU6, inverted residuals, linear bottlenecks."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(conv_bn_relu6(3, 8, stride=2), InvertedResidual(8, 8, 1, 1),
                                      InvertedResidual(8, 12, 2, 4), InvertedResidual(12, 12, 1, 4),
                                      conv_bn_relu6(12, 32, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# ------------------------------------------------------------------------------------------------- UNet
def double_conv(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(outputs, outputs, 3, padding=1), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Encoder with max pooling, a transposed-convolution and a nearest-upsampling decoder step, skip
    concatenations, and a BatchNorm on the input that no convolution precedes (BatchNorm + Scale)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.normalize = nn.BatchNorm2d(3)
        self.enc1, self.enc2, self.bottom = double_conv(3, 8), double_conv(8, 16), double_conv(16, 32)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec2 = double_conv(32, 16)
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec1 = double_conv(24, 8)
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        e1 = self.enc1(self.normalize(x))
        e2 = self.enc2(self.pool(e1))
        b = self.bottom(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


def exported_equals_pytorch(tmp_path, module: nn.Module, shape, target: str = "bvlc"):
    torch.manual_seed(0)
    module = randomize_batchnorm(module)
    example = torch.randn(*shape)
    export = export_caffe(module, example, tmp_path / "net.prototxt", target=target)
    with torch.no_grad():
        expected = module(example).numpy()
    outputs = run_export(tmp_path / "net.prototxt", tmp_path / "net.caffemodel", {"data": example.numpy()})
    (name,) = export.outputs
    for source, values in outputs.items():
        assert_close(values[name], expected, f"{type(module).__name__} ({target}): {source} vs PyTorch")
    return export


def test_resnet(tmp_path):
    """59 x 61 input: the stem pool floors where Caffe would round up (a Slice drops Caffe's extra row)."""
    export = exported_equals_pytorch(tmp_path, ResNet(), (1, 3, 59, 61))
    names = {layer.name for layer in export.param.layer}
    assert {"conv1", "maxpool", "layer1.0.conv1", "layer2.0.downsample.0", "fc"} <= names
    assert "BatchNorm" not in {layer.type for layer in export.param.layer}   # folded into the convolutions


@pytest.mark.parametrize("target, six", [("bvlc", "Power"), ("opencv", "ReLU6")])
def test_mobilenet_v2(tmp_path, target, six):
    export = exported_equals_pytorch(tmp_path, MobileNetV2(), (1, 3, 33, 35), target=target)
    types = [layer.type for layer in export.param.layer]
    assert six in types and any(layer.convolution_param.group > 1 for layer in export.param.layer)


def test_unet(tmp_path):
    export = exported_equals_pytorch(tmp_path, UNet(), (1, 3, 32, 32))
    types = [layer.type for layer in export.param.layer]
    assert {"BatchNorm", "Scale", "Deconvolution", "Concat"} <= set(types)
    assert sum(t == "Deconvolution" for t in types) == 2   # ConvTranspose2d, and nearest upsampling


def test_module_is_left_as_it_was(tmp_path):
    module = MobileNetV2().train()
    export_caffe(module, torch.randn(1, 3, 16, 16))
    assert module.training
