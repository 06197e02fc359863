"""Benchmark: one protodef.Solver step on ResNet-50 against a hand-written PyTorch training step.

The net is samples/ResNet-50.prototxt made trainable, written by this script into a temporary directory: an
Input layer giving `data` (N, 3, 224, 224) and `label` (N,), BatchNorm without use_global_stats (so it
normalises by batch statistics, as Caffe's TRAIN phase does), and SoftmaxWithLoss on fc1000 in place of the
Softmax. A solver.prototxt names it (SGD, momentum 0.9, weight_decay 1e-4, step policy).

  protodef      Solver(solver.prototxt, module=m).step({"data": x, "label": y})
  hand-written  optimizer.zero_grad(); m(x, y).backward(); optimizer.step()
                with torch.optim.SGD(lr, momentum=0.9, weight_decay=1e-4) on a copy of the same module

Both train the same GraphModule (protodef.load(phase="train", fold=False)) on the same batch, on the CPU, one
step at a time, interleaved, after a warm-up step each; the table gives the median and the minimum of
--repeat steps. The ratio is the solver's overhead: Caffe's update (history, regularisation, the BatchNorm
statistics' history entries) against torch's, around the same forward and backward.

Run from the repository root:  python bench/bench_solver.py [--repeat 5] [--batch 8] [--threads N] [--device cuda]
"""
from __future__ import annotations

import argparse
import copy
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import protodef  # noqa: E402

SOLVER = """net: "train.prototxt"
type: "SGD"
base_lr: 0.01
lr_policy: "step"
stepsize: 1000
gamma: 0.1
momentum: 0.9
weight_decay: 0.0001
"""


def trainable_resnet(batch: int) -> str:
    """samples/ResNet-50.prototxt with a label input, batch statistics and a SoftmaxWithLoss."""
    text = (ROOT / "samples" / "ResNet-50.prototxt").read_text()
    header = re.search(r'input: "data"\s*(input_dim: \d+\s*){4}', text)
    inputs = ('layer { name: "data" type: "Input" top: "data" top: "label" input_param { '
              f'shape {{ dim: {batch} dim: 3 dim: 224 dim: 224 }} shape {{ dim: {batch} }} }} }}\n')
    text = text[:header.start()] + inputs + text[header.end():]
    text = re.sub(r"use_global_stats: true", "", text)
    softmax = re.search(r'layer \{\s*bottom: "fc1000"\s*top: "prob"\s*name: "prob"\s*type: "Softmax"\s*\}', text)
    loss = 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc1000" bottom: "label" top: "loss" }\n'
    return text[:softmax.start()] + loss + text[softmax.end():]


def timed(step, device: torch.device) -> tuple[float, float]:
    """Wall and CPU seconds of one step (CPU time is what other jobs on a shared machine disturb least)."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        (directory / "train.prototxt").write_text(trainable_resnet(args.batch))
        (directory / "solver.prototxt").write_text(SOLVER)
        module = protodef.load(directory / "train.prototxt", phase="train", fold=False).to(device)
        baseline_module = copy.deepcopy(module)
        solver = protodef.Solver(directory / "solver.prototxt", module=module)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224, generator=generator).to(device)
    y = torch.randint(0, 1000, (args.batch,), generator=generator).float().to(device)
    optimizer = torch.optim.SGD([p for p in baseline_module.parameters() if p.requires_grad], lr=0.01,
                                momentum=0.9, weight_decay=1e-4)
    baseline_module.train()

    def hand_written() -> None:
        optimizer.zero_grad()
        loss = baseline_module(x, y)
        (loss[0] if isinstance(loss, tuple) else loss).backward()
        optimizer.step()

    def protodef_step() -> None:
        solver.step({"data": x, "label": y})

    times: dict[str, list[tuple[float, float]]] = {"hand-written": [], "protodef": []}
    hand_written(), protodef_step()                         # warm-up
    for _ in range(args.repeat):
        times["hand-written"].append(timed(hand_written, device))
        times["protodef"].append(timed(protodef_step, device))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"ResNet-50, batch {args.batch}, {where}, torch {torch.__version__}, {args.repeat} steps each")
    print("| step | wall median s | wall min s | CPU median s | CPU min s | / hand-written (wall median, min; "
          "CPU median, min) |")
    print("|---|---:|---:|---:|---:|---|")
    base = _summary(times["hand-written"])
    for name, values in times.items():
        mine = _summary(values)
        ratios = ", ".join(f"{a / b:.3f}" for a, b in zip(mine, base))
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in mine) + f" | {ratios} |")
    # The updates alone, on the gradients the last steps left: Caffe's rule against optimizer.step().
    updates: dict[str, list[tuple[float, float]]] = {"optimizer.step()": [], "Solver update": []}
    for _ in range(3 * args.repeat):
        updates["optimizer.step()"].append(timed(optimizer.step, device))
        updates["Solver update"].append(timed(solver._apply_update, device))
    for name, values in updates.items():
        wall, _, cpu, _ = _summary(values)
        print(f"{name}: {1000 * wall:.1f} ms wall, {1000 * cpu:.1f} ms CPU (medians of {len(values)})")
    return 0


def _summary(values: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    walls, cpus = [w for w, _ in values], [c for _, c in values]
    return statistics.median(walls), min(walls), statistics.median(cpus), min(cpus)


if __name__ == "__main__":
    raise SystemExit(main())
