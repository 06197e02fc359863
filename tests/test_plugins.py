"""protodef.register_layer: a fork's layer type with its own parameter block, through shapes and backends."""
from __future__ import annotations

import numpy as np
import pytest

import protodef
from protodef.build import build_net
from protodef.errors import SchemaError
from protodef.plugins import unregister_layer
from protodef.source import parse_prototxt

NET = """input: "x" input_shape { dim: 1 dim: 4 dim: 5 dim: 5 }
layer { name: "g" type: "Gain" bottom: "x" top: "y"
  gain_param { gain: 3 mode: FAST taps { w: 1 } taps { w: 2 } note: "hi" }
}
layer { name: "r" type: "ReLU" bottom: "y" top: "z" }
"""


@pytest.fixture
def gain():
    import onnx.helper

    def onnx_lowering(layer, ctx):
        factor = ctx.scalar(layer, "gain", float(layer.params.fields["gain_param"]["gain"]))
        return [onnx.helper.make_node("Mul", [ctx.value(layer.inputs[0]), factor], [ctx.value(layer.outputs[0])],
                                      name=layer.name)]

    def torch_lowering(layer, ctx):
        import torch

        class Gain(torch.nn.Module):
            def __init__(self, gain: float):
                super().__init__()
                self.gain = gain

            def forward(self, x):
                return x * self.gain

        return Gain(float(layer.params.fields["gain_param"]["gain"]))

    protodef.register_layer("Gain", shape=lambda inputs, fields: inputs[0], onnx=onnx_lowering,
                            torch=torch_lowering)
    yield
    unregister_layer("Gain")


def test_unknown_block_without_a_plugin_names_type_and_place():
    param, source = parse_prototxt(NET.replace('"Gain"', '"ReLU"'), path="f.prototxt")
    with pytest.raises(SchemaError, match=r"^f.prototxt:3:3: layer 'g' \(ReLU\): unknown parameter field\(s\) "
                                          r"'gain_param' \(3:3\)"):
        build_net(param, source)


def test_plugin_gets_the_block_as_plain_data_and_lowers(gain, tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    net = protodef.read_net(path)
    assert net.layer("g").params.fields == {
        "gain_param": {"gain": 3, "mode": "FAST", "taps": [{"w": 1}, {"w": 2}], "note": "hi"}}
    x = np.random.default_rng(0).standard_normal((1, 4, 5, 5)).astype(np.float32)
    import onnxruntime
    session = onnxruntime.InferenceSession(protodef.to_onnx(net).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"x": x})
    np.testing.assert_allclose(onnx_out, np.maximum(3 * x, 0), rtol=1e-6)
    import torch
    torch_out = protodef.load(path)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(torch_out, np.maximum(3 * x, 0), rtol=1e-6)


def test_registering_a_known_type_needs_replace():
    with pytest.raises(ValueError, match="already known"):
        protodef.register_layer("ReLU", shape=lambda inputs, fields: inputs[0])
