"""A progress line on stderr for work that lasts more than about a second, drawn by tqdm, and only when stderr
is a terminal: piped or redirected output stays clean, and tqdm is imported only then (start-up stays fast).
Without tqdm installed, nothing is drawn.

A batch counts nets, one net counts its steps (reading, converting, verifying):

    with Progress("convert", nets=len(paths), steps=3) as progress:
        for path in paths:
            progress.net(path)
            progress.step("reading")
            ...
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Any

DELAY_S = 1.0   # work done sooner shows no progress line at all


class Progress:
    def __init__(self, description: str, *, nets: int, steps: int):
        self.per_net = nets > 1
        self.name = ""
        self.started = 0
        self.bar = _bar(nets if self.per_net else steps, description, "net" if self.per_net else "step")

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.bar is not None:
            self.bar.close()

    def net(self, path: str) -> None:
        """A net begins (a batch counts the one before it as done)."""
        if self.bar is not None and self.per_net and self.name:
            self.bar.update(1)
        self.name = Path(path).name
        self._show(self.name)

    def step(self, what: str) -> None:
        """A step of the current net begins (one net alone counts the step before it as done)."""
        if self.bar is not None and not self.per_net:
            self.bar.update(1 if self.started else 0)
            self.started += 1
        self._show(f"{self.name}: {what}")

    def print(self, line: str, file: IO[str] | None = None) -> None:
        """Print a line without breaking the progress line (tqdm clears and redraws it)."""
        file = file or sys.stdout
        if self.bar is None:
            print(line, file=file)
        else:
            self.bar.write(line, file=file)

    def _show(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)


def _bar(total: int, description: str, unit: str):
    if not _stderr_is_terminal():
        return None
    try:
        from tqdm import tqdm
    except ImportError:   # an optional dependency: the work goes on without a progress line
        return None
    return tqdm(total=total, desc=description, unit=unit, delay=DELAY_S, leave=False, file=sys.stderr,
                dynamic_ncols=True)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):   # replaced by an object without isatty, or closed
        return False
