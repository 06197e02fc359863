"""The README's "Keep training a Caffe model in PyTorch" example runs as written, and what it saves loads."""
from __future__ import annotations

import re

import numpy as np
from support import REPO

from protodef.weights import read_caffemodel

SECTION = "## Keep training a Caffe model in PyTorch"


def example_files() -> dict[str, str]:
    """The section's code blocks, by the file name each one's first line gives."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```\w*\n(.*?)```", section, re.DOTALL)
    return {block.splitlines()[0].lstrip("# ").strip(): block for block in blocks}


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    files = example_files()
    assert set(files) == {"solver.prototxt", "lenet_train.prototxt", "train.py"}
    for name, text in files.items():     # batch 8 instead of 64 keeps the test fast; nothing else changes
        (tmp_path / name).write_text(re.sub(r"\b64\b", "8", text))
    monkeypatch.chdir(tmp_path)
    script = (tmp_path / "train.py").read_text()
    assert "(8, 1, 28, 28)" in script
    exec(compile(script, str(tmp_path / "train.py"), "exec"), {"__name__": "__main__"})
    assert "iteration 30: loss" in capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert written == ["lenet_iter_25.caffemodel", "lenet_iter_25.solverstate",
                       "lenet_iter_30.caffemodel", "lenet_iter_30.solverstate"]
    saved = {layer.name: layer for layer in read_caffemodel(tmp_path / "lenet_finetuned.caffemodel").layers}
    assert {name: layer.type for name, layer in saved.items()} == {
        "conv1": "Convolution", "bn1": "BatchNorm", "scale1": "Scale", "ip1": "InnerProduct"}
    assert [b.shape for b in saved["bn1"].blobs] == [(20,), (20,), (1,)]
    assert saved["bn1"].blobs[2][0] > 0 and np.all(saved["bn1"].blobs[1] > 0)
