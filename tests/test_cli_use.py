"""The command line as people use it: one-line errors with the right exit codes, formats from file names, output
directories, what convert tells about made-up weights and preprocessing, float16, --verify, start-up imports."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from support import REPO, SAMPLES, write_net

from protodef.cli import build_parser, main
from protodef.errors import InputError

TINY = SAMPLES / "tiny"
NO_TORCH = textwrap.dedent("""
    import sys
    class NoTorch:
        '''An installation without the PyTorch extra: `import torch` fails as it would there.'''
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, NoTorch())
    from protodef.cli import main
    raise SystemExit(main(sys.argv[1:]))
""")


def run(*argv, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, cwd=cwd or REPO)


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def tiny_copy(directory: Path, stem: str = "tiny") -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    prototxt, caffemodel = directory / f"{stem}.prototxt", directory / f"{stem}.caffemodel"
    shutil.copy(TINY / "tiny.prototxt", prototxt)
    shutil.copy(TINY / "tiny.caffemodel", caffemodel)
    return prototxt, caffemodel


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


# ---- 1: PyTorch output without torch --------------------------------------------------------------------------
def test_pytorch_output_without_torch_says_how_to_install_it(tmp_path):
    prototxt, caffemodel = tiny_copy(tmp_path)
    result = run("-c", NO_TORCH, "convert", prototxt, "-w", caffemodel, "--to", "pytorch")
    assert result.returncode == 11, result.stderr
    assert result.stderr == ("protodef: PyTorch output needs torch, which is not installed: "
                             "pip install 'protodef[torch]'\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.caffemodel", "tiny.prototxt"]
    # --verify of an ONNX file needs no torch: onnx's reference evaluator is the second backend then
    result = run("-c", NO_TORCH, "convert", prototxt, "-w", caffemodel, "--verify")
    assert result.returncode == 0, result.stderr
    assert "against onnx's reference evaluator" in result.stdout and result.stdout.rstrip().endswith("agree")


# ---- 2: made-up weights are said so, and recorded -------------------------------------------------------------
def test_convert_without_weights_warns_and_records_the_fillers(tmp_path, capsys):
    prototxt, _ = tiny_copy(tmp_path)
    code, out, err = cli(capsys, "convert", prototxt, "--seed", 7)
    assert code == 0 and out == f"{prototxt} -> {tmp_path / 'tiny.onnx'}\n"
    assert err.count("\n") == 1 and "warning: no --weights" in err and "fillers" in err and "seed 7" in err
    props = metadata(tmp_path / "tiny.onnx")
    assert props["protodef.weights"] == "fillers" and props["protodef.seed"] == "7"
    assert cli(capsys, "convert", prototxt, "-w", tmp_path / "tiny.caffemodel", "-o", tmp_path / "w.onnx")[2] == ""
    props = metadata(tmp_path / "w.onnx")
    assert props["protodef.weights"] == "caffemodel" and props["protodef.weights_file"] == "tiny.caffemodel"
    assert "protodef.seed" not in props


def test_pytorch_module_and_source_record_made_up_weights(tmp_path, capsys):
    import protodef
    assert protodef.load(TINY / "tiny.prototxt").conversion_metadata == {"weights": "fillers", "seed": "0"}
    trained = protodef.load(TINY / "tiny.prototxt", TINY / "tiny.caffemodel")
    assert trained.conversion_metadata["weights"] == "caffemodel"
    prototxt, _ = tiny_copy(tmp_path)
    assert cli(capsys, "convert", prototxt, "--to", "pytorch")[0] == 0
    source = (tmp_path / "tiny.py").read_text()
    assert "The weights are NOT trained" in source and "# Made-up weights (fillers, seed 0): not trained." in source
    assert "conversion_metadata = {'weights': 'fillers', 'seed': '0'}" in source


# ---- 3: exit codes --------------------------------------------------------------------------------------------
def test_usage_errors_exit_2(tmp_path, capsys):
    prototxt, _ = tiny_copy(tmp_path)
    code, out, err = cli(capsys, "convert", prototxt, prototxt, "-o", tmp_path / "x.onnx")
    assert code == 2 and err.startswith("protodef: -o names one output file") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exited:
        main(["convert", str(prototxt), "--opset", "99"])
    assert exited.value.code == 2 and "--opset: expected 13 to" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.caffemodel", "tiny.prototxt"]


def test_missing_or_unreadable_inputs_are_input_errors(tmp_path, capsys):
    prototxt, _ = tiny_copy(tmp_path)
    for argv, what in ((["info", tmp_path / "nope.prototxt"], "cannot read the file: No such file or directory"),
                       (["info", tmp_path], "cannot read the file: Is a directory"),
                       (["convert", prototxt, "-w", tmp_path / "nope.caffemodel"], "cannot open the caffemodel")):
        code, out, err = cli(capsys, *argv)
        assert code == InputError.exit_code == 10 and what in err and err.count("\n") == 1


def test_draw_without_dot_writes_the_dot_file_and_fails(tmp_path):
    prototxt, _ = tiny_copy(tmp_path)
    result = run("-m", "protodef", "draw", prototxt, "-o", tmp_path / "net.png", env={"PATH": str(tmp_path / "no")})
    assert result.returncode == 11 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "dot program is not installed" in result.stderr
    assert not (tmp_path / "net.png").exists() and (tmp_path / "net.dot").read_text().startswith("digraph")


# ---- 4: the format from the output's name ---------------------------------------------------------------------
def test_output_suffix_chooses_the_format_and_a_contradiction_is_refused(tmp_path, capsys):
    prototxt, caffemodel = tiny_copy(tmp_path)
    assert cli(capsys, "draw", prototxt, "-o", tmp_path / "net.gv")[0] == 0
    assert (tmp_path / "net.gv").read_text().startswith("digraph")
    code, _, err = cli(capsys, "draw", prototxt, "-o", tmp_path / "net.png", "--format", "svg")
    assert code == 2 and "--format asks for svg" in err
    code, _, err = cli(capsys, "convert", prototxt, "-w", caffemodel, "--to", "pytorch", "-o", tmp_path / "x.onnx")
    assert code == 2 and "-o" in err and "x.onnx" in err and not (tmp_path / "x.onnx").exists()
    if shutil.which("dot"):
        assert cli(capsys, "draw", prototxt, "-o", tmp_path / "net.png")[0] == 0
        assert (tmp_path / "net.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_file_name_means_pytorch_source(tmp_path, capsys):
    prototxt, caffemodel = tiny_copy(tmp_path)
    assert cli(capsys, "convert", prototxt, "-w", caffemodel, "-o", tmp_path / "model.py")[0] == 0
    assert "class TinyNet(nn.Module)" in (tmp_path / "model.py").read_text() and (tmp_path / "model.pt").exists()


# ---- 7: output directories, read-only inputs ------------------------------------------------------------------
def test_output_dir_takes_a_batch(tmp_path, capsys):
    first, _ = tiny_copy(tmp_path / "a", "one")
    second, _ = tiny_copy(tmp_path / "b", "two")
    code, out, _ = cli(capsys, "convert", first, second, "--output-dir", tmp_path / "out" / "onnx")
    assert code == 0 and sorted(p.name for p in (tmp_path / "out" / "onnx").iterdir()) == ["one.onnx", "two.onnx"]
    clash, _ = tiny_copy(tmp_path / "c", "one")
    code, _, err = cli(capsys, "convert", first, clash, "--output-dir", tmp_path / "out2")
    assert code == 2 and "would both be written" in err and not (tmp_path / "out2").exists()


def test_nothing_is_written_beside_a_read_only_input(tmp_path, capsys):
    prototxt, caffemodel = tiny_copy(tmp_path / "zoo")
    (tmp_path / "zoo").chmod(0o555)
    try:
        for command in (["convert", prototxt, "-w", caffemodel], ["draw", prototxt, "--format", "dot"]):
            code, _, err = cli(capsys, *command)
            assert code == 2 and "read-only" in err and "--output-dir" in err and err.count("\n") == 1
        assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == ["tiny.caffemodel", "tiny.prototxt"]
        assert cli(capsys, "convert", prototxt, "-w", caffemodel, "--output-dir", tmp_path / "out")[0] == 0
    finally:
        (tmp_path / "zoo").chmod(0o755)


# ---- 8: help ----------------------------------------------------------------------------------------------------
def test_debug_after_the_subcommand_shows_the_traceback(tmp_path):
    with pytest.raises(InputError):
        main(["info", str(tmp_path / "missing.prototxt"), "--debug"])
    with pytest.raises(InputError):
        main(["--debug", "info", str(tmp_path / "missing.prototxt")])


def test_every_option_has_help_and_every_command_examples():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in subparsers.choices.items():
        for action in command._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings or action.dest}"
        assert command.epilog.startswith("examples:\n  protodef " + name), name
        assert command.format_help().rstrip().endswith(command.epilog.rstrip().splitlines()[-1])


def test_bare_protodef_prints_the_help(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: protodef") and "convert" in out and "weights" in out


# ---- 10: preprocessing ----------------------------------------------------------------------------------------
DATA_LAYER_NET = """
name: "withdata"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 8 mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.017 }
  data_param { source: "val_lmdb" batch_size: 1 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 2 kernel_size: 3 } }
