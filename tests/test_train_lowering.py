"""TRAIN-phase lowering (protodef.load(..., phase="train")): losses, Accuracy, BatchNorm and Dropout in train
mode, parameter specs, forward and gradient against NumPy transcriptions of Caffe's sources."""
from __future__ import annotations

import numpy as np
import pytest
import reference_train  # noqa: E402
import torch
from reference_losses import (  # noqa: E402
    accuracy,
    contrastive_loss,
    euclidean_loss,
    hinge_loss,
    infogain_loss,
    multinomial_logistic_loss,
    sigmoid_cross_entropy_loss,
    smooth_l1_loss,
    softmax_with_loss,
)
from support import assert_close  # noqa: E402

import protodef  # noqa: E402
from protodef.weights import write_caffemodel  # noqa: E402

torch.set_num_threads(2)

LENET_TYPES = {"conv1": "Convolution", "bn1": "BatchNorm", "scale1": "Scale", "ip1": "InnerProduct",
               "ip2": "InnerProduct"}


def lenet_module(tmp_path, params, bn_blobs, batch: int = 4):
    prototxt = tmp_path / "lenet_bn.prototxt"
    prototxt.write_text(reference_train.lenet_bn_prototxt(batch))
    caffemodel = tmp_path / "lenet_bn.caffemodel"
    blobs = {**params, **bn_blobs}
    write_caffemodel(caffemodel, [(name, LENET_TYPES[name], blobs[name]) for name in LENET_TYPES])
    return protodef.load(prototxt, caffemodel, phase="train")


def run(module, batch: dict[str, np.ndarray]):
    return module(*(torch.from_numpy(batch[name]) for name in module.input_names))


def test_lenet_bn_net_has_labels_in_and_loss_and_accuracy_out(tmp_path):
    module = lenet_module(tmp_path, reference_train.random_params(), reference_train.random_bn_blobs())
    assert module.input_names == ["data", "label"]
    assert module.output_names == ["loss", "accuracy"]
    assert module.loss_weights == {"loss": 1.0}
    assert module.training
    assert type(module.bn1).__name__ == "CaffeBatchNorm" and type(module.scale1).__name__ == "Scale"


def test_lenet_bn_gradients_and_statistics_match_the_numpy_transcription_over_three_steps(tmp_path):
    params, bn_blobs = reference_train.random_params(1), reference_train.random_bn_blobs(1)
    module = lenet_module(tmp_path, params, bn_blobs)
    tensors = dict(module.named_parameters())
    for step in range(3):
        batch = reference_train.random_batch(step)
        loss, grads, bn_blobs = reference_train.forward_backward(params, bn_blobs, batch)
        module.zero_grad()
        outputs = run(module, batch)
        objective = module.caffe_loss(outputs)
        objective.backward()
        assert_close(objective.detach().numpy(), np.float64(loss), f"step {step} loss")
        for spec in module.caffe_param_specs:
            if spec["buffer"]:
                actual = module.get_buffer(spec["parameter"]).numpy()
                assert_close(actual, bn_blobs[spec["layer"]][spec["blob"]], f"step {step} {spec['parameter']}")
            else:
                actual = tensors[spec["parameter"]].grad.numpy()
                assert_close(actual, grads[spec["layer"]][spec["blob"]], f"step {step} d{spec['parameter']}")


def test_lenet_bn_param_specs_follow_the_prototxt(tmp_path):
    module = lenet_module(tmp_path, reference_train.random_params(), reference_train.random_bn_blobs())
    specs = {(s["layer"], s["blob"]): s for s in module.caffe_param_specs}
    assert list(specs) == [("conv1", 0), ("conv1", 1), ("bn1", 0), ("bn1", 1), ("bn1", 2), ("scale1", 0),
                           ("scale1", 1), ("ip1", 0), ("ip1", 1), ("ip2", 0), ("ip2", 1)]
    assert (specs["conv1", 1]["lr_mult"], specs["conv1", 1]["decay_mult"]) == (2.0, 0.0)
    assert (specs["ip2", 0]["lr_mult"], specs["ip2", 0]["decay_mult"]) == (0.5, 2.0)
    assert (specs["scale1", 0]["lr_mult"], specs["scale1", 0]["decay_mult"]) == (1.0, 1.0)
    assert [specs["bn1", i]["parameter"] for i in range(3)] == ["bn1.mean", "bn1.variance", "bn1.scale_factor"]
    assert all(specs["bn1", i]["buffer"] and specs["bn1", i]["lr_mult"] == 0 for i in range(3))
    assert not any(specs[key]["buffer"] for key in specs if key[0] != "bn1")
    assert set(module.state_dict()) == {s["parameter"] for s in specs.values()}


# ---- losses: forward and gradient against reference_losses.py ---------------------------------------------
def _input(name: str, shape) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}\n'


