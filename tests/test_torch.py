"""PyTorch backend beyond per-layer parity (test_parity.py): the modules' structure (BatchNorm statistics, names,
in-place ReLU, outputs), refusals, generated source in a fresh interpreter, jit, export, compile, half, devices;
ResNet-50 against OpenCV."""
from __future__ import annotations

import copy
import operator
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from parity_cases import BN, data
from parity_cases import layer as one
from support import CORPUS, assert_close, opencv_forward, random_inputs, write_net
from support import run_torch as run_torch_by_name

from converters.pytorch.registry import TORCH_CONVERTERS, torch_converter
from protodef import load, save_pytorch
from protodef.api import read_net
from protodef.errors import UnsupportedError, WeightsError

torch.set_num_threads(2)

# torch 2.13 deprecates TorchScript, and its checker warns about GraphModule's own __init__; we test it anyway.
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning")]


def conv(params: str, shape=(1, 3, 7, 7)) -> str:
    return data(*shape) + one("Convolution", f"convolution_param {{ {params} }}")


def run_torch(module, inputs: dict[str, np.ndarray], form=None) -> list[np.ndarray]:
    return list(run_torch_by_name(module, inputs, form).values())


# ---- structure ----------------------------------------------------------------------------------------------
def test_unfolded_batchnorm_keeps_caffe_blobs_and_the_scale_after_it(tmp_path):
    """fold=False keeps Caffe's BatchNorm (its three blobs as buffers, no affine) and the Scale as its own
    module; in train mode it normalises by the batch and moves the blobs as Caffe does (tests in
    test_train_lowering.py check the arithmetic)."""
    text = (conv("num_output: 4 kernel_size: 3", shape=(2, 3, 6, 6))
            + one("BatchNorm", BN, bottoms=("y",), tops=("y",), name="bn")
            + one("Scale", "scale_param { bias_term: true }", bottoms=("y",), tops=("y",), name="scale")
            + one("ReLU", bottoms=("y",), tops=("y",), name="relu"))
    _, _, net = write_net(tmp_path, text)
    mean, var, factor = net.layer("bn").weights
    gamma, beta = net.layer("scale").weights
    module = load(net, fold=False)
    bn = module.bn
    assert type(bn).__name__ == "CaffeBatchNorm" and bn.eps == pytest.approx(0.001)
    assert {"bn.mean", "bn.variance", "bn.scale_factor", "scale.weight", "scale.bias"} <= set(module.state_dict())
    np.testing.assert_array_equal(bn.mean.numpy(), mean)
    np.testing.assert_array_equal(bn.variance.numpy(), var)
    np.testing.assert_array_equal(bn.scale_factor.numpy(), factor.reshape(1))
    np.testing.assert_array_equal(module.scale.weight.detach().numpy(), gamma)
    np.testing.assert_array_equal(module.scale.bias.detach().numpy(), beta)
    module.train()
    x = torch.randn(4, 3, 6, 6)
    module(x).square().sum().backward()          # (the ReLU after the Scale works in place)
    assert not torch.equal(bn.mean, torch.from_numpy(mean)) and bn.scale_factor.item() != factor[0]
    assert module.relu.inplace and module.scale.weight.grad is not None and module.y.weight.grad.abs().sum() > 0
    folded = load(net, fold=True)
    assert not any(type(m).__name__ == "CaffeBatchNorm" for m in folded.modules())
    assert set(folded.state_dict()) == {"y.weight", "y.bias"}


def test_names_that_are_not_identifiers_are_mangled_reversibly(tmp_path):
    text = (data(1, 3, 5, 5, name="in/put")
            + one("Convolution", "convolution_param { num_output: 2 kernel_size: 1 }", bottoms=("in/put",),
                  tops=("conv1/7x7_s2",), name="conv1/7x7_s2")
            + one("ReLU", bottoms=("conv1/7x7_s2",), tops=("relu",), name="eval")
            + one("ReLU", bottoms=("relu",), tops=("out",), name="1x1"))
    _, _, net = write_net(tmp_path, text)
    module = load(net)
    assert module.caffe_names == {"conv1_7x7_s2": "conv1/7x7_s2", "eval_": "eval", "_1x1": "1x1"}
    assert set(module.state_dict()) == {"conv1_7x7_s2.weight", "conv1_7x7_s2.bias"}
    assert module.input_names == ["in/put"] and module.output_names == ["out"]
    assert module(torch.ones(1, 3, 5, 5)).shape == (1, 2, 5, 5)
    assert callable(module.eval)       # a layer named "eval" did not replace the method