"""


def test_convert_shows_and_records_the_preprocessing(tmp_path, capsys):
    prototxt, caffemodel, _ = write_net(tmp_path, DATA_LAYER_NET, input_shape={"data": (1, 3, 8, 8)})
    code, _, err = cli(capsys, "convert", prototxt, "-w", caffemodel, "--input-shape", "data=1,3,8,8")
    assert code == 0 and err.count("\n") == 1
    assert "layer 'data' (Data)" in err and "centre crop 8x8" in err and "subtract mean (104, 117, 123)" in err
    assert "multiply by 0.017" in err and "BGR" in err and "inputs transformed the same way" in err
    (step,) = json.loads(metadata(tmp_path / "net.onnx")["protodef.preprocessing"])
    assert step["mean"]["values"] == [104, 117, 123] and step["scale"] == 0.017
    assert step["crop"] == {"size": [8, 8], "where": "centre"} and step["channels"].startswith("BGR")


# ---- 11: progress -----------------------------------------------------------------------------------------------
def test_no_progress_line_off_a_terminal_and_tqdm_not_imported(tmp_path):
    first, _ = tiny_copy(tmp_path / "a", "one")
    second, _ = tiny_copy(tmp_path / "b", "two")
    code = ("import sys; from protodef.cli import main; code = main(sys.argv[1:]); "
            "assert 'tqdm' not in sys.modules; raise SystemExit(code)")
    result = run("-c", code, "convert", first, second, "--format", "source", "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "it/s" not in result.stderr and "net/s" not in result.stderr


def test_progress_line_on_a_terminal(tmp_path, capsys, monkeypatch):
    import io

    from protodef import progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(progress, "DELAY_S", 0)
    monkeypatch.setattr(sys, "stderr", terminal)
    first, _ = tiny_copy(tmp_path / "a", "one")
    second, _ = tiny_copy(tmp_path / "b", "two")
    assert main(["convert", str(first), str(second), "--output-dir", str(tmp_path / "out")]) == 0
    drawn = terminal.getvalue()
    assert drawn.startswith("\rconvert:") and "1/2 [" in drawn and drawn.endswith("\r")   # and cleared at the end


# ---- 12: an importable module name ------------------------------------------------------------------------------
def test_generated_module_is_importable_by_its_name(tmp_path, capsys):
    prototxt, caffemodel = tiny_copy(tmp_path, "Tiny-Net.v2")
    assert cli(capsys, "convert", prototxt, "-w", caffemodel, "--to", "pytorch")[0] == 0
    assert (tmp_path / "Tiny_Net_v2.py").exists() and (tmp_path / "Tiny_Net_v2.pt").exists()
    code = ("import Tiny_Net_v2, torch; m = Tiny_Net_v2.load_model(); "
            "print(type(m).__name__, m(torch.zeros(1, 3, 32, 32)).shape)")
    result = run("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["TinyNet", "torch.Size([1,", "10])"]


# ---- 13: writing made-up weights --------------------------------------------------------------------------------
def test_weights_command_writes_the_fillers_convert_would_use(tmp_path, capsys):
    prototxt, _ = tiny_copy(tmp_path)
    from protodef.api import read_net
    from protodef.weights import read_caffemodel
    code, out, _ = cli(capsys, "weights", prototxt, "-o", tmp_path / "fillers.caffemodel", "--seed", 4)
    assert code == 0 and "fillers" in out and "seed 4" in out
    filled = read_net(prototxt, seed=4)
    written = {layer.name: layer.blobs for layer in read_caffemodel(tmp_path / "fillers.caffemodel").layers}
    for layer in filled.layers():
        assert len(written[layer.caffe_name]) == len(layer.weights)
        for blob, weight in zip(written[layer.caffe_name], layer.weights):
            np.testing.assert_array_equal(blob.reshape(weight.shape), weight)
    assert cli(capsys, "weights", prototxt, "-o", tmp_path / "random.caffemodel", "--random", "--seed", 4)[0] == 0
    random = read_net(prototxt, tmp_path / "random.caffemodel")
    conv = next(layer for layer in random.layers() if layer.type == "Convolution")
    assert not np.array_equal(conv.weights[0], filled.layer(conv.name).weights[0])
    assert float(np.std(conv.weights[0])) > 0


# ---- 14: float16, external data, --verify -------------------------------------------------------------------------
def test_fp16_onnx_reports_its_difference_from_float32(tmp_path, capsys):
    prototxt, caffemodel = tiny_copy(tmp_path)
    code, out, _ = cli(capsys, "convert", prototxt, "-w", caffemodel, "-o", tmp_path / "half.onnx", "--fp16")
    assert code == 0
    model = onnx.load(str(tmp_path / "half.onnx"))
    assert {t.data_type for t in model.graph.initializer if t.dims} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    line = next(line for line in out.splitlines() if line.startswith("float16:"))
    difference = float(line.split("largest difference ")[1].split()[0])
    assert 0 < difference < 1e-2 and line.endswith("agree")


POOL_MASK_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 64 dim: 64 } } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
"""


