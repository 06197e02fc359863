"""Generate the bundled samples: ResNet deploy prototxts in the layout of Kaiming He's Caffe release, and a
small CIFAR-sized net with a caffemodel of seeded random weights (written by protodef's own writer).

    python samples/make_samples.py          # rewrites samples/ResNet-50.prototxt and samples/tiny/*
    python samples/make_samples.py --depth 152 -o /tmp/ResNet-152.prototxt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Bottleneck blocks per stage (res2 .. res5), from the ResNet paper.
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def resnet_prototxt(depth: int = 50, size: int = 224) -> str:
    """A ResNet-`depth` deploy net: conv1 ... res5c, pool5, fc1000, prob, with BatchNorm + Scale after every
    convolution, in-place ReLUs, and stride 2 on branch1/branch2a of res3a, res4a and res5a."""
    out = [f'name: "ResNet-{depth}"', 'input: "data"'] + [f"input_dim: {d}" for d in (1, 3, size, size)] + [""]
    out += _conv_bn("data", "conv1", "bn_conv1", "scale_conv1", 64, 7, 2, 3, bias=True)
    out += _relu("conv1", "conv1_relu")
    out += _layer("pool1", "Pooling", ["conv1"], "pool1", "pooling_param {\n\t\tkernel_size: 3\n\t\tstride: 2\n\t\tpool: MAX\n\t}")
    bottom = "pool1"
    for stage, blocks in enumerate(BLOCKS[depth], start=2):
        width = 64 * 2 ** (stage - 2)
        for index in range(blocks):
            block = f"{stage}{_block_suffix(index, blocks, depth, stage)}"
            stride = 2 if index == 0 and stage > 2 else 1
            if index == 0:
                out += _conv_bn(bottom, f"res{block}_branch1", f"bn{block}_branch1", f"scale{block}_branch1",
                                width * 4, 1, stride, 0)
                shortcut = f"res{block}_branch1"
            else:
                shortcut = bottom
            x = bottom
            for part, (k, s, n) in zip("abc", ((1, stride, width), (3, 1, width), (1, 1, width * 4))):
                name = f"res{block}_branch2{part}"
                out += _conv_bn(x, name, f"bn{block}_branch2{part}", f"scale{block}_branch2{part}", n, k, s, k // 2)
                if part != "c":
                    out += _relu(name, f"{name}_relu")
                x = name
            out += _layer(f"res{block}", "Eltwise", [shortcut, x], f"res{block}")
            out += _relu(f"res{block}", f"res{block}_relu")
            bottom = f"res{block}"
    out += _layer("pool5", "Pooling", [bottom], "pool5", f"pooling_param {{\n\t\tkernel_size: {size // 32}\n\t\tstride: 1\n\t\tpool: AVE\n\t}}")
    out += _layer("fc1000", "InnerProduct", ["pool5"], "fc1000", "inner_product_param {\n\t\tnum_output: 1000\n\t}")
    out += _layer("prob", "Softmax", ["fc1000"], "prob")
    return "\n".join(out)


def _block_suffix(index: int, blocks: int, depth: int, stage: int) -> str:
    # ResNet-50 names blocks a, b, c, ...; the deeper releases name long stages a, b1, b2, ...
    if depth == 50 or blocks <= 3:
        return "abcdefghijklmnopqrstuvwxyz"[index]
    return "a" if index == 0 else f"b{index}"


def _layer(name: str, type_: str, bottoms: list[str], top: str, body: str = "") -> list[str]:
    lines = ["layer {"] + [f'\tbottom: "{b}"' for b in bottoms] + [f'\ttop: "{top}"', f'\tname: "{name}"',
                                                                    f'\ttype: "{type_}"']
    if body:
        lines.append(f"\t{body}")
    return lines + ["}", ""]


def _conv_bn(bottom: str, name: str, bn: str, scale: str, n: int, k: int, s: int, p: int,
             bias: bool = False) -> list[str]:
    conv = (f"convolution_param {{\n\t\tnum_output: {n}\n\t\tkernel_size: {k}\n\t\tpad: {p}\n\t\tstride: {s}"
            + ("" if bias else "\n\t\tbias_term: false") + "\n\t}")
    return (_layer(name, "Convolution", [bottom], name, conv)
            + _layer(bn, "BatchNorm", [name], name, "batch_norm_param {\n\t\tuse_global_stats: true\n\t}")
            + _layer(scale, "Scale", [name], name, "scale_param {\n\t\tbias_term: true\n\t}"))


def _relu(blob: str, name: str) -> list[str]:
    return _layer(name, "ReLU", [blob], blob)


TINY = '''name: "TinyNet"
# A CIFAR-sized net that exercises the common layers: convolution, BatchNorm + Scale, in-place ReLU,
# ceil-mode pooling, a residual Eltwise, Concat, InnerProduct and Softmax.
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 16 kernel_size: 3 pad: 1 bias_term: false } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2a" type: "Convolution" bottom: "pool1" top: "conv2a"
        convolution_param { num_output: 16 kernel_size: 3 pad: 1 } }
layer { name: "relu2a" type: "ReLU" bottom: "conv2a" top: "conv2a" }
layer { name: "conv2b" type: "Convolution" bottom: "conv2a" top: "conv2b"
        convolution_param { num_output: 16 kernel_size: 3 pad: 1 group: 2 } }
layer { name: "res2" type: "Eltwise" bottom: "pool1" bottom: "conv2b" top: "res2" }
layer { name: "relu2" type: "ReLU" bottom: "res2" top: "res2" }
layer { name: "branch_a" type: "Convolution" bottom: "res2" top: "branch_a"
        convolution_param { num_output: 8 kernel_size: 1 } }
layer { name: "branch_b" type: "Pooling" bottom: "res2" top: "branch_b"
        pooling_param { pool: AVE kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "mix" type: "Concat" bottom: "branch_a" bottom: "branch_b" top: "mix" }
layer { name: "pool2" type: "Pooling" bottom: "mix" top: "pool2" pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "pool2" top: "fc" inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
'''


def write_tiny(directory: Path, seed: int = 7) -> None:
    sys.path.insert(0, str(HERE.parent))
    from protodef.api import read_net
    from protodef.weights import write_caffemodel

    directory.mkdir(parents=True, exist_ok=True)
    prototxt = directory / "tiny.prototxt"
    prototxt.write_text(TINY)
    net = read_net(prototxt, init="random", seed=seed)
    write_caffemodel(directory / "tiny.caffemodel",
                     [(layer.caffe_name, layer.type, list(layer.weights)) for layer in net.layers() if layer.weights],
                     name="TinyNet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, choices=sorted(BLOCKS), help="write only this ResNet")
    parser.add_argument("-o", "--output", help="where to write it (with --depth)")
    args = parser.parse_args()
    if args.depth:
        Path(args.output or f"ResNet-{args.depth}.prototxt").write_text(resnet_prototxt(args.depth))
        return
    (HERE / "ResNet-50.prototxt").write_text(resnet_prototxt(50))
    write_tiny(HERE / "tiny")


if __name__ == "__main__":
    main()