def train_module(tmp_path, inputs: dict[str, np.ndarray], layers: str, **read_options):
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text('name: "t"\n' + "".join(_input(n, a.shape) for n, a in inputs.items()) + layers)
    return protodef.load(prototxt, phase="train", **read_options)


def loss_layer(type_name: str, bottoms, params: str = "", tops=("loss",)) -> str:
    bottom = " ".join(f'bottom: "{b}"' for b in bottoms)
    top = " ".join(f'top: "{t}"' for t in tops)
    return f'layer {{ name: "loss" type: "{type_name}" {bottom} {top} {params} }}\n'


def forward_backward(module, inputs: dict[str, np.ndarray], differentiable: tuple[str, ...]):
    tensors = {n: torch.tensor(a, requires_grad=n in differentiable) for n, a in inputs.items()}
    outputs = module(*(tensors[n] for n in module.input_names))
    module.caffe_loss(outputs).backward()
    first = outputs[0] if isinstance(outputs, tuple) else outputs
    return first.detach().numpy(), outputs, {n: tensors[n].grad for n in differentiable}


def check_loss(module, inputs, reference, differentiable=("x",)):
    loss, diffs = reference[:2]
    actual, _, grads = forward_backward(module, inputs, differentiable)
    assert actual.shape == ()
    assert_close(actual, np.float64(loss), "loss")
    for name, diff in zip(inputs, diffs):
        if diff is None:
            assert grads.get(name) is None, f"{name} must get no gradient"
        else:
            assert_close(grads[name].numpy(), diff, f"d{name}")


def rng(seed=0):
    return np.random.default_rng(seed)


SOFTMAX_VARIANTS = [
    ("valid", "", {}),
    ("batch_size", "loss_param { normalization: BATCH_SIZE }", {"normalization": "BATCH_SIZE"}),
    ("full_ignore", "loss_param { normalization: FULL ignore_label: 1 }", {"normalization": "FULL", "ignore_label": 1}),
    ("valid_ignore", "loss_param { ignore_label: 2 }", {"ignore_label": 2}),
    ("none_weighted", "loss_param { normalization: NONE } loss_weight: 2.5", {"normalization": "NONE"}),
    ("legacy_normalize_false", "loss_param { normalize: false ignore_label: 0 }",
     {"normalization": "BATCH_SIZE", "ignore_label": 0}),
    ("legacy_normalize_true", "loss_param { normalize: true ignore_label: 0 }", {"ignore_label": 0}),
]


@pytest.mark.parametrize("params, options", [v[1:] for v in SOFTMAX_VARIANTS], ids=[v[0] for v in SOFTMAX_VARIANTS])
def test_softmax_with_loss(tmp_path, params, options):
    r = rng(1)
    inputs = {"x": r.standard_normal((3, 4, 2, 3)).astype(np.float32),
              "label": r.integers(0, 4, (3, 2, 3)).astype(np.float32)}
    module = train_module(tmp_path, inputs, loss_layer("SoftmaxWithLoss", ("x", "label"), params))
    weight = 2.5 if "loss_weight" in params else 1.0
    check_loss(module, inputs, softmax_with_loss(inputs["x"], inputs["label"], loss_weight=weight, **options))


def test_softmax_with_loss_over_the_last_axis_with_its_probabilities(tmp_path):
    r = rng(2)
    inputs = {"x": r.standard_normal((2, 3, 5)).astype(np.float32), "label": r.integers(0, 5, (2, 3))
              .astype(np.float32)}
    # Caffe refuses two tops without a loss_weight for each; a weight on the softmax top sends no gradient.
    text = loss_layer("SoftmaxWithLoss", ("x", "label"), "softmax_param { axis: -1 } loss_weight: 1 loss_weight: 3",
                      tops=("loss", "prob"))
    module = train_module(tmp_path, inputs, text)
    loss, diffs, prob = softmax_with_loss(inputs["x"], inputs["label"], axis=-1)
    actual, outputs, grads = forward_backward(module, inputs, ("x",))
    assert module.output_names == ["loss", "prob"] and module.loss_weights == {"loss": 1.0, "prob": 3.0}
    assert_close(actual, np.float64(loss), "loss")
    assert_close(outputs[1].detach().numpy(), prob, "prob")
    assert_close(grads["x"].numpy(), diffs[0], "dx")
    objective = module.caffe_loss(outputs).item()
    assert objective == pytest.approx(outputs[0].item() + 3 * outputs[1].sum().item(), rel=1e-6)
    two_tops = loss_layer("SoftmaxWithLoss", ("x", "label"), "softmax_param { axis: -1 }", tops=("loss", "prob"))
    with pytest.raises(protodef.errors.SchemaError, match="loss_weight must be unspecified or specified once"):
        train_module(tmp_path, inputs, two_tops)