def test_fp16_keeps_integer_indices_exact(tmp_path):
    """Caffe's pooling mask holds indices up to 4095 as floats: float16 would round them (above 2048)."""
    import onnxruntime

    from converters.onnx import save_onnx
    from protodef import lower
    _, _, net = write_net(tmp_path, POOL_MASK_NET)
    net = lower(net)
    save_onnx(net, tmp_path / "full.onnx")
    save_onnx(net, tmp_path / "half.onnx", float16=True)
    x = np.random.default_rng(0).standard_normal((1, 1, 64, 64)).astype(np.float32)
    full = onnxruntime.InferenceSession(str(tmp_path / "full.onnx")).run(["mask"], {"data": x})[0]
    session = onnxruntime.InferenceSession(str(tmp_path / "half.onnx"))
    half = session.run(["mask"], {"data": x.astype(np.float16)})[0]
    assert full.max() > 2048 and half.dtype == np.float32
    np.testing.assert_array_equal(half, full)


def test_fp16_keeps_float32_only_operator_inputs():
    """NonMaxSuppression takes float32 boxes and scores only: they are cast back in front of it."""
    import onnxruntime

    from converters.onnx.float16 import to_float16
    from converters.onnx.proto import (
        Initializer,
        ModelProto,
        TensorProto,
        make_graph,
        make_node,
        make_tensor_value_info,
    )
    boxes = make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 3, 4])
    scores = make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 3])
    selected = make_tensor_value_info("selected", TensorProto.INT64, ["n", 3])
    doubled = make_tensor_value_info("doubled", TensorProto.FLOAT, [1, 3, 4])
    model = ModelProto(ir_version=7)
    model.opset_import.add(domain="", version=13)
    model.graph.CopyFrom(make_graph(
        [make_node("Add", ["boxes", "boxes"], ["doubled"]),
         make_node("NonMaxSuppression", ["doubled", "scores", "most", "iou"], ["selected"])],
        "nms", [boxes, scores], [selected, doubled]))
    initializers = to_float16(model, [Initializer("most", np.array([3], np.int64)),
                                      Initializer("iou", np.array([0.5], np.float32))])
    model.graph.initializer.extend(i.tensor() for i in initializers)
    onnx.checker.check_model(model.SerializeToString(), full_check=True)
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT16] * 2
    assert next(t for t in model.graph.initializer if t.name == "iou").data_type == TensorProto.FLOAT
    box_values = np.array([[[0, 0, 1, 1], [0, 0, 1, 1.01], [5, 5, 6, 6]]], np.float16)
    session = onnxruntime.InferenceSession(model.SerializeToString())
    found = session.run(["selected"], {"boxes": box_values, "scores": np.array([[[0.9, 0.8, 0.7]]], np.float16)})[0]
    assert found[:, 2].tolist() == [0, 2]


