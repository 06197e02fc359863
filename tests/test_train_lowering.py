"""TRAIN-phase lowering (protodef.load(..., phase="train")): losses, Accuracy, BatchNorm and Dropout in train
mode, parameter specs, forward and gradient against NumPy transcriptions of Caffe's sources."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import protodef  # noqa: E402
import reference_train  # noqa: E402
from protodef.weights import write_caffemodel  # noqa: E402
from support import assert_close  # noqa: E402

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
