"""Output files appear whole or not at all: write a temporary file beside the target, then rename."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from .errors import OutputError


@contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Yield a file to write; it replaces `target` only if the block finishes without an exception.

    A failure or KeyboardInterrupt leaves any previous `target` untouched and removes the temporary file.
    """
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError("output directory does not exist", where=str(target), expected="an existing directory",
                          found=str(directory))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot create a file: {exc.strerror}", where=str(target)) from exc
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write(target: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to `target` atomically."""
    mode = "w" if isinstance(data, str) else "wb"
    with atomic_open(target, mode) as handle:
        handle.write(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
