"""Output files appear whole or not at all. A failure or Ctrl-C while writing leaves the previous file (if
any) untouched and no temporary behind; even SIGKILL leaves the target untouched.

The interrupt tests are deterministic: the conversion runs in a subprocess whose protodef.write sees an `os`
that stops (and says so in a file) at a chosen moment of the write — halfway through the data, or with all
of it written but not yet renamed into place — and the test signals it there.
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO, SAMPLES

from protodef.errors import OutputError
from protodef.write import atomic_open, atomic_write

PREVIOUS = b"the previous file, which must survive\n"


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------------------------------------- in-process

def test_a_failure_keeps_the_previous_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.onnx"
    target.write_bytes(PREVIOUS)
    with pytest.raises(ValueError):
        with atomic_open(target) as handle:
            handle.write(b"half of a new file")
            handle.flush()
            (temporary,) = leftovers(tmp_path)    # beside the target, so that the rename is atomic
            assert (tmp_path / temporary).read_bytes() == b"half of a new file"
            raise ValueError("the converter failed")
    assert target.read_bytes() == PREVIOUS and leftovers(tmp_path) == []


def test_keyboard_interrupt_keeps_the_previous_file(tmp_path):
    target = tmp_path / "out.py"
    target.write_bytes(PREVIOUS)
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target, "w") as handle:
            handle.write("import torch\n")
            raise KeyboardInterrupt
    assert target.read_bytes() == PREVIOUS and leftovers(tmp_path) == []


def test_success_replaces_the_file_with_ordinary_permissions(tmp_path):
    target = tmp_path / "out.svg"
    target.write_bytes(PREVIOUS)
    atomic_write(target, "<svg/>")
    assert target.read_text() == "<svg/>" and leftovers(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask   # not mkstemp's 0600


def test_unwritable_places_are_output_errors(tmp_path):
    missing = tmp_path / "nowhere" / "out.onnx"
    with pytest.raises(OutputError) as info:
        atomic_write(missing, b"x")
    assert str(info.value) == (f"{missing}: output directory does not exist: expected an existing directory, "
                               f"found {missing.parent}")
    if os.geteuid() != 0:   # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(OutputError) as info:
                atomic_write(locked / "out.onnx", b"x")
            assert str(info.value) == f"{locked / 'out.onnx'}: cannot create a file: Permission denied"
        finally:
            locked.chmod(0o700)


def test_a_failed_conversion_leaves_the_previous_output(tmp_path, capsys):
    from protodef.cli import main
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }\n'
                   'layer { name: "x" type: "Frobnicate" bottom: "data" top: "x" }\n')
    target = tmp_path / "net.onnx"
    target.write_bytes(PREVIOUS)
    assert main(["convert", str(net), "-o", str(target)]) == 8
    assert target.read_bytes() == PREVIOUS and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------- interrupted writes

# Runs a protodef command with protodef.write's `os` replaced: at the chosen moment it writes READY and sleeps.
DRIVER = r'''
import os, sys, time, types
import protodef.write

moment, ready, command = sys.argv[1], sys.argv[2], sys.argv[3:]

def stop_here():
    open(ready, "w").close()
    while True:
        time.sleep(0.05)

class HalfWriter:
    """The temporary file's handle: writes half of the first chunk, then stops (once)."""
    def __init__(self, handle):
        self.handle = handle
        self.stopped = False
    def write(self, data):
        if self.stopped:
            return self.handle.write(data)
        self.stopped = True
        self.handle.write(data[:max(1, len(data) // 2)])
        self.handle.flush()
        stop_here()
    def __getattr__(self, name):
        return getattr(self.handle, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)

hooked = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
if moment == "halfway":
    hooked.fdopen = lambda fd, mode="r", *a, **k: HalfWriter(os.fdopen(fd, mode, *a, **k))
else:   # "unrenamed": every byte written and flushed, the rename not done yet
    hooked.fsync = lambda fd: stop_here()
protodef.write.os = hooked

if command[0] == "write-caffemodel":
    import numpy as np
    from protodef.weights import write_caffemodel
    write_caffemodel(command[1], [("fc", "InnerProduct", [np.ones((1000, 1000), np.float32), np.ones(1000)])])
else:
    from protodef.cli import main
    sys.exit(main(command))
'''

TINY = SAMPLES / "tiny" / "tiny.prototxt"
TINY_WEIGHTS = SAMPLES / "tiny" / "tiny.caffemodel"

# name: (the command, given the output directory; the files it writes, each of which must survive)
WRITERS = {
    "onnx": (lambda out: ["convert", str(TINY), "-w", str(TINY_WEIGHTS), "-o", str(out / "tiny.onnx")],
             ["tiny.onnx"]),
    "pytorch-source": (lambda out: ["convert", str(TINY), "-w", str(TINY_WEIGHTS), "--to", "pytorch",
                                    "-o", str(out / "tiny.py")], ["tiny.py", "tiny.pt"]),
    "drawing": (lambda out: ["draw", str(TINY), "--format", "dot", "-o", str(out / "tiny.dot")], ["tiny.dot"]),
    "upgrade": (lambda out: ["upgrade", str(SAMPLES / "ResNet-50.prototxt"), "-o", str(out / "up.prototxt")],
                ["up.prototxt"]),
    "weights": (lambda out: ["write-caffemodel", str(out / "w.caffemodel")], ["w.caffemodel"]),
}


def interrupt(tmp_path: Path, writer: str, moment: str, signum: int) -> tuple[subprocess.Popen, Path, list[str]]:
    command, outputs = WRITERS[writer]
    out = tmp_path / "out"
    out.mkdir()
    for name in outputs:
        (out / name).write_bytes(PREVIOUS)
    ready = tmp_path / "READY"
    process = subprocess.Popen([sys.executable, "-c", DRIVER, moment, str(ready), *command(out)], cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if process.poll() is not None:
                pytest.fail(f"the writer finished without stopping: {process.returncode}\n{process.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("the writer never reached the write")
            time.sleep(0.02)
        temporaries = leftovers(out)
        assert len(temporaries) == 1 and temporaries[0].startswith(".")   # a hidden file beside the target
        written = (out / temporaries[0]).stat().st_size
        assert written > 0
        process.send_signal(signum)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    for name in outputs:
        assert (out / name).read_bytes() == PREVIOUS, f"{name} was changed"
    return process, out, temporaries


@pytest.mark.parametrize("moment", ["halfway", "unrenamed"])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_ctrl_c_while_writing(tmp_path, writer, moment):
    process, out, _ = interrupt(tmp_path, writer, moment, signal.SIGINT)
    assert leftovers(out) == []
    if writer != "weights":
        assert process.returncode == 130
        assert process.stderr.read() == "protodef: interrupted\n"
    else:
        assert process.returncode != 0


@pytest.mark.parametrize("writer", ["onnx", "weights"])
def test_kill_while_writing_leaves_the_target_alone(tmp_path, writer):
    process, out, temporaries = interrupt(tmp_path, writer, "halfway", signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    # Nothing can clean up after SIGKILL: the half-written temporary stays, hidden, beside the untouched target.
    assert leftovers(out) == temporaries


@pytest.mark.parametrize("writer", ["onnx", "pytorch-source"])
def test_sigterm_while_writing_is_handled_like_ctrl_c(tmp_path, writer):
    process, out, _ = interrupt(tmp_path, writer, "halfway", signal.SIGTERM)
    assert leftovers(out) == []
    assert process.returncode == 143
    assert process.stderr.read() == "protodef: terminated\n"
