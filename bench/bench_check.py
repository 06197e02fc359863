"""Benchmark: `protodef check` against running its backends once, on a Darknet-53 YOLOv3 at 608x608.

Writes YOLOv3 (bench/yolov3_prototxt.py: Darknet-53 and three heads, with or without the fork's
Yolov3DetectionOutput) and a caffemodel of seeded random weights, then times, interleaved, in one process:

  backends once:  each backend `check` runs, as a user would run it once: OpenCV (readNetFromCaffe + forward),
                  onnxruntime on the unfolded and the folded model (to_onnx + InferenceSession with its default
                  optimisations + run), PyTorch unfolded and folded (to_torch + forward); the net's outputs only
  check:          protodef.check.check_net on the same net, weights and inputs (every blob of every backend
                  compared), and format_report

and prints check / backends once (target: at most 3). A backend that `check` skips (OpenCV has no
Yolov3DetectionOutput) is left out of both.

Run from the repository root:  python bench/bench_check.py [--size 608] [--repeat 1] [--no-detection]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_draw import timed  # noqa: E402
from yolov3_prototxt import yolov3_prototxt  # noqa: E402


def write_net(directory: Path, size: int, detection: bool) -> tuple[Path, Path]:
    from protodef.api import read_net
    from protodef.weights import write_caffemodel

    prototxt = directory / "yolov3.prototxt"
    prototxt.write_text(yolov3_prototxt(size, detection))
    net = read_net(prototxt, init="random")
    caffemodel = directory / "yolov3.caffemodel"
    write_caffemodel(caffemodel, [(l.caffe_name, l.type, list(l.weights)) for l in net.layers() if l.weights])
    return prototxt, caffemodel


def backends_once(prototxt: Path, caffemodel: Path, net, inputs: dict[str, np.ndarray]) -> dict[str, callable]:
    """One plain run per backend, outputs only, with each library's defaults."""
    def opencv():
        import cv2
        cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
        for name, array in inputs.items():
            cv_net.setInput(array, name)
        return cv_net.forward(cv_net.getUnconnectedOutLayersNames())

    def onnxruntime(fold: bool):
        def run():
            import onnxruntime as ort
            from converters.onnx import to_onnx
            from protodef.api import lower
            session = ort.InferenceSession(to_onnx(lower(net, fold=fold)).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
            return session.run(None, inputs)
        return run

    def pytorch(fold: bool):
        def run():
            import torch
            from converters.pytorch import to_torch
            from protodef.api import lower
            module = to_torch(lower(net, fold=fold))
            with torch.no_grad():
                return module(*(torch.from_numpy(array) for array in inputs.values()))
        return run

    return {"opencv": opencv, "onnxruntime": onnxruntime(False), "onnxruntime-folded": onnxruntime(True),
            "pytorch": pytorch(False), "pytorch-folded": pytorch(True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=608)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-detection", dest="detection", action="store_false",
                        help="leave Yolov3DetectionOutput out (then OpenCV runs the whole net too)")
    args = parser.parse_args()

    from protodef.api import read_net
    from protodef.check import check_net, format_report

    directory = Path(tempfile.mkdtemp(prefix="bench_check."))
    prototxt, caffemodel = write_net(directory, args.size, args.detection)
    net = read_net(prototxt, caffemodel)
    # check_net's inputs: seeded standard normal, per input in order (seed 0)
    rng = np.random.default_rng(0)
    inputs = {net.value_name(i.value): rng.standard_normal(net.shape(i.value)).astype(np.float32) for i in net.inputs}

    report = check_net(net, prototxt=str(prototxt), weights=str(caffemodel))    # also a warm-up
    print(format_report(report), "\n")
    ran = [report.reference, *report.backends]
    once = {name: run for name, run in backends_once(prototxt, caffemodel, net, inputs).items() if name in ran}
    print(f"YOLOv3 {args.size}x{args.size}{' + Yolov3DetectionOutput' if args.detection else ''}: "
          f"{len(net.layers())} layers; backends {', '.join(once)}; skipped {', '.join(report.skipped) or 'none'}")

    times: dict[str, list[float]] = {name: [] for name in [*once, "check"]}
    for _ in range(args.repeat):
        for name, run in once.items():
            times[name].append(timed(run))
        times["check"].append(timed(lambda: format_report(check_net(net, prototxt=str(prototxt),
                                                                    weights=str(caffemodel)))))
    print(f"\n{'case':<22} {'median s':>9} {'best s':>8}")
    for name, values in times.items():
        print(f"{name:<22} {statistics.median(values):9.2f} {min(values):8.2f}")
    baseline = sum(statistics.median(times[name]) for name in once)
    ratio = statistics.median(times["check"]) / baseline
    print(f"{'backends once (sum)':<22} {baseline:9.2f}")
    print(f"check / backends once: {ratio:.2f} (target: at most 3)")


if __name__ == "__main__":
    main()
