"""The ONNX backend writes models with its own bindings of ONNX's format (converters/onnx/wire.proto), so that a
conversion never imports onnx: the schema's facts against onnx's own, the builders against onnx.helper, the
structural rules every model is held to, onnx's checker on request, and the import itself."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from support import REPO, SAMPLES

from converters.onnx import proto, save_onnx, wire_pb2
from converters.onnx.lower import DEFAULT_IR_VERSION, DEFAULT_OPSET
from converters.onnx.proto import (
    AttributeProto,
    Initializer,
    ModelProto,
    NodeProto,
    TensorProto,
    make_graph,
    make_node,
    make_tensor_value_info,
)
from converters.onnx.structure import require_well_formed
from protodef import lower, register_layer, to_onnx
from protodef.api import read_net
from protodef.errors import UnsupportedError
from protodef.plugins import unregister_layer

TINY = SAMPLES / "tiny"
OURS = list(wire_pb2.DESCRIPTOR.message_types_by_name.values())


def nested(descriptor):
    yield descriptor
    for inner in descriptor.nested_types:
        yield from nested(inner)


@pytest.mark.parametrize("ours", [d for message in OURS for d in nested(message)],
                         ids=lambda d: d.name)
def test_every_field_is_onnx_s_field_with_its_number_type_and_label(ours):
    """A field with another number or type than onnx's would write bytes that onnx misreads."""
    theirs = onnx.onnx_ml_pb2.DESCRIPTOR.message_types_by_name[ours.full_name.split(".")[2]]
    for part in ours.full_name.split(".")[3:]:
        theirs = theirs.nested_types_by_name[part]
    for field in ours.fields:
        other = theirs.fields_by_name[field.name]
        assert (field.number, field.type, field.is_repeated) == (other.number, other.type, other.is_repeated), field
        if field.enum_type is not None:
            assert {v.name: v.number for v in field.enum_type.values}.items() \
                <= {v.name: v.number for v in other.enum_type.values}.items()
    for enum in ours.enum_types:
        theirs_enum = theirs.enum_types_by_name[enum.name]
        assert {v.name: v.number for v in enum.values}.items() <= {v.name: v.number for v in theirs_enum.values}.items()


def test_the_default_ir_version_is_the_oldest_that_has_the_default_opset():
    assert DEFAULT_IR_VERSION == helper.find_min_ir_version_for([helper.make_opsetid("", DEFAULT_OPSET)])


@pytest.mark.parametrize("value", [3, True, np.int64(-2), 0.25, np.float32(1.5), "same", b"raw", [1, 2, 3],
                                   [1, 2.5], (np.int64(4), 5), ["a", "b"]])
def test_attributes_are_typed_as_onnx_helper_types_them(value):
    ours = AttributeProto.FromString(proto.make_attribute("x", value).SerializeToString())
    theirs = helper.make_attribute("x", value)
    assert onnx.AttributeProto.FromString(ours.SerializeToString()) == theirs


def test_a_tensor_attribute_and_an_empty_list():
    tensor = proto.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "t")
    attribute = proto.make_attribute("value", tensor)
    assert attribute.type == AttributeProto.TENSOR and proto.to_array(attribute.t).tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="empty list"):
        proto.make_attribute("axes", [])


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int64, np.int32, np.uint8, np.bool_])
def test_tensors_read_back_in_onnx_as_written(dtype):
    array = (np.random.default_rng(0).standard_normal((2, 3, 4)) * 10).astype(dtype)
    ours = proto.from_array(array, "w")
    theirs = onnx.TensorProto.FromString(ours.SerializeToString())
    np.testing.assert_array_equal(numpy_helper.to_array(theirs), array)
    np.testing.assert_array_equal(proto.to_array(ours), array)
    np.testing.assert_array_equal(proto.to_array(TensorProto.FromString(numpy_helper.from_array(array).SerializeToString())),
                                  array)


def test_value_info_shapes_as_onnx_helper_writes_them():
    for shape in ([1, "batch", None], [], None):
        ours = make_tensor_value_info("v", TensorProto.FLOAT, shape)
        assert onnx.ValueInfoProto.FromString(ours.SerializeToString()) \
            == helper.make_tensor_value_info("v", onnx.TensorProto.FLOAT, shape)


def model_of(nodes, inputs=("x",), outputs=("y",), initializers=()) -> tuple[ModelProto, list[Initializer]]:
    model = ModelProto(ir_version=DEFAULT_IR_VERSION)
    model.opset_import.add(domain="", version=DEFAULT_OPSET)
    model.graph.CopyFrom(make_graph(nodes, "g", [make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in inputs],
                                    [make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in outputs]))
    return model, [Initializer(name, np.ones(2, np.float32)) for name in initializers]