def test_relu_is_in_place_only_where_nothing_else_reads_its_input(tmp_path):
    text = (data(1, 2, 5, 5) + one("ReLU", tops=("r0",))
            + one("Convolution", "convolution_param { num_output: 3 kernel_size: 3 }", bottoms=("r0",), tops=("c",))
            + one("ReLU", bottoms=("c",), tops=("r1",))
            + one("Eltwise", bottoms=("c", "r1"), tops=("s",))
            + one("ReLU", bottoms=("s",), tops=("s",), name="relu_s")
            + one("Convolution", "convolution_param { num_output: 3 kernel_size: 3 }", bottoms=("r0",), tops=("d",))
            + one("Eltwise", bottoms=("d", "s"), tops=("e",)))
    prototxt, caffemodel, net = write_net(tmp_path, text)
    inputs = random_inputs(net)
    module = load(net)
    assert (module.r0.inplace, module.r1.inplace, module.relu_s.inplace) == (False, False, True)
    adds = {node.name: node.target for node in module.graph.nodes if node.name in ("s", "e")}
    assert adds == {"s": operator.add, "e": "add_"}       # c is read twice; d only by e
    x = torch.from_numpy(inputs["data"].copy())
    with torch.no_grad():
        actual = module(x)
    assert torch.equal(x, torch.from_numpy(inputs["data"]))          # the caller's tensor is untouched
    assert_close(actual.numpy(), opencv_forward(net, prototxt, caffemodel, inputs)["e"], "in-place ReLU and add")


def test_several_outputs_come_back_as_a_tuple_in_output_names_order(tmp_path):
    _, _, net = write_net(tmp_path, data(2, 6, 4, 5) + one("Slice", "slice_param { axis: 1 }", tops=("a", "b", "c")))
    module = load(net)
    out = module(torch.arange(240.0).reshape(2, 6, 4, 5))
    assert module.output_names == ["a", "b", "c"] and isinstance(out, tuple) and len(out) == 3
    assert torch.equal(out[1], torch.arange(240.0).reshape(2, 6, 4, 5)[:, 2:4])
    assert copy.deepcopy(module).output_names == ["a", "b", "c"]      # deepcopy rebuilds a GraphModule


def test_a_parameter_layer_s_output_needs_no_gradient_without_autograd(tmp_path):
    """Caffe's Parameter layer outputs its learned blob: trainable with autograd, a plain tensor under no_grad."""
    text = 'layer { name: "blob" type: "Parameter" top: "blob" parameter_param { shape { dim: 2 dim: 3 } } }\n'
    module = load(write_net(tmp_path, text)[2])
    assert module().requires_grad
    with torch.no_grad():
        blob = module()
    assert not blob.requires_grad
    np.testing.assert_array_equal(blob.numpy(), module.state_dict()["blob.weight"].numpy())


def _unpassed(net):
    """The net as if the pipeline had run without removing anything (to reach the backend's own check)."""
    from protodef.passes import run_pipeline
    return run_pipeline(net, passes=[])[0]


def test_missing_converters_are_reported_together(tmp_path):
    from converters.pytorch.lower import lower_torch
    text = data(2, 3) + one("MultiBoxLoss", bottoms=("data", "data"), tops=("loss",))
    net = read_net(_write(tmp_path, text), init="none")
    with pytest.raises(UnsupportedError, match="no converter for 1 layer type.*MultiBoxLoss"):
        lower_torch(_unpassed(net))


def test_weights_that_do_not_fit_name_the_layer(tmp_path):
    _, _, net = write_net(tmp_path, conv("num_output: 4 kernel_size: 3"))
    layer = net.layers()[0]
    net.replace(layer, layer.replace(weights=(np.zeros((4, 3, 3, 2), np.float32), layer.weights[1])))
    with pytest.raises(WeightsError, match="'y'.*weight"):
        load(net)
    bare = read_net(_write(tmp_path, conv("num_output: 4 kernel_size: 3")), init="none")
    with pytest.raises(WeightsError, match="'y'.*no weights"):
        load(bare)


def test_converters_register_once():
    with pytest.raises(ValueError, match="already registered"):
        torch_converter("Convolution")(lambda layer, ctx: None)
    assert "Convolution" in TORCH_CONVERTERS


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    return path


