"""Where the command line writes: the format an output name implies, output directories, names Python can import,
and never beside an input in a directory marked read-only (the user names a place instead)."""
from __future__ import annotations

import keyword
import os
import re
import stat
from pathlib import Path

from .errors import OutputError, UsageError

# convert: output suffix -> (--to, --format)
CONVERT_SUFFIXES = {".onnx": ("onnx", "source"), ".py": ("pytorch", "source"), ".pt2": ("pytorch", "export"),
                    ".prototxt": ("caffe", "source")}
DRAW_SUFFIXES = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}


def convert_target(to: str | None, torch_format: str | None, output: str | None) -> tuple[str, str]:
    """(--to, --format) from the options and -o's suffix: the suffix decides where the options do not, and a
    suffix that contradicts them is refused (it would write Python source into x.onnx)."""
    implied = CONVERT_SUFFIXES.get(Path(output).suffix.lower()) if output else None
    if implied is None:
        if output and to is None and Path(output).suffix:
            raise UsageError(f"cannot tell the output format from -o {output}: name a .onnx, .py, .pt2 or "
                             ".prototxt file, "
                             "or give --to")
        to = to or "onnx"
        return to, torch_format or "source"
    if (to is not None and to != implied[0]) or (torch_format is not None and implied[0] == "pytorch"
                                                 and torch_format != implied[1]):
        asked = "--to " + (to or implied[0]) + (f" --format {torch_format}" if torch_format else "")
        raise UsageError(f"-o {output} is a name for {_describe(implied)}, but {asked} asks for "
                         f"{_describe((to or implied[0], torch_format or 'source'))}; give one or the other")
    return implied[0], implied[1]


def _describe(target: tuple[str, str]) -> str:
    to, form = target
    if to == "onnx":
        return "ONNX (.onnx)"
    if to == "caffe":
        return "Caffe (.prototxt + .caffemodel)"
    return "PyTorch source (.py)" if form == "source" else "a torch.export program (.pt2)"


def draw_format(fmt: str | None, output: str | None) -> str:
    """The drawing format: --format, else -o's suffix, else svg; -o x.png with --format svg is refused."""
    implied = DRAW_SUFFIXES.get(Path(output).suffix.lower()) if output else None
    if fmt is not None and implied is not None and fmt != implied:
        raise UsageError(f"-o {output} names a .{Path(output).suffix[1:].lower()} file, but --format asks for "
                         f"{fmt}; give one or the other")
    if fmt is None and implied is None and output and Path(output).suffix:
        raise UsageError(f"cannot tell the drawing format from -o {output}: name a .svg, .png, .pdf or .dot file, "
                         "or give --format")
    return fmt or implied or "svg"


def output_path(source: str, suffix: str, *, output: str | None, output_dir: str | None,
                importable: bool = False) -> str:
    """The output for `source`: -o as given; else its stem + `suffix` in --output-dir, or beside it. A Python
    module's stem becomes an identifier (ResNet-50 -> ResNet_50) so it can be imported by name."""
    if output:
        return output
    stem = Path(source).stem
    name = (importable_name(stem) if importable else stem) + suffix
    if output_dir:
        return str(Path(output_dir) / name)
    directory = Path(source).parent
    if not writable(directory):
        raise UsageError(f"{directory or '.'} is read-only, so the output cannot go beside {source}; "
                         "give -o FILE or --output-dir DIR")
    return str(directory / name)


def refuse_collisions(sources: list[str], suffix: str, output_dir: str | None, *, importable: bool = False) -> None:
    """Several inputs must not write the same output (a/net.prototxt and b/net.prototxt into one --output-dir)."""
    seen: dict[str, str] = {}
    for source in sources:
        stem = Path(source).stem
        name = (importable_name(stem) if importable else stem) + suffix
        target = str(Path(output_dir) / name) if output_dir else str(Path(source).parent / name)
        if target in seen and seen[target] != source:
            raise UsageError(f"{seen[target]} and {source} would both be written to {target}; convert them into "
                             "different --output-dir directories")
        seen[target] = source


def importable_name(stem: str) -> str:
    """A module name Python can import: `ResNet-50` -> `ResNet_50`, `3d-net` -> `net_3d_net`."""
    name = re.sub(r"\W", "_", stem)
    if not name or name[0].isdigit():
        name = "net_" + name
    return name + "_" if keyword.iskeyword(name) else name


def writable(directory: Path) -> bool:
    """Whether we may add files to `directory`. A directory without write permission for anyone counts as
    read-only even for root, who could write there: it was marked so on purpose (a shared model zoo)."""
    directory = directory if str(directory) else Path(".")
    try:
        mode = directory.stat().st_mode
    except OSError:
        return False
    return os.access(directory, os.W_OK) and bool(stat.S_IMODE(mode) & 0o222)


def make_output_dir(output_dir: str | None) -> None:
    """--output-dir DIR is created (with its parents) when it is not there yet."""
    if not output_dir:
        return
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the output directory: {error.strerror}", where=output_dir) from None