def test_softmax_with_loss_clips_probabilities_at_flt_min_but_not_its_gradient(tmp_path):
    inputs = {"x": np.array([[0.0, 120.0, -120.0], [1.0, 2.0, 3.0]], np.float32),
              "label": np.array([2, 0], np.float32)}
    module = train_module(tmp_path, inputs, loss_layer("SoftmaxWithLoss", ("x", "label")))
    reference = softmax_with_loss(inputs["x"], inputs["label"])
    assert reference[0] > 87.3 / 2          # -log(FLT_MIN) for the first sample, halved by VALID
    check_loss(module, inputs, reference)


SIGMOID_VARIANTS = [
    ("batch_size_default", "", {}),
    ("valid_ignore", "loss_param { normalization: VALID ignore_label: -1 }",
     {"normalization": "VALID", "ignore_label": -1}),
    ("full", "loss_param { normalization: FULL }", {"normalization": "FULL"}),
    ("legacy_normalize", "loss_param { normalize: true }", {"normalization": "VALID"}),
]


@pytest.mark.parametrize("params, options", [v[1:] for v in SIGMOID_VARIANTS], ids=[v[0] for v in SIGMOID_VARIANTS])
def test_sigmoid_cross_entropy_loss(tmp_path, params, options):
    r = rng(3)
    x = (r.standard_normal((3, 2, 4)) * 4).astype(np.float32)
    target = r.integers(-1, 2, (3, 2, 4)).astype(np.float32) if "ignore" in params else \
        r.random((3, 2, 4)).astype(np.float32)
    inputs = {"x": x, "target": target}
    module = train_module(tmp_path, inputs, loss_layer("SigmoidCrossEntropyLoss", ("x", "target"), params))
    check_loss(module, inputs, sigmoid_cross_entropy_loss(x, target, **options))


def test_euclidean_loss_sends_gradients_to_both_inputs(tmp_path):
    r = rng(4)
    inputs = {"x": r.standard_normal((3, 5)).astype(np.float32), "y": r.standard_normal((3, 5, 1, 1))
              .astype(np.float32)}
    module = train_module(tmp_path, inputs, loss_layer("EuclideanLoss", ("x", "y"), "loss_weight: 0.5"))
    check_loss(module, inputs, euclidean_loss(inputs["x"], inputs["y"], loss_weight=0.5), ("x", "y"))


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_loss(tmp_path, norm):
    r = rng(5)
    x = r.standard_normal((4, 5)).astype(np.float32)
    label = np.array([0, 3, 4, 1], np.float32)
    x[0, 1], x[1, 3] = -1.0, 1.0            # margins of exactly 0: Caffe's sign(0) gives no gradient
    inputs = {"x": x, "label": label}
    module = train_module(tmp_path, inputs, loss_layer("HingeLoss", ("x", "label"), f"hinge_loss_param {{ norm: {norm} }}"))
    check_loss(module, inputs, hinge_loss(x, label, norm=norm))


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "legacy"])
def test_contrastive_loss_with_caffes_gradient(tmp_path, legacy):
    r = rng(6)
    a = r.standard_normal((5, 3, 1, 1)).astype(np.float32) * 0.5
    b = r.standard_normal((5, 3, 1, 1)).astype(np.float32) * 0.5
    b[1] = a[1]                              # a dissimilar pair at distance 0: Caffe divides by 0 + 1e-4
    b[2] = a[2] + 3                          # beyond the margin: no gradient
    similar = np.array([1, 0, 0, 0, 1], np.float32).reshape(5, 1, 1, 1)
    inputs = {"a": a, "b": b, "similar": similar}
    params = f"contrastive_loss_param {{ margin: 1.5 legacy_version: {str(legacy).lower()} }}"
    module = train_module(tmp_path, inputs, loss_layer("ContrastiveLoss", ("a", "b", "similar"), params))
    check_loss(module, inputs, contrastive_loss(a, b, similar, margin=1.5, legacy_version=legacy), ("a", "b"))


def test_infogain_loss_with_its_matrix_as_an_input(tmp_path):
    r = rng(7)
    inputs = {"x": r.standard_normal((4, 3, 2)).astype(np.float32), "label": r.integers(0, 3, (4, 2))
              .astype(np.float32), "h": r.random((3, 3)).astype(np.float32)}
    params = "loss_param { ignore_label: 1 normalization: BATCH_SIZE }"
    module = train_module(tmp_path, inputs, loss_layer("InfogainLoss", ("x", "label", "h"), params))
    reference = infogain_loss(inputs["x"], inputs["label"], inputs["h"], normalization="BATCH_SIZE", ignore_label=1)
    check_loss(module, inputs, reference, ("x", "h"))