def test_weights_beyond_the_protobuf_limit_go_to_an_external_file(tmp_path, monkeypatch):
    import onnxruntime

    from converters.onnx import save, save_onnx
    from protodef.api import lower, read_net
    net = lower(read_net(TINY / "tiny.prototxt", TINY / "tiny.caffemodel"))
    assert save_onnx(net, tmp_path / "inline.onnx") == [str(tmp_path / "inline.onnx")]
    monkeypatch.setattr(save, "PROTOBUF_LIMIT", 10_000)       # the tiny net's weights are 17 kB
    written = save_onnx(net, tmp_path / "split.onnx")
    assert written == [str(tmp_path / "split.onnx"), str(tmp_path / "split.onnx.data")]
    assert (tmp_path / "split.onnx").stat().st_size < 10_000 < (tmp_path / "split.onnx.data").stat().st_size
    model = onnx.load(str(tmp_path / "split.onnx"), load_external_data=False)
    assert {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"} \
        == {"split.onnx.data"}
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    (inline,) = onnxruntime.InferenceSession(str(tmp_path / "inline.onnx")).run(None, {"data": x})
    (split,) = onnxruntime.InferenceSession(str(tmp_path / "split.onnx")).run(None, {"data": x})
    np.testing.assert_array_equal(split, inline)


def test_verify_prints_the_largest_difference_and_fails_beyond_the_tolerance(tmp_path, capsys, monkeypatch):
    prototxt, caffemodel = tiny_copy(tmp_path)
    code, out, _ = cli(capsys, "convert", prototxt, "-w", caffemodel, "--verify")
    (line,) = [line for line in out.splitlines() if line.startswith("verify:")]
    assert code == 0 and "largest difference" in line and line.endswith("agree")
    from protodef import convert
    second = convert._second_backend

    def off_by_a_little(net, written, target):
        name, runner = second(net, written, target)
        return name, lambda inputs: {k: v + 1e-3 for k, v in runner(inputs).items()}

    monkeypatch.setattr(convert, "_second_backend", off_by_a_little)
    code, out, _ = cli(capsys, "convert", prototxt, "-w", caffemodel, "--verify")
    assert code == 1 and "largest difference 0.001 in 'prob'" in out and "differ" in out


# ---- 15: start-up -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["--help"], ["convert", "--help"], []])
def test_help_imports_neither_networkx_nor_onnx_nor_torch(argv):
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["protodef", *{argv!r}]
        try:
            runpy.run_module("protodef", run_name="__main__")
        except SystemExit:
            pass
        heavy = sorted({{name.split(".")[0] for name in sys.modules}} & {{"networkx", "onnx", "torch", "numpy"}})
        print(heavy, file=sys.stderr)
    """)
    result = run("-c", code)
    assert result.stdout.startswith("usage: protodef") and result.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("shape", ["data=1,3,H,W", "data=N,3,32,32"])
def test_verify_runs_a_net_with_named_sizes_at_sizes_it_picks(tmp_path, capsys, shape):
    """The model is written for any size; --verify runs it at one (a batch of 1, images of the first size every
    blob is positive at), instead of failing after writing it."""
    prototxt, caffemodel = tiny_copy(tmp_path)
    code, out, err = cli(capsys, "convert", prototxt, "-w", caffemodel, "--input-shape", shape, "--verify")
    (line,) = [line for line in out.splitlines() if line.startswith("verify:")]
    assert code == 0 and line.endswith("agree"), err


def test_verify_reads_generated_source_whatever_its_suffix(tmp_path, capsys):
    prototxt, caffemodel = tiny_copy(tmp_path)
    code, out, err = cli(capsys, "convert", prototxt, "-w", caffemodel, "--to", "pytorch", "-o",
                         tmp_path / "model.pytorch", "--verify")
    assert code == 0 and "Traceback" not in err and out.splitlines()[-1].endswith("agree"), err