# ---- generated source, export, jit, compile, dtype, device ------------------------------------------------------
MIXED = (data(2, 3, 9, 9) + data(2, 4, 4, 4, name="ref")
         + one("Convolution", "convolution_param { num_output: 4 kernel_size: 3 pad: 1 }", tops=("conv",),
               name="conv1/3x3")
         + one("BatchNorm", BN, bottoms=("conv",), tops=("conv",), name="bn1")
         + one("Scale", "scale_param { bias_term: true }", bottoms=("conv",), tops=("conv",), name="scale1")
         + one("PReLU", bottoms=("conv",), tops=("conv",), name="relu1")
         + one("Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 2 }", bottoms=("conv",),
               tops=("pool",), name="pool1")
         + one("Crop", "crop_param { axis: 2 offset: 1 }", bottoms=("pool", "ref"), tops=("crop",), name="crop")
         + one("Eltwise", "eltwise_param { coeff: 0.5 coeff: -2 }", bottoms=("crop", "ref"), tops=("sum",),
               name="sum")
         + one("Scale", "scale_param { axis: 1 num_axes: 2 }", bottoms=("sum",), tops=("sum",), name="scale2")
         + one("Slice", "slice_param { axis: 1 slice_point: 1 }", bottoms=("sum",), tops=("a", "b"), name="slice")
         + one("Power", "power_param { power: 2 shift: 1 }", bottoms=("a",), tops=("a2",), name="square")
         + one("InnerProduct", "inner_product_param { num_output: 5 }", bottoms=("b",), tops=("fc",), name="fc")
         + one("ArgMax", "argmax_param { top_k: 2 }", bottoms=("fc",), tops=("top",), name="argmax"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mixed")
    prototxt, caffemodel, net = write_net(directory, 'name: "mixed-net_v2"\n' + MIXED)
    return net, random_inputs(net)


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "unfolded"])
def test_generated_source_runs_without_protodef_and_gives_the_same_bits(mixed, fold, tmp_path):
    net, inputs = mixed
    module = load(net, fold=fold)
    expected = run_torch(module, inputs)
    written = save_pytorch(net, tmp_path / "mixed.py", fold=fold)
    assert written == [str(tmp_path / "mixed.py"), str(tmp_path / "mixed.pt")]
    source = (tmp_path / "mixed.py").read_text()
    assert "class MixedNetV2(nn.Module):" in source and "protodef" not in source.split('"""', 2)[2]
    assert "self.conv1_3x3 = nn.Conv2d(3, 4, kernel_size=3, padding=1)" in source
    np.savez(tmp_path / "inputs.npz", *inputs.values())
    script = textwrap.dedent("""
        import importlib.util, sys
        import numpy as np
        for blocked in ("protodef", "converters"):
            sys.modules[blocked] = None          # any import of them fails
        import torch
        torch.set_num_threads(2)
        spec = importlib.util.spec_from_file_location("mixed", "mixed.py")
        generated = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generated)
        model = generated.load_model()
        arrays = np.load("inputs.npz")
        with torch.no_grad():
            out = model(*(torch.from_numpy(arrays[k]) for k in arrays.files))
        np.savez("outputs.npz", *(out if isinstance(out, tuple) else (out,)))
        print(list(model.output_names))
        """)
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == str(module.output_names)
    outputs = np.load(tmp_path / "outputs.npz")
    for name, want, key in zip(module.output_names, expected, outputs.files):
        assert np.array_equal(outputs[key], want), f"{name}: max diff {np.abs(outputs[key] - want).max()}"