def test_infogain_loss_reads_its_matrix_from_a_binaryproto(tmp_path):
    from caffe_proto import caffe_pb2
    r = rng(8)
    matrix = r.random((4, 4)).astype(np.float32)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([1, 1, 4, 4])
    blob.data.extend(matrix.reshape(-1).tolist())
    (tmp_path / "H.binaryproto").write_bytes(blob.SerializeToString())
    inputs = {"x": r.standard_normal((3, 4)).astype(np.float32), "label": np.array([0, 3, 1], np.float32)}
    text = loss_layer("InfogainLoss", ("x", "label"), 'infogain_loss_param { source: "H.binaryproto" }')
    module = train_module(tmp_path, inputs, text)
    check_loss(module, inputs, infogain_loss(inputs["x"], inputs["label"], matrix))
    missing = loss_layer("InfogainLoss", ("x", "label"), 'infogain_loss_param { source: "nowhere.binaryproto" }')
    with pytest.raises(protodef.errors.WeightsError, match="infogain matrix file is not there"):
        train_module(tmp_path, inputs, missing)


def test_multinomial_logistic_loss_clips_at_1e_20(tmp_path):
    r = rng(9)
    p = r.random((3, 4)).astype(np.float32)
    p[1, 2] = 0.0                            # the label's probability is 0: Caffe's gradient is -1 / 1e-20 / N
    inputs = {"p": p, "label": np.array([1, 2, 0], np.float32)}
    module = train_module(tmp_path, inputs, loss_layer("MultinomialLogisticLoss", ("p", "label")))
    loss, diffs = multinomial_logistic_loss(p, inputs["label"])
    actual, _, grads = forward_backward(module, inputs, ("p",))
    assert_close(actual, np.float64(loss), "loss")
    np.testing.assert_allclose(grads["p"].numpy(), diffs[0], rtol=1e-5)


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "inside_outside_weights"])
def test_smooth_l1_loss(tmp_path, weighted):
    r = rng(10)
    inputs = {"a": (r.standard_normal((2, 4, 3, 3)) * 2).astype(np.float32),
              "b": (r.standard_normal((2, 4, 3, 3)) * 2).astype(np.float32)}
    if weighted:
        inputs["inside"] = r.integers(0, 2, (2, 4, 3, 3)).astype(np.float32)
        inputs["outside"] = r.random((2, 4, 3, 3)).astype(np.float32)
    module = train_module(tmp_path, inputs, loss_layer("SmoothL1Loss", tuple(inputs)))
    reference = smooth_l1_loss(*inputs.values())
    check_loss(module, inputs, reference, tuple(inputs))


def test_smooth_l1_loss_reads_sigma(tmp_path):
    """smooth_l1_loss_param is py-faster-rcnn's field, in our schema at the fork's number."""
    r = rng(11)
    inputs = {"a": r.standard_normal((3, 4)).astype(np.float32), "b": r.standard_normal((3, 4)).astype(np.float32)}
    text = loss_layer("SmoothL1Loss", ("a", "b"), "smooth_l1_loss_param { sigma: 3 }")
    module = train_module(tmp_path, inputs, text)
    check_loss(module, inputs, smooth_l1_loss(inputs["a"], inputs["b"], sigma=3.0), ("a", "b"))


ACCURACY_VARIANTS = [
    ("top1", "", {}),
    ("top2_ignore", "accuracy_param { top_k: 2 ignore_label: 3 }", {"top_k": 2, "ignore_label": 3}),
    ("axis2", "accuracy_param { axis: 2 }", {"axis": 2}),
]


@pytest.mark.parametrize("params, options", [v[1:] for v in ACCURACY_VARIANTS], ids=[v[0] for v in ACCURACY_VARIANTS])
def test_accuracy_and_its_per_class_output_with_ties(tmp_path, params, options):
    r = rng(12)
    x = r.integers(0, 3, (6, 4, 3)).astype(np.float32)      # small integers: ties count against the label
    label_shape = (6, 3) if options.get("axis", 1) == 1 else (6, 4)
    classes = x.shape[options.get("axis", 1)]
    inputs = {"x": x, "label": r.integers(0, classes, label_shape).astype(np.float32)}
    module = train_module(tmp_path, inputs, loss_layer("Accuracy", ("x", "label"), params, tops=("acc", "per_class")))
    expected, per_class = accuracy(x, inputs["label"], **options)
    outputs = module(*(torch.from_numpy(inputs[n]) for n in module.input_names))
    assert module.loss_weights == {} and not any(o.requires_grad for o in outputs)
    assert_close(outputs[0].numpy(), np.float64(expected), "accuracy")
    assert_close(outputs[1].numpy(), per_class, "per-class accuracy")


# ---- BatchNorm, Dropout, pooling ------------------------------------------------------------------------------
def batchnorm_module(tmp_path, shape, params="", *, phase="train", blobs=None, seed=0):
    prototxt = tmp_path / "bn.prototxt"
    prototxt.write_text('name: "bn"\n' + _input("x", shape)
                        + f'layer {{ name: "bn" type: "BatchNorm" bottom: "x" top: "y" {params} }}\n')
    caffemodel = tmp_path / "bn.caffemodel"
    if blobs is None:
        blobs = [b.astype(np.float32) for b in reference_train.random_bn_blobs(seed)["bn1"]]
        blobs = [np.resize(blobs[0], shape[1]), np.resize(blobs[1], shape[1]), blobs[2]]
    write_caffemodel(caffemodel, [("bn", "BatchNorm", blobs)])
    return protodef.load(prototxt, caffemodel, phase=phase, fold=False), [np.asarray(b, np.float64) for b in blobs]


