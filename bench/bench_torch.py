"""Benchmark: forward time of protodef's ResNet-50 GraphModule against a hand-written PyTorch ResNet-50.

The net is samples/ResNet-50.prototxt (or the corpus copy), with seeded random weights written to a
caffemodel by protodef's writer and read back. The baseline is a torchvision-style ResNet-50 written below
(Bottleneck blocks with conv/bn/relu attributes, BatchNorm kept separate as torchvision keeps it) with the
same architecture as Caffe's (stride on the first 1x1 convolution of a block, max pooling with Caffe's ceil
rounding, a bias on conv1) and the same weights, copied in by name. All run in eval mode under
torch.inference_mode on the CPU, one call at a time, interleaved, after a warm-up call; the table gives the
median and the minimum of --repeat calls (the minimum is the steadier one on a busy machine):

  hand-written   the torchvision-style module (BatchNorm after every convolution)
  protodef       to_torch(protodef.lower(net))              (BatchNorm and Scale folded into the convolutions)
  unfolded       to_torch(protodef.lower(net, fold=False))  (BatchNorm and Scale as modules, as hand-written)

Run from the repository root:  python bench/bench_torch.py [--repeat 15] [--threads N] [--batches 1 8]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

PROTOTXTS = [ROOT / "samples" / "ResNet-50.prototxt",
             ROOT.parent / "shared" / "corpus" / "resnet_kaiminghe" / "prototxt_ResNet-50-deploy.prototxt"]


class Bottleneck(nn.Module):
    """torchvision's Bottleneck, with the stride on conv1 as in Kaiming He's Caffe ResNet (ResNet v1)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    """torchvision's ResNet layout for [3, 4, 6, 3] Bottlenecks, with Caffe's stem and head."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=True)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inplanes = 64
        self.layer1 = self._make_layer(64, 3, 1)
        self.layer2 = self._make_layer(128, 4, 2)
        self.layer3 = self._make_layer(256, 6, 2)
        self.layer4 = self._make_layer(512, 3, 2)
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.fc = nn.Linear(2048, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return torch.softmax(self.fc(x), 1)


def caffe_layer(key: str) -> tuple[str, str]:
    """(Caffe layer, parameter) of a hand-written ResNet50 state-dict key; BatchNorm keys name the BatchNorm."""
    parts = key.split(".")
    if parts[0] in ("conv1", "fc"):
        return ("fc1000" if parts[0] == "fc" else "conv1"), parts[1]
    if parts[0] == "bn1":
        return "bn_conv1", parts[1]
    stage, block = int(parts[0][5:]) + 1, "abcdef"[int(parts[1])]
    if parts[2] == "downsample":
        kind = "res" if parts[3] == "0" else "bn"
        return f"{kind}{stage}{block}_branch1", parts[4]
    kind, index = ("res", parts[2][4:]) if parts[2].startswith("conv") else ("bn", parts[2][2:])
    return f"{kind}{stage}{block}_branch2{'abc'[int(index) - 1]}", parts[3]


def hand_written_state(hand_written: dict, caffe: dict) -> dict:
    """The hand-written module's state from protodef's unfolded one, whose BatchNorm keeps Caffe's blobs (sums
    and a scale factor) and whose Scale layer holds the affine weight and bias."""
    state = {}
    for key, own in hand_written.items():
        layer, parameter = caffe_layer(key)
        if not layer.startswith("bn"):
            state[key] = caffe[f"{layer}.{parameter}"]
        elif parameter in ("weight", "bias"):
            state[key] = caffe[f"scale{layer[2:]}.{parameter}"]
        elif parameter in ("running_mean", "running_var"):
            factor = float(caffe[f"{layer}.scale_factor"].reshape(-1)[0])
            blob = caffe[f"{layer}.{'mean' if parameter == 'running_mean' else 'variance'}"]
            state[key] = blob * (0.0 if factor == 0 else 1.0 / factor)
        else:
            state[key] = own    # num_batches_tracked
    return state


def build(prototxt: Path, directory: Path):
    from protodef.api import read_net
    from protodef.weights import write_caffemodel

    net = read_net(prototxt, init="random", seed=0)
    caffemodel = directory / "resnet50.caffemodel"
    write_caffemodel(caffemodel, [(layer.caffe_name, layer.type, list(layer.weights))
                                  for layer in net.layers() if layer.weights])
    return read_net(prototxt, caffemodel)


def timed(module: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        start = time.perf_counter()
        module(x)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per model and batch")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from converters.pytorch import to_torch
    from protodef.api import lower

    prototxt = next((p for p in PROTOTXTS if p.exists()), None)
    if prototxt is None:
        print("no ResNet-50 prototxt found in samples/ or the corpus", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as directory:
        net = build(prototxt, Path(directory))
    models = {"hand-written": ResNet50().eval(), "protodef": to_torch(lower(net)),
              "unfolded": to_torch(lower(net, fold=False))}
    state = models["unfolded"].state_dict()
    models["hand-written"].load_state_dict(hand_written_state(models["hand-written"].state_dict(), state))

    print(f"{prototxt.relative_to(ROOT.parent) if ROOT.parent in prototxt.parents else prototxt}; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; {args.repeat} calls each, interleaved")
    check = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        reference = models["hand-written"](check)
        for name, module in models.items():
            difference = ((module(check) - reference).abs().max() / reference.abs().max()).item()
            print(f"  {name}: max |output - hand-written| / max |hand-written| = {difference:.1e}")
    print("\nms per forward call, median (min); ratio = protodef / hand-written, by median (by min)\n")
    print(f"| batch | {' | '.join(models)} | protodef / hand | unfolded / hand |")
    print(f"|------:|{'|'.join('-' * (len(n) + 1) + ':' for n in models)}|----------------:|----------------:|")
    for batch in args.batches:
        x = torch.randn(batch, 3, 224, 224)
        for module in models.values():
            timed(module, x)   # warm-up
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.repeat):
            for name, module in models.items():       # interleaved, so that drift hits all alike
                times[name].append(timed(module, x) * 1000)
        median = {name: statistics.median(t) for name, t in times.items()}
        best = {name: min(t) for name, t in times.items()}
        cells = " | ".join(f"{median[n]:.1f} ({best[n]:.1f})" for n in models)
        ratios = " | ".join(f"{median[n] / median['hand-written']:.2f} ({best[n] / best['hand-written']:.2f})"
                            for n in ("protodef", "unfolded"))
        print(f"| {batch} | {cells} | {ratios} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
