"""`protodef check`'s summary: a line per backend, every blob only with --all, and agreement claimed only over
comparisons that were made."""
from __future__ import annotations

import re

import pytest
from support import SAMPLES

import protodef.check as check
from protodef.api import read_net
from protodef.cli import main
from protodef.passes import run_pipeline

TINY = [str(SAMPLES / "tiny" / "tiny.prototxt"), "--weights", str(SAMPLES / "tiny" / "tiny.caffemodel")]
BACKENDS = ("onnxruntime", "onnxruntime-folded", "pytorch", "pytorch-folded")


def run(capsys, *options: str) -> tuple[int, str]:
    code = main(["check", *TINY, *options])
    return code, capsys.readouterr().out


def summary_rows(out: str) -> dict[str, list[str]]:
    """backend -> its cells in the summary (blobs, worst abs, "/", worst rel, at blob, first beyond)."""
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in ([b] for b in BACKENDS)}


def test_summary_has_a_line_per_backend_with_what_it_compared(capsys):
    code, out = run(capsys)
    assert code == 0, out
    rows = summary_rows(out)
    assert set(rows) == set(BACKENDS)
    net = read_net(TINY[0], TINY[2])
    lowered, _ = run_pipeline(net, fold=False)
    values = sum(len(layer.outputs) for layer in lowered.layers())
    outputs = len(lowered.outputs())
    assert int(rows["onnxruntime"][0]) == values      # every blob of the unfolded net
    assert int(rows["onnxruntime-folded"][0]) == int(rows["pytorch-folded"][0]) == outputs
    for cells in rows.values():
        assert float(cells[1]) <= 1e-4 and cells[-1] == "none"
    assert "conv1@0" not in out.replace(rows["onnxruntime"][4], "")  # no blob table without --all
    assert "agree" in out.splitlines()[-2] or "agree" in out.splitlines()[-1]


def test_all_prints_every_blob_and_the_summary_matches_it(capsys):
    _, out = run(capsys, "--all")
    rows = summary_rows(out)
    table = [line.split() for line in out.splitlines() if re.match(r"\S+\s+\S+\s+\d+x", line)]
    assert {cells[0] for cells in table} >= {"conv1@0", "conv1@1", "prob"}
    # The table's cells per backend: "abs / rel" pairs or "-", in the order of the summary.
    columns = {backend: [] for backend in BACKENDS}
    for cells in table:
        values = cells[3:]
        for backend in BACKENDS:
            if values[0] == "-":
                values = values[1:]
            else:
                columns[backend].append((float(values[0]), cells[0]))
                values = values[3:]
    for backend, column in columns.items():
        assert len(column) == int(rows[backend][0])
        worst = max(value for value, _ in column)
        first_worst = next(blob for value, blob in column if value == worst)     # printed to 3 digits: ties
        assert f"{worst:.2e}" == rows[backend][1] and first_worst == rows[backend][4]


def skip(reason):
    def runner(*args, **kwargs):
        raise check._Skip(reason)
    return runner


def test_one_implementation_is_not_agreement(capsys, monkeypatch):
    # As after the quick-start install (no torch) on a net OpenCV cannot load: onnxruntime folded against
    # onnxruntime unfolded is the same library twice.
    monkeypatch.setattr(check, "_run_opencv", skip("OpenCV cannot run this net"))
    monkeypatch.setattr(check, "_run_torch", skip("torch is not installed"))
    monkeypatch.setattr(check, "_run_torch_folded", skip("torch is not installed"))
    code, out = run(capsys)
    assert code == 1
    assert "agree" not in out
    assert "ONE IMPLEMENTATION: only onnxruntime ran" in out and "skipped pytorch: torch is not installed" in out


def test_only_the_reference_is_not_agreement(capsys, monkeypatch):
    for name in ("_run_onnx", "_run_onnx_folded", "_run_torch", "_run_torch_folded"):
        monkeypatch.setattr(check, name, skip("not here"))
    code, out = run(capsys)
    assert code == 1 and "agree" not in out and "NOTHING COMPARED: only opencv ran" in out


def test_a_backend_compared_on_nothing_is_reported_not_agreed(capsys, monkeypatch):
    # As when the passes rename the net's outputs: the folded model's blobs match no name of the reference.
    folded = check._run_onnx_folded
    monkeypatch.setattr(check, "_run_onnx_folded",
                        lambda *args, **kwargs: {f"{k}_renamed": v for k, v in folded(*args, **kwargs).items()})
    code, out = run(capsys)
    assert code == 1
    assert "agree" not in out
    assert summary_rows(out)["onnxruntime-folded"][:2] == ["0", "-"]
    assert "NOT COMPARED: onnxruntime-folded ran, but no blob it gave" in out


def test_check_help_has_all(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    assert re.search(r"--all\s+also print every blob", capsys.readouterr().out)