def test_generated_source_reads_like_hand_written_code(mixed, tmp_path):
    net, _ = mixed
    save_pytorch(net, tmp_path / "m.py")
    source = (tmp_path / "m.py").read_text()
    forward = source.split("def forward(self, data, ref):\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert forward[0].strip() == "conv1_3x3 = self.conv1_3x3(data)"
    assert forward[-1].strip() == "return square, argmax"
    assert all(line.count("=") <= 1 for line in forward)      # one statement per step
    init = source.split("def __init__(self):", 1)[1].split("def forward", 1)[0]
    order = [line.split("=")[0].strip().removeprefix("self.") for line in init.splitlines() if "self." in line]
    assert order == [name for name in load(net).caffe_names]            # execution order
    compile(source, "m.py", "exec")


def test_export_form_saves_a_program_with_a_free_batch(mixed, tmp_path):
    net, inputs = mixed
    module = load(net)
    save_pytorch(net, tmp_path / "m.pt2", form="export")
    program = torch.export.load(tmp_path / "m.pt2")
    bigger = {k: np.concatenate([v, v, v[:1]]) for k, v in inputs.items()}      # batch 5, traced at 2
    for a, b in zip(run_torch(module, bigger, program.module()), run_torch(module, bigger)):
        assert_close(a, b, "exported program")


def test_save_refuses_a_weights_name_clash_and_leaves_nothing(mixed, tmp_path):
    from protodef.errors import OutputError
    net, _ = mixed
    with pytest.raises(OutputError):
        save_pytorch(net, tmp_path / "m.pt")
    with pytest.raises(ValueError):
        save_pytorch(net, tmp_path / "m.py", form="onnx")
    assert list(tmp_path.iterdir()) == []


def test_script_trace_export_and_compile_agree(mixed):
    net, inputs = mixed
    module = load(net)
    args = tuple(torch.from_numpy(a) for a in inputs.values())
    expected = run_torch(module, inputs)
    scripted = torch.jit.script(module)
    traced = torch.jit.trace(module, args)
    exported = torch.export.export(module, args).module()
    compiled = torch.compile(module, backend="eager")
    for what, other in [("script", scripted), ("trace", traced), ("export", exported), ("compile", compiled)]:
        for a, b in zip(run_torch(module, inputs, other), expected):
            assert_close(a, b, what)


def test_half_precision_and_other_devices(mixed):
    net, inputs = mixed
    module = load(net, fold=False)
    expected = run_torch(module, inputs)
    half = load(net, fold=False).half()
    with torch.no_grad():
        out = half(*(torch.from_numpy(a).half() for a in inputs.values()))
    for a, b in zip(out, expected):
        assert a.dtype == torch.float16
        np.testing.assert_allclose(a.float().numpy(), b, atol=0.05 * max(1, np.abs(b).max()))
    # The meta device runs every op without data: nothing in forward may make a tensor on the CPU.
    meta = load(net).to("meta")
    out = meta(*(torch.empty(a.shape, device="meta") for a in inputs.values()))
    assert all(o.device.type == "meta" for o in out)
    assert [tuple(o.shape) for o in out] == [b.shape for b in expected]


# ---- a real net ---------------------------------------------------------------------------------------------------
RESNET = CORPUS / "resnet_kaiminghe" / "prototxt_ResNet-50-deploy.prototxt"
SMALL = {"data": (1, 3, 200, 200)}


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("resnet")
    # 200 x 200 is about the smallest input whose last stage is still 7 x 7, which pool5's kernel needs.
    prototxt, caffemodel, net = write_net(directory, RESNET.read_text(), seed=3, input_shape=SMALL)
    inputs = random_inputs(net)
    return prototxt, caffemodel, net, inputs, opencv_forward(net, prototxt, caffemodel, inputs)


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "unfolded"])
def test_resnet50_matches_opencv(resnet, fold):
    prototxt, caffemodel, net, inputs, expected = resnet
    module = load(prototxt, caffemodel, fold=fold, input_shape=SMALL)
    (actual,) = run_torch(module, inputs)
    assert_close(actual, expected["prob"], "ResNet-50 prob")
    names = dict(module.named_children())
    keys = set(module.state_dict())
    assert {"conv1", "res2a_branch2a", "res5c_branch2c", "fc1000"} <= set(names)
    assert {"conv1.weight", "conv1.bias", "res2a_branch2a.weight", "fc1000.weight", "fc1000.bias"} <= keys
    assert isinstance(names["res2a_branch2b"], torch.nn.Conv2d) and isinstance(names["pool1"], torch.nn.MaxPool2d)
    if fold:
        assert not any(k.startswith(("bn", "scale")) for k in keys)
        assert names["res2a_branch2a"].bias is not None        # the folded BatchNorm's shift
    else:
        assert type(names["bn2a_branch2a"]).__name__ == "CaffeBatchNorm" and "scale2a_branch2a" in names
        assert {"bn_conv1.mean", "bn_conv1.variance", "bn_conv1.scale_factor", "scale_conv1.weight",
                "scale_conv1.bias"} <= keys


def test_load_reads_the_input_shape_and_phase(tmp_path):
    prototxt = _write(tmp_path, 'name: "small"\n' + conv("num_output: 2 kernel_size: 3", shape=(1, 3, 7, 7)))
    module = load(prototxt, input_shape={"data": (4, 3, 9, 9)})
    assert module(torch.zeros(4, 3, 9, 9)).shape == (4, 2, 7, 7)
    assert not module.training and type(module).__name__ == "Small"


def test_plugin_layers_use_their_torch_function(tmp_path):
    import protodef
    from protodef.plugins import unregister_layer

    class Double(torch.nn.Module):
        def forward(self, x):
            return x * 2

    protodef.register_layer("DoubleIt", shape=lambda inputs, fields: inputs[0], torch=lambda layer, ctx: Double())
    try:
        net = read_net(_write(tmp_path, data(1, 2) + one("DoubleIt")), init="none")
        assert torch.equal(load(net)(torch.ones(1, 2)), torch.full((1, 2), 2.0))
        with pytest.raises(UnsupportedError, match="plugins"):
            save_pytorch(net, tmp_path / "p.py")
    finally:
        unregister_layer("DoubleIt")


