"""Benchmark: protodef's caffemodel reader against protobuf's own parser.

Builds a caffemodel of about --mb megabytes (a few big InnerProduct layers, written with
protodef.weights.write_caffemodel), then loads it --repeat times each way, every load in a fresh
subprocess that reports its wall time and its peak RSS above the RSS it had before loading:

  protobuf:  caffe_pb2.NetParameter().ParseFromString(file bytes), then np.array(blob.data, float32) per blob
  protodef:  protodef.weights.read_caffemodel(path)

Run from the repository root:  python bench/bench_weights.py [--mb 110] [--repeat 3] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _rss_bytes() -> int:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _current_rss() -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def child(method: str, path: str) -> None:
    """Load `path` one way and print a JSON line: seconds, peak RSS growth, values read, checksum."""
    import numpy as np

    if method == "protobuf":
        from caffe_proto import caffe_pb2

        def load():
            with open(path, "rb") as handle:
                data = handle.read()
            net = caffe_pb2.NetParameter()
            net.ParseFromString(data)
            out = []
            for layer in net.layer:
                for blob in layer.blobs:
                    out.append(np.array(blob.data, dtype=np.float32).reshape(tuple(blob.shape.dim)))
            return out
    else:
        from protodef.weights import read_caffemodel

        def load():
            return [b for layer in read_caffemodel(path).layers for b in layer.blobs]

    baseline = _rss_bytes()
    current = _current_rss()
    if current is not None and baseline > current + (16 << 20):
        # ru_maxrss still holds a high-water mark from before exec; the growth measured would be meaningless.
        raise SystemExit(f"baseline peak RSS {baseline} is far above current RSS {current}: start the child from "
                         f"a small process")
    start = time.perf_counter()
    arrays = load()
    seconds = time.perf_counter() - start
    peak = _rss_bytes() - baseline
    values = sum(a.size for a in arrays)
    checksum = float(sum(float(a.sum(dtype=np.float64)) for a in arrays))
    print(json.dumps({"seconds": seconds, "peak": peak, "values": values, "checksum": checksum}))


def build(path: Path, megabytes: float) -> None:
    import numpy as np

    from protodef.weights import write_caffemodel

    rng = np.random.default_rng(0)
    target = int(megabytes * 1e6) // 4       # float32 values wanted
    shapes = [("conv1", "Convolution", (96, 3, 11, 11)), ("conv2", "Convolution", (256, 48, 5, 5))]
    left = target - sum(int(np.prod(s)) for _, _, s in shapes)
    fc = []
    inputs = 9216
    for name, outputs in (("fc6", 4096), ("fc7", 4096), ("fc8", 1000)):
        if left <= 0:
            break
        rows = min(outputs, max(1, left // inputs))
        fc.append((name, "InnerProduct", (rows, inputs)))
        left -= rows * inputs
        inputs = rows
    while left > 0:   # pad with more layers if asked for more than an AlexNet-sized tail
        rows = min(4096, max(1, left // 4096))
        fc.append((f"fc{len(fc) + 6}", "InnerProduct", (rows, 4096)))
        left -= rows * 4096

    def layers():
        for name, kind, shape in shapes + fc:
            weights = rng.standard_normal(shape, dtype=np.float32)
            yield name, kind, [weights, rng.standard_normal(shape[0], dtype=np.float32)]

    write_caffemodel(path, layers(), name="bench")


def run(method: str, path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", method, str(path)], capture_output=True, text=True,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{method} child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=110.0, help="size of the caffemodel to build (default 110)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process loads per method (default 3)")
    parser.add_argument("--keep", help="build the file in this directory and leave it there")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--build", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.build:
        build(Path(args.build), args.mb)
        return
    try:
        import caffe_proto.caffe_pb2  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"caffe_proto.caffe_pb2 is needed for the protobuf baseline: {exc}")

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep) if args.keep else Path(scratch)
        path = folder / "bench.caffemodel"
        start = time.perf_counter()
        # Built in a subprocess: a child's ru_maxrss starts from its parent's high-water mark, so this
        # process must stay small for the children's measurements to mean anything.
        subprocess.run([sys.executable, __file__, "--build", str(path), "--mb", str(args.mb)], check=True, cwd=ROOT)
        size = path.stat().st_size
        print(f"built {path.name}: {size / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s")
        results = {"protobuf": [], "protodef": []}
        for _ in range(args.repeat):   # interleaved, so both see the same page cache and machine state
            for method in results:
                results[method].append(run(method, path))
        pb, pd = results["protobuf"], results["protodef"]
        if pb[0]["values"] != pd[0]["values"] or abs(pb[0]["checksum"] - pd[0]["checksum"]) > 1e-6 * max(
                1.0, abs(pb[0]["checksum"])):
            raise SystemExit(f"the two readers disagree: {pb[0]} vs {pd[0]}")
        print(f"{'method':<10}{'median s':>10}{'best s':>10}{'peak RSS MB':>14}{'peak / file':>13}")
        for method, runs in results.items():
            times = [r["seconds"] for r in runs]
            peak = max(r["peak"] for r in runs)
            print(f"{method:<10}{statistics.median(times):>10.3f}{min(times):>10.3f}{peak / 1e6:>14.1f}"
                  f"{peak / size:>13.2f}")
        speedup = statistics.median(r["seconds"] for r in pb) / statistics.median(r["seconds"] for r in pd)
        print(f"speed-up (median protobuf / median protodef): {speedup:.1f}x")
        print(f"protodef peak memory / file size: {max(r['peak'] for r in pd) / size:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