def bn_blobs_of(module):
    return [module.bn.mean.numpy(), module.bn.variance.numpy(), module.bn.scale_factor.numpy()]


@pytest.mark.parametrize("shape", [(4, 3, 5, 2), (6, 3)], ids=["4d", "2d"])
def test_batchnorm_train_mode_forward_gradient_and_blob_updates_over_steps(tmp_path, shape):
    module, blobs = batchnorm_module(tmp_path, shape, "batch_norm_param { moving_average_fraction: 0.8 eps: 1e-3 }")
    r = rng(13)
    for step in range(3):
        x = torch.tensor(r.standard_normal(shape).astype(np.float32) * 2 + step, requires_grad=True)
        dy = r.standard_normal(shape)
        y = module(x)
        y.backward(torch.tensor(dy, dtype=torch.float32))
        expected, inv_std, blobs = reference_train.batch_norm_train(x.detach().numpy().astype(np.float64), blobs,
                                                                   maf=0.8, eps=1e-3)
        assert_close(y.detach().numpy(), expected, f"step {step} y")
        assert_close(x.grad.numpy(), reference_train.batch_norm_backward(dy, expected, inv_std), f"step {step} dx")
        for actual, reference, name in zip(bn_blobs_of(module), blobs, ("mean", "variance", "scale_factor")):
            assert_close(actual, reference, f"step {step} {name}")


def test_batchnorm_of_one_value_per_channel_gives_zero_and_keeps_the_variance(tmp_path):
    module, blobs = batchnorm_module(tmp_path, (1, 3), "batch_norm_param { moving_average_fraction: 0.5 }")
    x = torch.tensor([[1.0, -2.0, 3.0]], requires_grad=True)
    y = module(x)
    y.sum().backward()
    assert torch.equal(y.detach(), torch.zeros(1, 3)) and torch.equal(x.grad, torch.zeros(1, 3))
    _, _, updated = reference_train.batch_norm_train(x.detach().numpy().astype(np.float64), blobs, maf=0.5)
    for actual, reference in zip(bn_blobs_of(module), updated):
        assert_close(actual, reference)


def caffe_test_batchnorm(x, blobs, eps=1e-5):
    """batch_norm_layer.cpp with use_global_stats: statistics blob / scale factor (0 when the factor is 0)."""
    mean, variance, factor = blobs
    s = 0.0 if factor[0] == 0 else 1 / factor[0]
    channel = (1, -1) + (1,) * (x.ndim - 2)
    return (x - (mean * s).reshape(channel)) / np.sqrt((variance * s).reshape(channel) + eps)


@pytest.mark.parametrize("phase, params, global_in_train, global_in_eval", [
    ("train", "", False, True),
    ("test", "", False, True),
    ("train", "batch_norm_param { use_global_stats: true }", True, True),
    ("test", "batch_norm_param { use_global_stats: false }", False, False),
], ids=["train_default", "test_default", "train_global", "test_batch"])
def test_batchnorm_use_global_stats_is_honoured_in_either_mode(tmp_path, phase, params, global_in_train,
                                                               global_in_eval):
    module, blobs = batchnorm_module(tmp_path, (4, 3, 2, 2), params, phase=phase, seed=2)
    x = rng(14).standard_normal((4, 3, 2, 2)).astype(np.float32)
    for training, use_global in ((True, global_in_train), (False, global_in_eval)):
        module.train(training)
        before = [b.copy() for b in bn_blobs_of(module)]
        tensor = torch.tensor(x, requires_grad=True)
        y = module(tensor)
        y.sum().backward()
        after = bn_blobs_of(module)
        if use_global:
            assert_close(y.detach().numpy(), caffe_test_batchnorm(x.astype(np.float64), before))
            s = before[2][0]
            assert_close(tensor.grad.numpy(), np.broadcast_to(1 / np.sqrt(before[1] / s + 1e-5)[None, :, None, None],
                                                              x.shape))
            assert all(np.array_equal(a, b) for a, b in zip(after, before)), "global statistics do not move"
        else:
            expected, _, updated = reference_train.batch_norm_train(x.astype(np.float64), before, maf=0.999)
            assert_close(y.detach().numpy(), expected)
            for actual, reference in zip(after, updated):
                assert_close(actual, reference)


def test_batchnorm_scale_factor_zero_means_zero_statistics_in_eval_mode(tmp_path):
    blobs = [np.full(3, 5, np.float32), np.full(3, 7, np.float32), np.zeros(1, np.float32)]
    module, _ = batchnorm_module(tmp_path, (2, 3, 2, 2), phase="test", blobs=blobs)
    x = rng(15).standard_normal((2, 3, 2, 2)).astype(np.float32)
    with torch.no_grad():
        assert_close(module(torch.from_numpy(x)).numpy(), x / np.sqrt(1e-5))


