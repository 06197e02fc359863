"""Benchmark: drawing ResNet-152 (build + draw + `dot` to SVG) against baselines measured in the same run.

Writes a ResNet-152 deploy prototxt with samples/make_samples.py (the ResNet-50 layout with 3/8/36/3 bottleneck
blocks), then times, --repeat times each, interleaved:

  protobuf parse:  text_format.Merge of the prototxt into caffe_pb2.NetParameter (the least any reader does)
  dot alone:       `dot -Tsvg` on the DOT source protodef writes (graphviz's layout, which we do not control)
  protodef:        read_net(init="none") + converters.graphviz.draw + dot -> SVG, in-process
  CLI:             `python -m protodef draw ResNet-152.prototxt -o x.svg` in a fresh interpreter (imports included)

each for the plain drawing and for --collapse. Needs graphviz's `dot`.

Run from the repository root:  python bench/bench_draw.py [--repeat 5] [--keep DIR]
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def resnet152(directory: Path) -> Path:
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "samples" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = directory / "ResNet-152.prototxt"
    path.write_text(module.resnet_prototxt(152))
    return path


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="write the prototxt and drawings here and keep them")
    args = parser.parse_args()
    if shutil.which("dot") is None:
        raise SystemExit("graphviz's dot program is needed (Debian/Ubuntu: apt-get install graphviz)")

    from google.protobuf import text_format

    from caffe_proto import caffe_pb2
    from converters.graphviz import draw, find_blocks
    from protodef.api import read_net

    directory = args.keep or Path(tempfile.mkdtemp(prefix="bench_draw."))
    directory.mkdir(parents=True, exist_ok=True)
    prototxt = resnet152(directory)
    text = prototxt.read_text()
    net = read_net(prototxt, init="none")
    structure = find_blocks(net)
    print(f"ResNet-152: {len(net)} layers, {len(structure.blocks)} blocks in {len(structure.stages)} stages "
          f"({', '.join(f'{s.name}: {len(s.blocks)}' for s in structure.stages)})")

    def protobuf_parse():
        text_format.Merge(text, caffe_pb2.NetParameter())

    def render(collapse: bool):
        def run():
            graph = draw(read_net(prototxt, init="none"), collapse=collapse)
            graph.pipe(format="svg")
        return run

    def dot_alone(source: str):
        def run():
            subprocess.run(["dot", "-Tsvg"], input=source.encode(), stdout=subprocess.DEVNULL, check=True)
        return run

    def cli(collapse: bool):
        def run():
            command = [sys.executable, "-m", "protodef", "draw", str(prototxt), "-o",
                       str(directory / f"ResNet-152{'-collapsed' if collapse else ''}.svg")]
            subprocess.run(command + (["--collapse"] if collapse else []), cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
        return run

    cases = {"protobuf parse": protobuf_parse}
    for collapse in (False, True):
        suffix = " (collapse)" if collapse else ""
        cases[f"dot alone{suffix}"] = dot_alone(draw(net, collapse=collapse).source)
        cases[f"protodef{suffix}"] = render(collapse)
        cases[f"CLI{suffix}"] = cli(collapse)
    for function in cases.values():   # warm caches and imports
        function()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, function in cases.items():
            times[name].append(timed(function))

    base = statistics.median(times["protobuf parse"])
    print(f"\n{'case':<22} {'median s':>9} {'best s':>8} {'/ protobuf parse':>17}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<22} {median:9.3f} {min(values):8.3f} {median / base:16.1f}x")
    for suffix in ("", " (collapse)"):
        ours, layout = statistics.median(times[f"protodef{suffix}"]), statistics.median(times[f"dot alone{suffix}"])
        print(f"protodef{suffix}: {ours:.3f} s, of which dot {layout:.3f} s ({layout / ours:.0%}); "
              f"target < 3 s: {'met' if statistics.median(times[f'CLI{suffix}']) < 3 else 'MISSED'} end to end")
    if args.keep is None:
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