@pytest.mark.parametrize("nodes,initializers,problem", [
    ([make_node("Relu", ["x"], ["y"]), make_node("Relu", ["x"], ["y"])], (), "'y' is defined twice"),
    ([make_node("Relu", ["x"], ["x"])], (), "'x' is defined twice"),
    ([make_node("Add", ["x", "w"], ["y"])], ("x",), "'x' is defined twice (the second time as an initializer)"),
    ([make_node("Relu", ["z"], ["t"]), make_node("Relu", ["x"], ["z"]), make_node("Relu", ["t"], ["y"])], (),
     "node '' (Relu) reads 'z' (input 0) before any node writes it"),
    ([make_node("Relu", ["x"], ["t"])], (), "graph output 'y' is computed by no node"),
    ([make_node("Relu", ["x"], [""]), make_node("Relu", ["x"], ["y"])], (), None),   # an omitted optional output
])
def test_structural_rules(nodes, initializers, problem):
    model, weights = model_of(nodes, initializers=initializers)
    if problem is None:
        require_well_formed(model, weights)
        return
    with pytest.raises(UnsupportedError, match="not valid ONNX: " + problem.replace("(", r"\(").replace(")", r"\)")):
        require_well_formed(model, weights)


def test_a_body_may_read_the_outer_graph_and_its_own_values_only():
    def loop(reads: str) -> NodeProto:
        body = make_graph([make_node("Add", [reads, "x"], ["out"])], "body",
                          [make_tensor_value_info("i", TensorProto.INT64, []),
                           make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [make_tensor_value_info("c", TensorProto.BOOL, []),
                           make_tensor_value_info("out", TensorProto.FLOAT, [2])])
        return make_node("Loop", ["", ""], ["y"], name="loop", body=body)
    require_well_formed(*model_of([loop("x")]))
    with pytest.raises(UnsupportedError, match=r"in the body of node 'loop' \(Loop\): node '' \(Add\) reads 'nowhere'"):
        require_well_formed(*model_of([loop("nowhere")]))


@pytest.fixture
def bad_attribute():
    """A plugin whose ONNX lowering (built with onnx.helper, as a plugin may) gives Relu an attribute it has not."""
    def onnx_lowering(layer, ctx):
        return [helper.make_node("Relu", [ctx.value(layer.inputs[0])], [ctx.value(layer.outputs[0])],
                                 name=layer.name, nonsense=3)]
    register_layer("Odd", shape=lambda inputs, fields: inputs[0], onnx=onnx_lowering)
    yield
    unregister_layer("Odd")


def test_onnx_s_checker_runs_on_request_before_anything_is_written(bad_attribute, tmp_path):
    path = tmp_path / "odd.prototxt"
    path.write_text('input: "x" input_shape { dim: 1 dim: 2 }\nlayer { name: "o" type: "Odd" bottom: "x" top: "y" }\n')
    net = lower(read_net(path))
    assert save_onnx(net, tmp_path / "unchecked.onnx") == [str(tmp_path / "unchecked.onnx")]
    model = onnx.load(str(tmp_path / "unchecked.onnx"))
    assert [(n.op_type, n.attribute[0].name) for n in model.graph.node] == [("Relu", "nonsense")]
    with pytest.raises(UnsupportedError, match=r"the ONNX checker refuses the converted model: .*nonsense"):
        save_onnx(net, tmp_path / "checked.onnx", check=True)
    assert not (tmp_path / "checked.onnx").exists()


def test_to_onnx_gives_onnx_s_own_model_with_every_weight():
    net = lower(read_net(TINY / "tiny.prototxt", TINY / "tiny.caffemodel"))
    model = to_onnx(net)
    assert isinstance(model, onnx.ModelProto)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    conv = next(layer for layer in net.layers() if layer.type == "Convolution")
    np.testing.assert_array_equal(weights[f"{conv.name}.weight"], conv.weights[0])


def test_a_conversion_imports_neither_onnx_nor_ml_dtypes(tmp_path):
    """onnx's import (ml_dtypes' above all) costs more than converting ResNet-50 (bench/README.md)."""
    code = textwrap.dedent(f"""
        import sys
        from protodef.cli import main
        code = main(["convert", {str(TINY / 'tiny.prototxt')!r}, "-w", {str(TINY / 'tiny.caffemodel')!r},
                     "-o", {str(tmp_path / 'tiny.onnx')!r}])
        print(code, sorted({{n.split(".")[0] for n in sys.modules}} & {{"onnx", "ml_dtypes", "torch", "onnxruntime"}}))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout + result.stderr
    onnx.checker.check_model(onnx.load(str(tmp_path / "tiny.onnx")), full_check=True)