def test_batchnorm_statistics_cannot_be_learned(tmp_path):
    with pytest.raises(protodef.errors.SchemaError, match="batch normalization statistics.*lr_mult 0"):
        batchnorm_module(tmp_path, (2, 3), "param { lr_mult: 0 } param { decay_mult: 0 }")


@pytest.mark.parametrize("scale_train", [True, False])
def test_dropout_scales_at_train_time_as_caffe_does(tmp_path, scale_train):
    inputs = {"x": np.ones((64, 100), np.float32)}
    params = f"dropout_param {{ dropout_ratio: 0.25 scale_train: {str(scale_train).lower()} }}"
    module = train_module(tmp_path, inputs, f'layer {{ name: "drop" type: "Dropout" bottom: "x" top: "y" {params} }}\n')
    x = torch.ones(64, 100, requires_grad=True)
    torch.manual_seed(0)
    y = module(x)
    y.sum().backward()
    kept_value = np.float32(1 / 0.75 if scale_train else 1.0)
    values = np.unique(y.detach().numpy())
    assert len(values) == 2 and values[0] == 0 and values[1] == pytest.approx(kept_value, rel=1e-6)
    assert 0.7 < float((y != 0).float().mean()) < 0.8
    assert torch.equal(x.grad, y.detach())                     # Caffe: top_diff * mask * scale
    module.eval()
    assert torch.allclose(module(x), x * (1.0 if scale_train else 0.75))


@pytest.mark.parametrize("pool, shape", [
    ("kernel_size: 3 stride: 2", (2, 2, 8, 8)),                # ceil rounding: a clipped last window
    ("kernel_size: 2 stride: 1 pad: 1", (1, 3, 5, 4)),         # padded windows
    ("kernel_size: 3 stride: 2 pad: 2", (1, 2, 7, 7)),         # padding over half the kernel (CaffeMaxPool2d)
], ids=["ceil", "pad", "wide_pad"])
def test_max_pooling_routes_each_gradient_to_the_first_maximum(tmp_path, pool, shape):
    x = rng(16).integers(0, 3, shape).astype(np.float32)    # many ties in every window
    inputs = {"x": x}
    module = train_module(tmp_path, inputs, f'layer {{ name: "pool" type: "Pooling" bottom: "x" top: "y" '
                                            f'pooling_param {{ pool: MAX {pool} }} }}\n')
    layer = protodef.read_net(tmp_path / "net.prototxt", phase="TRAIN").layer("pool")
    p = layer.params
    tensor = torch.tensor(x, requires_grad=True)
    y = module(tensor)
    dy = rng(17).standard_normal(tuple(y.shape))
    y.backward(torch.tensor(dy, dtype=torch.float32))
    expected, mask = reference_train.max_pool(x.astype(np.float64), p.kernel, p.stride, p.pad, tuple(y.shape[2:]))
    assert_close(y.detach().numpy(), expected, "pooled")
    assert_close(tensor.grad.numpy(), reference_train.max_pool_backward(dy, mask, x.shape), "dx")


# ---- parameter specs, shared blobs, loss weights ------------------------------------------------------------
def ip_layer(name: str, bottom: str, top: str, num_output: int = 4, params: str = "", extra: str = "") -> str:
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top}" {params} '
            f'inner_product_param {{ num_output: {num_output} weight_filler {{ type: "gaussian" std: 0.5 }} '
            f'bias_filler {{ type: "gaussian" std: 0.5 }} }} {extra} }}\n')


SIAMESE = (ip_layer("ip_a", "a", "fa", params='param { name: "w" lr_mult: 2 } param { name: "bias" }')
           + ip_layer("ip_b", "b", "fb", params='param { name: "w" } param { name: "bias" decay_mult: 0 }',
                      extra="loss_weight: 0.1")
           + loss_layer("EuclideanLoss", ("fa", "fb"))
           + ip_layer("frozen", "a", "fc", 2, 'param { lr_mult: 0 } param { lr_mult: 0 }', "loss_weight: 0.5"))


