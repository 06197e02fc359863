"""A `Python` layer names a module of the net author's; protodef never imports or runs it.

The module here leaves a marker file when imported (and its layer class when set up), and sits on the
subprocess's import path and in its working directory, so any import of it would show.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import REPO

from protodef.errors import UnsupportedError

NET = textwrap.dedent('''\
    name: "with_python"
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
            convolution_param { num_output: 4 kernel_size: 3 } }
    layer {
      name: "proposal"
      type: "Python"
      bottom: "conv"
      top: "rois"
      python_param { module: "evil_layer" layer: "EvilLayer" param_str: "__import__('evil_pkg.layer')" }
    }
    layer { name: "relu" type: "ReLU" bottom: "rois" top: "out" }
    ''')

SIDE_EFFECT = textwrap.dedent('''\
    import pathlib
    pathlib.Path({marker!r}).write_text("imported " + __name__)

    class EvilLayer:
        def setup(self, bottom, top):
            pathlib.Path({marker!r}).write_text("set up")
    ''')


@pytest.fixture()
def trap(tmp_path):
    """A working directory holding the net and the modules it names; returns (directory, marker, env)."""
    marker = tmp_path / "IMPORTED"
    (tmp_path / "evil_layer.py").write_text(SIDE_EFFECT.format(marker=str(marker)))
    package = tmp_path / "evil_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(SIDE_EFFECT.format(marker=str(marker)))
    (package / "layer.py").write_text(SIDE_EFFECT.format(marker=str(marker)))
    (tmp_path / "net.prototxt").write_text(NET)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    return tmp_path, marker, env


def run(directory: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=directory, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_trap_works(trap):
    """The marker does appear when the module is imported: the tests below can fail."""
    directory, marker, env = trap
    assert run(directory, env, "-c", "import evil_layer").returncode == 0
    assert marker.read_text() == "imported evil_layer"


COMMANDS = [
    ["convert", "net.prototxt"],
    ["convert", "net.prototxt", "--to", "pytorch"],
    ["check", "net.prototxt"],
]
LOOKING = [
    ["info", "net.prototxt"],
    ["info", "--json", "net.prototxt"],
    ["draw", "net.prototxt", "--format", "dot"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:1] + c[2:]))
def test_cli_refuses_the_layer_without_importing_it(trap, command):
    directory, marker, env = trap
    result = run(directory, env, "-m", "protodef", *command)
    assert not marker.exists(), marker.read_text()
    assert result.returncode == UnsupportedError.exit_code, result.stderr
    assert result.stderr == (
        "protodef: 1 layer(s) of types protodef does not know: net.prototxt:5:1: layer 'proposal' (Python). "
        "A Python layer runs user code that protodef never imports or executes; register a layer type for it "
        "with protodef.register_layer('Python', ...) to convert it\n")
    assert not list(directory.glob("net.*[!t]")), "an output file was written"   # net.onnx, net.py, net.dot


@pytest.mark.parametrize("command", LOOKING, ids=lambda c: " ".join(c[:1] + c[2:]))
def test_info_and_draw_show_it_as_an_opaque_node_without_importing_it(trap, command):
    directory, marker, env = trap
    result = run(directory, env, "-m", "protodef", *command)
    assert not marker.exists(), marker.read_text()
    assert result.returncode == 0, result.stderr
    if command[0] == "info":
        assert "proposal" in result.stdout and "its module is never imported" in result.stdout
    else:
        assert "Python" in (directory / "net.dot").read_text()


def test_upgrade_keeps_the_layer_as_text(trap):
    directory, marker, env = trap
    result = run(directory, env, "-m", "protodef", "upgrade", "net.prototxt")
    assert result.returncode == 0, result.stderr
    assert 'module: "evil_layer"' in result.stdout and not marker.exists()


REGISTERED = textwrap.dedent('''\
    import sys, warnings
    warnings.simplefilter("ignore")
    import numpy as np
    import onnxruntime
    import protodef
    from protodef.api import read_net, to_onnx
    seen = []

    def shape(inputs, fields):
        seen.append(fields["python_param"])
        return inputs[0]

    def identity(layer, ctx):
        return [ctx.node("Identity", [ctx.value(layer.inputs[0])], [ctx.value(layer.outputs[0])], layer)]

    protodef.register_layer("Python", shape=shape, onnx=identity)
    net = read_net("net.prototxt", init="random", seed=0)
    model = to_onnx(net)
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"data": x})
    assert out.shape == (1, 4, 6, 6) and (out >= 0).all()
    assert seen[0] == {"module": "evil_layer", "layer": "EvilLayer",
                       "param_str": "__import__('evil_pkg.layer')"}, seen
    assert not any(name.startswith("evil") for name in sys.modules)
    print("converted")
    ''')


def test_a_registered_lowering_converts_it_without_importing_the_module(trap):
    directory, marker, env = trap
    result = run(directory, env, "-c", REGISTERED)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "converted\n"
    assert not marker.exists()
