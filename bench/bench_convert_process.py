"""Benchmark: converting ResNet-50 with its ~102 MB caffemodel to ONNX as a whole process, against
`python -c "import onnx"` in the same environment, interleaved in one run (target: at most 1.6x).

The caffemodel holds seeded random weights written by protodef's writer (bench_onnx.write_inputs). Importing
onnx imports ml_dtypes, whose version dominates that baseline (0.7.0 registers many more NumPy casts than
0.6.0); `--with-path DIR` puts DIR first on the path of every command, to measure with another ml_dtypes:

  pip install --no-deps --target /tmp/mldt06 ml_dtypes==0.6.0
  python bench/bench_convert_process.py --with-path /tmp/mldt06

Run from the repository root:  python bench/bench_convert_process.py [--repeat 7] [--keep DIR]
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_onnx import resnet_prototxt, write_inputs  # noqa: E402
from process_timing import environment, interleaved, report  # noqa: E402


def versions(env: dict[str, str]) -> str:
    probe = "import numpy, onnx, ml_dtypes; print(numpy.__version__, onnx.__version__, ml_dtypes.__version__)"
    numpy, onnx, ml_dtypes = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                                            text=True, check=True).stdout.split()
    return f"numpy {numpy}, onnx {onnx}, ml_dtypes {ml_dtypes}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="rounds of all commands (default 7)")
    parser.add_argument("--with-path", metavar="DIR", help="a directory put first on every command's path")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep the files")
    args = parser.parse_args(argv)
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench_convert_") as scratch:
        directory = Path(args.keep or scratch)
        directory.mkdir(parents=True, exist_ok=True)
        prototxt, caffemodel = write_inputs(directory, resnet_prototxt())
        env = environment(directory / "pycache", args.with_path)
        print(f"Python {platform.python_version()}, {versions(env)}; ResNet-50 + "
              f"{caffemodel.stat().st_size / 1e6:.1f} MB caffemodel; {args.repeat} rounds, interleaved")
        commands = {'python -c "import numpy"': [python, "-c", "import numpy"],
                    'python -c "import ml_dtypes"': [python, "-c", "import ml_dtypes"],
                    'python -c "import onnx"': [python, "-c", "import onnx"],
                    "protodef convert ResNet-50 -> ONNX": [python, "-m", "protodef", "convert", str(prototxt), "-w",
                                                           str(caffemodel), "-o", str(directory / "r50.onnx")]}
        times = interleaved(commands, env, args.repeat)
    report(times, 'python -c "import onnx"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