def test_named_params_are_tied_and_their_multipliers_merged(tmp_path):
    r = rng(18)
    inputs = {"a": r.standard_normal((3, 5)).astype(np.float32), "b": r.standard_normal((3, 5)).astype(np.float32)}
    module = train_module(tmp_path, inputs, SIAMESE)
    assert module.ip_b.weight is module.ip_a.weight and module.ip_b.bias is module.ip_a.bias
    specs = {(s["layer"], s["blob"]): s for s in module.caffe_param_specs}
    assert specs["ip_b", 0]["owner"] == "ip_a.weight" and specs["ip_b", 0]["share"] == "w"
    assert specs["ip_a", 0]["owner"] == "ip_a.weight" and specs["frozen", 0]["share"] is None
    assert [(specs[k]["lr_mult"], specs[k]["decay_mult"]) for k in (("ip_a", 0), ("ip_b", 0), ("ip_a", 1),
                                                                    ("ip_b", 1), ("frozen", 0))] == \
        [(2.0, 1.0), (2.0, 1.0), (1.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
    assert not module.frozen.weight.requires_grad and not module.frozen.bias.requires_grad
    assert [name for name, _ in module.named_parameters()] == ["ip_a.weight", "ip_a.bias", "frozen.weight",
                                                               "frozen.bias"]


def test_loss_weights_on_any_top_make_caffes_objective(tmp_path):
    r = rng(19)
    inputs = {"a": r.standard_normal((3, 5)).astype(np.float32), "b": r.standard_normal((3, 5)).astype(np.float32)}
    module = train_module(tmp_path, inputs, SIAMESE)
    # fb is read by the loss, so it is not a net output; its loss weight makes the module return it after them.
    assert module.output_names == ["loss", "fc", "fb"]
    assert module.loss_weights == {"loss": 1.0, "fc": 0.5, "fb": 0.1}
    w, bias = (module.ip_a.weight.detach().numpy().astype(np.float64), module.ip_a.bias.detach().numpy())
    a, b = inputs["a"].astype(np.float64), inputs["b"].astype(np.float64)
    fa, fb = a @ w.T + bias, b @ w.T + bias
    fc = a @ module.frozen.weight.detach().numpy().T + module.frozen.bias.detach().numpy()
    outputs = module(torch.from_numpy(inputs["a"]), torch.from_numpy(inputs["b"]))
    objective = module.caffe_loss(outputs)
    objective.backward()
    loss, (d_fa, d_fb) = euclidean_loss(fa, fb)
    assert_close(objective.detach().numpy(), np.float64(loss + 0.1 * fb.sum() + 0.5 * fc.sum()), "objective")
    d_fb = d_fb + 0.1
    assert_close(module.ip_a.weight.grad.numpy(), d_fa.T @ a + d_fb.T @ b, "shared weight gradient")
    assert_close(module.ip_a.bias.grad.numpy(), d_fa.sum(0) + d_fb.sum(0), "shared bias gradient")
    assert module.frozen.weight.grad is None


def test_a_weighted_top_keeps_its_value_when_a_relu_works_in_place_after_it(tmp_path):
    inputs = {"a": rng(20).standard_normal((3, 5)).astype(np.float32), "t": np.zeros((3, 4), np.float32)}
    text = (ip_layer("ip", "a", "f", extra="loss_weight: 2") + 'layer { name: "relu" type: "ReLU" bottom: "f" top: "f" }\n'
            + loss_layer("EuclideanLoss", ("f", "t")))
    module = train_module(tmp_path, inputs, text)
    loss, raw = module(*(torch.from_numpy(inputs[n]) for n in module.input_names))
    assert module.output_names == ["loss", "f@0"] and module.loss_weights == {"loss": 1.0, "f@0": 2.0}
    expected = inputs["a"] @ module.ip.weight.detach().numpy().T + module.ip.bias.detach().numpy()
    assert_close(raw.detach().numpy(), expected, "the InnerProduct's own output")
    assert_close(loss.detach().numpy(), euclidean_loss(np.maximum(expected, 0), inputs["t"])[0], "loss")


@pytest.mark.parametrize("second, error, match", [
    (ip_layer("ip_b", "b", "fb", 5, 'param { name: "w" }'), "ShapeError", "cannot share param 'w'.*shape mismatch"),
    (ip_layer("ip_b", "b", "fb", 4, 'param { name: "w" lr_mult: 3 }'), "SchemaError", "mismatched lr_mult"),
    (ip_layer("ip_b", "b", "fb", 5, 'param { name: "w" share_mode: PERMISSIVE }'), "ShapeError", "count mismatch"),
    ('layer { name: "ip_b" type: "Convolution" bottom: "b4" top: "fb" param { name: "w" share_mode: PERMISSIVE } '
     'convolution_param { num_output: 4 kernel_size: 1 bias_term: false } }\n', "UnsupportedError",
     "one PyTorch tensor for blobs of different shapes"),
], ids=["shape", "lr_mult", "permissive_count", "permissive_shape"])
def test_sharing_refuses_what_caffe_refuses(tmp_path, second, error, match):
    inputs = {"a": np.zeros((2, 5), np.float32), "b": np.zeros((2, 5), np.float32),
              "b4": np.zeros((2, 5, 1, 1), np.float32)}
    text = ip_layer("ip_a", "a", "fa", params='param { name: "w" lr_mult: 2 }') + second
    with pytest.raises(getattr(protodef.errors, error), match=match):
        train_module(tmp_path, inputs, text)


def test_transposed_inner_product_says_so(tmp_path):
    inputs = {"a": np.zeros((2, 5), np.float32)}
    module = train_module(tmp_path, inputs, ip_layer("ip", "a", "f", 3, extra="") .replace(
        "num_output: 3", "num_output: 3 transpose: true"))
    specs = module.caffe_param_specs
    assert [(s["parameter"], s["transpose"]) for s in specs] == [("ip.weight", True), ("ip.bias", False)]


def test_training_refuses_folding_and_keeps_what_training_needs(tmp_path):
    prototxt = tmp_path / "lenet.prototxt"
    prototxt.write_text(reference_train.lenet_bn_prototxt())
    with pytest.raises(protodef.errors.UnsupportedError, match="folding BatchNorm is a deploy transformation"):
        protodef.load(prototxt, phase="train", fold=True)
    deploy = protodef.load(prototxt)
    assert deploy.input_names == ["data"] and deploy.output_names == ["ip2"] and not deploy.training


def test_a_loss_setting_we_do_not_honour_refuses_training_but_not_the_deploy_view(tmp_path):
    inputs = {"x": np.zeros((2, 3), np.float32), "label": np.zeros(2, np.float32)}
    text = loss_layer("SoftmaxWithLoss", ("x", "label"), "loss_param { class_weighting: 2 class_weighting: 1 }")
    with pytest.raises(protodef.errors.SchemaError, match="loss_param.class_weighting is not supported"):
        train_module(tmp_path, inputs, text)
    text = 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 3 } }\n' + \
        loss_layer("SoftmaxWithLoss", ("ip", "label"), "loss_param { class_weighting: 2 class_weighting: 1 }")
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text('name: "t"\n' + "".join(_input(n, a.shape) for n, a in inputs.items()) + text)
    assert protodef.load(prototxt).output_names == ["ip"]


