"""FlowNet 2's Mean layer against a NumPy transcription of mean_layer.cpp's Forward_cpu (OpenCV has no Mean)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from support import assert_close

import protodef
from protodef.errors import SchemaError, ShapeError

LAYER = 'layer {{ name: "mean" type: "Mean" {bottoms} {tops} mean_param {{ {params} }} }}\n'


def caffe_mean(x: np.ndarray, operation: str, values: list[float], mean_scale=1.0, input_scale=1.0, output_scale=1.0):
    """mean_layer.cpp, value form: for each element of channel c, output_scale * (input_scale * data +
    mean_scale * mean), mean = value[c % size], negated for SUBTRACT; float arithmetic."""
    f = np.float32
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        mean = f(values[c % len(values)])
        if operation == "SUBTRACT":
            mean = -mean
        out[:, c] = f(output_scale) * (f(input_scale) * x[:, c] + f(mean_scale) * mean)
    return out


def net_text(shapes: dict[str, tuple[int, ...]], params: str) -> str:
    text = "".join(f'input: "{name}" input_shape {{ {" ".join(f"dim: {d}" for d in shape)} }}\n'
                   for name, shape in shapes.items())
    bottoms = " ".join(f'bottom: "{name}"' for name in shapes)
    tops = " ".join(f'top: "{name}_out"' for name in shapes)
    return text + LAYER.format(bottoms=bottoms, tops=tops, params=params)


CASES = {
    "flownet": ({"img0": (2, 3, 5, 7)}, "operation: SUBTRACT input_scale: 0.0039216 value: 0.411451 value: 0.432060 "
                "value: 0.450141", dict(operation="SUBTRACT", values=[0.411451, 0.432060, 0.450141],
                                       input_scale=0.0039216)),
    "add_scaled_repeated": ({"x": (1, 6, 4)}, "operation: ADD value: 2 value: -3 mean_scale: 0.5 output_scale: 4",
                            dict(operation="ADD", values=[2.0, -3.0], mean_scale=0.5, output_scale=4.0)),
    "two_inputs": ({"a": (1, 2, 3, 3), "b": (2, 4, 2, 2)}, "operation: SUBTRACT value: 1.5 value: 0.25",
                   dict(operation="SUBTRACT", values=[1.5, 0.25])),
}


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_mean_equals_caffe_in_both_backends(tmp_path, case, fold):
    shapes, params, reference = CASES[case]
    path = tmp_path / "mean.prototxt"
    path.write_text(net_text(shapes, params))
    rng = np.random.default_rng(3)
    inputs = {name: (rng.standard_normal(shape) * 100).astype(np.float32) for name, shape in shapes.items()}
    expected = {f"{name}_out": caffe_mean(x, **reference) for name, x in inputs.items()}
    model = protodef.to_onnx(path, fold=fold)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for name, value in zip((o.name for o in session.get_outputs()), session.run(None, inputs)):
        assert_close(value, expected[name], f"onnxruntime {name}")
    module = protodef.load(path, fold=fold)
    results = module(*(torch.from_numpy(inputs[n]) for n in module.input_names))
    results = results if isinstance(results, tuple) else (results,)
    for name, value in zip(module.output_names, results):
        assert_close(value.detach().numpy(), expected[name], f"pytorch {name}")


@pytest.mark.parametrize("params, error, message", [
    ('operation: SUBTRACT file: "mean.binaryproto"', SchemaError, "mean_param.file"),
    ("operation: ADD", SchemaError, "mean_param.value"),
    ("operation: ADD value: 1 value: 2", ShapeError, "multiple of the number of values"),
])
def test_mean_refusals_name_what_is_wrong(tmp_path, params, error, message):
    path = tmp_path / "mean.prototxt"
    path.write_text(net_text({"x": (1, 3, 2, 2)}, params))
    with pytest.raises(error, match=message) as caught:
        protodef.read_net(path)
    assert "layer 'mean' (Mean)" in str(caught.value) and "\n" not in str(caught.value)
