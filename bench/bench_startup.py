"""Benchmark: `protodef --help` (and `protodef convert --help`) against `python -c "import numpy"`, whole processes,
interleaved in one run (target: at most 1.0x). argparse must run before networkx, the IR or onnx are imported.

Run from the repository root:  python bench/bench_startup.py [--repeat 15]
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from process_timing import environment, interleaved, report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15, help="rounds of all commands (default 15)")
    args = parser.parse_args(argv)
    python = sys.executable
    commands = {"python -c pass": [python, "-c", "pass"],
                'python -c "import numpy"': [python, "-c", "import numpy"],
                "protodef --help": [python, "-m", "protodef", "--help"],
                "protodef convert --help": [python, "-m", "protodef", "convert", "--help"]}
    print(f"Python {platform.python_version()} on {platform.machine()}; {args.repeat} rounds, interleaved")
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as pycache:
        times = interleaved(commands, environment(Path(pycache)), args.repeat)
    report(times, 'python -c "import numpy"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