# ---- TRAIN nets as generated source -----------------------------------------------------------------------------
EVERY_LOSS = (
    'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "scores" inner_product_param { num_output: 4 } }\n'
    + loss_layer("SoftmaxWithLoss", ("scores", "label"), "loss_param { ignore_label: 2 normalization: VALID }",
                 tops=("softmax",)).replace('name: "loss"', 'name: "softmax"')
    + loss_layer("SigmoidCrossEntropyLoss", ("scores", "targets"), tops=("sigmoid",)).replace('"loss"', '"sig"')
    + loss_layer("EuclideanLoss", ("scores", "targets"), "loss_weight: 0.5", tops=("l2",)).replace('"loss"', '"l2"')
    + loss_layer("HingeLoss", ("scores", "label"), tops=("hinge",)).replace('"loss"', '"hinge"')
    + loss_layer("SmoothL1Loss", ("scores", "targets"), tops=("smooth",)).replace('"loss"', '"smooth"')
    + loss_layer("Accuracy", ("scores", "label"), tops=("acc",)).replace('"loss"', '"acc"'))


def test_a_train_net_written_as_source_runs_without_protodef_with_the_same_losses_and_gradients(tmp_path):
    """`convert --phase TRAIN --to pytorch` writes Caffe's TRAIN net (labels in, losses out, caffe_loss) as
    source: the loss modules and what they share are copied in, and it needs only torch."""
    import subprocess
    import sys
    import textwrap

    from protodef.cli import main
    r = rng(3)
    inputs = {"x": r.standard_normal((5, 6)).astype(np.float32),
              "label": r.integers(0, 4, (5,)).astype(np.float32),
              "targets": r.random((5, 4)).astype(np.float32)}
    module = train_module(tmp_path, inputs, EVERY_LOSS)
    prototxt = tmp_path / "net.prototxt"
    assert main(["convert", str(prototxt), "--phase", "TRAIN", "--to", "pytorch", "--seed", "0",
                 "-o", str(tmp_path / "train_net.py")]) == 0
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = textwrap.dedent("""
        import importlib.util, sys
        import numpy as np
        for blocked in ("protodef", "converters"):
            sys.modules[blocked] = None          # any import of them fails
        import torch
        spec = importlib.util.spec_from_file_location("train_net", "train_net.py")
        generated = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generated)
        model = generated.load_model()
        arrays = np.load("inputs.npz")
        x = torch.tensor(arrays["x"], requires_grad=True)
        out = model(*(x if n == "x" else torch.from_numpy(arrays[n]) for n in model.input_names))
        model.caffe_loss(out).backward()
        np.savez("outputs.npz", *(o.detach().numpy() for o in out), x.grad.numpy())
        print(model.training, list(model.output_names), model.loss_weights)
        """)
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    torch.manual_seed(0)
    module.load_state_dict(torch.load(tmp_path / "train_net.pt"))
    expected, outputs, grads = forward_backward(module, inputs, ("x",))
    assert done.stdout.strip() == f"True {list(module.output_names)} {module.loss_weights}"
    written = np.load(tmp_path / "outputs.npz")
    for value, key in zip([*outputs, grads["x"]], written.files):
        assert np.array_equal(written[key], value.detach().numpy())
    assert set(module.loss_weights) == {"softmax", "sigmoid", "l2", "hinge", "smooth"}
