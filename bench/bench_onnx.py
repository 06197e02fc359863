"""Benchmark: Caffe -> ONNX conversion against caffe2onnx, and onnxruntime inference against OpenCV dnn.

Both parts use ResNet-50 (the corpus's deploy prototxt, else samples/ResNet-50.prototxt) with a caffemodel of
seeded random weights written by protodef's writer into a temporary directory.

  (a) conversion, whole process each time, interleaved, --repeat runs of each:
        protodef:    python -m protodef convert R50.prototxt -w R50.caffemodel -o protodef.onnx
        caffe2onnx:  <its python> -m caffe2onnx.convert --prototxt ... --caffemodel ... --onnx caffe2onnx.onnx
  (b) batch-1 inference latency, same input, same thread count, interleaved:
        onnxruntime on protodef's model   vs   cv2.dnn.readNetFromCaffe on the same prototxt + caffemodel

caffe2onnx 2.0.1 pins onnx==1.6.0, which does not build on Python 3.11 and would replace our onnx, so it lives
in its own virtual environment (see bench/README.md); point --caffe2onnx-python (or $CAFFE2ONNX_PYTHON) at
that environment's python. Without one, part (a) times protodef alone and says why.

Run from the repository root:  python bench/bench_onnx.py [--repeat 5] [--runs 30] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CORPUS_RESNET = ROOT.parent / "shared" / "corpus" / "resnet_kaiminghe" / "prototxt_ResNet-50-deploy.prototxt"


def resnet_prototxt() -> Path:
    return CORPUS_RESNET if CORPUS_RESNET.exists() else ROOT / "samples" / "ResNet-50.prototxt"


def write_inputs(directory: Path, prototxt: Path) -> tuple[Path, Path]:
    """Copy the prototxt and write a caffemodel of seeded random weights beside it (our writer)."""
    from protodef.api import read_net
    from protodef.weights import write_caffemodel
    target = directory / "ResNet-50.prototxt"
    target.write_bytes(prototxt.read_bytes())
    net = read_net(target, init="random", seed=0)
    caffemodel = directory / "ResNet-50.caffemodel"
    write_caffemodel(caffemodel, [(layer.caffe_name, layer.type, list(layer.weights)) for layer in net.layers()
                                  if layer.weights])
    return target, caffemodel


def find_caffe2onnx(given: str | None) -> tuple[str | None, str]:
    """A python that can import caffe2onnx, and a note on where it came from (or why there is none)."""
    candidates = [given] if given else [os.environ.get("CAFFE2ONNX_PYTHON"), sys.executable]
    for python in filter(None, candidates):
        probe = subprocess.run([python, "-c", "import caffe2onnx.src.caffe2onnx, onnx, google.protobuf as p; "
                                "print(onnx.__version__, p.__version__)"], capture_output=True, text=True)
        if probe.returncode == 0:
            onnx_version, protobuf_version = probe.stdout.split()
            return python, f"{python} (onnx {onnx_version}, protobuf {protobuf_version})"
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        if given:
            return None, f"{python} cannot import caffe2onnx: {last}"
    return None, ("no python with caffe2onnx (give --caffe2onnx-python; caffe2onnx 2.0.1 pins onnx==1.6.0, which "
                  "does not build on this Python and would replace protodef's onnx, so it needs its own venv)")


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds


def conversion(directory: Path, prototxt: Path, caffemodel: Path, peer: str | None, repeat: int) -> dict:
    ours_cmd = [sys.executable, "-m", "protodef", "convert", str(prototxt), "-w", str(caffemodel), "-o",
                str(directory / "protodef.onnx")]
    peer_cmd = [peer, "-m", "caffe2onnx.convert", "--prototxt", str(prototxt), "--caffemodel", str(caffemodel),
                "--onnx", str(directory / "caffe2onnx.onnx")] if peer else None
    times: dict[str, list[float]] = {"protodef": [], "caffe2onnx": []}
    for _ in range(repeat):
        times["protodef"].append(timed(ours_cmd, ROOT))
        if peer_cmd:
            times["caffe2onnx"].append(timed(peer_cmd, directory))
    return times


def compare_models(directory: Path, prototxt: Path, caffemodel: Path) -> dict[str, float]:
    """Max |difference| of each converted model's output from OpenCV's on one input (a sanity check)."""
    import cv2
    import numpy as np
    import onnxruntime as ort
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cv_net.setInput(x)
    expected = cv_net.forward()
    found = {}
    for name in ("protodef", "caffe2onnx"):
        path = directory / f"{name}.onnx"
        if not path.exists():
            continue
        options = ort.SessionOptions()
        options.log_severity_level = 3   # caffe2onnx lists its initializers as graph inputs: one warning each
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            output = session.run(None, {session.get_inputs()[0].name: x})[0]
            found[name] = float(np.max(np.abs(output.reshape(expected.shape) - expected)))
        except Exception as error:   # noqa: BLE001  (report the peer's failure, do not stop the benchmark)
            found[name] = f"does not run in onnxruntime: {str(error).splitlines()[0][:160]}"
    return found


def inference(directory: Path, prototxt: Path, caffemodel: Path, threads: int, runs: int) -> dict:
    import cv2
    import numpy as np
    import onnxruntime as ort
    x = np.random.default_rng(2).standard_normal((1, 3, 224, 224)).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(directory / "protodef.onnx"), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    cv2.setNumThreads(threads)
    cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cv_net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv_net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

    def run_ort():
        session.run(None, {name: x})

    def run_cv():
        cv_net.setInput(x)
        cv_net.forward()

    for _ in range(3):   # warm-up: first runs allocate and pick kernels
        run_ort()
        run_cv()
    times: dict[str, list[float]] = {"onnxruntime": [], "opencv": []}
    for _ in range(runs):
        for label, run in (("onnxruntime", run_ort), ("opencv", run_cv)):
            start = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - start)
    return times


def describe(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} s, best {min(values):.3f} s ({len(values)} runs)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="conversions of each tool (default 5)")
    parser.add_argument("--runs", type=int, default=30, help="timed inference runs of each (default 30)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="inference threads, both")
    parser.add_argument("--caffe2onnx-python", help="a python whose environment has caffe2onnx")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep the files")
    args = parser.parse_args(argv)

    import cv2
    import onnx
    import onnxruntime
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"OpenCV {cv2.__version__}")
    peer, peer_note = find_caffe2onnx(args.caffe2onnx_python)
    print(f"caffe2onnx: {peer_note}")
    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as scratch:
        directory = Path(args.keep or scratch)
        directory.mkdir(parents=True, exist_ok=True)
        prototxt, caffemodel = write_inputs(directory, resnet_prototxt())
        print(f"ResNet-50: {prototxt.name} + {caffemodel.stat().st_size / 1e6:.1f} MB caffemodel in {directory}")

        times = conversion(directory, prototxt, caffemodel, peer, args.repeat)
        print("\n(a) conversion, whole process")
        for label, values in times.items():
            if values:
                print(f"  {label:<11} {describe(values)}")
        if times["caffe2onnx"]:
            ratio = statistics.median(times["caffe2onnx"]) / statistics.median(times["protodef"])
            print(f"  protodef is {ratio:.1f}x faster (median against median; target >= 10x)")
        for label, diff in compare_models(directory, prototxt, caffemodel).items():
            print(f"  {label} output vs OpenCV: max |diff| {diff if isinstance(diff, str) else f'{diff:.2e}'}")

        latency = inference(directory, prototxt, caffemodel, args.threads, args.runs)
        print(f"\n(b) inference, batch 1, {args.threads} thread(s)")
        for label, values in latency.items():
            print(f"  {label:<11} {describe(values)}")
        ratio = statistics.median(latency["opencv"]) / statistics.median(latency["onnxruntime"])
        print(f"  onnxruntime on protodef's model is {ratio:.2f}x OpenCV's speed (target >= 1x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
