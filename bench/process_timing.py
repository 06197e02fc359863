"""Whole-process timings for the start-up and conversion benchmarks: each command in a fresh interpreter, the
commands interleaved so that a busy machine slows them alike, Python's bytecode cached as in an installed
package (PYTHONDONTWRITEBYTECODE would make every run compile protodef's sources again)."""
from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def environment(pycache: Path, extra_path: str | None = None) -> dict[str, str]:
    """The repository first on the path, bytecode cached in `pycache`, and `extra_path` (a directory holding
    another version of a dependency) before everything."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_once(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds


def interleaved(commands: dict[str, list[str]], env: dict[str, str], repeat: int) -> dict[str, list[float]]:
    """Each command once to warm caches (bytecode, page cache), then `repeat` rounds of all of them."""
    for command in commands.values():
        run_once(command, env)
    times: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(repeat):
        for label, command in commands.items():
            times[label].append(run_once(command, env))
    return times


def report(times: dict[str, list[float]], baseline: str) -> None:
    """Median and best of each, and the ratio of medians against `baseline`."""
    base = statistics.median(times[baseline])
    for label, values in times.items():
        median = statistics.median(values)
        print(f"  {label:<34} median {median:.3f} s  best {min(values):.3f} s  {median / base:5.2f}x {baseline}")
