"""Front end speed: ResNet-152's prototxt parsed, built into the IR and shape-inferred, against protobuf's
text parser alone on the same file, in the same run (target: under 2x).

    python bench/bench_frontend.py [--repeat 7]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "samples"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--depth", type=int, default=152)
    args = parser.parse_args()

    from google.protobuf import text_format

    from caffe_proto import caffe_pb2
    from make_samples import resnet_prototxt
    from protodef.api import read_net

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"ResNet-{args.depth}.prototxt"
        path.write_text(resnet_prototxt(args.depth))

        def protobuf_only():
            text_format.Merge(path.read_text(), caffe_pb2.NetParameter())

        def protodef_front_end():
            read_net(path, init="none")

        protodef_front_end()    # warm: imports and the layer registry
        times = {"protobuf text parse": [], "protodef parse + build + shapes": []}
        for _ in range(args.repeat):      # interleaved, so load changes hit both alike
            for name, run in zip(times, (protobuf_only, protodef_front_end)):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        layers = len(read_net(path, init="none"))
    base = statistics.median(times["protobuf text parse"])
    print(f"ResNet-{args.depth}: {layers} layers, {args.repeat} runs each, medians")
    for name, values in times.items():
        print(f"  {name:34s} {statistics.median(values) * 1000:8.1f} ms   {statistics.median(values) / base:5.2f}x")


if __name__ == "__main__":
    main()
